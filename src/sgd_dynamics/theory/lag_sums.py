"""Closed-form lag sums of a 2x2 linear recursion, stable in every damping regime.

Both the exact discrete recursion of SGD with momentum and the continuous model sampled every step
(``N = exp(-A eta)``) propagate each Hessian mode with a 2x2 matrix ``N``. The stationary velocity
autocovariance then obeys ``c(l+2) = tr(N) c(l+1) - det(N) c(l)``, so with the roots ``r1, r2`` of ``N``

    c(l) = u_l c(1) - det(N) u_{l-1} c(0),        u_l = (r1^l - r2^l) / (r1 - r2)   (Cayley–Hamilton),

and the squared displacement after ``t`` steps (002 eq. 19 with the time unit of ERRATA 002.2)

    E||Delta_t||^2 / eta^2 = t c(0) + 2 sum_{l=1}^{t-1} (t - l) c(l)
                           = t c(0) + 2 [c(1) psi_{t+1}[r1, r2] - det(N) c(0) psi_t[r1, r2]],

where ``psi_t(r) = sum_{l=1}^{t-1} (t - l) r^(l-1) = (t e - 1 + r^t) / e^2`` with ``e = 1 - r`` and
``f[r1, r2]`` is the divided difference. Evaluating this naively fails at critical damping (``r1 = r2``), for
modes with ``rho -> 0`` (a root tends to 1) and for large ``t`` (overflow). Here:

* ``u_t`` uses Chebyshev form ``u_t = sgn^(t-1) sqrt(det)^(t-1) sinh(t a) / sinh(a)`` (or ``sin``), evaluated
  in log space, exact at critical damping (``t``) and free of overflow;
* a root near 1 that is well separated from the other: ``psi_t`` per root through
  ``psi_t = t^2 (l/e)^2 phi2(t l) - t chi(e)``, ``l = log1p(-e)``, ``phi2(z) = (e^z - 1 - z)/z^2``,
  ``chi(e) = (-log1p(-e) - e)/e^2``, then an ordinary divided difference;
* otherwise the divided difference is expanded by the Leibniz rule into terms with no cancellation
  between the roots: ``psi_t[r1,r2] = t/(e1 e2) - (1 - r1^t)(e1 + e2)/(e1 e2)^2 + u_t/e2^2``;
* small ``t`` (<= ``DIRECT_SUM_MAX``, or while ``t |1 - r|`` is small when both roots are near 1) is summed
  directly, where the closed forms lose most digits.

Cost is O(modes) per time point whatever ``t`` is. Summed over modes (``summed=True``, what
``global_displacement`` needs) it is less: a mode whose transient has decayed below float64 resolution
contributes only its line ``slope t + intercept``, so it joins running sums of slopes and intercepts at
that time and costs nothing at later times; the direct sums and the transients are compiled loops
(numba) with partial sums over blocks of modes, so rounding grows with the block size, not the number of
modes. The memory is O(modes + times).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

# Below this many steps the lag sum is evaluated by direct summation: cheap, and the closed forms
# cancel most where t * (1 - |r|) is small.
DIRECT_SUM_MAX = 64
# A root within this fraction of the other root's distance to 1 is "near one" and well separated.
_NEAR_ONE_RATIO = 0.25
# Direct summation is never extended past this many steps (memory and time bound).
_DIRECT_SUM_CAP = 4096
# Grid of the high part of a phase angle: t * a_hi is exact in float64 for integer t < 2^32
_PHASE_GRID = 2.0**20
# Modes per block of direct summation
_DIRECT_BLOCK = 512
# Numbers per temporary (steps x modes) array of the near-one modes when summing over modes
_CHUNK_ELEMENTS = 1 << 19
# Modes per partial sum of the compiled summed kernel: rounding ~ (block + modes / block) eps, not modes eps
_SUM_BLOCK = 256


@dataclass(frozen=True)
class RootPair:
    """The two roots of a per-mode 2x2 transition matrix, in a numerically stable parametrisation.

    Roots are ``sgn * rho * exp(+-a)`` (real, ``overdamped``) or ``sgn * rho * exp(+-i a)`` (complex), with
    ``rho = sqrt(det)``, ``sgn = +-1`` and, for complex roots, ``0 <= a <= pi/2``. ``e1 = 1 - r1`` and
    ``e2 = 1 - r2`` are given directly (they are where cancellation would strike); ``r1`` is the root
    nearer to 1. With ``det = 0`` the roots are ``r1 = trace`` and ``0`` (``a`` unused).
    """

    det: NDArray[np.float64]
    sgn: NDArray[np.float64]
    a: NDArray[np.float64]
    overdamped: NDArray[np.bool_]
    e1: NDArray[np.complex128]
    e2: NDArray[np.complex128]

    @property
    def r1(self) -> NDArray[np.complex128]:
        return 1 - self.e1

    @property
    def r2(self) -> NDArray[np.complex128]:
        return 1 - self.e2


def divided_power(roots: RootPair, t: NDArray[np.float64]) -> NDArray[np.float64]:
    """``u_t = (r1^t - r2^t) / (r1 - r2)`` for integer ``t >= 0``, broadcast over modes and times.

    ``t`` broadcasts against the modes along the last axis (a column ``(n, 1)`` or a scalar).
    """
    t = np.asarray(t, dtype=np.float64)
    out = np.empty(np.broadcast_shapes(t.shape, roots.det.shape))
    tm1 = np.maximum(t - 1, 0.0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for sel, kind in _regimes(roots):
            det, sgn, a = roots.det[sel], roots.sgn[sel], roots.a[sel]
            if kind == "zero_det":
                # roots r1 = 1 - e1 and 0, so u_t = r1^(t-1) for t >= 1
                out[..., sel] = np.power(np.real(1 - roots.e1[sel]), tm1)
                continue
            log_rho = 0.5 * np.log(det)
            sign = np.where((sgn < 0) & (np.mod(tm1, 2) == 1), -1.0, 1.0)
            if kind == "over":
                # sinh(t a)/sinh(a) = t sinhc(t a) / sinhc(a), in log space: no overflow
                log_ratio = np.log(np.maximum(t, 1.0)) + _log_sinhc(t * a) - _log_sinhc(a)
                out[..., sel] = sign * np.exp(tm1 * log_rho + log_ratio)
            else:
                out[..., sel] = sign * np.exp(tm1 * log_rho) * _sin_ratio(t, a)
    return np.where(t == 0, 0.0, out)


def _regimes(roots: RootPair) -> list[tuple[NDArray[np.bool_], str]]:
    """Mode masks for ``det = 0``, real (overdamped) and complex roots, the empty ones dropped."""
    zero_det = roots.det == 0
    masks = [(zero_det, "zero_det"), (~zero_det & roots.overdamped, "over"),
             (~zero_det & ~roots.overdamped, "under")]
    return [(m, kind) for m, kind in masks if np.any(m)]


def displacement_lag_sum(roots: RootPair, c0: NDArray[np.float64], c1: NDArray[np.float64],
                         steps: NDArray[np.int64], c1_minus_r2_c0: NDArray[np.float64],
                         asymptote: tuple[NDArray[np.float64], NDArray[np.float64]] | None = None, *,
                         summed: bool = False) -> NDArray[np.float64]:
    """``t c0 + 2 sum_{l=1}^{t-1} (t - l) c(l)`` for each step count ``t`` (rows) and mode (columns).

    ``c0, c1`` are the stationary lag-0 and lag-1 velocity autocovariances per mode, and
    ``c1_minus_r2_c0 = c(1) - r2 c(0)`` computed stably by the caller: where a root is near 1 the sum is
    rewritten with the Leibniz rule ``psi_{t+1}[r1, r2] = r1 psi_t[r1, r2] + psi_t(r2)`` as
    ``t c0 + 2 [r1 (c1 - r2 c0) psi_t[r1, r2] + c1 psi_t(r2)]``, so the two ``O(t^2)`` terms of a free
    (``rho -> 0``) mode never cancel. Returns an array of shape ``(len(steps), modes)``, or with
    ``summed`` its sum over modes, shape ``(len(steps),)``, without forming the per-mode array.

    Elsewhere the sum is split into its large-``t`` line and a decaying transient,
    ``slope t + intercept + 2 [c1 T_{t+1} - det c0 T_t]`` with ``T_t = Re(r1^t) K + u_t Re(e2^-2)`` and
    ``K = (e1 + e2) / (e1 e2)^2`` (real arithmetic per damping regime, compiled), and the transient is
    dropped once it is below float64 resolution: summed, a mode then adds its line to every later time
    at O(1) cost (the lines of all decayed modes are summed once). ``asymptote = (slope, intercept)``
    per mode: the exact line if the caller knows it (a confined mode has slope 0), else computed from
    ``c0, c1`` and the roots.
    """
    steps = np.asarray(steps, dtype=np.int64)
    order = np.argsort(steps, kind="stable")
    if np.any(order != np.arange(steps.size)):    # the kernels walk the times in ascending order
        out = np.empty((steps.size,) if summed else (steps.size, c0.size))
        out[order] = displacement_lag_sum(roots, c0, c1, steps[order], c1_minus_r2_c0, asymptote,
                                          summed=summed)
        return out
    t = steps.astype(np.float64)[:, None]
    out = np.zeros(steps.size) if summed else np.empty((steps.size, c0.size))
    near = _near_one(roots)
    limit = _direct_sum_limit(roots)
    with np.errstate(all="ignore"):
        slope, intercept = _line(roots, c0, c1) if asymptote is None else asymptote
        for cols in _column_chunks(np.flatnonzero(near), steps.size if summed else 0):
            sub = _subset(roots, cols)
            r1, e2 = np.real(sub.r1), np.real(sub.e2)
            psi_t = _divided_psi(sub, t)
            value = t * c0[cols] + 2 * (r1 * c1_minus_r2_c0[cols] * psi_t + c1[cols] * _psi_real_root(t, e2))
            line = slope[cols] * t + intercept[cols]
            value = np.where(_decayed(sub, c0[cols], c1[cols], line, t), line, value)
            if summed:      # the direct sums below replace t <= limit
                out += np.where(steps[:, None] <= limit[cols], 0.0, value).sum(axis=1)
            else:
                out[:, cols] = value
        far = np.flatnonzero(~near)
        if far.size:
            params = _transient_parameters(_subset(roots, far), c0[far], c1[far], slope[far], intercept[far])
            if summed:
                _summed_transient_kernel()(*params, limit[far], t[:, 0], _SUM_BLOCK, out)
            else:
                block = out if far.size == c0.size else np.empty((steps.size, far.size))
                _transient_kernel()(*params, limit[far], t[:, 0], block)
                if block is not out:
                    out[:, far] = block
    _fill_direct_sums(out, roots, c0, c1, steps, limit)
    return out


def _column_chunks(cols: NDArray[np.int64], rows: int) -> list[NDArray[np.int64]]:
    """``cols`` in pieces of at most ``_CHUNK_ELEMENTS / rows`` (all at once when ``rows`` is 0)."""
    if cols.size == 0:
        return []
    size = cols.size if rows == 0 else max(1, _CHUNK_ELEMENTS // rows)
    return [cols[i:i + size] for i in range(0, cols.size, size)]


def _fill_direct_sums(out: NDArray[np.float64], roots: RootPair, c0: NDArray[np.float64],
                      c1: NDArray[np.float64], steps: NDArray[np.int64], limit: NDArray[np.int64]) -> None:
    """Overwrite ``out`` by direct summation where ``t <= limit``, in blocks of modes of similar limit.

    A 1-D ``out`` is the sum over modes: the direct sums are added to it, by a compiled loop over lags.
    """
    if out.ndim == 1:
        zeros = np.zeros_like(c0)
        with np.errstate(all="ignore"):     # k, w of a free mode are infinite; the direct sum needs neither
            params = _transient_parameters(roots, c0, c1, zeros, zeros)
        kind, sgn, log_rho, a, a_hi, sin_a, r1 = params[:6] + (params[7],)
        direct = _compiled()[2]
        direct(kind, sgn, log_rho, a, a_hi, sin_a, r1, roots.det, c0, c1, limit, steps, _SUM_BLOCK, out)
        return
    need = steps[:, None] <= limit[None, :]
    cols = np.flatnonzero(need.any(axis=0))
    cols = cols[np.argsort(limit[cols], kind="stable")]  # a block sums only as far as its own modes need
    for start in range(0, cols.size, _DIRECT_BLOCK):
        block = cols[start:start + _DIRECT_BLOCK]
        rows = np.flatnonzero(need[:, block].any(axis=1))
        direct = _direct_lag_sum(_subset(roots, block), c0[block], c1[block], steps[rows])
        cells = np.ix_(rows, block)
        out[cells] = np.where(need[cells], direct, out[cells])


def _line(roots: RootPair, c0: NDArray[np.float64], c1: NDArray[np.float64]
          ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Large-``t`` line of the lag sum: ``t (c0 + 2 (c1 - det c0) / p) + 2 c1 / p - 2 (c1 - det c0) K``."""
    p = np.real(roots.e1 * roots.e2)
    k = np.real(roots.e1 + roots.e2) / p**2
    c1_minus = c1 - roots.det * c0
    return c0 + 2 * c1_minus / p, 2 * c1 / p - 2 * c1_minus * k


