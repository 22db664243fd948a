"""The phase-space SDE of SGD with momentum (002 eqs. 6-8, corrected by ERRATA 002.1/002.2), and OU samplers.

Per Hessian eigenmode with curvature ``h = rho + lambda``, in continuous time ``t = eta k``::

    dx = v dt,   dv = -(omega^2 x + 2 gamma v) dt + sqrt(4 s / (eta S (1 + beta)^2)) dW,
    gamma = (1 - beta) / (eta (1 + beta)),   omega^2 = 2 h / (eta (1 + beta)),

i.e. ``dz = -A z dt + Q^(1/2) dW`` with ``A = [[0, -1], [omega^2, 2 gamma]]`` and
``Q = diag(0, 4 s / (eta S (1+beta)^2))``. In ``d`` dimensions
``A = [[0, -I], [2/(eta(1+beta)) (H + lambda I), 2 gamma I]]`` and the covariance rate is
``Q = 2 kappa^-1 D``, ``D = [[0, 0], [0, 2(1-beta)/(eta(1+beta)) Sigma]]``, ``kappa = S (1 - beta^2)``.
Stationary law (``h > 0``): ``Var v = s / (S (1 - beta^2))``, ``Var x = Var v / omega^2``, ``Cov(x, v) = 0``.

Two steppers, both affine-Gaussian maps ``z_{n+1} = F z_n + L xi_n``:

- exact OU transition: ``F = expm(-A dt)``, ``L L^T = int_0^dt e^{-A s} Q e^{-A^T s} ds`` (Van Loan's block
  exponential at a small step, then exact doubling ``C(2t) = F(t) C(t) F(t)^T + C(t)``); exact in law at any
  ``dt``, also for ``h = 0`` (singular ``A``). It equals ``Sigma_inf - F Sigma_inf F^T`` when ``A`` is stable.
- Euler-Maruyama: ``F = I - A dt``, ``L = sqrt(dt) Q^(1/2)``; weak order 1 (and strong order 1 for additive
  noise, ERRATA 004.7).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.linalg
from numpy.typing import ArrayLike, NDArray

from sgd_dynamics.hyper import Hyperparams
from sgd_dynamics.simulate.quadratic import (
    covariance_root,
    initial_state,
    noise_variances_array,
    positive_count,
)
from sgd_dynamics.simulate.trajectory import Trajectory

_VAN_LOAN_NORM = 0.5  # ||A dt||_1 below which the block exponential is accurate to rounding


def _psd_root(cov: NDArray[np.float64]) -> NDArray[np.float64]:
    w, u = np.linalg.eigh((cov + np.swapaxes(cov, -1, -2)) / 2)
    return u * np.sqrt(np.clip(w, 0, None))[..., None, :]


def ou_transition(drift: ArrayLike, diffusion_rate: ArrayLike, dt: float
                  ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Exact transition ``(F, C)`` of ``dz = -A z dt + Q^(1/2) dW`` over ``dt``: ``z(dt) ~ N(F z(0), C)``.

    ``drift`` ``A`` and ``diffusion_rate`` ``Q`` have shape ``(..., k, k)`` (batched). Any ``A``
    (also singular or unstable) and any ``dt > 0``.

    >>> F, C = ou_transition([[1.0]], [[2.0]], 1.0)   # dz = -z dt + sqrt(2) dW: C = 1 - e^-2
    >>> round(float(F[0, 0]), 6), round(float(C[0, 0]), 6)
    (0.367879, 0.864665)
    """
    a = np.asarray(drift, dtype=np.float64)
    q = np.asarray(diffusion_rate, dtype=np.float64)
    k = a.shape[-1]
    norm = float(np.abs(a).sum(axis=-2).max()) * dt if a.size else 0.0
    doublings = max(0, math.ceil(math.log2(norm / _VAN_LOAN_NORM))) if norm > _VAN_LOAN_NORM else 0
    tau = dt / 2**doublings
    block = np.zeros((*np.broadcast_shapes(a.shape, q.shape)[:-2], 2 * k, 2 * k))
    block[..., :k, :k] = a * tau
    block[..., :k, k:] = q * tau
    block[..., k:, k:] = -np.swapaxes(a, -1, -2) * tau
    e = scipy.linalg.expm(block)
    trans = np.swapaxes(e[..., k:, k:], -1, -2)
    cov = trans @ e[..., :k, k:]
    for _ in range(doublings):
        cov = trans @ cov @ np.swapaxes(trans, -1, -2) + cov
        trans = trans @ trans
    return trans, (cov + np.swapaxes(cov, -1, -2)) / 2


