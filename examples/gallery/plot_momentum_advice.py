"""
Momentum advice for label-noise SGD
===================================

Near a valley of minima, label-noise SGD with heavy-ball momentum drifts along the valley on a timescale
``tau_2`` and relaxes across it on ``tau_1 = 2 / (1 - beta)`` steps; the fastest progress balances the two,
``1 - beta = C eta^(2/3)`` (003 eqs. 2, 9, 10). For the vector UV model the constant ``C`` follows from
the width, the data set size and the noise (:func:`~sgd_dynamics.theory.uv_optimal_constant`); this is
what ``sgd-dynamics momentum advise`` prints.
"""

import matplotlib.pyplot as plt
import numpy as np

from sgd_dynamics.theory import (
    envelope_relaxation_time,
    momentum_from_constant,
    uv_drift_time,
    uv_optimal_constant,
)

width, size, noise, mu2 = 10, 100, 0.5, 1.0
C = uv_optimal_constant(width, size, noise, mu2)
print(f"C = {C:.4f}")
for lr in (1e-3, 1e-2, 1e-1):
    beta = momentum_from_constant(lr, C)
    print(f"lr = {lr:g}: beta = {beta:.4f}, tau_relax = {envelope_relaxation_time(lr, beta):.0f} steps, "
          f"tau_drift = {uv_drift_time(lr, beta, width, size, noise, mu2):.0f} steps")

# %%
# At a fixed learning rate, the slower of the two timescales is smallest where they cross, at the
# advised momentum.
lr = 1e-2
betas = 1 - np.geomspace(1e-3, 0.5, 200)
relax = np.array([envelope_relaxation_time(lr, b) for b in betas])
drift = np.array([uv_drift_time(lr, b, width, size, noise, mu2) for b in betas])
fig, ax = plt.subplots(figsize=(5, 3.5))
ax.loglog(1 - betas, relax, label="tau_1 = 2 / (1 - beta)")
ax.loglog(1 - betas, drift, label="tau_2 (003 eq. 9)")
ax.axvline(1 - momentum_from_constant(lr, C), color="k", ls="--", label="1 - beta = C lr^(2/3)")
ax.set(xlabel="1 - beta", ylabel="steps")
ax.legend()
fig.tight_layout()