def _transient_parameters(roots: RootPair, c0: NDArray[np.float64], c1: NDArray[np.float64],
                          slope: NDArray[np.float64], intercept: NDArray[np.float64]) -> tuple:
    """Real per-mode inputs of :func:`_transient_kernel` (regime codes: 0 ``det = 0``, 1 real, 2 complex)."""
    e1, e2 = roots.e1, roots.e2
    p = np.real(e1 * e2)
    k = np.real(e1 + e2) / p**2
    w = np.real(1 / e2**2)
    kind = np.where(roots.det == 0, 0, np.where(roots.overdamped, 1, 2)).astype(np.int64)
    log_rho = np.where(kind == 0, 0.0, 0.5 * np.log(np.where(kind == 0, 1.0, roots.det)))
    a = np.where(kind == 2, roots.a, np.where(kind == 1, roots.a, 0.0))
    a_hi = np.round(a * _PHASE_GRID) / _PHASE_GRID
    r1, r2 = np.real(roots.r1), np.real(roots.r2)
    log_modulus = np.where(kind == 0, np.log(np.abs(r1)), np.where(kind == 1, log_rho + a, log_rho))
    modulus = np.exp(log_modulus)
    amp = 2 * (np.abs(c1) * modulus + roots.det * c0)
    u_cap = 2 / np.abs(e2 - e1)
    return (kind, roots.sgn, log_rho, a, a_hi, np.sin(a), np.cos(a), r1, r2, k, w, c1, roots.det * c0,
            slope, intercept, log_modulus, amp, u_cap)


