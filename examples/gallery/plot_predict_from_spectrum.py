"""
Predict the limiting dynamics from a Hessian spectrum
=====================================================

Given the top Hessian eigenvalues ``rho_l`` of a network at ``theta*`` and the gradient-noise variances
``s_l = q_l^T Sigma q_l`` along the eigenvectors, the theory predicts the instantaneous speed (002 eq. 18,
ERRATA 002.3) and the whole displacement curve ``E||theta_{k+t} - theta_k||^2`` with its local exponent
``c(t)`` (ERRATA 002.6), from the exact discrete recursion (ERRATA 002.5) or from the SDE. No network is
trained here: the spectrum below is a made-up power law, the input ``sgd-dynamics predict`` takes.
"""

import matplotlib.pyplot as plt
import numpy as np

from sgd_dynamics import Hyperparams
from sgd_dynamics.theory import (
    global_displacement,
    local_exponent,
    stationary_speed,
    stationary_speed_from_trace,
)

hp = Hyperparams(lr=0.05, momentum=0.9, batch_size=64, weight_decay=1e-3)
eigenvalues = 4.0 * np.arange(1, 51) ** -1.5            # rho_l: a decaying spectrum
noise = 0.5 * eigenvalues                                 # s_l ~ rho_l (Sigma ~ H near a minimum)

# %%
# The speed needs only ``tr(Sigma)`` (here the sum of the ``s_l``); the exact discrete value is close.
print("eq. 18 speed:", stationary_speed_from_trace(noise.sum(), hp))
print("exact discrete speed:", stationary_speed(eigenvalues, noise, hp))

# %%
# The displacement grows like ``k^c`` with a falling exponent, then saturates at twice the stationary
# variance; the SDE (dashed) and the exact recursion agree while ``eta rho`` is small.
steps = np.unique(np.geomspace(1, 1e4, 60).astype(int))
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
for model, style in (("discrete", "-"), ("sde", "--")):
    ax1.loglog(steps, global_displacement(eigenvalues, noise, hp, steps, model=model), style, label=model)
    ax2.semilogx(steps, local_exponent(eigenvalues, noise, hp, steps, model=model), style, label=model)
ax1.set(xlabel="steps t", ylabel="E||theta_{k+t} - theta_k||^2")
ax2.set(xlabel="steps t", ylabel="local exponent c(t)")
ax1.legend()
fig.tight_layout()