@dataclass(frozen=True, eq=False)
class LinearGaussianStep:
    """One step ``z_{n+1} = F z_n + L xi_n`` (``xi ~ N(0, I)``) of a linear SDE, batched over leading axes.

    ``weak_order`` is the declared order of the bias in moments (``math.inf``: exact in law at any ``dt``).
    """

    transition: NDArray[np.float64]
    noise_root: NDArray[np.float64]
    dt: float
    method: str
    weak_order: float


def exact_ou_step(drift: ArrayLike, diffusion_rate: ArrayLike, dt: float) -> LinearGaussianStep:
    """The exact OU transition over ``dt`` (see :func:`ou_transition`)."""
    trans, cov = ou_transition(drift, diffusion_rate, dt)
    return LinearGaussianStep(trans, _psd_root(cov), dt, "exact", math.inf)


def euler_maruyama_step(drift: ArrayLike, diffusion_rate: ArrayLike, dt: float) -> LinearGaussianStep:
    """Euler-Maruyama ``z + (-A z) dt + sqrt(dt) Q^(1/2) xi``: weak order 1."""
    a = np.asarray(drift, dtype=np.float64)
    q = np.asarray(diffusion_rate, dtype=np.float64)
    return LinearGaussianStep(np.eye(a.shape[-1]) - a * dt, math.sqrt(dt) * _psd_root(q), dt,
                              "euler_maruyama", 1.0)


METHODS: dict[str, Callable[[ArrayLike, ArrayLike, float], LinearGaussianStep]] = {
    "exact": exact_ou_step, "euler_maruyama": euler_maruyama_step}


def _stepper(method: str, drift, rate, dt: float) -> LinearGaussianStep:
    if method not in METHODS:
        raise ValueError(f"method={method!r} is invalid: expected one of {', '.join(METHODS)}")
    return METHODS[method](drift, rate, dt)


def _positive_dt(dt: object) -> float:
    if isinstance(dt, bool) or not isinstance(dt, (int, float, np.floating)) or not 0 < dt < math.inf:
        raise ValueError(f"dt={dt!r} is invalid: expected a finite step > 0")
    return float(dt)


# --- the SGD phase-space model -------------------------------------------------------------------------
def phase_space_drift(eigenvalues: ArrayLike, hyper: Hyperparams) -> NDArray[np.float64]:
    """Per-mode drift ``A_i = [[0, -1], [omega_i^2, 2 gamma]]``, shape ``(m, 2, 2)``."""
    w2 = hyper.natural_frequency(eigenvalues) ** 2
    a = np.zeros((w2.size, 2, 2))
    a[:, 0, 1] = -1.0
    a[:, 1, 0] = w2
    a[:, 1, 1] = 2 * hyper.damping_rate
    return a


def velocity_diffusion_rate(noise_variances: ArrayLike, hyper: Hyperparams) -> NDArray[np.float64]:
    """``2 kappa^-1 D_vv = 4 s / (eta S (1 + beta)^2)`` (ERRATA 002.1), for variances or a covariance."""
    return 4 * np.asarray(noise_variances, dtype=np.float64) / (
        hyper.lr * hyper.batch_size * (1 + hyper.momentum) ** 2)