def _decayed(roots: RootPair, c0: NDArray[np.float64], c1: NDArray[np.float64], line: NDArray[np.float64],
             t: NDArray[np.float64]) -> NDArray[np.bool_]:
    """Where the transient is below float64 resolution of the line (the kernel's test, vectorised)."""
    zeros = np.zeros_like(c0)
    params = _transient_parameters(roots, c0, c1, zeros, zeros)
    k, w, log_modulus, amp, u_cap = params[9], params[10], params[15], params[16], params[17]
    bound = amp * np.exp(t * log_modulus) * (np.abs(k) + np.abs(w) * np.minimum((t + 1) / np.exp(log_modulus),
                                                                                 u_cap))
    return (bound <= 2.0**-54 * np.abs(line)) & (-t * log_modulus >= 1)


def _compiled():
    """The compiled pieces of :func:`displacement_lag_sum` (numba imported on first use)."""
    from sgd_dynamics.theory import _lag_sum_kernels as kernels

    return kernels.kernel, kernels.summed_kernel, kernels.summed_direct


def _transient_kernel():
    """The compiled loop over (mode, time) of :func:`displacement_lag_sum`, per mode."""
    return _compiled()[0]


def _summed_transient_kernel():
    """The compiled loop over (mode, time) of :func:`displacement_lag_sum`, summed over modes."""
    return _compiled()[1]


