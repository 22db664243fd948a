"""Discrete SGD with heavy-ball momentum on a quadratic with Gaussian gradient noise: the exact model.

Per Hessian eigenmode with curvature ``h = rho + lambda`` (PyTorch convention of hyper.py, ``v = -b``,
``x = theta - mu``), with minibatch noise ``xi_k ~ N(0, Sigma / S)`` independent across steps::

    v_{k+1} = beta v_k - h x_k - xi_k,      x_{k+1} = x_k + eta v_{k+1}

i.e. ``z_{k+1} = M z_k + w_k`` for ``z = (x, v)``, ``M = [[1 - eta h, eta beta], [-h, beta]]``,
``Cov w = (Sigma / S) [[eta^2, eta], [eta, 1]]``. The stationary law solves ``P = M P M^T + W``; per mode
with diagonal noise ``s/S`` it is the closed form of ERRATA 003.4 (``lambda -> h``, ``s^2 -> s/S``)::

    Var x     = eta q (1+beta) / (h (1-beta)(2(1+beta) - eta h)),
    Cov(x, v) = eta q / ((1-beta)(2(1+beta) - eta h)),
    Var v     = 2 q / ((1-beta)(2(1+beta) - eta h)),           q = s / S.

A zero mode (``h = 0``) has no stationary position: it starts at ``x = 0`` with
``v ~ N(0, s / (S (1 - beta^2)))``. With a full noise covariance the joint law of all modes solves the
``2m``-dimensional discrete Lyapunov equation (zero-mode positions removed: nothing depends on them).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import scipy.linalg
from numpy.typing import ArrayLike, NDArray

from sgd_dynamics.hyper import Hyperparams
from sgd_dynamics.simulate.trajectory import DisplacementSummary, Trajectory

Start = str | tuple[ArrayLike, ArrayLike]
STARTS: tuple[str, ...] = ("stationary", "zero")
_CHUNK_FLOATS = 1 << 20  # noise drawn ~8 MB at a time; the draws do not depend on the chunking


def positive_count(value: object, name: str) -> int:
    """Validate an integer count ``>= 1``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}={value!r} is invalid: expected an integer >= 1")
    return int(value)


def noise_variances_array(noise_variances: ArrayLike, modes: int) -> NDArray[np.float64]:
    """Validate per-example noise variances (scalar or shape ``(modes,)``), finite and ``>= 0``."""
    s = np.asarray(noise_variances, dtype=np.float64)
    if s.ndim == 0:
        s = np.full(modes, float(s))
    if s.shape != (modes,):
        raise ValueError(f"noise_variances must be a scalar or have shape ({modes},) like eigenvalues; "
                         f"got shape {s.shape}")
    if not np.all(np.isfinite(s)) or np.any(s < 0):
        i = int(np.argmax(~np.isfinite(s) | (s < 0)))
        raise ValueError(f"noise_variances[{i}]={float(s[i])!r} is invalid: expected a finite variance >= 0")
    return s


def covariance_root(cov: ArrayLike, modes: int, name: str = "noise_covariance") -> NDArray[np.float64]:
    """Validate a symmetric PSD ``(modes, modes)`` matrix and return ``L`` with ``L L^T = cov`` (via eigh)."""
    c = np.asarray(cov, dtype=np.float64)
    if c.shape != (modes, modes):
        raise ValueError(f"{name} must have shape ({modes}, {modes}); got {c.shape}")
    if not np.all(np.isfinite(c)):
        raise ValueError(f"{name} must be finite")
    scale = max(float(np.abs(c).max()), np.finfo(float).tiny)
    if not np.allclose(c, c.T, rtol=0, atol=1e-12 * scale):
        raise ValueError(f"{name} must be symmetric; max |C - C^T| = {np.abs(c - c.T).max():.3g}")
    w, u = np.linalg.eigh((c + c.T) / 2)
    if w[0] < -1e-10 * scale:
        raise ValueError(f"{name} must be positive semidefinite; its smallest eigenvalue is {w[0]:.6g} < 0")
    return u * np.sqrt(np.clip(w, 0, None))


