"""
Track your own model
====================

``examples/your_model.py`` points sgd-dynamics at a plain ``nn.Module``: it trains a small MLP on
scikit-learn's digits, measures the top Hessian eigenpairs and the gradient noise at the trained point,
tracks SGD with :class:`~sgd_dynamics.measure.TrajectoryTracker` and compares the measured speed with
002 eq. 18. This page runs that script as it is and plots what it recorded.
"""

import runpy
from pathlib import Path

import matplotlib.pyplot as plt

try:  # run as a file (python examples/gallery/plot_your_model.py)
    here = Path(__file__).resolve().parent
except NameError:  # sphinx-gallery runs the code with the working directory set to this folder
    here = Path.cwd()
run = runpy.run_path(str(here.parent / "your_model.py"))

# %%
# What the tracker recorded: the speed per step against the prediction, and the growing displacement
# with its fitted exponent.
h = run["h"]
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
ax1.plot(h["step"][1:], h["local_sq_displacement"][1:], lw=0.5, label="measured")
ax1.axhline(float(run["predicted"]), color="k", ls="--", label="eq. 18")
ax1.set(xlabel="step", ylabel="||theta_{k+1} - theta_k||^2", yscale="log")
ax1.legend()
ax2.loglog(h["step"][1:], h["global_sq_displacement"][1:])
ax2.set(xlabel="step", ylabel="||theta_k - theta_0||^2", title=f"c = {run['fit'].exponent:.2f}")
fig.tight_layout()
