"""The compiled loops of :func:`sgd_dynamics.theory.lag_sums.displacement_lag_sum` (numba).

Defined at module level so that numba's disk cache finds them again in a new process: as closures
inside a function (as before), a new process missed the cache, compiled every kernel anew and added a
cache entry. :mod:`sgd_dynamics.theory.lag_sums` imports this module on first use, so that importing
the theory stays light.
"""

from __future__ import annotations

import math

import numba
import numpy as np

jit = numba.njit(nogil=True, cache=True, error_model="numpy")
# Gaps between consecutive times whose factor r^gap the summed kernel caches per mode
_GAPS = 64


@jit
def log_sinhc(x):
    if x < 1e-4:
        return x * x / 6
    return x - math.log(2 * x) + math.log(-math.expm1(-2 * x))

@jit
def sin_cos(t, a, a_hi):
    """``sin(t a), cos(t a)`` with ``t a_hi`` exact (as :func:`sin_cos_of_multiple`)."""
    x, y = t * a_hi, t * (a - a_hi)
    sx, cx, sy, cy = math.sin(x), math.cos(x), math.sin(y), math.cos(y)
    return sx * cy + cx * sy, cx * cy - sx * sy

@jit
def transient(i, t, rt, kind, sgn, log_rho, a, a_hi, sin_a, cos_a, r1, k, w, c1, det_c0):
    """``2 [c1 T_{t+1} - det c0 T_t]`` of mode ``i`` at step ``t``, ``rt = |r1|^t``."""
    s_t = sgn[i] if (sgn[i] < 0 and t % 2 == 1) else 1.0
    if kind[i] == 2:
        x, y = t * a_hi[i], t * (a[i] - a_hi[i])
        sx, cx, sy, cy = math.sin(x), math.cos(x), math.sin(y), math.cos(y)
        st, ct = sx * cy + cx * sy, cx * cy - sx * sy
        rho = math.exp(log_rho[i])
        re_t = s_t * rt * ct
        u_t = s_t * sgn[i] * rt / rho * st / sin_a[i]
        re_t1 = s_t * sgn[i] * rt * rho * (ct * cos_a[i] - st * sin_a[i])
        u_t1 = s_t * rt * (st * cos_a[i] + ct * sin_a[i]) / sin_a[i]
    elif kind[i] == 1:
        re_t = s_t * rt
        r2t = s_t * math.exp(t * (log_rho[i] - a[i]))
        u_t = s_t * sgn[i] * math.exp((t - 1) * log_rho[i] + math.log(t) + log_sinhc(t * a[i])
                                      - log_sinhc(a[i]))
        re_t1 = re_t * r1[i]
        u_t1 = r1[i] * u_t + r2t
    else:
        re_t = r1[i] ** t
        u_t = r1[i] ** (t - 1)
        re_t1, u_t1 = re_t * r1[i], re_t
    return 2 * (c1[i] * (re_t1 * k[i] + u_t1 * w[i]) - det_c0[i] * (re_t * k[i] + u_t * w[i]))

@jit
def decayed(i, t, rt, line, modulus, k, w, log_modulus, amp, u_cap):
    """The transient's bound is below float64 resolution of the line (and it only decays from here)."""
    bound = amp[i] * rt * (abs(k[i]) + abs(w[i]) * min((t + 1) / modulus[i], u_cap[i]))
    return bound <= 2.0**-54 * abs(line) and -t * log_modulus[i] >= 1

@jit
def kernel(kind, sgn, log_rho, a, a_hi, sin_a, cos_a, r1, r2, k, w, c1, det_c0, slope, intercept,
           log_modulus, amp, u_cap, first, times, out):
    modulus = np.exp(log_modulus)
    # times ascending, so a mode once decayed stays decayed; rows of out are written contiguously
    done = np.zeros(kind.size, dtype=np.bool_)
    for j in range(times.size):
        t = times[j]
        for i in range(kind.size):
            if t <= first[i]:
                continue
            line = slope[i] * t + intercept[i]
            if not done[i]:
                rt = math.exp(t * log_modulus[i])
                done[i] = decayed(i, t, rt, line, modulus, k, w, log_modulus, amp, u_cap)
                if not done[i]:
                    line += transient(i, t, rt, kind, sgn, log_rho, a, a_hi, sin_a, cos_a, r1, k, w,
                                      c1, det_c0)
            out[j, i] = line

@jit
def complex_transient(i, t, p, q, rho, sgn, sin_a, cos_a, k, w, c1, det_c0):
    """:func:`transient` of a complex pair from ``rho^t (cos(t a), sin(t a)) = (p, q)``."""
    s_t = sgn[i] if (sgn[i] < 0 and t % 2 == 1) else 1.0
    re_t, u_t = s_t * p, s_t * sgn[i] * q / (rho * sin_a[i])
    re_t1 = s_t * sgn[i] * rho * (p * cos_a[i] - q * sin_a[i])
    u_t1 = s_t * (q * cos_a[i] + p * sin_a[i]) / sin_a[i]
    return 2 * (c1[i] * (re_t1 * k[i] + u_t1 * w[i]) - det_c0[i] * (re_t * k[i] + u_t * w[i]))