@dataclass(frozen=True, eq=False)
class GaussianQuadraticModel:
    """A validated quadratic with Gaussian minibatch noise, in the Hessian eigenbasis.

    ``noise_root`` is ``None`` for independent modes (per-mode variances ``noise_variances``); otherwise
    ``noise_root @ noise_root.T`` is the per-example covariance ``Sigma`` in the eigenbasis.
    """

    eigenvalues: NDArray[np.float64]
    noise_variances: NDArray[np.float64]
    noise_root: NDArray[np.float64] | None
    hyper: Hyperparams

    @classmethod
    def build(cls, eigenvalues: ArrayLike, noise_variances: ArrayLike | None,
              noise_covariance: ArrayLike | None, hyper: Hyperparams) -> GaussianQuadraticModel:
        if not isinstance(hyper, Hyperparams):
            raise ValueError(f"hyper={hyper!r} is invalid: expected a sgd_dynamics.Hyperparams")
        rho = hyper.check_stable(eigenvalues)
        if (noise_variances is None) == (noise_covariance is None):
            raise ValueError("give exactly one of noise_variances (per-mode, shape (modes,)) and "
                             "noise_covariance (shape (modes, modes))")
        if noise_covariance is not None:
            root = covariance_root(noise_covariance, rho.size)
            return cls(rho, np.einsum("ij,ij->i", root, root), root, hyper)
        return cls(rho, noise_variances_array(noise_variances, rho.size), None, hyper)

    @property
    def modes(self) -> int:
        return self.eigenvalues.size

    @property
    def curvature(self) -> NDArray[np.float64]:
        return self.eigenvalues + self.hyper.weight_decay

    def draw_minibatch_noise(self, rng: np.random.Generator, shape: tuple[int, ...]) -> NDArray[np.float64]:
        """Minibatch noise ``xi ~ N(0, Sigma / S)`` of shape ``shape + (modes,)``."""
        z = rng.standard_normal((*shape, self.modes))
        if self.noise_root is None:
            return z * np.sqrt(self.noise_variances / self.hyper.batch_size)
        return z @ (self.noise_root.T / np.sqrt(self.hyper.batch_size))

    def sample_stationary(self, rng: np.random.Generator, replicas: int) -> tuple[NDArray, NDArray]:
        """``(x, v)`` of shape ``(replicas, modes)`` from the exact discrete stationary law."""
        if self.noise_root is None:
            return self._sample_stationary_diagonal(rng, replicas)
        return self._sample_stationary_full(rng, replicas)

    def _sample_stationary_diagonal(self, rng: np.random.Generator, replicas: int) -> tuple[NDArray, NDArray]:
        eta, beta, h = self.hyper.lr, self.hyper.momentum, self.curvature
        q = self.noise_variances / self.hyper.batch_size
        den = (1 - beta) * (2 * (1 + beta) - eta * h)
        var_v, cov_xv = 2 * q / den, eta * q / den
        stable = h > 0
        var_x = np.where(stable, eta * q * (1 + beta) / (den * np.where(stable, h, 1.0)), 0.0)
        sd_x = np.sqrt(var_x)
        slope = np.divide(cov_xv, sd_x, out=np.zeros_like(sd_x), where=sd_x > 0)
        sd_v_given_x = np.sqrt(np.clip(var_v - slope**2, 0, None))
        z = rng.standard_normal((replicas, 2, self.modes))
        return sd_x * z[:, 0], slope * z[:, 0] + sd_v_given_x * z[:, 1]

    def stationary_covariance_full(self) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
        """Joint stationary covariance of ``(x[stable], v)``, and the mask of modes with a stationary x."""
        eta, beta, h, S = self.hyper.lr, self.hyper.momentum, self.curvature, self.hyper.batch_size
        m, stable = self.modes, self.curvature > 0
        sigma = self.noise_root @ self.noise_root.T / S
        eye = np.eye(m)
        trans = np.block([[np.diag(1 - eta * h), eta * beta * eye], [-np.diag(h), beta * eye]])
        noise = np.block([[eta**2 * sigma, eta * sigma], [eta * sigma, sigma]])
        keep = np.concatenate([stable, np.ones(m, dtype=bool)])
        cov = scipy.linalg.solve_discrete_lyapunov(trans[np.ix_(keep, keep)], noise[np.ix_(keep, keep)])
        return (cov + cov.T) / 2, stable

    def _sample_stationary_full(self, rng: np.random.Generator, replicas: int) -> tuple[NDArray, NDArray]:
        cov, stable = self.stationary_covariance_full()
        root = covariance_root(cov, cov.shape[0], "stationary covariance")
        z = rng.standard_normal((replicas, cov.shape[0])) @ root.T
        x = np.zeros((replicas, self.modes))
        x[:, stable] = z[:, : int(stable.sum())]
        return x, z[:, int(stable.sum()):]


