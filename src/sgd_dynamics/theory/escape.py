"""Escape over barriers: exact 1-D mean first-passage time, Kramers and Eyring–Kramers times, Arrhenius fits.

All for the overdamped diffusion ``dx = -grad U(x) dt + sqrt(2 T) dW`` (chapter 004, corrected by
ERRATA 004.4; ``T`` is the effective temperature of :mod:`sgd_dynamics.theory.temperature`).

* Exact MFPT in 1-D, reflecting at the far side, absorbing at ``b`` (ERRATA 004.4)::

      tau(x0 -> b) = (1/T) int_{x0}^{b} e^{U(y)/T} int_{-inf}^{y} e^{-U(z)/T} dz dy

  computed by composite 16-point Gauss–Legendre quadrature of both integrals with the panel count doubled
  until two successive values agree to ``rtol``; exponents are shifted (log-sum scaling) so nothing
  overflows at low ``T``.
* Linear response of the MFPT (:func:`mfpt_linear_response`): ``d log tau / d eps`` when the scale potential
  becomes ``U + eps phi`` and the diffusion ``T (1 + eps psi)``, a weighted version of the same double
  integral on the same grid (the Euler–Maruyama bias model of :mod:`sgd_dynamics.simulate.first_passage`).
* Kramers, 1-D, well ``a`` to well beyond the barrier ``b`` (ERRATA 004.4):
  ``2 pi / sqrt(U''(a) |U''(b)|) exp((U(b)-U(a))/T)``. Over several barriers (:func:`kramers_path_time`),
  Laplace's method on the exact double integral gives the sum of that term over every pair (well ``m``,
  barrier ``s``) with ``m`` behind ``s`` and ``s`` between start and target; the largest ``U(s) - U(m)``
  (:func:`path_barrier`) sets the Arrhenius exponent. The single-barrier formula applied to the first barrier
  only is off by ``e^{-(difference of exponents)/T}`` (issue 12: 156.8 against the exact 1273).
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
>>> round(kramers_path_time(U, 0.5, -0.9, 0.0).time, 3)   # one barrier: the same
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


class QuadratureNotConverged(ValueError):
    """The MFPT quadrature did not resolve its integrands (a temperature too low for the potential)."""


def _left_cutoff(U: EnergyFn, T: float, start: float, target: float, sign: float = 1.0) -> float:
    """A point ``L < start`` beyond which ``e^{-U/T}`` is negligible (U has risen by 50 T, still rising).

    ``sign`` is -1 when ``U`` has been mirrored, so that messages give the user's coordinates.
    """
    step = max(1.0, abs(target - start))
    with np.errstate(all="ignore"):  # a potential that overflows far out is reported below, not warned
        for k in range(1, 60):
            L = start - step * (2.0**k - 1.0) / 8.0
            grid = np.linspace(L, target, 4001)
            u = U(grid)
            if not np.all(np.isfinite(u)):
                bad = sign * float(grid[~np.isfinite(u)][0])
                raise ValueError(f"potential is not finite at x={bad:.6g}: expected a finite U between the "
                                 "target and the point where U has risen far enough to reflect")
            if u[0] - u.min() >= _CUTOFF_RISE * T:
                # Guard against a second well hidden further out: U must keep rising beyond L.
                outer = U(np.linspace(L - step, L, 201))
                if np.all(np.isfinite(outer)) and np.all(np.diff(outer) <= 0):
                    return L
    raise ValueError("potential is not confining on the side of the start away from the target: expected "
                     f"U(x) to rise there by {_CUTOFF_RISE:g} T and keep rising (a reflecting-boundary MFPT "
                     "needs it)")


def reflecting_cutoff(potential: SmoothPotential | EnergyFn, temperature: float, start: float,
                      target: float) -> float:
    """Where the MFPT quadrature stops on the reflecting side: ``U`` has risen by 50 ``T``, still rising."""
    U, T, x0, b, sign = _oriented(potential, temperature, start, target)
    return sign * _left_cutoff(U, T, x0, b, sign)


def path_barrier(potential: SmoothPotential | EnergyFn, temperature: float, start: float,
                 target: float) -> float:
    """The Arrhenius exponent of the MFPT: ``log tau ~ barrier / T`` as ``T -> 0``.

    ``max U(y) - min U(z)`` over ``y`` between ``start`` and ``target`` and ``z`` on the reflecting side of
    ``y`` (from :func:`reflecting_cutoff`): the highest climb the path must make from any well behind it.
    """
    U, T, x0, b, sign = _oriented(potential, temperature, start, target)
    grid = np.linspace(_left_cutoff(U, T, x0, b, sign), b, 40001)
    u = U(grid)
    climb = u - np.minimum.accumulate(u)
    return float(climb[grid >= x0].max())


def _panel_nodes(a: float, b: float, n_panels: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Gauss–Legendre nodes (n_panels, 16) and weights on ``n_panels`` equal panels of [a, b]."""
    edges = np.linspace(a, b, n_panels + 1)
    half = 0.5 * np.diff(edges)[:, None]
    return edges[:-1, None] + half * (_GL_NODES + 1.0), half * _GL_WEIGHTS