def _near_one(roots: RootPair) -> NDArray[np.bool_]:
    """Real roots with ``r1`` much nearer to 1 than ``r2``."""
    return roots.overdamped & (np.abs(roots.e1) <= _NEAR_ONE_RATIO * np.abs(roots.e2))


def _psi_real_root(t: NDArray[np.float64], e: NDArray[np.float64]) -> NDArray[np.float64]:
    """``psi_t(1 - e)`` for a real root: the stable form while ``0 <= e < 1``, else direct."""
    inside = e < 1
    e_in = np.where(inside, e, 0.5)
    return np.where(inside, _psi_near_one(t, e_in), t / e - _one_minus_power(1 - e, t) / e**2)


def _direct_sum_limit(roots: RootPair) -> NDArray[np.int64]:
    """Per mode, the largest ``t`` summed directly.

    The Leibniz form loses about ``eps / (t |e|)^2 / |e|`` where both roots are near 1 (``beta -> 1``), so
    such modes are summed directly until ``t |e|`` is large, within a cap that bounds the cost.
    """
    near_one = _near_one(roots)
    # near one: the divided difference of two values ~ t^2/2 loses ~ eps / (t e2); otherwise both |e| matter
    e = np.where(near_one, np.abs(roots.e2), np.minimum(np.abs(roots.e1), np.abs(roots.e2)))
    limit = np.ceil(8 / np.maximum(e, 8 / _DIRECT_SUM_CAP))
    return np.clip(limit, DIRECT_SUM_MAX, _DIRECT_SUM_CAP).astype(np.int64)


