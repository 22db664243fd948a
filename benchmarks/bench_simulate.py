"""Benchmark of the simulators (issue 3), baselines measured in the same run.

1. The per-mode phase-space SDE (002 eqs. 7-8, ERRATA 002.1) with 4 modes (overdamped, critical, underdamped),
   observable: every second moment of (x_i, v_i) at t = 1 from a fixed start, target: 2% relative statistical
   error (R = 2 / 0.02^2 replicas) with discretisation bias <= 1%. The exact OU sampler needs one step;
   Euler-Maruyama (ours, vectorised) and torchsde's Euler solver need the dt where the Euler bias (computed
   exactly from the Euler recursion) is below 0.5%.
2. The discrete quadratic SGD simulator's throughput in mode-steps per second against a plain per-step
   pure-Python loop.
3. ``langevin.euler_maruyama`` on a double well against a plain NumPy loop of the same scheme written here
   (one ``standard_normal`` draw per step, preallocated output): medians of interleaved repeats, and a check
   that both give the same bits for the same seed. ``python bench_simulate.py euler`` runs only this part.
"""

from __future__ import annotations

import math
import random
import statistics
import sys
import time

import numpy as np
import scipy.integrate as si
import scipy.linalg as sl
import torch
from goals import goal_line

from sgd_dynamics.hyper import Hyperparams
from sgd_dynamics.simulate import (
    euler_maruyama_step,
    phase_space_drift,
    simulate_phase_space_sde,
    simulate_quadratic_sgd,
    velocity_diffusion_rate,
)
from sgd_dynamics.simulate.langevin import euler_maruyama

HP = Hyperparams(lr=0.01, momentum=0.9, batch_size=1)
H_CRIT = (1 - HP.momentum) ** 2 / (2 * HP.lr * (1 + HP.momentum))
RHO = np.array([0.2 * H_CRIT, H_CRIT, 0.3, 1.0])
SV = np.array([1.0, 1.0, 0.5, 2.0])
T_FINAL, TARGET = 1.0, 0.02
X0, V0 = np.ones(4), -np.ones(4)


def exact_moments():
    a = phase_space_drift(RHO, HP)
    q = np.zeros_like(a)
    q[:, 1, 1] = velocity_diffusion_rate(SV, HP)
    out = []
    for i in range(RHO.size):
        f = sl.expm(-a[i] * T_FINAL)
        cov = si.quad_vec(lambda u, i=i: sl.expm(-a[i] * u) @ q[i] @ sl.expm(-a[i] * u).T, 0, T_FINAL,
                          epsrel=1e-10)[0]
        m = f @ [X0[i], V0[i]]
        out.append(cov + np.outer(m, m))
    return np.array(out), a, q


def euler_bias(a, q, dt, second):
    n = round(T_FINAL / dt)
    worst = 0.0
    for i in range(RHO.size):
        st = euler_maruyama_step(a[i], q[i], dt)
        f, w = st.transition, st.noise_root @ st.noise_root.T
        m, c = np.array([X0[i], V0[i]]), np.zeros((2, 2))
        for _ in range(n):
            m, c = f @ m, f @ c @ f.T + w
        worst = max(worst, float(np.max(np.abs(c + np.outer(m, m) - second[i]) / np.abs(second[i]).max())))
    return worst


def moments_error(x, v, second):
    """Largest deviation of the 12 second moments from the exact ones, in standard errors (z-score)."""
    prods = np.stack([x * x, x * v, v * v], axis=-1)
    ref = np.stack([second[:, 0, 0], second[:, 0, 1], second[:, 1, 1]], axis=1)
    se = prods.std(axis=0, ddof=1) / np.sqrt(x.shape[0])
    return float(np.max(np.abs(prods.mean(axis=0) - ref) / se))


class PhaseSpaceSDE(torch.nn.Module):
    noise_type, sde_type = "diagonal", "ito"

    def __init__(self, a, q):
        super().__init__()
        self.w2, self.g2 = torch.tensor(a[:, 1, 0]), torch.tensor(a[:, 1, 1])
        self.sig = torch.cat([torch.zeros(RHO.size), torch.tensor(np.sqrt(q[:, 1, 1]))])

    def f(self, t, y):
        x, v = y[:, :RHO.size], y[:, RHO.size:]
        return torch.cat([v, -self.w2 * x - self.g2 * v], dim=1)

    def g(self, t, y):
        return self.sig.expand_as(y)