WeightFn = Callable[[NDArray[np.float64]], NDArray[np.float64]]


@dataclass(frozen=True)
class _DoubleIntegral:
    """``I[g, h] = int_{x0}^{b} e^{U(y)/T} (g(y) J(y) + J_h(y)) dy`` with ``J_h(y) = int_L^y e^{-U/T} h``.

    Built once on a panel grid; ``log_base`` is ``log I[1, 0]`` (``T tau``) and :meth:`ratio` gives
    ``I[g, h] / I[1, 0]`` without forming the (possibly overflowing) integrals themselves.
    """

    y: NDArray[np.float64]  # outer nodes (P, 16)
    wy: NDArray[np.float64]
    outer: NDArray[np.float64]  # e^{(U(y) - shift)/T} / I[1, 0]
    j: NDArray[np.float64]  # J(y) e^{shift/T}
    z: NDArray[np.float64]  # inner nodes left of the start
    wz: NDArray[np.float64]
    zz: NDArray[np.float64]  # inner nodes from each outer panel's left edge to each outer node (P, 16, 16)
    wzz: NDArray[np.float64]
    density: tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]  # e^{-(U-shift)/T}
    log_base: float

    def cumulative(self, h: WeightFn) -> NDArray[np.float64]:
        """``J_h`` at the outer nodes (scaled like ``j``)."""
        dz, dy, dzz = self.density
        at_start = float(np.sum(self.wz * dz * h(self.z)))
        full = np.sum(self.wy * dy * h(self.y), axis=1)
        before = at_start + np.concatenate([[0.0], np.cumsum(full)[:-1]])
        return before[:, None] + np.sum(self.wzz * dzz * h(self.zz), axis=-1)

    def ratio(self, g: WeightFn, h: WeightFn) -> float:
        """``I[g, h] / I[1, 0]``."""
        return float(np.sum(self.wy * self.outer * (g(self.y) * self.j + self.cumulative(h))))


def _double_integral(U: EnergyFn, T: float, start: float, target: float, L: float,
                     n_panels: int) -> _DoubleIntegral:
    z, wz = _panel_nodes(L, start, n_panels)
    y, wy = _panel_nodes(start, target, n_panels)  # outer nodes, (P, 16)
    left = np.linspace(start, target, n_panels + 1)[:-1, None]
    # Partial integral from the panel's left edge to each node y_j, again by 16-point Gauss–Legendre.
    half = 0.5 * (y - left)[..., None]
    zz, wzz = left[..., None] + half * (_GL_NODES + 1.0), half * _GL_WEIGHTS
    uz, uy, uzz = U(z), U(y), U(zz)
    # The lowest U on every node: no exponent below is positive, so nothing overflows at any T.
    shift = min(float(uz.min()), float(uy.min()), float(uzz.min()))
    dz, dy, dzz = (np.exp(-(u - shift) / T) for u in (uz, uy, uzz))
    full = np.sum(wy * dy, axis=1)  # integral of each full panel
    before = float(np.sum(wz * dz)) + np.concatenate([[0.0], np.cumsum(full)[:-1]])  # J at left edges
    j = before[:, None] + np.sum(wzz * dzz, axis=-1)
    # At an absurdly low T the exponents overflow: the sum is then nan and the refinement reports it.
    with np.errstate(all="ignore"):
        log_integrand = (uy - shift) / T + np.log(j)
        m = float(log_integrand.max())
        outer = np.exp((uy - shift) / T - m)
        scaled = float(np.sum(wy * outer * j))  # I[1, 0] e^{-m}
        if not (math.isfinite(scaled) and scaled > 0):
            scaled = math.nan
        return _DoubleIntegral(y, wy, outer / scaled, j, z, wz, zz, wzz, (dz, dy, dzz), math.log(scaled) + m)


