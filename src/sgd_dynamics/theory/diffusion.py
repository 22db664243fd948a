"""Predictions a user asks for: instantaneous speed, global displacement, anomalous-diffusion exponent.

For SGD with momentum on a quadratic (or the quadratic approximation at the end of training), at
stationarity, from the Hessian eigenvalues ``rho_i`` and per-example noise variances ``s_i``:

* ``stationary_speed``: ``E||theta_{k+1} - theta_k||^2`` — continuous: 002 eq. 18 for any constant ``Sigma``
  (ERRATA 002.3), ``eta^2 tr(Sigma) / (S (1 - beta^2))``; discrete: the exact value
  ``eta^2 sum_i 2 s_i / (S (1 - beta)(2 (1 + beta) - eta h_i))``.
* ``global_displacement``: ``E||theta_{k+t} - theta_k||^2`` — ``"sde"``: the SDE's own
  ``2 (P_xx - [exp(-A eta t) P]_xx)`` per mode (ERRATA 002.6), which saturates at ``2 Var x`` like SGD;
  ``"eq19_sampled_sum"``: 002 eq. 19 with lags ``eta |i - j|`` (ERRATA 002.2) summed over integer lags, which
  grows linearly forever for a confined mode (ERRATA 002.6; kept, labelled, for comparison with the paper);
  ``"discrete"``: exact. All in closed form, O(modes) per time point.
* ``global_displacement_from_start``: ``E||theta_k - theta_0||^2`` of training resumed from a random
  ``theta_0`` with a given momentum buffer (e.g. a fresh optimizer, ``b_0 = 0``); exact discrete only
  (:func:`sgd_dynamics.theory.discrete.displacement_from_start_per_mode`). With ``theta_0`` and ``b_0`` drawn
  from the stationary law it is ``global_displacement``.
* ``local_exponent``: ``d log E||Delta_t||^2 / d log t``, the anomalous-diffusion exponent ``c`` the theory
  predicts over any window (a log-symmetric finite difference on integer steps).

``model="discrete"`` is the exact answer for the discrete recursion with Gaussian noise;
``model="sde"`` is the paper's SDE, accurate when ``eta * (rho + lambda)`` is small (ERRATA 002.5), and
``model="continuous"`` is an alias of ``"sde"`` (the corrected continuous model of ERRATA 002.6; before, it
named eq. 19's sampled sum, now ``"eq19_sampled_sum"``). For the SDE, ``stationary_speed`` is eq. 18,
``eta^2 E||v||^2``; its ``global_displacement`` at ``t = 1`` is the SDE position's increment over continuous
time ``eta``, which is smaller (by about ``2 (1 - beta) / (3 (1 + beta))`` for ``beta`` near 1, by 43 % at
``beta = 0``).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from sgd_dynamics._validation import require
from sgd_dynamics.hyper import Hyperparams
from sgd_dynamics.theory import discrete, phase_space, sde_transient
from sgd_dynamics.theory.moments import StationaryMoments

Model = Literal["discrete", "sde", "continuous", "eq19_sampled_sum"]
_CHUNK_ELEMENTS = 1 << 19
# Modes per call of a summed lag sum (its per-mode parameters: a few MB)
_SUMMED_MODES = 1 << 16
# Models of the stationary law and of the dynamics ("continuous" is an alias of "sde")
MODELS: tuple[str, ...] = ("discrete", "sde", "continuous")
# ... and for the displacement alone, eq. 19's sampled lag sum as well
DISPLACEMENT_MODELS: tuple[str, ...] = (*MODELS, "eq19_sampled_sum")


def stationary_speed(eigenvalues: ArrayLike, noise_variances: ArrayLike, hyper: Hyperparams,
                     model: Model = "discrete") -> float:
    """Stationary ``E||theta_{k+1} - theta_k||^2``.

    >>> hp = Hyperparams(lr=0.01, momentum=0.9, batch_size=1)
    >>> round(stationary_speed([5.0], [1.0], hp, model="continuous"), 8)  # eta^2 s / (1 - beta^2)
    0.00052632
    """
    # eta^2 E||v||^2 in both models: exact discrete Var v, or eq. 18's s / (S (1 - beta^2)) for the SDE
    moments = stationary_moments(eigenvalues, noise_variances, hyper, model)
    return float(hyper.lr**2 * np.sum(moments.velocity_variance))


def stationary_speed_from_trace(trace_sigma: float, hyper: Hyperparams) -> float:
    """Eq. 18 with no fitted constant (ERRATA 002.3): ``eta^2 tr(Sigma) / (S (1 - beta^2))``."""
    if not (np.isfinite(trace_sigma) and trace_sigma >= 0):
        raise ValueError(f"trace_sigma={trace_sigma!r} is invalid: expected a finite value >= 0")
    return float(hyper.lr**2 * trace_sigma / hyper.inverse_temperature)


def global_displacement(eigenvalues: ArrayLike, noise_variances: ArrayLike, hyper: Hyperparams,
                        steps: ArrayLike, model: Model = "discrete") -> NDArray[np.float64]:
    """Stationary ``E||theta_{k+t} - theta_k||^2`` for each ``t`` in ``steps`` (integers >= 1).

    ``model``: ``"discrete"`` (exact; at ``t = 1`` the speed), ``"sde"`` or its alias ``"continuous"`` (the
    SDE's own displacement, ERRATA 002.6), or ``"eq19_sampled_sum"`` (002 eq. 19 summed over integer lags).

    >>> hp = Hyperparams(lr=0.01, momentum=0.9, batch_size=1)
    >>> sde, eq19 = (global_displacement([2.0], [1.0], hp, [10**5], model=m)[0]
    ...              for m in ("sde", "eq19_sampled_sum"))
    >>> round(float(sde / (2 * stationary_moments([2.0], [1.0], hp, model="sde").position_variance[0])), 6)
    1.0
    >>> bool(eq19 > 10 * sde)  # eq. 19's sampled sum keeps growing
    True
    """
    rho, s = _validated(eigenvalues, noise_variances, hyper, model, DISPLACEMENT_MODELS)
    t = _validated_steps(steps)
    if model in ("discrete", "eq19_sampled_sum"):
        summed = {"discrete": discrete.discrete_displacement_per_mode,
                  "eq19_sampled_sum": phase_space.eq19_sampled_sum_per_mode}[model]
        # summed over modes inside (decayed transients cost O(1) per mode); chunks bound the parameters
        return sum((summed(rho[i:i + _SUMMED_MODES], s[i:i + _SUMMED_MODES], hyper, t, summed=True)
                    for i in range(0, rho.size, _SUMMED_MODES)), start=np.zeros(t.size))
    # bound the (steps x modes) temporaries to a few MB whatever the spectrum size: chunks of modes, so
    # each mode's parameters are set up once for all times
    chunk = max(1, _CHUNK_ELEMENTS // t.size)
    total = np.zeros(t.size)
    for i in range(0, rho.size, chunk):
        per_mode = sde_transient.sde_displacement_per_mode(rho[i:i + chunk], s[i:i + chunk], hyper, t)
        total += per_mode.sum(axis=1)
    return total


def global_displacement_from_start(eigenvalues: ArrayLike, noise_variances: ArrayLike, hyper: Hyperparams,
                                   steps: ArrayLike, x0_variances: ArrayLike, b0_variances: ArrayLike = 0.0,
                                   x0_b0_covariances: ArrayLike = 0.0) -> NDArray[np.float64]:
    """``E||theta_k - theta_0||^2`` for each ``k`` in ``steps`` (integers >= 0), exact discrete recursion.

    Per mode, ``x_0 = q_i . (theta_0 - theta_min)`` and the PyTorch momentum buffer ``b_0`` have zero means,
    variances ``x0_variances``, ``b0_variances`` and covariance ``x0_b0_covariances`` (per mode or scalars),
    independent of the later minibatch noise. A fresh optimizer has ``b_0 = 0``; ``theta_0`` drawn from the
    stationary law of other hyperparameters has ``x0_variances = stationary_moments(rho, s,
    other).position_variance``.

    >>> hp = Hyperparams(lr=0.01, momentum=0.9, batch_size=1)
    >>> round(float(global_displacement_from_start([0.0], [1.0], hp, [1], [0.0])[0]), 10)  # eta^2 s / S
    0.0001
    """
    rho, s = _validated(eigenvalues, noise_variances, hyper, "discrete")
    t = _validated_steps(steps, minimum=0)
    vx = _per_mode(x0_variances, rho, "x0_variances", allow_inf=True)
    vb = _per_mode(b0_variances, rho, "b0_variances")
    cov = _per_mode(x0_b0_covariances, rho, "x0_b0_covariances", signed=True)
    with np.errstate(invalid="ignore", over="ignore"):
        bad = np.flatnonzero(np.isfinite(vx) & (cov**2 > vx * vb * (1 + 1e-12)))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"x0_b0_covariances[{i}]={float(cov[i])!r} is invalid: expected |covariance| <= "
                         f"sqrt(x0_variance * b0_variance) = {float(np.sqrt(vx[i] * vb[i]))!r}")
    chunk = max(1, _CHUNK_ELEMENTS // max(rho.size, 1))
    per_mode = discrete.displacement_from_start_per_mode
    return np.concatenate([per_mode(rho, s, hyper, t[i:i + chunk], vx, vb, cov).sum(axis=1)
                           for i in range(0, t.size, chunk)])


def _per_mode(values: ArrayLike, rho: NDArray[np.float64], name: str, allow_inf: bool = False,
              signed: bool = False) -> NDArray[np.float64]:
    v = np.asarray(values, dtype=np.float64)
    if v.ndim > 1 or (v.ndim == 1 and v.shape != rho.shape):
        raise ValueError(f"{name} must be a scalar or have one entry per eigenvalue ({rho.size}); "
                         f"got shape {v.shape}")
    v = np.broadcast_to(v, rho.shape)
    ok = (np.isfinite(v) | (allow_inf & (v == np.inf))) & ((v >= 0) | signed) & ~np.isnan(v)
    if not np.all(ok):
        i = int(np.flatnonzero(~ok)[0])
        valid = ("finite values" if signed
                 else "values >= 0 (inf allowed)" if allow_inf else "finite values >= 0")
        raise ValueError(f"{name}[{i}]={float(v[i])!r} is invalid: expected {valid}")
    return v


def local_exponent(eigenvalues: ArrayLike, noise_variances: ArrayLike, hyper: Hyperparams, steps: ArrayLike,
                   model: Model = "discrete", width: float = 2 ** 0.125) -> NDArray[np.float64]:
    """``d log E||Delta_t||^2 / d log t`` between the integer steps ``~t / width`` and ``~t * width``.

    1 is ordinary diffusion, above 1 super-diffusion, below 1 sub-diffusion (002 section 8). ``model`` is one
    of :data:`MODELS`: eq. 19's sampled sum has no exponent (it grows linearly for every mode).
    """
    _check_model(model)
    if not width > 1:
        raise ValueError(f"width={width!r} is invalid: expected > 1")
    t = _validated_steps(steps)
    lo = np.maximum(np.floor(t / width), 1).astype(np.int64)
    hi = np.maximum(np.ceil(t * width), lo + 1).astype(np.int64)
    both = global_displacement(eigenvalues, noise_variances, hyper, np.concatenate([lo, hi]), model)
    d_lo, d_hi = both[: t.size], both[t.size:]
    return np.log(d_hi / d_lo) / np.log(hi / lo)


def stationary_moments(eigenvalues: ArrayLike, noise_variances: ArrayLike, hyper: Hyperparams,
                       model: Model = "discrete") -> StationaryMoments:
    """Per-mode stationary ``Var x``, ``Cov(x, v)``, ``Var v`` of either model."""
    rho, s = _validated(eigenvalues, noise_variances, hyper, model)
    if model == "discrete":
        return discrete.discrete_stationary_moments(rho, s, hyper)
    return phase_space.sde_stationary_moments(rho, s, hyper)


def mean_trajectory(eigenvalues: ArrayLike, hyper: Hyperparams, steps: ArrayLike, position0: ArrayLike,
                    velocity0: ArrayLike, model: Model = "continuous"
                    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Mean position and velocity per mode at each step (002 eq. 9, or the exact discrete mean)."""
    rho = hyper.check_stable(eigenvalues)
    _check_model(model)
    t = np.asarray(steps, dtype=np.float64)
    if t.ndim != 1 or np.any(t < 0) or (model == "discrete" and np.any(t != np.round(t))):
        raise ValueError("steps must be a 1-D array of step counts >= 0 (integers for model='discrete')")
    x0 = np.broadcast_to(np.asarray(position0, dtype=np.float64), rho.shape)
    v0 = np.broadcast_to(np.asarray(velocity0, dtype=np.float64), rho.shape)
    if model == "discrete":
        return discrete.discrete_mean_trajectory(rho, hyper, t, x0, v0)
    return phase_space.sde_mean_trajectory(rho, hyper, t, x0, v0)


def modified_loss_curvature(eigenvalues: ArrayLike, noise_variances: ArrayLike, hyper: Hyperparams
                            ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per-mode curvatures ``(U_x, U_v)`` of the modified loss ``Psi`` (002 eqs. 13-16)."""
    rho, s = _validated(eigenvalues, noise_variances, hyper, "sde")
    return phase_space.modified_loss_curvature(rho, s, hyper)


def _check_model(model: str, allowed: tuple[str, ...] = MODELS) -> None:
    require(isinstance(model, str) and model in allowed, "model", model, f"one of {', '.join(allowed)}")


def _validated(eigenvalues: ArrayLike, noise_variances: ArrayLike, hyper: Hyperparams, model: str,
               allowed: tuple[str, ...] = MODELS) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    _check_model(model, allowed)
    rho = hyper.check_stable(eigenvalues)
    s = np.atleast_1d(np.asarray(noise_variances, dtype=np.float64))
    if s.shape != rho.shape:
        raise ValueError(f"noise_variances must have one entry per eigenvalue ({rho.size}); "
                         f"got shape {s.shape}")
    if not np.all(np.isfinite(s)) or np.any(s < 0):
        i = int(np.argmin(np.where(np.isfinite(s), s, -np.inf)))
        raise ValueError(f"noise_variances[{i}]={float(s[i])!r} is invalid: expected finite values >= 0")
    return rho, s


def _validated_steps(steps: ArrayLike, minimum: int = 1) -> NDArray[np.int64]:
    t = np.atleast_1d(np.asarray(steps))
    if t.ndim != 1 or t.size == 0 or not np.all(np.isfinite(t.astype(float))) or np.any(t < minimum) \
            or np.any(t.astype(float) != np.round(t.astype(float))):
        raise ValueError(
            f"steps must be a non-empty 1-D array of integers >= {minimum}; got {np.asarray(steps)!r}"[:200])
    return t.astype(np.int64)