def initial_state(start: Start, modes: int, replicas: int, sample_stationary, rng: np.random.Generator
                  ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Resolve ``start`` ("stationary", "zero", ``(position0, velocity0)``) into ``(R, modes)`` arrays."""
    if isinstance(start, str):
        if start == "stationary":
            return sample_stationary(rng, replicas)
        if start == "zero":
            return np.zeros((replicas, modes)), np.zeros((replicas, modes))
        raise ValueError(f"start={start!r} is invalid: expected one of {', '.join(STARTS)} or a "
                         "(position0, velocity0) pair of arrays")
    if not isinstance(start, tuple) or len(start) != 2:
        raise ValueError(f"start={start!r} is invalid: expected one of {', '.join(STARTS)} or a "
                         "(position0, velocity0) pair of arrays")
    out = []
    for name, a in zip(("position0", "velocity0"), start, strict=True):
        a = np.asarray(a, dtype=np.float64)
        if a.shape not in ((modes,), (replicas, modes)):
            raise ValueError(
                f"start {name} must have shape ({modes},) or ({replicas}, {modes}); got {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"start {name} must be finite")
        out.append(np.array(np.broadcast_to(a, (replicas, modes))))
    return out[0], out[1]


def recorded_steps(steps: int, record_every: int) -> NDArray[np.int64]:
    """Steps ``0, r, 2r, ... <= steps`` that a run records."""
    return np.arange(0, steps + 1, record_every)


def _sgd_steps(model: GaussianQuadraticModel, x: NDArray, v: NDArray, steps: int, rng: np.random.Generator,
               chunk_steps: int | None) -> Iterator[int]:
    """Advance ``x, v`` in place through ``steps`` SGD steps, yielding the step index after each one."""
    eta, beta, h = model.hyper.lr, model.hyper.momentum, model.curvature
    replicas = x.shape[0]
    chunk = chunk_steps or max(1, _CHUNK_FLOATS // (replicas * model.modes))
    tmp = np.empty_like(x)
    k = 0
    while k < steps:
        xi = model.draw_minibatch_noise(rng, (min(chunk, steps - k), replicas))
        for xi_k in xi:
            v *= beta
            np.multiply(x, h, out=tmp)
            v -= tmp
            v -= xi_k
            np.multiply(v, eta, out=tmp)
            x += tmp
            k += 1
            yield k


def _prepare(eigenvalues, noise_variances, noise_covariance, hyper, steps, replicas, seed, start,
             record_every, noise_chunk_steps):
    model = GaussianQuadraticModel.build(eigenvalues, noise_variances, noise_covariance, hyper)
    steps = positive_count(steps, "steps")
    replicas = positive_count(replicas, "replicas")
    record_every = positive_count(record_every, "record_every")
    if noise_chunk_steps is not None:
        positive_count(noise_chunk_steps, "noise_chunk_steps")
    rng = np.random.default_rng(seed)
    x, v = initial_state(start, model.modes, replicas, model.sample_stationary, rng)
    return model, steps, record_every, rng, x, v


def simulate_quadratic_sgd(eigenvalues: ArrayLike, noise_variances: ArrayLike | None = None, *,
                           hyper: Hyperparams, steps: int, replicas: int = 1,
                           seed: int | np.random.SeedSequence, start: Start = "stationary",
                           noise_covariance: ArrayLike | None = None,
                           record_every: int = 1, noise_chunk_steps: int | None = None) -> Trajectory:
    """Simulate SGD with momentum on ``L = 1/2 sum_i rho_i x_i^2`` with Gaussian minibatch noise.

    Parameters
    ----------
    eigenvalues
        Hessian eigenvalues ``rho`` (shape ``(m,)``); curvature is ``rho + hyper.weight_decay``.
    noise_variances : per-example gradient-noise variance ``s_i`` along each mode (each step draws
        ``N(0, s_i / S)``, independent across steps and modes). Scalar broadcasts.
    noise_covariance : instead of ``noise_variances``, a full per-example covariance ``Sigma`` (``(m, m)``,
        symmetric PSD) in the eigenbasis.
    hyper
        learning rate, momentum, batch size ``S``, weight decay.
    steps, replicas
        number of SGD steps ``T`` and of independent replicas ``R`` (both ``>= 1``).
    seed
        seed of ``numpy.random.default_rng``; the run is bit-reproducible.
    start : ``"stationary"`` (exact discrete stationary law), ``"zero"`` (``x = v = 0``) or
        ``(position0, velocity0)`` arrays of shape ``(m,)`` or ``(R, m)``.
    record_every
        keep every ``r``-th step (steps ``0, r, 2r, ...``) to bound memory.
    noise_chunk_steps
        how many steps of noise to draw at once (memory only; results do not depend on it).

    Returns
    -------
    Trajectory with ``position``/``velocity`` of shape ``(T // r + 1, R, m)``.

    >>> from sgd_dynamics.hyper import Hyperparams
    >>> tr = simulate_quadratic_sgd([1.0, 0.0], [1.0, 1.0], hyper=Hyperparams(lr=0.1, momentum=0.9),
    ...                             steps=5, replicas=3, seed=0)
    >>> tr.position.shape, tr.local_sq_displacement().shape
    ((6, 3, 2), (5, 3))
    """
    model, steps, record_every, rng, x, v = _prepare(
        eigenvalues, noise_variances, noise_covariance, hyper, steps, replicas, seed, start, record_every,
        noise_chunk_steps)
    rec = recorded_steps(steps, record_every)
    position = np.empty((rec.size, *x.shape))
    velocity = np.empty_like(position)
    position[0], velocity[0] = x, v
    j = 1
    for k in _sgd_steps(model, x, v, steps, rng, noise_chunk_steps):
        if k % record_every == 0:
            position[j], velocity[j] = x, v
            j += 1
    return Trajectory(position=position, velocity=velocity, steps=rec, hyper=hyper)


def simulate_quadratic_sgd_summary(eigenvalues: ArrayLike, noise_variances: ArrayLike | None = None, *,
                                   hyper: Hyperparams, steps: int, replicas: int = 1,
                                   seed: int | np.random.SeedSequence, start: Start = "stationary",
                                   noise_covariance: ArrayLike | None = None, record_every: int = 1,
                                   noise_chunk_steps: int | None = None) -> DisplacementSummary:
    """Same run as :func:`simulate_quadratic_sgd` (same seed, same numbers), keeping displacement statistics.

    Memory is ``O(T / r * R + R m)`` instead of ``O(T / r * R m)``. ``mean_local_sq_displacement`` averages
    ``eta^2 ||v_k||^2`` over every step ``k = 1..T``.
    """
    model, steps, record_every, rng, x, v = _prepare(
        eigenvalues, noise_variances, noise_covariance, hyper, steps, replicas, seed, start, record_every,
        noise_chunk_steps)
    eta2 = hyper.lr**2
    rec = recorded_steps(steps, record_every)
    x0 = x.copy()
    local = np.empty((rec.size - 1, x.shape[0]))
    glob = np.empty((rec.size, x.shape[0]))
    glob[0] = 0.0
    local_sum = np.zeros(x.shape[0])
    j = 1
    for k in _sgd_steps(model, x, v, steps, rng, noise_chunk_steps):
        sq = eta2 * np.einsum("rm,rm->r", v, v)
        local_sum += sq
        if k % record_every == 0:
            d = x - x0
            local[j - 1], glob[j] = sq, np.einsum("rm,rm->r", d, d)
            j += 1
    return DisplacementSummary(steps=rec, local_sq_displacement=local, global_sq_displacement=glob,
                               mean_local_sq_displacement=local_sum / steps, final_position=x,
                               final_velocity=v, hyper=hyper)
