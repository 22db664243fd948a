"""Langevin samplers on potentials, first-passage times and annealing schedules.

Overdamped diffusion ``dx = -grad U(x) dt + sqrt(2 T) dW`` (the SGD diffusion of
:mod:`sgd_dynamics.theory.temperature` in the isotropic case; chapter 004 Definition 16, ERRATA 004.1/004.7):

* :func:`euler_maruyama` — Euler–Maruyama (= ULA; with additive noise also Milstein, strong order 1,
  ERRATA 004.7), optionally with position-dependent noise ``dx = -grad U dt + B(x) dW`` and an annealing
  schedule.
* :func:`mala` — Metropolis-adjusted Langevin: the ULA proposal ``y = x - dt grad U(x) + sqrt(2 T dt) xi``
  accepted with ``min(1, pi(y) q(x|y) / (pi(x) q(y|x)))``,
  ``q(y|x) ∝ exp(-|y - x + dt grad U(x)|^2 / (4 T dt))``; its stationary law is exactly ``exp(-U/T)``.
* :func:`baoab` — underdamped Langevin ``dx = v dt, dv = -grad U dt - gamma v dt + sqrt(2 gamma T) dW``
  (unit mass) split B-A-O-A-B (Leimkuhler & Matthews 2013).
* :func:`first_passage_times` — per-replica exit times of the overdamped diffusion from ``{x < target}``
  (or ``{x > target}``), with the Brownian-bridge crossing correction
  ``P = exp(-(b - x_n)(b - x_{n+1}) / (T dt))`` that removes the O(sqrt dt) bias of checking the boundary
  only at grid times; or from a general set given by a predicate (no correction).

Gradients are Python callables vectorised over replicas (shape ``(n,)`` in 1-D or ``(n, d)``), e.g.
:meth:`sgd_dynamics.theory.potential.Potential.gradient`, or built from a torch potential by
:func:`torch_gradient` (torch is imported there only).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from sgd_dynamics._validation import positive as _positive
from sgd_dynamics.simulate.normal_draws import COMPILED_MIN_DRAWS, fill_standard_normal

Array = NDArray[np.float64]
GradientFn = Callable[[Array], Array]
Schedule = Callable[[NDArray[np.int64]], Array]
SCHEDULES: tuple[str, ...] = ("constant", "step", "cosine", "log")
# Normal draws per block of Euler-Maruyama steps: 512 kB, so a block stays in cache until it is used
_NOISE_BLOCK_ELEMENTS = 1 << 16


def _steps(value: int, name: str) -> int:
    if not (isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1):
        raise ValueError(f"{name}={value!r} is invalid: expected an integer >= 1")
    return int(value)


# --- annealing schedules ------------------------------------------------------------------------
def annealing_schedule(kind: str, temperature: float, n_steps: int, *, final_temperature: float = 0.0,
                       factor: float = 0.5, every: int | None = None) -> Schedule:
    """Temperature as a function of the step index ``k = 0, 1, ...``.

    ``constant``: ``T0``; ``step``: ``T0 * factor**floor(k / every)`` (``every`` defaults to
    ``n_steps // 4``); ``cosine``: ``T_f + (T0 - T_f) (1 + cos(pi k / n_steps)) / 2``; ``log``:
    ``T0 / log(e + k / every)`` (``every`` defaults to ``n_steps // 100``), the ``c / log t`` schedule of
    simulated annealing on the time scale ``every``: ``T0`` at ``k = 0``, ``~ T0 / log(k / every)`` for
    ``k >> every``, so ``c = T0`` asymptotically. (``log(k + 2)`` in step units would fall below ``T0 / 10``
    within ~30 steps, making the outcome depend on ``dt``.)

    >>> s = annealing_schedule("cosine", 1.0, 10)
    >>> s(np.array([0, 5, 10])).round(3).tolist()
    [1.0, 0.5, 0.0]
    >>> annealing_schedule("log", 2.0, 1000)(np.array([0, 10 * (math.e**2 - math.e)])).round(6).tolist()
    [2.0, 1.0]
    """
    T0 = _positive(temperature, "temperature")
    n = _steps(n_steps, "n_steps")
    if kind == "constant":
        return lambda k: np.full(np.shape(k), T0)
    if kind == "step":
        every_ = _steps(every if every is not None else max(n // 4, 1), "every")
        if not 0 < factor <= 1:
            raise ValueError(f"factor={factor!r} is invalid: expected 0 < factor <= 1")
        return lambda k: T0 * factor ** np.floor_divide(np.asarray(k), every_)
    if kind == "cosine":
        Tf = float(final_temperature)
        return lambda k: Tf + (T0 - Tf) * 0.5 * (1 + np.cos(np.pi * np.minimum(np.asarray(k), n) / n))
    if kind == "log":
        scale = _steps(every if every is not None else max(n // 100, 1), "every")
        return lambda k: T0 / np.log(math.e + np.asarray(k, dtype=np.float64) / scale)
    raise ValueError(f"kind={kind!r} is invalid: expected one of {', '.join(SCHEDULES)}")


# --- overdamped ---------------------------------------------------------------------------------
def euler_maruyama(gradient: GradientFn, x0: ArrayLike, temperature: float | Schedule, dt: float,
                   n_steps: int, seed: int, *, noise_factor: Callable[[Array], Array] | None = None,
                   record_every: int = 1) -> Array:
    """Euler–Maruyama trajectory ``x_{k+1} = x_k - dt grad U(x_k) + sqrt(2 T_k dt) xi_k`` of every replica.

    ``x0`` has shape ``(n,)`` (1-D) or ``(n, d)``. ``temperature`` is a number or a schedule ``k -> T_k``.
    With ``noise_factor`` the noise is ``sqrt(dt) B(x_k) xi_k`` with ``B(x)`` of shape ``(n, d, d)`` (then
    ``temperature`` is ignored; the SGD diffusion has ``B B^T = 2 T_eff(x)``). Returns the states at steps
    ``0, record_every, ...``: shape ``(n_steps // record_every + 1, *x0.shape)``.
    """
    dt = _positive(dt, "dt")
    n_steps = _steps(n_steps, "n_steps")
    record_every = _steps(record_every, "record_every")
    schedule = temperature if callable(temperature) else None
    T = None if schedule else _positive(temperature, "temperature")
    rng = np.random.default_rng(seed)
    x = np.array(x0, dtype=np.float64)
    out = np.empty((n_steps // record_every + 1, *x.shape))
    out[0] = x
    # Noise is drawn a block of steps at a time: the generator fills it in the order of the per-step draws,
    # so the stream (and every x_k) is the same as drawing xi_k each step. The expression below keeps the
    # per-step arithmetic, (x - dt g) + c xi, so results are bit-identical to the one-draw-per-step loop.
    block = max(1, min(n_steps, _NOISE_BLOCK_ELEMENTS // max(x.size, 1)))
    sqrt_dt = math.sqrt(dt)
    # c * xi elementwise, as the per-step kick, is drawn scaled; 1.0 * xi is xi exactly
    scale = 1.0 if schedule or noise_factor is not None else math.sqrt(2.0 * T * dt)
    compiled = n_steps * x.size >= COMPILED_MIN_DRAWS  # the same draws, sooner for long runs
    noise_block = np.empty((block, *x.shape))
    step = np.empty_like(x)  # dt * grad U(x), reused: no allocation per step
    # x is updated in place in its own buffer and copied into out when recorded: stepping inside the rows
    # of out (fresh pages of a large array) was up to 1.4x slower at 10^4 replicas (issue 15 goal 6)
    k = 0
    while k < n_steps:
        noise = fill_standard_normal(rng, noise_block[:min(block, n_steps - k)], scale, compiled=compiled)
        for xi in noise:
            if noise_factor is not None:
                xi = sqrt_dt * np.einsum("nij,nj->ni", noise_factor(x), xi)
            elif schedule:
                xi = math.sqrt(2.0 * float(schedule(np.asarray(k))) * dt) * xi
            np.multiply(gradient(x), dt, out=step)  # the gradient is used up before x is overwritten
            k += 1
            np.subtract(x, step, out=x)
            x += xi
            if k % record_every == 0:
                out[k // record_every] = x
    return out


@dataclass(frozen=True)
class MALAResult:
    """MALA samples ``(n_samples, *x0.shape)`` and the acceptance rate over all replicas and steps."""

    samples: Array
    acceptance_rate: float


def mala(energy: Callable[[Array], Array], gradient: GradientFn, x0: ArrayLike, temperature: float, dt: float,
         n_steps: int, seed: int, *, record_every: int = 1) -> MALAResult:
    """Metropolis-adjusted Langevin targeting ``exp(-U/T)`` (proposal ratio in the module docstring)."""
    T = _positive(temperature, "temperature")
    dt = _positive(dt, "dt")
    n_steps = _steps(n_steps, "n_steps")
    rng = np.random.default_rng(seed)
    x = np.array(x0, dtype=np.float64)
    ux, gx = energy(x), gradient(x)
    axes = tuple(range(1, x.ndim))
    out, accepted = [x.copy()], 0
    for k in range(n_steps):
        y = x - dt * gx + math.sqrt(2 * T * dt) * rng.standard_normal(x.shape)
        uy, gy = energy(y), gradient(y)
        log_q_forward = -np.sum((y - x + dt * gx) ** 2, axis=axes) / (4 * T * dt)
        log_q_backward = -np.sum((x - y + dt * gy) ** 2, axis=axes) / (4 * T * dt)
        log_alpha = -(uy - ux) / T + log_q_backward - log_q_forward
        accept = np.log(rng.random(log_alpha.shape)) < log_alpha
        mask = accept.reshape(accept.shape + (1,) * (x.ndim - 1))
        x, ux = np.where(mask, y, x), np.where(accept, uy, ux)
        gx = np.where(mask, gy, gx)
        accepted += int(accept.sum())
        if (k + 1) % record_every == 0:
            out.append(x.copy())
    return MALAResult(np.stack(out), accepted / (n_steps * accept.size))


def baoab(gradient: GradientFn, x0: ArrayLike, temperature: float, dt: float, friction: float, n_steps: int,
          seed: int, *, v0: ArrayLike | None = None, record_every: int = 1) -> tuple[Array, Array]:
    """Underdamped Langevin (unit mass) by BAOAB; returns recorded positions and velocities."""
    T = _positive(temperature, "temperature")
    dt = _positive(dt, "dt")
    gamma = _positive(friction, "friction")
    n_steps = _steps(n_steps, "n_steps")
    rng = np.random.default_rng(seed)
    x = np.array(x0, dtype=np.float64)
    v = np.zeros_like(x) if v0 is None else np.array(v0, dtype=np.float64)
    c1 = math.exp(-gamma * dt)
    c2 = math.sqrt(T * (1 - c1 * c1))
    g = gradient(x)
    xs, vs = [x.copy()], [v.copy()]
    for k in range(n_steps):
        v = v - 0.5 * dt * g
        x = x + 0.5 * dt * v
        v = c1 * v + c2 * rng.standard_normal(x.shape)
        x = x + 0.5 * dt * v
        g = gradient(x)
        v = v - 0.5 * dt * g
        if (k + 1) % record_every == 0:
            xs.append(x.copy())
            vs.append(v.copy())
    return np.stack(xs), np.stack(vs)


# --- first passage ------------------------------------------------------------------------------
@dataclass(frozen=True)
class FirstPassage:
    """Exit times per replica (``nan`` where the replica had not exited after ``max_steps``)."""

    times: Array
    dt: float
    max_steps: int

    @property
    def exited(self) -> NDArray[np.bool_]:
        """Which replicas reached the target."""
        return np.isfinite(self.times)

    @property
    def all_exited(self) -> bool:
        """Whether every replica reached the target."""
        return bool(np.all(self.exited))

    def mean_and_stderr(self) -> tuple[float, float]:
        """Sample mean and its standard error; raises if some replica has not exited."""
        if not self.all_exited:
            missing = int(np.sum(~self.exited))
            raise ValueError(f"{missing} of {self.times.size} replicas did not reach the target within "
                             f"max_steps={self.max_steps} (t = {self.max_steps * self.dt:.4g}); the mean "
                             "would be biased low: raise max_steps or the temperature")
        t = self.times
        return float(t.mean()), float(t.std(ddof=1) / math.sqrt(t.size))


def first_passage_times(gradient: GradientFn, x0: ArrayLike, temperature: float, dt: float, max_steps: int,
                        seed: int, *, target: float | None = None,
                        exited: Callable[[Array], NDArray[np.bool_]] | None = None,
                        noise_factor: Callable[[Array], Array] | None = None) -> FirstPassage:
    """Euler–Maruyama until each replica first reaches the target; exited replicas leave the loop.

    1-D: give ``target`` (a threshold on the far side of ``x0``; the bridge correction is applied).
    Any dimension: give ``exited(x) -> bool mask`` instead (checked at grid times only).
    """
    T = _positive(temperature, "temperature")
    dt = _positive(dt, "dt")
    max_steps = _steps(max_steps, "max_steps")
    if (target is None) == (exited is None):
        raise ValueError("give exactly one of target= (1-D threshold) or exited= (predicate)")
    rng = np.random.default_rng(seed)
    x = np.array(x0, dtype=np.float64)
    n = x.shape[0]
    sign = 0.0
    if target is not None:
        if x.ndim != 1:
            raise ValueError(f"target= needs 1-D replicas of shape (n,); got x0 of shape {x.shape}")
        sign = 1.0 if np.all(x < target) else -1.0 if np.all(x > target) else 0.0
        if sign == 0.0:
            raise ValueError(f"x0 must lie entirely on one side of target={target!r}")
        # Work with the distance d = sign * (target - x) > 0 to the boundary.
    elif np.any(exited(x)):
        raise ValueError("some replicas start inside the target set")
    times = np.full(n, np.nan)
    alive = np.arange(n)
    noise = math.sqrt(2 * T * dt)
    for k in range(1, max_steps + 1):
        if noise_factor is not None:
            kick = math.sqrt(dt) * np.einsum("nij,nj->ni", noise_factor(x), rng.standard_normal(x.shape))
        else:
            kick = noise * rng.standard_normal(x.shape)
        x_new = x - dt * gradient(x) + kick
        if target is not None:
            d_old, d_new = sign * (target - x), sign * (target - x_new)
            p_bridge = np.exp(-np.maximum(d_old, 0.0) * np.maximum(d_new, 0.0) / (T * dt))
            done = (d_new <= 0) | (rng.random(x.shape[0]) < p_bridge)
        else:
            done = exited(x_new)
        if done.any():
            times[alive[done]] = k * dt
            keep = ~done
            alive, x_new = alive[keep], x_new[keep]
            if alive.size == 0:
                break
        x = x_new
    return FirstPassage(times, dt, max_steps)


def torch_gradient(energy: Callable[..., object]) -> GradientFn:
    """Wrap a torch potential ``U(x_tensor) -> per-replica energies`` as a NumPy gradient via autograd."""
    import torch  # lazily: the simulators are NumPy-only otherwise

    def gradient(x: Array) -> Array:
        xt = torch.tensor(np.asarray(x, dtype=np.float64), requires_grad=True)
        (g,) = torch.autograd.grad(energy(xt).sum(), xt)
        return g.detach().numpy()

    return gradient
