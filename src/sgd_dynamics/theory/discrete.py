"""Exact discrete-time theory of SGD with momentum on a quadratic loss (beyond the SDE; ERRATA 002.5).

Per Hessian eigenmode with curvature ``h = rho + lambda``, per-example noise variance ``s`` and batch ``S``,
the PyTorch recursion with ``x = theta - mu`` and ``v = -b`` is linear::

    v_{k+1} = beta v_k - h x_k - xi_k,        x_{k+1} = x_k + eta v_{k+1},        xi_k ~ N(0, s / S)

i.e. ``z_{k+1} = M z_k + n_k`` with ``z = (x, v)``, ``M = [[1 - eta h, eta beta], [-h, beta]]`` and noise
covariance ``W = (s/S) [[eta^2, eta], [eta, 1]]``. The characteristic polynomial is
``r^2 - (1 + beta - eta h) r + beta``: complex roots iff ``(1 - sqrt(beta))^2 < eta h < (1 + sqrt(beta))^2``,
stable iff ``0 <= eta h < 2 (1 + beta)`` (ERRATA 003.3, with ``h = 0`` marginal: the position diffuses).

The stationary solution of ``P = M P M^T + W`` in closed form (ERRATA 003.4 with ``s^2 -> s/S``), with
``q = (s/S) / ((1 - beta)(2(1 + beta) - eta h))``::

    Var v = 2 q,        Cov(x, v) = eta q,        Var x = eta (1 + beta) q / h.

So the exact stationary speed is ``E||theta_{k+1} - theta_k||^2 = eta^2 sum_i 2 q_i``, which tends to
002 eq. 18 (``eta^2 tr(Sigma) / (S (1 - beta^2))``, ERRATA 002.3) as ``eta h -> 0``. Exact equipartition also
holds: ``E[h x^2 / 2] = E[m v^2 / 2]`` per mode with ``m = eta (1 + beta) / 2`` (002 G.3 in discrete time).

Displacement from a given start (resumed training: ``x_0`` random, the buffer ``b_0`` random or zero, both
independent of the later noise). With ``u_k = (r1^k - r2^k) / (r1 - r2)`` (Cayley–Hamilton,
``M^k = u_k M - beta u_{k-1} I``), the response of ``x_k`` to a kick of ``v`` at step ``j`` is
``eta u_{k-j+1}``, and ``1 - E[x_k | x_0, v_0 = 0] / x_0 = eta h sum_{j=1}^k u_j =: A_k``, so::

    x_k - x_0 = -A_k x_0 + eta beta u_k v_0 - eta sum_{j=1}^k u_{k-j+1} xi_j,
    E(x_k - x_0)^2 = A_k^2 Var x_0 - 2 eta beta A_k u_k Cov(x_0, v_0) + eta^2 beta^2 u_k^2 Var v_0
                     + eta^2 (s/S) sum_{j=1}^k u_j^2.

The first three terms are the drift ``a_k^T C_0 a_k = E(E[x_k | z_0] - x_0)^2`` with
``a_k = (-A_k, eta beta u_k)`` (``[(M^k - I) C_0 (M^k - I)^T]_xx``), the last the diffusion
``Var(x_k | z_0) = [P_k]_xx``, ``P_k = sum_{j<k} M^j W M^{jT}``. Because the diffusion does not depend on the
start, the same expression with the stationary covariance ``P`` is the stationary displacement, which gives a
form for large ``k``: ``[P_k]_xx = E_stat(x_{k+t} - x_t)^2 - a_k^T P a_k`` (or ``P_xx - [M^k P M^kT]_xx`` once
``M^k`` has relaxed).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from sgd_dynamics.hyper import Hyperparams
from sgd_dynamics.theory.lag_sums import RootPair, displacement_lag_sum, divided_power
from sgd_dynamics.theory.moments import StationaryMoments

# Direct summation range of the displacement from a start: at least this many steps, at most the cap
# (memory: cap x block floats), in blocks of this many modes.
_START_DIRECT_MIN = 64
_START_DIRECT_CAP = 4096
_START_BLOCK = 256


def transition_matrix(eigenvalues: NDArray[np.float64], hyper: Hyperparams) -> NDArray[np.float64]:
    """Per-mode transition matrices ``M`` of shape ``(modes, 2, 2)`` acting on ``(x, v)``."""
    h = hyper.curvature(eigenvalues)
    eta, beta = hyper.lr, hyper.momentum
    m = np.empty(h.shape + (2, 2))
    m[..., 0, 0] = 1 - eta * h
    m[..., 0, 1] = eta * beta
    m[..., 1, 0] = -h
    m[..., 1, 1] = beta
    return m


def noise_matrix(noise_variances: NDArray[np.float64], hyper: Hyperparams) -> NDArray[np.float64]:
    """Per-mode covariance ``W`` of the noise injected in one step, shape ``(modes, 2, 2)``."""
    s = np.asarray(noise_variances, dtype=np.float64) / hyper.batch_size
    eta = hyper.lr
    w = np.empty(s.shape + (2, 2))
    w[..., 0, 0] = eta**2 * s
    w[..., 0, 1] = w[..., 1, 0] = eta * s
    w[..., 1, 1] = s
    return w


def discrete_stationary_moments(eigenvalues: NDArray[np.float64], noise_variances: NDArray[np.float64],
                       hyper: Hyperparams) -> StationaryMoments:
    """Exact stationary second moments per mode (``Var x = inf`` for ``h = 0``)."""
    h = hyper.curvature(eigenvalues)
    eta, beta = hyper.lr, hyper.momentum
    q = _q(h, noise_variances, hyper)
    with np.errstate(divide="ignore", over="ignore"):  # Var x beyond float range is inf, as for h = 0
        var_x = np.where(h > 0, eta * (1 + beta) * q / np.where(h > 0, h, 1.0), np.inf)
    return StationaryMoments(position_variance=var_x, cross_covariance=eta * q, velocity_variance=2 * q)


def discrete_displacement_per_mode(eigenvalues: NDArray[np.float64], noise_variances: NDArray[np.float64],
                                 hyper: Hyperparams, steps: NDArray[np.int64], *, summed: bool = False
                                 ) -> NDArray[np.float64]:
    """Exact ``E(x_{k+t} - x_k)^2`` per mode from a stationary ``z_k``; shape ``(len(steps), modes)``.

    ``summed``: the sum over modes, shape ``(len(steps),)``, at O(1) per (mode, step) once decayed.

    Equals ``eta^2 sum_{i,j=1}^t E[v_i v_j]``, evaluated in closed form (see :mod:`lag_sums`).
    """
    h = hyper.curvature(eigenvalues)
    beta = hyper.momentum
    q = _q(h, noise_variances, hyper)
    c0 = 2 * q
    c1 = q * (2 * beta - hyper.lr * h)  # -h Cov(x, v) + beta Var v
    eh = hyper.lr * h
    abs_delta = np.sqrt(np.abs(((1 - np.sqrt(beta)) ** 2 - eh) * ((1 + np.sqrt(beta)) ** 2 - eh))) / 2
    # c1 - r2 c0 for real roots, with 2|delta| - (1 - beta) rewritten without cancellation
    c1_minus_r2_c0 = -q * eh * (2 * (1 + beta) - eh) / (2 * abs_delta + 1 - beta)
    # the exact large-t line: a confined mode saturates at 2 Var x / eta^2 = 2 (1 + beta) q / (eta h);
    # a free mode (h = 0) has the AR(1) line c0 [t (1 + beta) - 2 beta / (1 - beta)] / (1 - beta)
    with np.errstate(divide="ignore", over="ignore"):
        slope = np.where(h > 0, 0.0, c0 * (1 + beta) / (1 - beta))
        intercept = np.where(h > 0, 2 * (1 + beta) * q / np.where(h > 0, eh, 1.0),
                             -2 * beta * c0 / (1 - beta) ** 2)
    roots = discrete_root_pair(eigenvalues, hyper)
    return hyper.lr**2 * displacement_lag_sum(roots, c0, c1, steps, c1_minus_r2_c0, (slope, intercept),
                                             summed=summed)


def displacement_from_start_per_mode(eigenvalues: NDArray[np.float64], noise_variances: NDArray[np.float64],
                                    hyper: Hyperparams, steps: NDArray[np.int64],
                                    x0_var: NDArray[np.float64] | float,
                                    b0_var: NDArray[np.float64] | float = 0.0,
                                    x0_b0_cov: NDArray[np.float64] | float = 0.0) -> NDArray[np.float64]:
    """Exact ``E(x_k - x_0)^2`` per mode from a random start; shape ``(len(steps), modes)``.

    ``x_0`` and the PyTorch momentum buffer ``b_0 = -v_0`` have zero mean, variances ``x0_var``, ``b0_var``
    and covariance ``x0_b0_cov`` (per mode or scalars), and are independent of the minibatch noise. ``k = 0``
    gives 0. Where ``h = 0`` the start position does not enter (``x0_var = inf`` is allowed there). The sum
    of the two parts of :func:`displacement_parts_from_start_per_mode`.
    """
    drift, diffusion = displacement_parts_from_start_per_mode(eigenvalues, noise_variances, hyper, steps,
                                                              x0_var, b0_var, x0_b0_cov)
    return drift + diffusion


def displacement_parts_from_start_per_mode(eigenvalues: NDArray[np.float64],
                                           noise_variances: NDArray[np.float64], hyper: Hyperparams,
                                           steps: NDArray[np.int64], x0_var: NDArray[np.float64] | float,
                                           b0_var: NDArray[np.float64] | float = 0.0,
                                           x0_b0_cov: NDArray[np.float64] | float = 0.0
                                           ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """``E(x_k - x_0)^2`` per mode split into drift ``a_k^T C_0 a_k`` and diffusion ``[P_k]_xx``.

    Drift: ``E_{z_0} (E[x_k | z_0] - x_0)^2``, the relaxation of the start's spread ``C_0`` (from
    ``x0_var``, ``b0_var``, ``x0_b0_cov`` as in :func:`displacement_from_start_per_mode`). Diffusion:
    ``Var(x_k | z_0) = [sum_{j<k} M^j W M^{jT}]_xx = eta^2 (s/S) sum_{j=1}^k u_j^2``, the same for every
    start.
    Shapes ``(len(steps), modes)``.

    Small ``k`` (until the slowest root has decayed by ``e^-8``, within ``[64, 4096]`` steps) sums ``u_j`` and
    ``u_j^2`` directly; beyond, the diffusion is the stationary displacement less ``a_k^T P a_k`` (see the
    module docstring), whose terms no longer cancel much.
    """
    h = hyper.curvature(eigenvalues)
    eta, beta = hyper.lr, hyper.momentum
    s = np.asarray(noise_variances, dtype=np.float64)
    steps = np.asarray(steps, dtype=np.int64)
    vx0, vv0, cov_xv0 = (np.broadcast_to(np.asarray(a, dtype=np.float64), h.shape)
                         for a in (x0_var, b0_var, -np.asarray(x0_b0_cov, dtype=np.float64)))
    roots = discrete_root_pair(eigenvalues, hyper)
    limit = _start_direct_limit(roots)
    drift = np.empty((steps.size, h.size))
    diffusion = np.empty((steps.size, h.size))
    direct = steps[:, None] <= limit[None, :]
    with np.errstate(all="ignore"):
        for cols in _column_blocks(direct.any(axis=0)):
            rows = np.flatnonzero(direct[:, cols].any(axis=1))
            sub = _subset_roots(roots, cols)
            lmax = max(int(steps[rows].max()), 1)
            u = divided_power(sub, np.arange(1, lmax + 1, dtype=np.float64)[:, None])
            k = steps[rows]
            zero = np.zeros((1, cols.size))
            u_k = np.concatenate([zero, u])[k]
            relaxed = eta * h[cols] * np.concatenate([zero, np.cumsum(u, axis=0)])[k]
            noise = eta**2 * s[cols] / hyper.batch_size * np.concatenate([zero, np.cumsum(u**2, axis=0)])[k]
            start = _start_terms(relaxed, u_k, eta, beta, vx0[cols], cov_xv0[cols], vv0[cols])
            _put(drift, rows, cols, direct, start, True)
            _put(diffusion, rows, cols, direct, noise, True)
        far_cols = np.flatnonzero((~direct).any(axis=0))
        if far_cols.size:
            rows = np.flatnonzero((~direct[:, far_cols]).any(axis=1))
            k = steps[rows]
            sub = _subset_roots(roots, far_cols)
            rho = np.asarray(eigenvalues, dtype=np.float64)[far_cols]
            stat = discrete_stationary_moments(rho, s[far_cols], hyper)
            t = k.astype(np.float64)[:, None]
            u_k = divided_power(sub, t)
            relaxed = _relaxed_fraction(sub, t)
            start = _start_terms(relaxed, u_k, eta, beta, vx0[far_cols], cov_xv0[far_cols], vv0[far_cols])
            noise = _far_diffusion(rho, s[far_cols], hyper, k, stat, relaxed, u_k)
            _put(drift, rows, far_cols, direct, start, False)
            _put(diffusion, rows, far_cols, direct, noise, False)
    return drift, diffusion


def _far_diffusion(rho: NDArray[np.float64], s: NDArray[np.float64], hyper: Hyperparams,
                   k: NDArray[np.int64], stat: StationaryMoments, relaxed: NDArray[np.float64],
                   u_k: NDArray[np.float64]) -> NDArray[np.float64]:
    """``[P_k]_xx`` past the direct range, from ``P_xx - [M^k P M^kT]_xx`` or the stationary displacement.

    ``P_xx - [M^k P M^kT]_xx`` once ``M^k`` has relaxed, else ``E_stat(x_{k+t} - x_t)^2 - a_k^T P a_k``.
    The first subtracts at most half of ``P_xx``; the second is needed where ``P_xx`` is huge and ``M^k`` is
    still near the identity (slow modes), and it carries the lag sum's ``O(k eps)`` cancellation otherwise.
    """
    eta, beta = hyper.lr, hyper.momentum
    # e_x^T M^k = (1 - A_k, eta beta u_k); A_k from the form that is stable for a root near 1
    row = (1 - relaxed, eta * beta * u_k)
    kept = (row[0] ** 2 * stat.position_variance + 2 * row[0] * row[1] * stat.cross_covariance
            + row[1] ** 2 * stat.velocity_variance)
    relaxed_enough = np.isfinite(stat.position_variance) & (kept <= 0.5 * stat.position_variance)
    if np.all(relaxed_enough):
        return stat.position_variance - kept
    through_lag_sum = discrete_displacement_per_mode(rho, s, hyper, k) - _start_terms(
        relaxed, u_k, eta, beta, stat.position_variance, stat.cross_covariance, stat.velocity_variance)
    return np.where(relaxed_enough, stat.position_variance - kept, through_lag_sum)


def _put(out: NDArray[np.float64], rows: NDArray[np.int64], cols: NDArray[np.int64],
         direct: NDArray[np.bool_], value: NDArray[np.float64], where_direct: bool) -> NDArray[np.float64]:
    """Write ``value`` into ``out[rows, cols]`` where ``direct`` equals ``where_direct``."""
    block = np.ix_(rows, cols)
    mask = direct[block] if where_direct else ~direct[block]
    out[block] = np.where(mask, value, out[block])
    return out


def _start_terms(relaxed: NDArray[np.float64], u_k: NDArray[np.float64], eta: float, beta: float,
                 var_x: NDArray[np.float64], cov_xv: NDArray[np.float64],
                 var_v: NDArray[np.float64]) -> NDArray[np.float64]:
    """``a_k^T C a_k`` with ``a_k = (-A_k, eta beta u_k)``; the ``x`` term is 0 where ``A_k = 0``."""
    a2 = relaxed**2
    x_term = np.where(a2 > 0, a2 * var_x, 0.0)  # h = 0: Var x may be inf, but x_0 does not enter
    v_coef = eta * beta * u_k
    return x_term - 2 * relaxed * v_coef * cov_xv + v_coef**2 * var_v


def _relaxed_fraction(roots: RootPair, t: NDArray[np.float64]) -> NDArray[np.float64]:
    """``A_t = eta h sum_{j=1}^t u_j = 1 - (u_{t+1} - beta u_t)`` for ``t`` past the direct-summation range.

    With a real root near 1 and the other well separated (``rho -> 0``), the stable form
    ``[e2 (1 - r1^(t+1)) - e1 (1 - r2^(t+1))] / (e2 - e1)`` avoids ``1 - (1 - O(eta h))``; elsewhere
    ``u_{t+1} - beta u_t`` has decayed far below 1 (or ``eta h`` is not small) and the plain form is exact.
    """
    out = 1 - (divided_power(roots, t + 1) - roots.det * divided_power(roots, t))
    near = roots.overdamped & (np.abs(roots.e1) <= 0.25 * np.abs(roots.e2))
    if np.any(near):
        e1, e2 = np.real(roots.e1[near]), np.real(roots.e2[near])

        def one_minus_power(e: NDArray[np.float64]) -> NDArray[np.float64]:
            return np.where(e < 1, -np.expm1((t + 1) * np.log1p(-np.minimum(e, 1.0))),
                            1 - np.power(1 - e, t + 1))

        out[..., near] = (e2 * one_minus_power(e1) - e1 * one_minus_power(e2)) / (e2 - e1)
    return out


def _start_direct_limit(roots: RootPair) -> NDArray[np.int64]:
    """Per mode, the largest ``k`` summed directly: until the slowest root's modulus^k is ``e^-8``."""
    e1, e2 = np.real(roots.e1), np.real(roots.e2)
    # 1 - |r| for a real root r = 1 - e: e when r >= 0, 2 - e when r < 0; complex: 1 - sqrt(det)
    real_gap = np.minimum(np.where(e1 <= 1, e1, 2 - e1), np.where(e2 <= 1, e2, 2 - e2))
    complex_gap = (1 - roots.det) / (1 + np.sqrt(roots.det))
    gap = np.where(roots.overdamped, real_gap, complex_gap)
    limit = np.ceil(8 / np.maximum(gap, 8 / _START_DIRECT_CAP))
    return np.clip(limit, _START_DIRECT_MIN, _START_DIRECT_CAP).astype(np.int64)


