"""
Escape times over a barrier
===========================

For an overdamped diffusion ``dx = -U'(x) dt + sqrt(2T) dW`` in the double well ``U = (x^2 - 1)^2``, the
exact mean first-passage time from ``x0 = -0.9`` to the barrier top ``x = 0`` is a double integral
(ERRATA 004.4; :func:`~sgd_dynamics.theory.mean_first_passage_time`), Kramers' formula its low-temperature
limit (well to well, about twice the time to the top; :func:`~sgd_dynamics.theory.kramers_time`). A few
hundred simulated paths (:func:`~sgd_dynamics.simulate.first_passage_times_1d`) check both.
"""

import matplotlib.pyplot as plt
import numpy as np

from sgd_dynamics.simulate import first_passage_times_1d
from sgd_dynamics.theory import kramers_time, mean_first_passage_time, parse_potential

U = parse_potential("(x**2 - 1)**2")
temperatures = np.array([0.2, 0.25, 0.33, 0.5])
exact = [mean_first_passage_time(U, T, -0.9, 0.0) for T in temperatures]
kramers = [kramers_time(U, T, -1.0, 0.0) / 2 for T in temperatures]   # to the top: half of well to well
simulated, stderr = [], []
for T in temperatures:
    fp = first_passage_times_1d(U, -0.9, 0.0, T, dt=1e-3, replicas=200, seed=0, max_steps=2_000_000)
    times = np.asarray(fp.times)
    simulated.append(np.nanmean(times))
    stderr.append(np.nanstd(times) / np.sqrt(np.isfinite(times).sum()))
for T, e, s in zip(temperatures, exact, simulated, strict=True):
    print(f"T = {T}: exact {e:.2f}, simulated {s:.2f}")

# %%
# Arrhenius plot: ``log tau`` against ``1/T`` is a line of slope ``Delta U = 1``.
fig, ax = plt.subplots(figsize=(5, 3.5))
ax.semilogy(1 / temperatures, exact, "k-", label="exact MFPT")
ax.semilogy(1 / temperatures, kramers, "--", label="Kramers / 2")
ax.errorbar(1 / temperatures, simulated, yerr=2 * np.array(stderr), fmt="o", label="simulated (2 s.e.)")
ax.set(xlabel="1 / T", ylabel="mean time to the barrier top")
ax.legend()
fig.tight_layout()