def _oriented(potential: SmoothPotential | EnergyFn, temperature: float, start: float,
              target: float) -> tuple[EnergyFn, float, float, float, float]:
    """Checked inputs, mirrored so that the exit is to the right: ``(U, T, start, target, sign)``."""
    T = _check_temperature(temperature)
    start, target = float(start), float(target)
    if not (math.isfinite(start) and math.isfinite(target)):
        raise ValueError(f"start={start!r}, target={target!r} are invalid: expected finite points")
    if start == target:
        raise ValueError(f"start={start!r} is invalid: it equals the target, so the first-passage time is 0")
    U = _energy_fn(potential)
    if target < start:
        U0 = U
        return (lambda x: U0(-x)), T, -start, -target, -1.0
    return U, T, start, target, 1.0


def _converged(U: EnergyFn, T: float, start: float, target: float, sign: float, rtol: float,
               value: Callable[[_DoubleIntegral], float]) -> tuple[_DoubleIntegral, float]:
    """Double the panels until ``value`` of two successive grids agrees to ``rtol`` (absolute)."""
    L = _left_cutoff(U, T, start, target, sign)
    n, previous = 32, None
    while n <= 2**14:
        integral = _double_integral(U, T, start, target, L, n)
        current = value(integral)
        if previous is not None and abs(current - previous) < rtol:
            return integral, current
        previous, n = current, 2 * n
    lo, hi = sorted((sign * L, sign * target))
    raise QuadratureNotConverged(f"MFPT quadrature did not converge to rtol={rtol:g} with {n // 2} panels on "
                     f"({lo:.6g}, {hi:.6g}): expected a temperature whose thermal width sqrt(T / U'') the "
                     f"panels resolve, and a potential smooth on that scale (temperature={T:g})")


def log_mean_first_passage_time(potential: SmoothPotential | EnergyFn, temperature: float, start: float,
                                target: float, *, rtol: float = 1e-10) -> float:
    """``log tau(start -> target)`` of the exact 1-D MFPT (use at very low ``T`` where ``tau`` overflows).

    The process is reflected on the side of ``start`` away from ``target`` (``U`` must be confining there)
    and absorbed at ``target``; ``target`` may lie on either side of ``start``.
    """
    U, T, start, target, sign = _oriented(potential, temperature, start, target)
    _, log_t_tau = _converged(U, T, start, target, sign, rtol, lambda integral: integral.log_base)
    return log_t_tau - math.log(T)


def mean_first_passage_time(potential: SmoothPotential | EnergyFn, temperature: float, start: float,
                            target: float, *, rtol: float = 1e-10) -> float:
    """Exact 1-D mean first-passage time ``tau(start -> target)`` (ERRATA 004.4); ``inf`` if it overflows."""
    log_tau = log_mean_first_passage_time(potential, temperature, start, target, rtol=rtol)
    return math.exp(log_tau) if log_tau < 709.0 else math.inf


@dataclass(frozen=True)
class MFPTResponse:
    """First-order relative change of the MFPT, ``d log tau / d eps``, and a bound free of cancellations.

    ``rate`` is the double integral with the signed weights, ``bound`` the same with their absolute values,
    so ``|rate| <= bound`` and ``bound`` stays of the size of the largest contribution even where terms of
    opposite sign cancel in ``rate``.
    """

    rate: float
    bound: float