@jit
def summed_kernel(kind, sgn, log_rho, a, a_hi, sin_a, cos_a, r1, r2, k, w, c1, det_c0, slope,
                  intercept, log_modulus, amp, u_cap, first, times, block, out):
    # a mode adds its value at each t > first until its transient decays; from there on only its
    # line, through running sums of the slopes and intercepts that start at that time. A complex
    # pair's r^t steps from time to time by the factor r^(t - t_prev) (cached while the gap repeats,
    # re-anchored exactly every 16 times: within ~50 ulp of the transient, not one ulp per product)
    modulus = np.exp(log_modulus)
    n, m = kind.size, times.size
    slopes, intercepts = np.zeros(m + 1), np.zeros(m + 1)
    # r^gap of the current mode for small gaps (log-spaced times repeat a few gaps many times)
    owner = np.full(_GAPS, -1)
    gap_p, gap_q, gap_m = np.empty(_GAPS), np.empty(_GAPS), np.empty(_GAPS)
    for start in range(0, n, block):
        part, part_slopes, part_intercepts = np.zeros(m), np.zeros(m + 1), np.zeros(m + 1)
        for i in range(start, min(start + block, n)):
            j = np.searchsorted(times, first[i], side="right")
            rho = math.exp(log_rho[i])
            p = q = rt = t_prev = fp = fq = fm = 0.0
            gap = -1.0                  # no gap cached yet (repeated times have gap 0)
            steps_left = 0
            while j < m:
                t = times[j]
                line = slope[i] * t + intercept[i]
                if kind[i] != 2:
                    rt = math.exp(t * log_modulus[i])
                elif steps_left == 0:
                    st, ct = sin_cos(t, a[i], a_hi[i])
                    rt = math.exp(t * log_rho[i])
                    p, q, steps_left = rt * ct, rt * st, 16
                else:
                    if t - t_prev != gap:
                        gap = t - t_prev
                        g = int(gap)
                        if g < _GAPS and owner[g] == i:
                            fp, fq, fm = gap_p[g], gap_q[g], gap_m[g]
                        else:
                            fs, fc = sin_cos(gap, a[i], a_hi[i])
                            fm = math.exp(gap * log_rho[i])
                            fp, fq = fm * fc, fm * fs
                            if g < _GAPS:
                                owner[g], gap_p[g], gap_q[g], gap_m[g] = i, fp, fq, fm
                    p, q, rt = p * fp - q * fq, p * fq + q * fp, rt * fm
                steps_left -= 1
                t_prev = t
                if decayed(i, t, rt, line, modulus, k, w, log_modulus, amp, u_cap):
                    break
                if kind[i] == 2:
                    line += complex_transient(i, t, p, q, rho, sgn, sin_a, cos_a, k, w, c1, det_c0)
                else:
                    line += transient(i, t, rt, kind, sgn, log_rho, a, a_hi, sin_a, cos_a, r1, k, w, c1,
                                      det_c0)
                part[j] += line
                j += 1
            part_slopes[j] += slope[i]
            part_intercepts[j] += intercept[i]
        out += part
        slopes += part_slopes
        intercepts += part_intercepts
    slope_sum, intercept_sum = 0.0, 0.0
    for j in range(m):
        slope_sum += slopes[j]
        intercept_sum += intercepts[j]
        out[j] += slope_sum * times[j] + intercept_sum

@jit
def summed_direct(kind, sgn, log_rho, a, a_hi, sin_a, r1, det, c0, c1, last, steps, block, out):
    # per mode, c(l) = u_l c1 - det u_{l-1} c0 for l < last, accumulated into A(t) = sum_{l<t} c(l)
    # and B(t) = sum_{l<t} l c(l); the complex roots' u_l from exact anchors every 16 lags times an
    # exact table of 16 (each factor within an ulp, as sin_cos_of_multiple's two products)
    n, m, span = kind.size, steps.size, 16
    cos_d, sin_d, pow_d = np.empty(span), np.empty(span), np.empty(span)
    for start in range(0, n, block):
        part = np.zeros(m)
        for i in range(start, min(start + block, n)):
            if kind[i] == 2:
                for d in range(span):
                    sin_d[d], cos_d[d] = sin_cos(d, a[i], a_hi[i])
                    pow_d[d] = math.exp((d - 1) * log_rho[i])
            acc, acc_l, u_prev, j = 0.0, 0.0, 0.0, 0
            anchor_sin, anchor_cos, anchor_pow = 0.0, 1.0, 1.0
            for ell in range(1, last[i] + 1):
                while j < m and steps[j] == ell:     # A, B hold the lags < ell here
                    part[j] += ell * c0[i] + 2 * (ell * acc - acc_l)
                    j += 1
                if j == m or steps[j] > last[i]:
                    break
                sign = -1.0 if (sgn[i] < 0 and (ell - 1) % 2 == 1) else 1.0
                if kind[i] == 2:
                    d = ell % span
                    if d == 0 or ell == 1:
                        anchor_sin, anchor_cos = sin_cos(ell - d, a[i], a_hi[i])
                        anchor_pow = math.exp((ell - d) * log_rho[i])
                    sin_l = anchor_sin * cos_d[d] + anchor_cos * sin_d[d]
                    u = sign * anchor_pow * pow_d[d] * sin_l / sin_a[i]
                elif kind[i] == 1:
                    u = sign * math.exp((ell - 1) * log_rho[i] + math.log(ell) + log_sinhc(ell * a[i])
                                        - log_sinhc(a[i]))
                else:
                    u = r1[i] ** (ell - 1)
                c = u * c1[i] - det[i] * u_prev * c0[i]
                acc += c
                acc_l += ell * c
                u_prev = u
        out += part
