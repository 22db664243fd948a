"""SGD with momentum on linear regression with real minibatches (the setting of 002 Figs. 2-3).

Loss ``L(theta) = 1/(2N) ||y - X theta||^2`` (plus ``lambda/2 ||theta||^2`` through weight decay),
minibatch gradient averaged over ``S`` examples, update of hyper.py. Here the gradient noise is not
assumed: it comes from the data. At the minimum ``mu = (H + lambda I)^-1 X^T y / N``, ``H = X^T X / N``,
the per-example gradients are ``g_i = x_i (x_i^T mu - y_i)`` and the per-example noise covariance is
``Sigma = (1/N) sum_i g_i g_i^T - g g^T`` (``g`` their mean), with per-mode variances
``s_i = q_i^T Sigma q_i`` (``q_i`` the eigenvectors of ``H``). These feed the theory (002 eqs. 7-8, 18
with ERRATA 002.3). Away from the minimum the noise also depends on ``theta`` (multiplicative noise), a
correction of relative size ``O(eta d / (S (1 - beta)))``.

Samplers (``hyper.sampler``):

- ``"with_replacement"``: each step draws ``S`` indices i.i.d. uniform on ``0..N-1`` (repeats within a
  batch are possible), independently across steps and replicas. The minibatch noise covariance is then
  exactly ``Sigma / S``, as in the Gaussian model.
- ``"without_replacement"``: epoch shuffling (PyTorch ``DataLoader(shuffle=True)``): each replica draws a
  fresh permutation per epoch and walks it in batches of ``S``; a last, smaller batch is kept when ``S``
  does not divide ``N``. Noise is anti-correlated within an epoch (ERRATA 002.3).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from sgd_dynamics.hyper import Hyperparams
from sgd_dynamics.simulate.quadratic import GaussianQuadraticModel, Start, positive_count, recorded_steps
from sgd_dynamics.simulate.trajectory import Trajectory

REGRESSION_STARTS: tuple[str, ...] = ("zero", "stationary")


@dataclass(frozen=True, eq=False)
class RegressionDataset:
    """Inputs ``X`` ``(N, d)``, targets ``y`` ``(N,)``, the teacher ``theta_bar`` and the label-noise std."""

    X: NDArray[np.float64]
    y: NDArray[np.float64]
    teacher: NDArray[np.float64]
    noise_std: float


def teacher_regression(n: int, d: int, noise_std: float, *, seed: int | np.random.SeedSequence,
                       spectrum: ArrayLike | None = None) -> RegressionDataset:
    """Teacher data ``y = X theta_bar + sigma eps``, ``x ~ N(0, diag(spectrum))``, ``theta_bar ~ N(0, I/d)``.

    ``spectrum`` (shape ``(d,)``, positive) is the input covariance spectrum (default all ones), which
    sets the population Hessian.

    >>> ds = teacher_regression(100, 3, 0.5, seed=0, spectrum=[1.0, 0.5, 0.1])
    >>> ds.X.shape, ds.y.shape
    ((100, 3), (100,))
    """
    n, d = positive_count(n, "n"), positive_count(d, "d")
    if not isinstance(noise_std, (int, float, np.floating)) or not np.isfinite(noise_std) or noise_std < 0:
        raise ValueError(f"noise_std={noise_std!r} is invalid: expected a finite number >= 0")
    lam = np.ones(d) if spectrum is None else np.asarray(spectrum, dtype=np.float64)
    if lam.shape != (d,) or not np.all(np.isfinite(lam)) or np.any(lam <= 0):
        raise ValueError(f"spectrum={spectrum!r} is invalid: expected {d} finite positive values")
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) * np.sqrt(lam)
    teacher = rng.standard_normal(d) / np.sqrt(d)
    y = X @ teacher + noise_std * rng.standard_normal(n)
    return RegressionDataset(X=X, y=y, teacher=teacher, noise_std=float(noise_std))


@dataclass(frozen=True, eq=False)
class LinearRegressionRun:
    """A linear-regression SGD run with the noise statistics measured at the minimum.

    Attributes
    ----------
    trajectory : positions ``q_i^T (theta - mu)`` and velocities ``q_i^T v`` in the eigenbasis of ``H``.
    minimum : ``mu`` (the ridge solution when weight decay is on), shape ``(d,)``.
    hessian_eigenvalues : eigenvalues ``rho_i`` of ``H = X^T X / N`` (ascending; weight decay not included).
    hessian_eigenvectors : ``(d, d)``, column ``i`` is ``q_i``.
    noise_covariance : per-example gradient-noise covariance ``Sigma`` at ``mu``, parameter coordinates.
    """

    trajectory: Trajectory
    minimum: NDArray[np.float64]
    hessian_eigenvalues: NDArray[np.float64]
    hessian_eigenvectors: NDArray[np.float64]
    noise_covariance: NDArray[np.float64]

    @property
    def noise_covariance_eigenbasis(self) -> NDArray[np.float64]:
        """``Q^T Sigma Q``: the measured covariance in the Hessian eigenbasis (not diagonal in general)."""
        q = self.hessian_eigenvectors
        return q.T @ self.noise_covariance @ q

    @property
    def noise_variances(self) -> NDArray[np.float64]:
        """Per-mode per-example noise variances ``s_i = q_i^T Sigma q_i``."""
        return np.diag(self.noise_covariance_eigenbasis).copy()


def gradient_noise_at_minimum(X: NDArray, y: NDArray, weight_decay: float
                              ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64],
                                         NDArray[np.float64]]:
    """``(mu, rho, Q, Sigma)``: ridge minimum, spectrum/eigenvectors of ``H``, per-example noise Sigma."""
    n = X.shape[0]
    hessian = X.T @ X / n
    rho, q = np.linalg.eigh(hessian)
    mu = np.linalg.solve(hessian + weight_decay * np.eye(X.shape[1]), X.T @ y / n)
    per_example = X * (X @ mu - y)[:, None]
    mean = per_example.mean(axis=0)
    sigma = per_example.T @ per_example / n - np.outer(mean, mean)
    return mu, np.clip(rho, 0, None), q, (sigma + sigma.T) / 2


def _validate_data(X: ArrayLike, y: ArrayLike, hyper: Hyperparams) -> tuple[NDArray, NDArray]:
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] < 1 or X.shape[1] < 1:
        raise ValueError(f"X must have shape (N, d) with N, d >= 1; got {X.shape}")
    if y.shape != (X.shape[0],):
        raise ValueError(f"y must have shape ({X.shape[0]},) to match X; got {y.shape}")
    if not (np.all(np.isfinite(X)) and np.all(np.isfinite(y))):
        raise ValueError("X and y must be finite")
    if hyper.batch_size > X.shape[0]:
        raise ValueError(f"batch_size={hyper.batch_size} is invalid: expected <= N={X.shape[0]} examples")
    if hyper.sampler == "without_replacement" and hyper.dataset_size != X.shape[0]:
        raise ValueError(f"dataset_size={hyper.dataset_size!r} is invalid: sampler='without_replacement' "
                         f"needs dataset_size equal to the number of examples N={X.shape[0]}")
    return X, y


def _minibatches(rng: np.random.Generator, n: int, batch: int, replicas: int, sampler: str, chunk: int):
    """Yield ``(replicas, S')`` index arrays, one per step, forever."""
    if sampler == "with_replacement":
        while True:
            yield from rng.integers(0, n, size=(chunk, replicas, batch))
    order = np.tile(np.arange(n), (replicas, 1))
    while True:
        perm = rng.permuted(order, axis=1)
        for lo in range(0, n, batch):
            yield perm[:, lo:lo + batch]


def simulate_linear_regression_sgd(X: ArrayLike, y: ArrayLike, *, hyper: Hyperparams, steps: int,
                                   replicas: int = 1, seed: int | np.random.SeedSequence,
                                   start: Start = "zero", record_every: int = 1) -> LinearRegressionRun:
    """Run SGD with momentum on ``1/(2N) ||y - X theta||^2`` with real minibatches, ``replicas`` at once.

    Parameters
    ----------
    X, y
        data, shapes ``(N, d)`` and ``(N,)``.
    hyper : learning rate, momentum, batch size ``S <= N``, weight decay, sampler (``dataset_size = N`` for
        ``"without_replacement"``).
    steps, replicas, seed, record_every
        as in :func:`~sgd_dynamics.simulate.simulate_quadratic_sgd`.
    start : ``"zero"`` (``theta = mu``, ``v = 0``), ``"stationary"`` (the exact stationary law of the Gaussian
        quadratic model with the measured ``Sigma``, a close approximation of the true one), or
        ``(theta0, velocity0)`` in parameter coordinates (``theta``, not ``theta - mu``), shape ``(d,)`` or
        ``(R, d)``.

    >>> from sgd_dynamics.hyper import Hyperparams
    >>> ds = teacher_regression(64, 3, 0.5, seed=0)
    >>> hp = Hyperparams(lr=0.05, momentum=0.9, batch_size=4)
    >>> run = simulate_linear_regression_sgd(ds.X, ds.y, hyper=hp, steps=10, replicas=2, seed=1)
    >>> run.trajectory.position.shape, run.noise_variances.shape
    ((11, 2, 3), (3,))
    """
    X, y = _validate_data(X, y, hyper)
    mu, rho, q, sigma = gradient_noise_at_minimum(X, y, hyper.weight_decay)
    hyper.check_stable(rho, name="Hessian eigenvalues of X^T X / N")
    steps = positive_count(steps, "steps")
    replicas = positive_count(replicas, "replicas")
    record_every = positive_count(record_every, "record_every")
    n, d = X.shape
    rng = np.random.default_rng(seed)

    if isinstance(start, str) and start == "stationary":
        model = GaussianQuadraticModel.build(rho, None, q.T @ sigma @ q, hyper)
        x0, v0 = model.sample_stationary(rng, replicas)
        theta, v = mu + x0 @ q.T, v0 @ q.T
    elif isinstance(start, str) and start == "zero":
        theta, v = np.tile(mu, (replicas, 1)), np.zeros((replicas, d))
    elif isinstance(start, tuple) and len(start) == 2:
        theta, v = (_start_array(a, name, replicas, d) for name, a in zip(("theta0", "velocity0"), start,
                                                                          strict=True))
    else:
        raise ValueError(f"start={start!r} is invalid: expected one of {', '.join(REGRESSION_STARTS)} or a "
                         "(theta0, velocity0) pair of arrays")

    eta, beta, lam = hyper.lr, hyper.momentum, hyper.weight_decay
    rec = recorded_steps(steps, record_every)
    position = np.empty((rec.size, replicas, d))
    velocity = np.empty_like(position)
    position[0], velocity[0] = (theta - mu) @ q, v @ q
    chunk = max(1, (1 << 18) // (replicas * hyper.batch_size))
    batches = _minibatches(rng, n, hyper.batch_size, replicas, hyper.sampler, chunk)
    j = 1
    for k in range(1, steps + 1):
        idx = next(batches)
        xb = X[idx]                                                   # (R, S', d)
        resid = np.einsum("rsd,rd->rs", xb, theta) - y[idx]
        grad = np.einsum("rsd,rs->rd", xb, resid) / idx.shape[1]
        v = beta * v - grad - lam * theta
        theta = theta + eta * v
        if k % record_every == 0:
            position[j], velocity[j] = (theta - mu) @ q, v @ q
            j += 1
    traj = Trajectory(position=position, velocity=velocity, steps=rec, hyper=hyper)
    return LinearRegressionRun(trajectory=traj, minimum=mu, hessian_eigenvalues=rho, hessian_eigenvectors=q,
                               noise_covariance=sigma)


def _start_array(a: ArrayLike, name: str, replicas: int, d: int) -> NDArray[np.float64]:
    a = np.asarray(a, dtype=np.float64)
    if a.shape not in ((d,), (replicas, d)) or not np.all(np.isfinite(a)):
        raise ValueError(f"start {name} must be finite with shape ({d},) or ({replicas}, {d}); got {a.shape}")
    return np.array(np.broadcast_to(a, (replicas, d)))
