"""
Hessian eigenpairs and gradient noise of a network
==================================================

:func:`~sgd_dynamics.measure.hessian_eigenpairs` finds the top eigenpairs of the Hessian of the mean
loss with Lanczos on exact Hessian-vector products (the Hessian is never formed) and reports the
residual ``||H q - rho q||`` of each pair; :func:`~sgd_dynamics.measure.gradient_noise` measures the
per-example gradient covariance ``Sigma`` along those directions, ``s_i = q_i^T Sigma q_i``, and its
trace. Near a minimum ``Sigma`` is close to ``H`` (ERRATA 004.3). A tiny MLP on scikit-learn's digits.
"""

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

from sgd_dynamics.measure import gradient_noise, hessian_eigenpairs

torch.manual_seed(0)
digits = load_digits()
X = torch.tensor(digits.data[:600] / 16.0, dtype=torch.float32)
y = torch.tensor(digits.target[:600])
model = nn.Sequential(nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 10))
loss_fn = nn.CrossEntropyLoss()
opt = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9)
for _ in range(150):
    opt.zero_grad()
    loss_fn(model(X), y).backward()
    opt.step()

data = [(X, y)]
eig = hessian_eigenpairs(model, loss_fn, data, k=8)
noise = gradient_noise(model, loss_fn, data, directions=eig.eigenvectors)
print("eigenvalues", np.round(eig.eigenvalues, 4))
print("max residual", float(np.max(eig.residuals)), "HVPs", eig.hvp_count, "tr Sigma", noise.trace)

# %%
# The noise along each eigendirection against its curvature.
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
ax1.semilogy(np.arange(1, 9), eig.eigenvalues, "o-", label="rho_i")
ax1.semilogy(np.arange(1, 9), noise.mode_noise, "s-", label="s_i = q_i^T Sigma q_i")
ax1.set(xlabel="i", title="spectrum and noise")
ax1.legend()
ax2.loglog(eig.eigenvalues, noise.mode_noise, "o")
ax2.set(xlabel="rho_i", ylabel="s_i", title="noise against curvature")
fig.tight_layout()