def timed(fn, repeat=1):
    best, out = math.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def bench_sde():
    second, a, q = exact_moments()
    replicas = math.ceil(2 / TARGET**2)
    dt = T_FINAL / 2
    while euler_bias(a, q, dt, second) > TARGET / 2:
        dt /= 2
    n_em = round(T_FINAL / dt)
    print(f"[SDE] 4 modes, {replicas} replicas, t={T_FINAL}; Euler needs dt={dt:.3g} ({n_em} steps) for bias "
          f"{euler_bias(a, q, dt, second):.2%} <= {TARGET / 2:.1%}")
    runs = {}
    runs["exact OU, 1 step"] = timed(lambda: simulate_phase_space_sde(
        RHO, SV, hyper=HP, t_final=T_FINAL, dt=T_FINAL, replicas=replicas, seed=0, start=(X0, V0)), 3)
    runs["exact OU, 100-point path"] = timed(lambda: simulate_phase_space_sde(
        RHO, SV, hyper=HP, t_final=T_FINAL, dt=T_FINAL / 100, replicas=replicas, seed=0, start=(X0, V0)), 3)
    runs["Euler-Maruyama (ours)"] = timed(lambda: simulate_phase_space_sde(
        RHO, SV, hyper=HP, t_final=T_FINAL, dt=dt, replicas=replicas, seed=0, start=(X0, V0),
        method="euler_maruyama", record_every=n_em))

    import torchsde  # optional: only this comparison needs it

    torch.manual_seed(0)
    sde = PhaseSpaceSDE(a, q)
    y0 = torch.tensor(np.concatenate([X0, V0])).expand(replicas, -1).contiguous()
    with torch.no_grad():
        t_ts, ys = timed(lambda: torchsde.sdeint(sde, y0, torch.tensor([0.0, T_FINAL], dtype=torch.float64),
                                                 method="euler", dt=dt))
    y = ys[-1].numpy()
    base_err = moments_error(y[:, :4], y[:, 4:], second)
    print(f"  torchsde Euler:              {t_ts:8.3f} s   max |error| of the 12 second moments "
          f"{base_err:.1f} s.e.")
    for name, (t, tr) in runs.items():
        err = moments_error(tr.position[-1], tr.velocity[-1], second)
        print(f"  {name:28s} {t:8.3f} s   max |error| {err:.1f} s.e.   speed-up vs torchsde {t_ts / t:9.1f}x")


def python_loop(rho, s, hp, steps, replicas):
    eta, beta, batch = hp.lr, hp.momentum, hp.batch_size
    rng = random.Random(0)
    sd = [math.sqrt(si / batch) for si in s]
    xs = [[0.0] * len(rho) for _ in range(replicas)]
    vs = [[0.0] * len(rho) for _ in range(replicas)]
    for _ in range(steps):
        for r in range(replicas):
            x, v = xs[r], vs[r]
            for i, h in enumerate(rho):
                v[i] = beta * v[i] - h * x[i] - rng.gauss(0.0, sd[i])
                x[i] += eta * v[i]
    return xs


def bench_quadratic():
    hp = Hyperparams(lr=0.1, momentum=0.9, batch_size=8)
    rng = np.random.default_rng(0)
    rho, s = rng.uniform(0.01, 10, 200), rng.uniform(0.1, 1, 200)
    steps, replicas = 1000, 500
    t_np, _ = timed(lambda: simulate_quadratic_sgd(rho, s, hyper=hp, steps=steps, replicas=replicas, seed=0,
                                                   start="zero", record_every=steps), 2)
    py_steps, py_rep, py_modes = 200, 10, 20
    t_py, _ = timed(lambda: python_loop(list(rho[:py_modes]), list(s[:py_modes]), hp, py_steps, py_rep))
    rate_np = steps * replicas * rho.size / t_np
    rate_py = py_steps * py_rep * py_modes / t_py
    print(f"[quadratic SGD] vectorised: {rate_np:.3e} mode-steps/s ({replicas} replicas x {rho.size} modes); "
          f"pure-Python loop: {rate_py:.3e} mode-steps/s; ratio {rate_np / rate_py:.0f}x")


def plain_euler_loop(gradient, x0, temperature, dt, n_steps, seed):
    """The scheme x <- x - dt grad U(x) + sqrt(2 T dt) xi as anyone would write it in NumPy."""
    rng = np.random.default_rng(seed)
    x = np.array(x0, dtype=np.float64)
    out = np.empty((n_steps + 1, *x.shape))
    out[0] = x
    c = math.sqrt(2.0 * temperature * dt)
    for k in range(n_steps):
        x = x - dt * gradient(x) + c * rng.standard_normal(x.shape)
        out[k + 1] = x
    return out


def bench_euler_maruyama(repeats=7):
    def gradient(x):
        return 4 * x * (x * x - 1)

    cases = [("100 replicas x 20000 steps", np.full(100, -1.0), 20_000),
             ("10^4 replicas x 2000 steps", np.full(10_000, -1.0), 2_000)]
    for label, x0, n in cases:
        ours, plain = [], []
        for _ in range(repeats):  # interleaved, so both see the same machine load
            t_ours, a = timed(lambda x0=x0, n=n: euler_maruyama(gradient, x0, 0.3, 1e-3, n, seed=0))
            t_plain, b = timed(lambda x0=x0, n=n: plain_euler_loop(gradient, x0, 0.3, 1e-3, n, 0))
            ours.append(t_ours)
            plain.append(t_plain)
        m_ours, m_plain = statistics.median(ours), statistics.median(plain)
        print(f"[Euler-Maruyama] {label}: euler_maruyama {m_ours * 1e3:.1f} ms, plain NumPy loop "
              f"{m_plain * 1e3:.1f} ms (medians of {repeats} interleaved); plain / ours = "
              f"{m_plain / m_ours:.2f}; bit-identical: {np.array_equal(a, b)}")
        print(goal_line(6, f"euler_maruyama, {label}, plain NumPy loop / ours", 1.0, m_plain / m_ours))


if __name__ == "__main__":
    torch.set_num_threads(1)
    if sys.argv[1:] == ["euler"]:
        bench_euler_maruyama()
    else:
        bench_sde()
        bench_quadratic()
        bench_euler_maruyama()
