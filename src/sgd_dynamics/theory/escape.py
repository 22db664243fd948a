"""Escape over barriers: exact 1-D mean first-passage time, Kramers and Eyring–Kramers times, Arrhenius fits.

All for the overdamped diffusion ``dx = -grad U(x) dt + sqrt(2 T) dW`` (chapter 004, corrected by
ERRATA 004.4; ``T`` is the effective temperature of :mod:`sgd_dynamics.theory.temperature`).

* Exact MFPT in 1-D, reflecting at the far side, absorbing at ``b`` (ERRATA 004.4)::

      tau(x0 -> b) = (1/T) int_{x0}^{b} e^{U(y)/T} int_{-inf}^{y} e^{-U(z)/T} dz dy

  computed by composite 16-point Gauss–Legendre quadrature of both integrals with the panel count doubled
  until two successive values agree to ``rtol``; exponents are shifted (log-sum scaling) so nothing
  overflows at low ``T``.
* Kramers, 1-D, well ``a`` to well beyond the barrier ``b``:
  ``2 pi / sqrt(U''(a) |U''(b)|) exp((U(b)-U(a))/T)``.
* Eyring–Kramers, ``d`` dimensions: ``(2 pi / |lambda_-|) sqrt(|det H_s| / det H_m) exp(dU/T)``, with the
  minimum and the index-1 saddle located numerically from the potential and checked by their Hessian
  spectra.
* Arrhenius: ``log tau = log A + dU / T``; the fitted slope is the barrier.

>>> from sgd_dynamics.theory.potential import parse_potential
>>> U = parse_potential("(x**2 - 1)**2")
>>> round(mean_first_passage_time(U, 0.5, -0.9, 0.0), 3)   # ERRATA 004.4: 4.541
4.541
>>> round(kramers_time(U, 0.5, well=-1.0, barrier=0.0), 3)   # 2 pi / sqrt(32) e^{1/T}
8.207
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize

EnergyFn = Callable[[NDArray[np.float64]], NDArray[np.float64]]

_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(16)
_CUTOFF_RISE = 50.0  # e^{-50} ~ 2e-22: the neglected tail of the inner integral is far below 1e-6 relative


class SmoothPotential(Protocol):
    """What the Kramers formulas need: energy, gradient and Hessian (see :class:`~.potential.Potential`)."""

    def energy(self, q: ArrayLike) -> NDArray[np.float64]: ...  # noqa: D102
    def gradient(self, q: ArrayLike) -> NDArray[np.float64]: ...  # noqa: D102
    def hessian(self, q: ArrayLike) -> NDArray[np.float64]: ...  # noqa: D102


def _energy_fn(potential: SmoothPotential | EnergyFn) -> EnergyFn:
    fn = getattr(potential, "energy", potential)
    if not callable(fn):
        raise ValueError(f"potential={potential!r} is invalid: expected a callable U(x) or a Potential")
    return lambda x: np.asarray(fn(np.asarray(x, dtype=np.float64)), dtype=np.float64)


def _check_temperature(temperature: float) -> float:
    if not (isinstance(temperature, (int, float, np.floating)) and math.isfinite(temperature)
            and temperature > 0):
        raise ValueError(f"temperature={temperature!r} is invalid: expected a finite temperature > 0")
    return float(temperature)


def _left_cutoff(U: EnergyFn, T: float, start: float, target: float) -> float:
    """A point ``L < start`` beyond which ``e^{-U/T}`` is negligible (U has risen by 50 T, still rising)."""
    step = max(1.0, abs(target - start))
    for k in range(1, 60):
        L = start - step * (2.0**k - 1.0) / 8.0
        grid = np.linspace(L, target, 4001)
        u = U(grid)
        if not np.all(np.isfinite(u)):
            bad = float(grid[~np.isfinite(u)][0])
            raise ValueError(f"potential is not finite at x={bad:.6g}; the MFPT needs a finite U on "
                             f"({L:.6g}, {target:.6g})")
        if u[0] - u.min() >= _CUTOFF_RISE * T:
            # Guard against a second well hidden further out: U must keep rising beyond L.
            outer = U(np.linspace(L - step, L, 201))
            if np.all(np.diff(outer) <= 0):
                return L
    raise ValueError("potential is not confining on the side away from the target: U(x) does not rise by "
                     f"{_CUTOFF_RISE:g} T monotonically; the reflecting-boundary MFPT does not exist")


def _panel_nodes(a: float, b: float, n_panels: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Gauss–Legendre nodes (n_panels, 16) and weights on ``n_panels`` equal panels of [a, b]."""
    edges = np.linspace(a, b, n_panels + 1)
    half = 0.5 * np.diff(edges)[:, None]
    return edges[:-1, None] + half * (_GL_NODES + 1.0), half * _GL_WEIGHTS