def _direct_lag_sum(roots: RootPair, c0: NDArray[np.float64], c1: NDArray[np.float64],
                    steps: NDArray[np.int64]) -> NDArray[np.float64]:
    lmax = int(steps.max())
    u = divided_power(roots, np.arange(0, max(lmax, 2), dtype=np.float64)[:, None])  # u_0 .. u_{lmax-1}
    c = u[1:] * c1 - roots.det * u[:-1] * c0
    c = c[: max(lmax - 1, 0)]
    # A(t) = sum_{l<t} c(l), B(t) = sum_{l<t} l c(l)  (l >= 1)
    zero = np.zeros((1, c0.size))
    cum = np.concatenate([zero, np.cumsum(c, axis=0)])
    cum_l = np.concatenate([zero, np.cumsum(c * np.arange(1, c.shape[0] + 1)[:, None], axis=0)])
    idx = steps - 1
    t = steps.astype(np.float64)[:, None]
    return t * c0 + 2 * (t * cum[idx] - cum_l[idx])


def _divided_psi(roots: RootPair, t: NDArray[np.float64]) -> NDArray[np.float64]:
    """``psi_t[r1, r2]`` with ``psi_t(r) = (t e - 1 + r^t) / e^2``, ``e = 1 - r``."""
    e1, e2 = roots.e1, roots.e2
    near_one = _near_one(roots)
    result = np.empty(np.broadcast_shapes(t.shape, e1.shape), dtype=np.float64)
    if np.any(near_one):
        sel = near_one
        e1r, e2r = np.real(e1[sel]), np.real(e2[sel])
        psi1 = _psi_near_one(t, e1r)
        # the far root may be near 1 too (beta -> 1)
        psi2 = _psi_real_root(t, e2r)
        result[..., sel] = (psi1 - psi2) / (e2r - e1r)
    if np.any(~near_one):
        sel = ~near_one
        a1, a2 = e1[sel], e2[sel]
        p = a1 * a2
        one_minus_r1t = _one_minus_root_power(roots, sel, t)
        u_t = divided_power(_subset(roots, sel), t)
        value = t / p - one_minus_r1t * (a1 + a2) / p**2 + u_t / a2**2
        result[..., sel] = np.real(value)
    return result


def _psi_near_one(t: NDArray[np.float64], e: NDArray[np.float64]) -> NDArray[np.float64]:
    """``psi_t(1 - e)`` for ``0 <= e < 1`` without cancellation (``t (t - 1) / 2`` at ``e = 0``)."""
    ell_over_e = np.where(e == 0, -1.0, np.log1p(-e) / np.where(e == 0, 1.0, e))
    z = t * ell_over_e * e
    return t**2 * ell_over_e**2 * _phi2(z) - t * _chi(e)


def _phi2(z: NDArray[np.float64]) -> NDArray[np.float64]:
    """``(e^z - 1 - z) / z^2`` for real ``z <= 0``; Taylor series near 0."""
    z = np.asarray(z, dtype=np.float64)
    small = np.abs(z) < 1e-2
    zs = np.where(small, z, 0.0)
    series = 0.5 + zs / 6 + zs**2 / 24 + zs**3 / 120 + zs**4 / 720 + zs**5 / 5040
    zb = np.where(small, 1.0, z)
    return np.where(small, series, (np.expm1(zb) - zb) / zb**2)