def phase_space_ou(hessian: ArrayLike, noise_covariance: ArrayLike, hyper: Hyperparams
                   ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Full-matrix ``(A, Q)`` of the phase-space OU process for state ``(x, v)`` of dimension ``2d``."""
    h = np.asarray(hessian, dtype=np.float64)
    d = h.shape[0]
    eye = np.eye(d)
    a = np.block([[np.zeros((d, d)), -eye],
                  [2 / (hyper.lr * (1 + hyper.momentum)) * (h + hyper.weight_decay * eye),
                   2 * hyper.damping_rate * eye]])
    q = np.zeros((2 * d, 2 * d))
    q[d:, d:] = velocity_diffusion_rate(noise_covariance, hyper)
    return a, q


@dataclass(frozen=True, eq=False)
class OUPath:
    """States ``(n, R, k)`` of a general OU process at ``time`` ``(n,)``, and the stepper that made them."""

    time: NDArray[np.float64]
    state: NDArray[np.float64]
    stepper: LinearGaussianStep


def simulate_ou_process(drift: ArrayLike, diffusion_rate: ArrayLike, *, dt: float, n_steps: int,
                        replicas: int = 1, seed: int | np.random.SeedSequence, mean: ArrayLike | None = None,
                        start: str | ArrayLike = "stationary", method: str = "exact",
                        record_every: int = 1) -> OUPath:
    """Simulate ``dz = -A (z - mean) dt + Q^(1/2) dW`` (small dimension ``k``; ``Q = 2 kappa^-1 D``).

    ``start``: ``"stationary"`` (needs a stable ``A``: the solution of ``A P + P A^T = Q``), ``"mean"``,
    or an array ``(k,)``/``(R, k)``. ``method``: ``"exact"`` or ``"euler_maruyama"``.
    """
    a = np.asarray(drift, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or not np.all(np.isfinite(a)):
        raise ValueError(f"drift must be a finite square matrix (k, k); got shape {a.shape}")
    k = a.shape[0]
    q_root = covariance_root(diffusion_rate, k, "diffusion_rate")
    q = q_root @ q_root.T
    mu = np.zeros(k) if mean is None else np.asarray(mean, dtype=np.float64)
    if mu.shape != (k,):
        raise ValueError(f"mean must have shape ({k},); got {mu.shape}")
    dt, n_steps = _positive_dt(dt), positive_count(n_steps, "n_steps")
    replicas = positive_count(replicas, "replicas")
    record_every = positive_count(record_every, "record_every")
    step = _stepper(method, a, q, dt)
    rng = np.random.default_rng(seed)
    if isinstance(start, str) and start == "stationary":
        if np.any(np.linalg.eigvals(a).real <= 0):
            raise ValueError(
                "start='stationary' needs a stable drift (all eigenvalues of A with real part > 0)")
        p = scipy.linalg.solve_continuous_lyapunov(a, q)
        z = rng.standard_normal((replicas, k)) @ _psd_root(p).T
    elif isinstance(start, str) and start == "mean":
        z = np.zeros((replicas, k))
    elif isinstance(start, str):
        raise ValueError(f"start={start!r} is invalid: expected 'stationary', 'mean' or an array")
    else:
        z0 = np.asarray(start, dtype=np.float64)
        if z0.shape not in ((k,), (replicas, k)):
            raise ValueError(f"start must have shape ({k},) or ({replicas}, {k}); got {z0.shape}")
        z = np.broadcast_to(z0 - mu, (replicas, k)).copy()
    n_rec = n_steps // record_every + 1
    out = np.empty((n_rec, replicas, k))
    out[0] = z
    ft, lt = step.transition.T, step.noise_root.T
    chunk = max(1, (1 << 20) // (replicas * k))
    j, n = 1, 0
    while n < n_steps:
        for xi in rng.standard_normal((min(chunk, n_steps - n), replicas, k)):
            z = z @ ft + xi @ lt
            n += 1
            if n % record_every == 0:
                out[j] = z
                j += 1
    time = dt * np.arange(0, n_steps + 1, record_every)
    return OUPath(time=time, state=out + mu, stepper=step)


def _stationary_phase_space(h: NDArray, var_v_rate: NDArray, gamma: float, omega2: NDArray):
    def sample(rng: np.random.Generator, replicas: int):
        var_v = var_v_rate / (4 * gamma)
        var_x = np.divide(var_v, omega2, out=np.zeros_like(var_v), where=h > 0)
        z = rng.standard_normal((replicas, 2, h.size))
        return np.sqrt(var_x) * z[:, 0], np.sqrt(var_v) * z[:, 1]
    return sample


def simulate_phase_space_sde(eigenvalues: ArrayLike, noise_variances: ArrayLike, *, hyper: Hyperparams,
                             t_final: float | None = None, steps: int | None = None, dt: float | None = None,
                             replicas: int = 1, seed: int | np.random.SeedSequence, start="stationary",
                             method: str = "exact", record_every: int = 1) -> Trajectory:
    """Simulate the per-mode phase-space SDE (002 eqs. 7-8 corrected) for many modes and replicas.

    Parameters
    ----------
    eigenvalues, noise_variances
        Hessian eigenvalues ``rho`` and per-example noise variances ``s`` per mode.
    hyper
        hyperparameters (curvature ``rho + weight_decay``; the discrete stability limit is not imposed).
    t_final, steps
        horizon in continuous time, or in SGD steps (``t_final = eta * steps``); give one.
    dt
        integration step in continuous time (default ``eta``, one SGD step); must divide ``t_final``.
    replicas
        number of independent replicas ``R`` (``>= 1``).
    seed
        seed of ``numpy.random.default_rng``; the run is reproducible.
    start : ``"stationary"`` (the continuous stationary law; ``x = 0`` for zero modes), ``"zero"``, or
        ``(position0, velocity0)``.
    method
        ``"exact"`` (OU transition, exact at any ``dt``) or ``"euler_maruyama"``.
    record_every
        keep every ``r``-th integration step.

    Returns
    -------
    Trajectory whose ``steps`` are ``t / eta`` (floats).

    >>> from sgd_dynamics.hyper import Hyperparams
    >>> hp = Hyperparams(lr=0.01, momentum=0.9)
    >>> tr = simulate_phase_space_sde([1.0, 0.0], [1.0, 1.0], hyper=hp, t_final=1.0, dt=0.25,
    ...                               replicas=2, seed=0)
    >>> tr.position.shape, tr.steps.tolist()
    ((5, 2, 2), [0.0, 25.0, 50.0, 75.0, 100.0])
    """
    if not isinstance(hyper, Hyperparams):
        raise ValueError(f"hyper={hyper!r} is invalid: expected a sgd_dynamics.Hyperparams")
    rho = np.atleast_1d(np.asarray(eigenvalues, dtype=np.float64))
    if rho.ndim != 1 or not np.all(np.isfinite(rho)):
        raise ValueError(f"eigenvalues must be a finite 1-D array; got shape {rho.shape}")
    h = hyper.curvature(rho)
    if np.any(h < 0):
        i = int(np.argmin(h))
        raise ValueError(f"eigenvalues[{i}]={float(rho[i])!r} is invalid: expected rho + weight_decay >= 0")
    s = noise_variances_array(noise_variances, rho.size)
    if (t_final is None) == (steps is None):
        raise ValueError(
            "give exactly one of t_final (continuous time) and steps (SGD steps, t_final = lr*steps)")
    if steps is not None:
        t_final = hyper.lr * positive_count(steps, "steps")
    elif (isinstance(t_final, bool) or not isinstance(t_final, (int, float, np.floating))
          or not 0 < t_final < math.inf):
        raise ValueError(f"t_final={t_final!r} is invalid: expected a finite time > 0")
    dt = hyper.lr if dt is None else _positive_dt(dt)
    n_steps = round(t_final / dt)
    if n_steps < 1 or abs(n_steps * dt - t_final) > 1e-9 * t_final:
        raise ValueError(f"dt={dt!r} is invalid: expected a step that divides t_final={t_final!r}")
    replicas = positive_count(replicas, "replicas")
    record_every = positive_count(record_every, "record_every")

    a = phase_space_drift(rho, hyper)
    rate = velocity_diffusion_rate(s, hyper)
    q = np.zeros_like(a)
    q[:, 1, 1] = rate
    step = _stepper(method, a, q, dt)
    rng = np.random.default_rng(seed)
    sample = _stationary_phase_space(h, rate, hyper.damping_rate, a[:, 1, 0])
    x, v = initial_state(start, rho.size, replicas, sample, rng)

    f, lr_ = step.transition, step.noise_root
    n_rec = n_steps // record_every + 1
    position = np.empty((n_rec, replicas, rho.size))
    velocity = np.empty_like(position)
    position[0], velocity[0] = x, v
    chunk = max(1, (1 << 20) // (2 * replicas * rho.size))
    j, n = 1, 0
    while n < n_steps:
        for xi in rng.standard_normal((min(chunk, n_steps - n), 2, replicas, rho.size)):
            x, v = (f[:, 0, 0] * x + f[:, 0, 1] * v + lr_[:, 0, 0] * xi[0] + lr_[:, 0, 1] * xi[1],
                    f[:, 1, 0] * x + f[:, 1, 1] * v + lr_[:, 1, 0] * xi[0] + lr_[:, 1, 1] * xi[1])
            n += 1
            if n % record_every == 0:
                position[j], velocity[j] = x, v
                j += 1
    steps_axis = dt * np.arange(0, n_steps + 1, record_every) / hyper.lr
    return Trajectory(position=position, velocity=velocity, steps=steps_axis, hyper=hyper)