def _log_mfpt_once(U: EnergyFn, T: float, start: float, target: float, L: float, n_panels: int) -> float:
    shift = float(U(np.linspace(L, target, 4001)).min())

    def inner(z: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.exp(-(U(z) - shift) / T)

    z, w = _panel_nodes(L, start, n_panels)
    j_start = float(np.sum(w * inner(z)))
    y, wy = _panel_nodes(start, target, n_panels)  # outer nodes, (P, 16)
    edges = np.linspace(start, target, n_panels + 1)[:-1]
    left = edges[:, None]
    full = np.sum(wy * inner(y), axis=1)  # integral of each full panel
    before = j_start + np.concatenate([[0.0], np.cumsum(full)[:-1]])  # J at each panel's left edge
    # Partial integral from the panel's left edge to each node y_j, again by 16-point Gauss–Legendre.
    half = 0.5 * (y - left)[..., None]
    zz = left[..., None] + half * (_GL_NODES + 1.0)
    partial = np.sum(half * _GL_WEIGHTS * inner(zz), axis=-1)
    j = before[:, None] + partial
    with np.errstate(divide="ignore"):
        log_integrand = (U(y) - shift) / T + np.log(j)
    m = float(log_integrand.max())
    total = float(np.sum(wy * np.exp(log_integrand - m)))
    return math.log(total) + m - math.log(T)


def log_mean_first_passage_time(potential: SmoothPotential | EnergyFn, temperature: float, start: float,
                                target: float, *, rtol: float = 1e-10) -> float:
    """``log tau(start -> target)`` of the exact 1-D MFPT (use at very low ``T`` where ``tau`` overflows).

    The process is reflected on the side of ``start`` away from ``target`` (``U`` must be confining there)
    and absorbed at ``target``; ``target`` may lie on either side of ``start``.
    """
    T = _check_temperature(temperature)
    start, target = float(start), float(target)
    if not (math.isfinite(start) and math.isfinite(target)):
        raise ValueError(f"start={start!r}, target={target!r} are invalid: expected finite points")
    if start == target:
        raise ValueError(f"start={start!r} is invalid: it equals the target, so the first-passage time is 0")
    U = _energy_fn(potential)
    if target < start:  # mirror so that the exit is always to the right
        U0 = U
        U, start, target = (lambda x: U0(-x)), -start, -target
    L = _left_cutoff(U, T, start, target)
    n, previous = 32, None
    while n <= 2**14:
        value = _log_mfpt_once(U, T, start, target, L, n)
        if previous is not None and abs(value - previous) < rtol:
            return value
        previous, n = value, 2 * n
    raise ValueError(f"MFPT quadrature did not converge to rtol={rtol:g} with {n // 2} panels "
                     f"(temperature={T:g}); the potential may be too rough on ({L:.6g}, {target:.6g})")


def mean_first_passage_time(potential: SmoothPotential | EnergyFn, temperature: float, start: float,
                            target: float, *, rtol: float = 1e-10) -> float:
    """Exact 1-D mean first-passage time ``tau(start -> target)`` (ERRATA 004.4); ``inf`` if it overflows."""
    log_tau = log_mean_first_passage_time(potential, temperature, start, target, rtol=rtol)
    return math.exp(log_tau) if log_tau < 709.0 else math.inf


# --- Kramers in one dimension --------------------------------------------------------------------
def locate_well_and_barrier(potential: SmoothPotential, start: float, target: float) -> tuple[float, float]:
    """The minimum of the well containing ``start`` and the first barrier top from it towards ``target``.

    Found by bounded minimisation, then a sign change of ``U'`` (refined by Brent's method).
    Raises ``ValueError`` when there is no barrier between the well and ``target`` (plus one unit beyond).
    """
    sign = 1.0 if target > start else -1.0
    res = optimize.minimize(lambda v: float(potential.energy(v[0])), x0=[start],
                            jac=lambda v: np.atleast_1d(potential.gradient(v[0])), method="BFGS")
    well = float(res.x[0])
    for _ in range(5):  # Newton polish: BFGS stops at gtol, the Kramers prefactor wants the exact minimum
        h = float(potential.hessian(well))
        if h <= 0:
            break
        well -= float(potential.gradient(well)) / h
    if not (res.success or np.abs(potential.gradient(well)) < 1e-8) or float(potential.hessian(well)) <= 0:
        raise ValueError(f"start={start!r}: no local minimum of the potential found near it")
    span = abs(target - well) + 1.0
    grid = well + sign * np.linspace(0.0, span, 20001)[1:]
    slope = sign * potential.gradient(grid)  # > 0 while climbing towards the target
    down = np.nonzero(slope <= 0)[0]
    if down.size == 0 or down[0] == 0:
        raise ValueError(f"target={target!r}: no barrier between the well at x={well:.6g} and the target")
    i = down[0]
    barrier = optimize.brentq(lambda v: float(potential.gradient(v)), float(grid[i - 1]), float(grid[i]),
                              xtol=1e-14)
    return well, float(barrier)


def kramers_time(potential: SmoothPotential, temperature: float, well: float, barrier: float) -> float:
    """Kramers well-to-well time ``2 pi / sqrt(U''(a) |U''(b)|) exp((U(b) - U(a))/T)`` (ERRATA 004.4)."""
    T = _check_temperature(temperature)
    ha, hb = float(potential.hessian(well)), float(potential.hessian(barrier))
    if ha <= 0:
        raise ValueError(f"well={well!r} is invalid: U''={ha:.6g} must be > 0 at a minimum")
    if hb >= 0:
        raise ValueError(f"barrier={barrier!r} is invalid: U''={hb:.6g} must be < 0 at a barrier top")
    dU = float(potential.energy(barrier)) - float(potential.energy(well))
    return 2.0 * math.pi / math.sqrt(ha * abs(hb)) * math.exp(dU / T)


# --- Eyring–Kramers in d dimensions ------------------------------------------------------------------
@dataclass(frozen=True)
class CriticalPoint:
    """A stationary point of ``U`` with its energy and Hessian spectrum (ascending)."""

    point: NDArray[np.float64]
    energy: float
    hessian_eigenvalues: NDArray[np.float64]

    @property
    def index(self) -> int:
        """Number of negative Hessian eigenvalues (0: minimum, 1: saddle)."""
        return int(np.sum(self.hessian_eigenvalues < 0))


def _as_vector_fns(potential: SmoothPotential) -> tuple[Callable, Callable, Callable]:
    def energy(q: NDArray[np.float64]) -> float:
        q = np.asarray(q, dtype=np.float64)
        return float(potential.energy(q[0] if q.size == 1 and _is_1d(potential) else q))

    def gradient(q: NDArray[np.float64]) -> NDArray[np.float64]:
        q = np.asarray(q, dtype=np.float64)
        return np.atleast_1d(potential.gradient(q[0] if q.size == 1 and _is_1d(potential) else q))

    def hessian(q: NDArray[np.float64]) -> NDArray[np.float64]:
        q = np.asarray(q, dtype=np.float64)
        return np.atleast_2d(potential.hessian(q[0] if q.size == 1 and _is_1d(potential) else q))

    return energy, gradient, hessian


def _is_1d(potential: SmoothPotential) -> bool:
    return getattr(potential, "dimension", None) == 1


def _critical_point(potential: SmoothPotential, q: NDArray[np.float64]) -> CriticalPoint:
    energy, _, hessian = _as_vector_fns(potential)
    return CriticalPoint(np.asarray(q, dtype=np.float64), energy(q), np.linalg.eigvalsh(hessian(q)))


def find_minimum(potential: SmoothPotential, guess: ArrayLike) -> CriticalPoint:
    """Local minimum reached by BFGS from ``guess``; checked to have a positive-definite Hessian."""
    energy, gradient, _ = _as_vector_fns(potential)
    res = optimize.minimize(energy, np.atleast_1d(np.asarray(guess, dtype=np.float64)), jac=gradient,
                            method="BFGS", options={"gtol": 1e-12})
    cp = _critical_point(potential, res.x)
    if np.linalg.norm(gradient(res.x)) > 1e-7 or cp.index != 0 or cp.hessian_eigenvalues[0] <= 0:
        raise ValueError(f"guess={np.asarray(guess).tolist()!r}: no non-degenerate minimum found nearby "
                         f"(Hessian eigenvalues {cp.hessian_eigenvalues.tolist()})")
    return cp


def find_saddle(potential: SmoothPotential, guess: ArrayLike) -> CriticalPoint:
    """Index-1 saddle by Newton's method on ``grad U = 0`` from ``guess`` (one negative eigenvalue)."""
    _, gradient, hessian = _as_vector_fns(potential)
    res = optimize.root(gradient, np.atleast_1d(np.asarray(guess, dtype=np.float64)), jac=hessian,
                        method="hybr", options={"xtol": 1e-13})
    cp = _critical_point(potential, res.x)
    if np.linalg.norm(gradient(res.x)) > 1e-7 or cp.index != 1:
        raise ValueError(f"guess={np.asarray(guess).tolist()!r}: no index-1 saddle found nearby "
                         f"(converged to {res.x.tolist()} with Hessian eigenvalues "
                         f"{cp.hessian_eigenvalues.tolist()})")
    return cp


def eyring_kramers_time(minimum: CriticalPoint, saddle: CriticalPoint, temperature: float) -> float:
    """``(2 pi / |lambda_-|) sqrt(|det H_s| / det H_m) exp((U_s - U_m)/T)`` (ERRATA 004.4)."""
    T = _check_temperature(temperature)
    if minimum.index != 0 or saddle.index != 1:
        raise ValueError(f"expected a minimum (index 0) and an index-1 saddle; got indices "
                         f"{minimum.index} and {saddle.index}")
    lam_minus = abs(float(saddle.hessian_eigenvalues[0]))
    ratio = abs(float(np.prod(saddle.hessian_eigenvalues))) / float(np.prod(minimum.hessian_eigenvalues))
    return 2.0 * math.pi / lam_minus * math.sqrt(ratio) * math.exp((saddle.energy - minimum.energy) / T)


# --- Arrhenius -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ArrheniusFit:
    """Least-squares fit ``log tau = log_prefactor + barrier / T``."""

    barrier: float
    log_prefactor: float
    barrier_stderr: float


def fit_arrhenius(temperatures: ArrayLike, times: ArrayLike) -> ArrheniusFit:
    """Fit ``log tau`` against ``1/T``; the slope is the barrier height ``dU``."""
    T = np.asarray(temperatures, dtype=np.float64)
    tau = np.asarray(times, dtype=np.float64)
    if T.shape != tau.shape or T.ndim != 1 or T.size < 3:
        raise ValueError(f"temperatures and times must be 1-D of equal length >= 3; got {T.shape} and "
                         f"{tau.shape}")
    if np.any(T <= 0) or np.any(tau <= 0) or not np.all(np.isfinite(tau)):
        raise ValueError("temperatures and times must be finite and > 0")
    X = np.column_stack([np.ones_like(T), 1.0 / T])
    coef, res, *_ = np.linalg.lstsq(X, np.log(tau), rcond=None)
    dof = T.size - 2
    sigma2 = float(res[0]) / dof if res.size and dof > 0 else 0.0
    cov = sigma2 * np.linalg.inv(X.T @ X)
    return ArrheniusFit(barrier=float(coef[1]), log_prefactor=float(coef[0]),
                        barrier_stderr=math.sqrt(cov[1, 1]))
