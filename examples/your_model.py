"""Point sgd-dynamics at your own nn.Module: measure at a trained point, track SGD, compare with the theory.

Run:  .venv/bin/python examples/your_model.py   (about half a minute on a laptop CPU)
"""

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

from sgd_dynamics import Hyperparams
from sgd_dynamics.measure import TrajectoryTracker, fit_power_law, gradient_noise, hessian_eigenpairs
from sgd_dynamics.theory import stationary_speed_from_trace

torch.manual_seed(0)
digits = load_digits()
X = torch.tensor(digits.data / 16.0, dtype=torch.float32)
y = torch.tensor(digits.target)
model = nn.Sequential(nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 10))   # your network here
loss_fn = nn.CrossEntropyLoss()
hp = Hyperparams(lr=0.05, momentum=0.9, batch_size=64, weight_decay=1e-3)
opt = torch.optim.SGD(model.parameters(), lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay)
generator = torch.Generator().manual_seed(1)


def sgd_steps(n, tracker=None):
    for _ in range(n):
        idx = torch.randint(len(X), (hp.batch_size,), generator=generator)   # with replacement
        loss = loss_fn(model(X[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if tracker is not None:
            tracker.record(loss)


sgd_steps(3000)                                     # train to the stationary state
full = [(X, y)]                                     # batches for the measurements: here the whole set
eig = hessian_eigenpairs(model, loss_fn, full, k=5)
noise = gradient_noise(model, loss_fn, full, directions=eig.eigenvectors)
tracker = TrajectoryTracker(model, opt, directions=eig.eigenvectors.T)
sgd_steps(2000, tracker)
h = tracker.history

measured = h["local_sq_displacement"][500:].mean()
predicted = stationary_speed_from_trace(noise.trace, hp)   # eq. 18: lr^2 tr(Sigma) / (S (1 - beta^2))
fit = fit_power_law(h["step"][100:], h["global_sq_displacement"][100:])
print(f"top Hessian eigenvalues {np.round(eig.eigenvalues, 3)}, tr Sigma = {noise.trace:.4g}")
print(f"speed ||theta_k+1 - theta_k||^2: measured {measured:.4g}, predicted {float(predicted):.4g}")
print(f"||theta_k - theta_0||^2 ~ k^c with c = {fit.exponent:.3f}")