def mfpt_linear_response(potential: SmoothPotential | EnergyFn, temperature: float, start: float,
                         target: float, *, potential_shift: WeightFn, diffusion_shift: WeightFn,
                         rtol: float = 1e-8) -> MFPTResponse:
    """``d log tau / d eps`` at ``eps = 0`` for the perturbed diffusion ``dx = F dt + sqrt(2 D) dW``.

    The perturbation is given by the process's scale potential ``Phi = U + eps phi`` and its diffusion
    coefficient ``D = T (1 + eps psi)`` (``phi = potential_shift``, ``psi = diffusion_shift``; drift
    ``F = -Phi' D / T``). Its MFPT is ``int_{x0}^{b} e^{Phi(y)/T} int_{-inf}^{y} e^{-Phi(z)/T} / D(z) dz dy``
    (ERRATA 004.4 when ``eps = 0``), so

        d log tau / d eps = (1 / (T tau)) int_{x0}^{b} e^{U(y)/T} int_{-inf}^{y} e^{-U(z)/T}
                            [phi(y)/T - phi(z)/T - psi(z)] dz dy,

    evaluated on the quadrature grid of :func:`log_mean_first_passage_time`, refined until the rate is
    stable to ``rtol`` (absolute).
    """
    U, T, start, target, sign = _oriented(potential, temperature, start, target)

    def oriented(fn: WeightFn) -> WeightFn:
        return lambda x: np.asarray(fn(sign * np.asarray(x)), dtype=np.float64)

    phi, psi = oriented(potential_shift), oriented(diffusion_shift)

    def outer_weight(y: NDArray[np.float64]) -> NDArray[np.float64]:
        return phi(y) / T

    def inner_weight(z: NDArray[np.float64]) -> NDArray[np.float64]:
        return -(phi(z) / T + psi(z))

    integral, rate = _converged(U, T, start, target, sign, rtol,
                                lambda grid: grid.ratio(outer_weight, inner_weight))
    bound = integral.ratio(lambda y: np.abs(outer_weight(y)), lambda z: np.abs(inner_weight(z)))
    return MFPTResponse(rate=rate, bound=bound)


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
    """Kramers well-to-well time ``2 pi / sqrt(U''(a) |U''(b)|) exp((U(b) - U(a))/T)`` (ERRATA 004.4).

    ``inf`` where it overflows a float. Over several barriers use :func:`kramers_path_time`.
    """
    T = _check_temperature(temperature)
    ha, hb = float(potential.hessian(well)), float(potential.hessian(barrier))
    if ha <= 0:
        raise ValueError(f"well={well!r} is invalid: U''={ha:.6g} must be > 0 at a minimum")
    if hb >= 0:
        raise ValueError(f"barrier={barrier!r} is invalid: U''={hb:.6g} must be < 0 at a barrier top")
    dU = float(potential.energy(barrier)) - float(potential.energy(well))
    log_tau = math.log(2.0 * math.pi / math.sqrt(ha * abs(hb))) + dU / T
    return math.exp(log_tau) if log_tau < 709.0 else math.inf  # not an OverflowError at very low T


class KramersNotApplicable(ValueError):
    """The Kramers asymptotic has no meaning for this start and target (the reason is the message)."""


@dataclass(frozen=True)
class KramersPath:
    """The Laplace asymptotic of the mean time over the barriers between a start and a target (1-D).

    ``minima`` and ``saddles`` are the critical points that enter (in the orientation of the path);
    ``dominant`` is the (well, saddle) pair with the largest ``U(s) - U(m)``, which alone decides the
    Arrhenius exponent.
    """

    time: float  # inf if it overflows a float
    log_time: float
    minima: tuple[float, ...]
    saddles: tuple[float, ...]
    dominant: tuple[float, float]