def _column_blocks(mask: NDArray[np.bool_]) -> list[NDArray[np.int64]]:
    cols = np.flatnonzero(mask)
    return [cols[i:i + _START_BLOCK] for i in range(0, cols.size, _START_BLOCK)]


def _subset_roots(roots: RootPair, cols: NDArray[np.int64]) -> RootPair:
    return RootPair(det=roots.det[cols], sgn=roots.sgn[cols], a=roots.a[cols],
                    overdamped=roots.overdamped[cols], e1=roots.e1[cols], e2=roots.e2[cols])


def discrete_mean_trajectory(eigenvalues: NDArray[np.float64], hyper: Hyperparams, steps: NDArray[np.int64],
                    position0: NDArray[np.float64], velocity0: NDArray[np.float64]
                    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Exact ``E[x_k], E[v_k]`` from ``(x_0, v_0)``: ``z_k = M^k z_0 = u_k M z_0 - beta u_{k-1} z_0``."""
    h = hyper.curvature(eigenvalues)
    eta, beta = hyper.lr, hyper.momentum
    k = np.asarray(steps, dtype=np.float64)[:, None]
    roots = discrete_root_pair(eigenvalues, hyper)
    u_k = divided_power(roots, k)
    u_km1 = divided_power(roots, np.maximum(k - 1, 0))
    x0, v0 = np.broadcast_arrays(np.asarray(position0, float), np.asarray(velocity0, float))
    mx = (1 - eta * h) * x0 + eta * beta * v0
    mv = -h * x0 + beta * v0
    x = u_k * mx - beta * u_km1 * x0
    v = u_k * mv - beta * u_km1 * v0
    at_zero = k == 0
    return np.where(at_zero, x0, x), np.where(at_zero, v0, v)


def discrete_covariance_over_time(eigenvalues: NDArray[np.float64], noise_variances: NDArray[np.float64],
                         hyper: Hyperparams, steps: NDArray[np.int64]) -> NDArray[np.float64]:
    """Exact ``Cov(z_k)`` from a deterministic start, shape ``(len(steps), modes, 2, 2)``.

    ``P_k = sum_{j<k} M^j W M^{jT}`` by binary doubling (``P_{2n} = P_n + M^n P_n M^{nT}``): exact for
    every mode, ``h = 0`` included, in ``O(log k)`` 2x2 products.
    """
    m = transition_matrix(eigenvalues, hyper)
    w = noise_matrix(noise_variances, hyper)
    steps = np.asarray(steps, dtype=np.int64)
    out = np.empty((steps.size,) + w.shape)
    for i, k in enumerate(steps):
        out[i] = _doubling_sum(m, w, int(k))
    return out


def _doubling_sum(m: NDArray[np.float64], w: NDArray[np.float64], k: int) -> NDArray[np.float64]:
    # Accumulate (M^k, P_k) from the binary digits of k, most significant first.
    power = np.broadcast_to(np.eye(2), m.shape).copy()
    acc = np.zeros_like(w)
    for bit in bin(k)[2:] if k > 0 else "":
        acc = acc + power @ acc @ np.swapaxes(power, -1, -2)
        power = power @ power
        if bit == "1":
            acc = m @ acc @ np.swapaxes(m, -1, -2) + w
            power = m @ power
    return acc


def discrete_root_pair(eigenvalues: NDArray[np.float64], hyper: Hyperparams) -> RootPair:
    """Stable roots of ``r^2 - (1 + beta - eta h) r + beta`` (see :class:`lag_sums.RootPair`)."""
    h = hyper.curvature(eigenvalues)
    eta, beta = hyper.lr, hyper.momentum
    eh = eta * h
    m = (1 + beta - eh) / 2
    sb = np.sqrt(beta)
    # discriminant m^2 - beta in factored form: no cancellation near critical damping
    disc = ((1 - sb) ** 2 - eh) * ((1 + sb) ** 2 - eh) / 4
    overdamped = disc >= 0
    abs_delta = np.sqrt(np.abs(disc))
    sgn = np.where(m < 0, -1.0, 1.0)
    one_minus_m = (1 - beta + eh) / 2  # > 0 always
    det = np.full_like(h, beta)
    if beta > 0:
        a = np.where(overdamped, np.arcsinh(abs_delta / sb), np.arctan2(abs_delta, np.abs(m)))
    else:
        a = np.zeros_like(h)
    # r1 = sgn rho e^{a} (overdamped) or sgn rho e^{i a}; r2 the other root.
    e2_over = np.where(sgn > 0, one_minus_m + abs_delta, one_minus_m - abs_delta)
    with np.errstate(divide="ignore", invalid="ignore"):
        e1_over = np.where(sgn > 0, eh / e2_over, one_minus_m + abs_delta)
    if beta == 0:
        # roots 1 - eta h and 0
        e1_over, e2_over = eh.astype(float), np.ones_like(h)
        overdamped = np.ones_like(h, dtype=bool)
    e1 = np.where(overdamped, e1_over + 0j, one_minus_m - 1j * sgn * abs_delta)
    e2 = np.where(overdamped, e2_over + 0j, one_minus_m + 1j * sgn * abs_delta)
    return RootPair(det=det, sgn=sgn, a=a, overdamped=overdamped, e1=e1, e2=e2)


def _q(h: NDArray[np.float64], noise_variances: NDArray[np.float64],
       hyper: Hyperparams) -> NDArray[np.float64]:
    s = np.asarray(noise_variances, dtype=np.float64) / hyper.batch_size
    beta = hyper.momentum
    return s / ((1 - beta) * (2 * (1 + beta) - hyper.lr * h))