def _chi(e: NDArray[np.float64]) -> NDArray[np.float64]:
    """``(-log1p(-e) - e) / e^2 = 1/2 + e/3 + e^2/4 + ...`` for ``0 <= e < 1``."""
    small = e < 1e-2
    es = np.where(small, e, 0.0)
    series = sum(es**k / (k + 2) for k in range(8))
    eb = np.where(small, 0.5, e)
    return np.where(small, series, (-np.log1p(-eb) - eb) / eb**2)


def _one_minus_power(r: NDArray[np.float64], t: NDArray[np.float64]) -> NDArray[np.float64]:
    """``1 - r^t`` for real ``r`` and integer ``t`` (``r`` may be negative)."""
    return 1 - np.power(r, t)


def _one_minus_root_power(roots: RootPair, sel: NDArray[np.bool_],
                          t: NDArray[np.float64]) -> NDArray[np.complex128]:
    """``1 - r1^t`` for the selected modes, from the stable parametrisation of ``r1``."""
    sub = _subset(roots, sel)
    out = np.empty(np.broadcast_shapes(t.shape, sub.det.shape), dtype=np.complex128)
    odd = np.mod(t, 2) == 1
    for mask, kind in _regimes(sub):
        if kind == "zero_det":
            out[..., mask] = 1 - np.power(np.real(1 - sub.e1[mask]), t)
            continue
        log_rho = 0.5 * np.log(sub.det[mask])
        sign = np.where((sub.sgn[mask] < 0) & odd, -1.0, 1.0)
        a = sub.a[mask]
        if kind == "over":
            out[..., mask] = 1 - sign * np.exp(t * (log_rho + a))
        else:
            modulus = sign * np.exp(t * log_rho)
            sin_ta, cos_ta = sin_cos_of_multiple(t, a)
            out[..., mask] = (1 - modulus * cos_ta) - 1j * modulus * sin_ta
    return out


def _subset(roots: RootPair, sel: NDArray[np.bool_]) -> RootPair:
    return RootPair(det=roots.det[sel], sgn=roots.sgn[sel], a=roots.a[sel], overdamped=roots.overdamped[sel],
                    e1=roots.e1[sel], e2=roots.e2[sel])


def _log_sinhc(x: NDArray[np.float64]) -> NDArray[np.float64]:
    """``log(sinh(x) / x)`` for ``x >= 0``, exact at 0 and free of overflow for large ``x``."""
    x = np.asarray(x, dtype=np.float64)
    small = x < 1e-4
    xb = np.where(small, 1.0, x)
    large = xb - np.log(2 * xb) + np.log(-np.expm1(-2 * xb))
    xs = np.where(small, x, 0.0)
    return np.where(small, xs**2 / 6, large)


def _sin_ratio(t: NDArray[np.float64], a: NDArray[np.float64]) -> NDArray[np.float64]:
    """``sin(t a) / sin(a)``, ``t`` at ``a = 0``."""
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = sin_cos_of_multiple(t, a)[0] / np.sin(a)
    return np.where(a == 0, t, ratio)


def sin_cos_of_multiple(t: NDArray[np.float64], a: NDArray[np.float64]
                        ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """``sin(t a)`` and ``cos(t a)`` for integer ``t`` without the rounding of the product ``t a``.

    ``a = a_hi + a_lo`` with ``a_hi`` on a grid of ``2^-20`` (``|a| <= pi``), so ``t a_hi`` is exact for
    ``t < 2^32`` and only the small ``t a_lo`` rounds. The plain product's error, ``ulp(t a)``, differs from
    term to term, so sums over ``j <= t`` of such terms gathered ``~ t^1.5 eps`` instead of ``~ eps``.
    """
    a_hi = np.round(a * _PHASE_GRID) / _PHASE_GRID
    x, y = t * a_hi, t * (a - a_hi)
    sx, cx, sy, cy = np.sin(x), np.cos(x), np.sin(y), np.cos(y)
    return sx * cy + cx * sy, cx * cy - sx * sy


def complex_expm1(z: NDArray[np.complex128]) -> NDArray[np.complex128]:
    """``exp(z) - 1`` for complex ``z`` with full relative accuracy near 0."""
    x, y = np.real(z), np.imag(z)
    real = np.expm1(x) * np.cos(y) - 2 * np.sin(y / 2) ** 2
    return real + 1j * np.exp(x) * np.sin(y)