def critical_points_1d(potential: SmoothPotential, left: float, right: float,
                       n_grid: int = 20001) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Minima and maxima of a 1-D ``U`` on ``[left, right]``: sign changes of ``U'``, refined by Brent.

    A critical point without a sign change of ``U'`` (an inflection with ``U' = 0``) is neither.
    """
    grid = np.linspace(left, right, n_grid)
    with np.errstate(all="ignore"):
        slope = np.sign(np.asarray(potential.gradient(grid), dtype=np.float64))
    minima, maxima = [], []
    for i in np.nonzero(slope[:-1] * slope[1:] < 0)[0]:
        # A flat (degenerate) root may not certify xtol; the bracket it returns is still tight.
        root, _ = optimize.brentq(lambda v: float(potential.gradient(v)), float(grid[i]), float(grid[i + 1]),
                                  xtol=1e-14, full_output=True, disp=False)
        (minima if slope[i] < 0 else maxima).append(float(root))
    for i in np.nonzero(slope[1:-1] == 0)[0] + 1:  # a critical point exactly on a grid node
        if slope[i - 1] * slope[i + 1] < 0:
            (minima if slope[i - 1] < 0 else maxima).append(float(grid[i]))
    return tuple(sorted(minima)), tuple(sorted(maxima))


def kramers_path_time(potential: SmoothPotential, temperature: float, start: float,
                      target: float) -> KramersPath:
    """Kramers time from the well of ``start`` over every barrier up to ``target`` (ERRATA 004.4, 1-D).

    Laplace's method on the exact MFPT double integral: the outer integrand ``e^{U(y)/T}`` peaks at each
    barrier top ``s`` between ``start`` and ``target`` (a ``target`` at a barrier top counts that barrier
    in full: the time to the well beyond), the inner ``int_{-inf}^{s} e^{-U/T}`` at each minimum ``m < s``
    (on the reflecting side of the path, including wells behind ``start``). Each pair contributes
    ``2 pi / sqrt(U''(m) |U''(s)|) e^{(U(s) - U(m))/T}``; the sum is the time to the well beyond the last
    barrier up to relative ``O(T)`` corrections, and the dominant term is the pair maximising
    ``U(s) - U(m)``. For one barrier it is :func:`kramers_time`.

    Raises :class:`KramersNotApplicable` when no barrier lies between ``start`` and ``target`` or a well
    or barrier on the path is degenerate (``U'' = 0``).
    """
    U, T, x0, b, sign = _oriented(potential, temperature, start, target)
    L = _left_cutoff(U, T, x0, b, sign)

    class Oriented:
        def energy(self, x: ArrayLike) -> NDArray[np.float64]:
            return np.asarray(potential.energy(sign * np.asarray(x)), dtype=np.float64)

        def gradient(self, x: ArrayLike) -> NDArray[np.float64]:
            return sign * np.asarray(potential.gradient(sign * np.asarray(x)), dtype=np.float64)

        def hessian(self, x: ArrayLike) -> NDArray[np.float64]:
            return np.asarray(potential.hessian(sign * np.asarray(x)), dtype=np.float64)

    V = Oriented()
    reach = b + 1e-9 * (1.0 + abs(b))  # a target given at a barrier top, up to rounding
    minima, maxima = critical_points_1d(V, L, b + 1e-6 * (b - L))
    saddles = [s for s in maxima if x0 < s <= reach]
    if not saddles:
        raise KramersNotApplicable(f"no barrier between start={start!r} and target={target!r}")
    terms, pairs = [], []
    wells = [m for m in minima if m < saddles[-1]]
    curvature = {c: float(V.hessian(c)) for c in (*wells, *saddles)}
    # U'' = 0 at a critical point (a quartic well, say) shows up as rounding-level U'' at the located root.
    scale = max(abs(h) for h in curvature.values())
    for c, h in curvature.items():
        if abs(h) <= 1e-6 * scale or (h < 0) != (c in saddles):
            raise KramersNotApplicable(f"the critical point x={sign * c:.6g} is degenerate (U''={h:.3g}): "
                                       "Kramers needs U'' != 0 at every well and barrier on the path")
    for s in saddles:
        for m in (m for m in wells if m < s):
            hm, hs = curvature[m], curvature[s]
            du = float(V.energy(s)) - float(V.energy(m))
            terms.append(math.log(2.0 * math.pi) - 0.5 * math.log(hm * abs(hs)) + du / T)
            pairs.append((du, sign * m, sign * s))
    log_time = float(np.logaddexp.reduce(terms))
    _, well, saddle = max(pairs)
    used = sorted({m for _, m, _ in pairs}, key=lambda v: sign * v)  # in the order of the path
    return KramersPath(math.exp(log_time) if log_time < 709.0 else math.inf, log_time, tuple(used),
                       tuple(sign * s for s in saddles), (well, saddle))


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
