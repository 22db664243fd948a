"""Optimal momentum of a small MLP classifier under label noise (003 Sec. 4.2, App. A.3-A.4).

The three phases of 003 Fig. 2a, scaled down to run in minutes on one CPU core:

1. **Reach the valley.** A tanh MLP ``d -> h -> h -> 10`` (``d`` the input size of the data: 64 for
   scikit-learn's digits, the default, or 40 for MNIST-1D) is trained with Adam on the clean one-hot
   targets of ``P`` examples until the mean-squared training loss ``(1/2P) sum_a |f(x_a) - y_a|^2`` is below
   ``valley_loss``. ``test_accuracy`` of the result is the test accuracy of this network (the valley start).
2. **Label-noise SGD with heavy-ball momentum** (003 eq. 1, full batch, fresh Gaussian label noise
   ``y + eps xi`` every step) for every ``(eta, beta)`` and every replica (an independent label-noise stream),
   from that same point, for a fixed number of steps (003 App. A.3 trains every ``(eta, beta)`` for the same
   number of epochs). All ``(beta, replica)`` of one ``eta`` run as a batch of independent networks; one
   replica's stream is shared by all its ``beta`` (common random numbers: the ``beta``-dependence is measured
   on the same noise). A run whose loss becomes non-finite or exceeds ``1e3`` diverged: it is recorded, left
   out of the fits, and reported; the linear stability bound ``eta lambda_max < 2 (1 + beta)`` (ERRATA 003.3,
   ``lambda_max`` of the Hessian at the valley start by power iteration) is recorded beside it.
3. **Project back** by noiseless full-batch Adam to the valley loss, which removes the transverse spread
   ``~ eps^2 eta / (1 - beta)`` (003 App. A.3). Runs that do not get back below ``valley_loss`` within
   ``projection_steps`` are recorded and reported (``returned``).

On the valley the label-noise covariance is ``eps^2 / P`` times the Gauss-Newton matrix, which equals the
Hessian there, so eq. 7 drifts down ``Tr H``; the distance travelled is the log-decrease
``A = log(Tr H_start / Tr H_end)`` after projection (Hutchinson estimate of ``(1/P) sum_a |J_a|_F^2`` with the
same probes for every run). Per ``eta``, ``beta*`` maximises the replica mean of ``A`` against
``x = -log10(1 - beta)`` (the grid is geometric in ``1 - beta``): the vertex of the parabola through the grid
maximum and its neighbours (:func:`peak_location`), which moves continuously with the data, so resampling
replicas gives its interval. The hinge of 003 eq. 14 (:func:`sgd_dynamics.estimation.fit_hinge`) is fitted
to the same curve for comparison; it is not the estimate, because its least-squares breakpoint sits on a grid
point whenever the replicas agree there, and a replica interval of zero width would then be reported. An
optimum is *bracketed* when the maximum is not at either end of the grid; only bracketed ``eta`` enter
``log(1 - beta*) = log C + gamma* log eta`` (least squares), whose interval is the percentile interval of the
slope over the same replica resamples, drawn jointly for all ``eta`` (issue 16 item 1). These intervals are
conditional on the valley start (one initialisation and training subset, both drawn from ``seed``). From
the measured width ``w``, the replicas per ``eta`` (or learning rates over the same range) that would bring
it to ``target_width`` follow from ``w ~ 1 / sqrt(n)``.

The step budget is the same for every ``(eta, beta)``, as in 003 App. A.3. The 2/3 law is the optimum of the
time to travel a given distance (``tau_1 ~ (1 - beta)^-1`` against ``tau_2 ~ (1 - beta)^2 / eta^2``); with a
fixed budget ``T``, where the optimum is set by ``tau_1 ~ T`` (small ``eta``) the measured ``beta*`` follows
the budget, not ``eta``. The theory predicts ``gamma* = 2/3``; what is measured is reported as measured.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from threadpoolctl import threadpool_limits

from sgd_dynamics._validation import require
from sgd_dynamics.config_schema import setting, validate
from sgd_dynamics.estimation import HingeFit, fit_hinge
from sgd_dynamics.estimation.resampling import percentile_interval
from sgd_dynamics.theory.momentum_scaling import OPTIMAL_EXPONENT

_CLASSES = 10
_DIVERGED_LOSS = 1e3  # label-noise loss beyond which a run has left every basin of the valley
_CONFIDENCE = 0.95


@dataclass(frozen=True)
class ClassifierConfig:
    """The three-phase protocol. ``momenta`` is the ``beta`` grid, shared by every ``eta``."""

    dataset: str = setting("digits", "built-in data set: scikit-learn's 8x8 digits or MNIST-1D",
                           choices=("digits", "mnist1d"))
    train_size: int = setting(128, "training examples", minimum=1)
    test_size: int = setting(360, "test examples (at most the data set's test split)", minimum=1)
    hidden: int = setting(32, "hidden width", minimum=1)
    lrs: tuple[float, ...] = setting((0.001, 0.003, 0.01, 0.03, 0.1), "learning rates eta (at least two)",
                                     minimum=0, maximum=1, exclusive_minimum=True, exclusive_maximum=True)
    momenta: tuple[float, ...] = setting((0.7, 0.85, 0.92, 0.96, 0.98, 0.99, 0.995, 0.9975, 0.999, 0.9995),
                                         "momenta beta, shared by every eta (at least 4 distinct)", minimum=0,
                                         maximum=1, exclusive_maximum=True)
    replicas: int = setting(4, "independent label-noise streams per eta (the spread of beta*)", minimum=2)
    label_noise: float = setting(0.5, "label-noise standard deviation eps", minimum=0, exclusive_minimum=True)
    steps: int = setting(2000, "label-noise steps per run", minimum=1)
    valley_loss: float = setting(1e-4, "loss that defines the valley", minimum=0, maximum=1,
                                 exclusive_minimum=True, exclusive_maximum=True)
    valley_max_steps: int = setting(20_000, "step cap to reach the valley", minimum=1)
    projection_lr: float = setting(1e-3, "learning rate of the projection back to the valley", minimum=0,
                                   exclusive_minimum=True)
    projection_steps: int = setting(3000, "projection step cap", minimum=1)
    probes: int = setting(16, "Hutchinson probes of the Hessian trace", minimum=1)
    n_bootstrap: int = setting(1000, "replica resamples of beta* and gamma*", minimum=10)
    target_width: float = setting(0.3, "width of the gamma* interval that separates 2/3 from 1", minimum=0,
                                  exclusive_minimum=True)
    seed: int = setting(0, "random seed", minimum=0)

    @classmethod
    def quick(cls, **overrides) -> ClassifierConfig:
        """A reduced protocol (three ``eta`` over two decades, short runs) that runs in under a minute."""
        base = dict(
            lrs=(0.001, 0.01, 0.1),
            momenta=(0.8, 0.92, 0.97, 0.99, 0.996, 0.9985),
            replicas=3,
            steps=300,
            probes=8,
            projection_steps=1500,
            n_bootstrap=300,
        )
        base.update(overrides)
        return cls(**base)

    def __post_init__(self) -> None:
        validate(self)
        require(len(self.lrs) >= 2, "lrs", self.lrs, "at least two learning rates in (0, 1)")
        require(len(set(self.momenta)) >= 4, "momenta", self.momenta, "at least 4 distinct values in [0, 1)")


@dataclass(frozen=True)
class LearningRateSweep:
    """One ``eta``: per ``(beta, replica)`` the trace, losses and accuracy after projection; the hinge fit.

    Arrays are ``(momenta, replicas)``. ``travelled`` is ``nan`` where the run diverged.
    """

    lr: float
    momenta: NDArray[np.float64]
    trace_hessian: NDArray[np.float64]
    travelled: NDArray[np.float64]
    train_loss: NDArray[np.float64]
    test_loss: NDArray[np.float64]
    test_accuracy: NDArray[np.float64]
    diverged: NDArray[np.bool_]
    returned: NDArray[np.bool_]
    stable: NDArray[np.bool_]
    peak: float
    bracketed: bool
    peak_interval: tuple[float, float]
    replica_peaks: NDArray[np.float64]
    hinge: HingeFit | None  # eq. 14 on the mean curve, for comparison; None: < 4 momenta never diverged

    @property
    def best_momentum(self) -> float:
        """``beta* = 1 - 10^-x*`` from the peak ``x*`` of ``A`` in ``x = -log10(1 - beta)``."""
        return 1.0 - 10.0**-self.peak

    @property
    def best_momentum_interval(self) -> tuple[float, float]:
        """The replica-resampling interval of ``beta*`` (mapped through ``1 - 10^-x``)."""
        lo, hi = self.peak_interval
        return 1.0 - 10.0**-lo, 1.0 - 10.0**-hi

    @property
    def hinge_best_momentum(self) -> float:
        """``beta*`` from the breakpoint of the eq. 14 hinge (``nan`` without a hinge)."""
        return math.nan if self.hinge is None else 1.0 - 10.0**-self.hinge.breakpoint

    @property
    def mean_travelled(self) -> NDArray[np.float64]:
        """Replica mean of ``A`` per ``beta`` (``nan`` where a replica diverged)."""
        return self.travelled.mean(axis=1)


@dataclass(frozen=True)
class ClassifierResult:
    """Start of phase 2, the per-``eta`` sweeps, and the fit ``1 - beta* = C eta^gamma*`` with intervals.

    ``fitted_lrs`` are the bracketed ``eta`` the fit uses; with fewer than two the fit is ``nan``.
    ``replicas_needed`` / ``lrs_needed``: the replicas per ``eta`` (same ``eta``) or the learning rates on the
    same range (same replicas) that would make the interval ``target_width`` wide, from ``width ~ 1/sqrt(n)``.
    """

    config: ClassifierConfig
    input_size: int
    start_trace_hessian: float
    start_train_loss: float
    start_test_loss: float
    start_test_accuracy: float
    valley_steps: int
    lambda_max: float
    sweeps: tuple[LearningRateSweep, ...]
    fitted_lrs: tuple[float, ...]
    exponent: float
    exponent_interval: tuple[float, float]
    exponent_stderr: float
    constant: float
    constant_interval: tuple[float, float]
    replicas_needed: int | None
    lrs_needed: int | None
    seconds: float

    @property
    def exponent_width(self) -> float:
        """Width of the ``gamma*`` interval."""
        return self.exponent_interval[1] - self.exponent_interval[0]

    def summary(self) -> dict:
        """Plain JSON data (``null`` for an estimate that could not be made; JSON has no NaN).

        ``test_accuracy`` is the test accuracy at the valley start; ``post_projection_test_accuracy`` is per
        ``eta`` a list over ``momenta`` of replica means. Runs are listed as ``[eta, beta, replica]``.
        """
        sweeps = self.sweeps
        return {
            "test_accuracy": self.start_test_accuracy,
            "lrs": [s.lr for s in sweeps],
            "gamma_star": _finite(self.exponent),
            "gamma_star_interval": [_finite(v) for v in self.exponent_interval],
            "gamma_star_stderr": _finite(self.exponent_stderr),
            "gamma_star_width": _finite(self.exponent_width),
            "target_width": self.config.target_width,
            "replicas": self.config.replicas,
            "replicas_needed": self.replicas_needed,
            "lrs_needed": self.lrs_needed,
            "fitted_lrs": list(self.fitted_lrs),
            "constant": _finite(self.constant),
            "constant_interval": [_finite(v) for v in self.constant_interval],
            "momenta": sweeps[0].momenta.tolist(),
            "best_momentum": [s.best_momentum for s in sweeps],
            "best_momentum_interval": [list(s.best_momentum_interval) for s in sweeps],
            "bracketed": [s.bracketed for s in sweeps],
            "post_projection_test_accuracy": [s.test_accuracy.mean(axis=1).tolist() for s in sweeps],
            "not_returned": _runs(sweeps, lambda s: ~s.returned & ~s.diverged),
            "diverged": _runs(sweeps, lambda s: s.diverged),
            "linearly_unstable": [[s.lr, float(b)] for s in sweeps for b in s.momenta[~s.stable]],
            "lambda_max": self.lambda_max,
            "dataset": self.config.dataset,
            "seconds": self.seconds,
        }


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _runs(sweeps, flag) -> list[list[float]]:
    """``[eta, beta, replica]`` of every run where ``flag(sweep)`` (a ``(beta, replica)`` mask) is set."""
    return [[s.lr, float(s.momenta[b]), int(r)]
            for s in sweeps for b, r in zip(*flag(s).nonzero(), strict=True)]


# ----------------------------------------------------------------------------------------------- network


def _dataset(cfg: ClassifierConfig):
    """Flattened inputs standardised by the training mean and spread; ``(x, y, x_test, y_test)``."""
    from sgd_dynamics.experiments.datasets import load_dataset

    data = load_dataset(cfg.dataset, seed=cfg.seed).subset(cfg.train_size, seed=cfg.seed)
    x = np.asarray(data.x_train, np.float64).reshape(len(data.x_train), -1)
    xt = np.asarray(data.x_test, np.float64).reshape(len(data.x_test), -1)[: cfg.test_size]
    require(len(x) == cfg.train_size, "train_size", cfg.train_size,
            f"at most {len(data.x_train)} (the training split of {cfg.dataset})")
    mean, std = x.mean(), x.std()
    yt = np.asarray(data.y_test)[: cfg.test_size]
    return (x - mean) / std, np.asarray(data.y_train), (xt - mean) / std, yt


def _init(cfg: ClassifierConfig, input_size: int, torch):
    """LeCun-normal weights, zero biases: ``(1, fan_in, fan_out)`` and ``(1, 1, fan_out)`` tensors."""
    gen = torch.Generator().manual_seed(cfg.seed)
    sizes = (input_size, cfg.hidden, cfg.hidden, _CLASSES)
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
        params.append(torch.randn(1, fan_in, fan_out, generator=gen) / math.sqrt(fan_in))
        params.append(torch.zeros(1, 1, fan_out))
    return params


def _forward(params, x, torch):
    """Batched MLP: ``params`` carry a leading network axis ``R``; returns ``(R, P, 10)``."""
    h = x
    n_layers = len(params) // 2
    for i in range(n_layers):
        h = torch.matmul(h, params[2 * i]) + params[2 * i + 1]
        if i < n_layers - 1:
            h = torch.tanh(h)
    return h


def _losses(params, x, targets, torch):
    """Per-network ``(1/2P) sum_a |f(x_a) - y_a|^2``; ``targets`` broadcast to ``(R, P, 10)``."""
    return 0.5 * ((_forward(params, x, torch) - targets) ** 2).sum(-1).mean(-1)


def _heavy_ball(params, x, targets_fn, lr, momentum, steps, torch):
    """003 eq. 1: ``pi <- beta pi - grad L``, ``w <- w + eta pi``; ``lr``, ``momentum`` shaped ``(R, 1, 1)``.

    Returns the parameters and the last label-noise loss per network.
    """
    params = [p.detach().clone().requires_grad_(True) for p in params]
    buffers = [torch.zeros_like(p) for p in params]
    losses = torch.zeros(params[0].shape[0])
    for _ in range(steps):
        losses = _losses(params, x, targets_fn(), torch)
        grads = torch.autograd.grad(losses.sum(), params)  # networks are independent: sum = per-net grads
        with torch.no_grad():
            for p, b, g in zip(params, buffers, grads, strict=True):
                b.mul_(momentum).sub_(g)
                p.add_(lr * b)
    return [p.detach() for p in params], losses.detach()


def _trace_gauss_newton(params, x, probes, torch):
    """Hutchinson ``Tr G = (1/P) E_v |grad_w (v . f)|^2``, ``v ~ N(0, I)`` over ``(P, 10)``; per network.

    On the valley (zero residual) the Gauss-Newton matrix is the Hessian of the mean-squared loss.
    """
    params = [p.detach().clone().requires_grad_(True) for p in params]
    total = torch.zeros(params[0].shape[0], dtype=torch.float64)
    for v in probes:
        out = (_forward(params, x, torch) * v).sum()
        grads = torch.autograd.grad(out, params)
        total += sum((g.double() ** 2).sum(dim=tuple(range(1, g.ndim))) for g in grads)
    return (total / (len(probes) * x.shape[0])).numpy()


def _top_gauss_newton_eigenvalue(params, x, torch, iterations: int = 50) -> float:
    """``lambda_max`` of ``G = J^T J / P`` (the valley's Hessian) by power iteration on one network.

    ``J v`` comes from the double-backward trick (a VJP of a VJP), ``J^T u`` from one backward pass.
    """
    w = [p.detach().clone().requires_grad_(True) for p in params]
    gen = torch.Generator().manual_seed(0)
    v = [torch.randn(p.shape, generator=gen) for p in w]
    value = 0.0
    for _ in range(iterations):
        norm = math.sqrt(sum(float((a**2).sum()) for a in v))
        v = [a / norm for a in v]
        out = _forward(w, x, torch)
        u = torch.zeros_like(out, requires_grad=True)
        vjp = torch.autograd.grad((out * u).sum(), w, create_graph=True)
        jv = torch.autograd.grad(sum((a * b).sum() for a, b in zip(vjp, v, strict=True)), u)[0]
        v = [g / x.shape[0] for g in torch.autograd.grad((out * jv.detach()).sum(), w)]
        value = math.sqrt(sum(float((a**2).sum()) for a in v))
    return value


def _evaluate(params, data, probes, torch):
    x, y1h, xt, yt = data
    with torch.no_grad():
        train = _losses(params, x, y1h, torch).double().numpy()
        out = _forward(params, xt, torch)
        residual = out - torch.nn.functional.one_hot(yt, _CLASSES)
        test = (0.5 * (residual**2).sum(-1).mean(-1)).double().numpy()
        acc = (out.argmax(-1) == yt).double().mean(-1).numpy()
    return _trace_gauss_newton(params, x, probes, torch), train, test, acc


def _reach_valley(params, x, y1h, valley_loss: float, lr: float, max_steps: int, torch):
    """Full-batch Adam on the clean targets until every network's loss is below ``valley_loss``.

    Adam is elementwise, so on batched parameters it is exactly one Adam per network (003 App. A.3 projects
    with Adam as well). Returns the parameters and the number of steps taken.
    """
    params = [p.detach().clone().requires_grad_(True) for p in params]
    opt = torch.optim.Adam(params, lr=lr, foreach=True)  # one fused update: the step is overhead-bound
    steps = 0
    while steps < max_steps:
        opt.zero_grad()
        losses = _losses(params, x, y1h, torch)
        if float(losses.detach().max()) < valley_loss:
            break
        losses.sum().backward()
        opt.step()
        steps += 1
    return [p.detach() for p in params], steps


# ----------------------------------------------------------------------------------------------- study


def run_classifier_study(cfg: ClassifierConfig = ClassifierConfig()) -> ClassifierResult:
    """Run the three phases for every ``(eta, beta, replica)``, then fit ``beta*(eta)`` and ``gamma*``.

    The networks are float32 (three times faster than float64 on a CPU core; the valley loss 1e-4 and the
    traces are far above its resolution) and accumulate the trace in float64.
    """
    import torch

    t0 = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the machine is shared; tiny matmuls gain nothing from threads
    try:
        with threadpool_limits(limits=1):
            return _run(cfg, torch, t0)
    finally:
        torch.set_num_threads(threads)


def _seeded(torch, *key: int):
    """An independent torch generator per ``key`` (``SeedSequence`` avoids collisions between seeds)."""
    state = np.random.SeedSequence(list(key)).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & (2**63 - 1))


def _run(cfg: ClassifierConfig, torch, t0: float) -> ClassifierResult:
    xs, ys, xts, yts = _dataset(cfg)
    x, xt = torch.from_numpy(xs).float(), torch.from_numpy(xts).float()
    y1h = torch.nn.functional.one_hot(torch.from_numpy(ys).long(), _CLASSES).float()
    data = (x, y1h, xt, torch.from_numpy(yts).long())
    gen = _seeded(torch, cfg.seed, 1)
    probes = [torch.randn(1, x.shape[0], _CLASSES, generator=gen) for _ in range(cfg.probes)]

    start, valley_steps = _reach_valley(
        _init(cfg, x.shape[1], torch), x, y1h, cfg.valley_loss, 3e-3, cfg.valley_max_steps, torch
    )
    tr0, train0, test0, acc0 = (float(a[0]) for a in _evaluate(start, data, probes, torch))
    lam = _top_gauss_newton_eigenvalue(start, x, torch)
    momenta = np.asarray(sorted(set(cfg.momenta)), dtype=np.float64)
    raw = [_sweep_lr(cfg, i, start, data, probes, momenta, tr0, torch) for i in range(len(cfg.lrs))]
    rng = np.random.default_rng([cfg.seed, 3])
    resamples = rng.integers(0, cfg.replicas, size=(cfg.n_bootstrap, len(cfg.lrs), cfg.replicas))
    boots, sweeps = zip(*(_fit_sweep(cfg, i, r, momenta, lam, resamples[:, i]) for i, r in enumerate(raw)),
                        strict=True)
    fit = _fit_exponent(cfg, sweeps, np.column_stack(boots))
    return ClassifierResult(cfg, int(x.shape[1]), tr0, train0, test0, acc0, valley_steps, lam, sweeps, *fit,
                            time.perf_counter() - t0)


def _sweep_lr(cfg, i, start, data, probes, momenta, tr0, torch) -> dict:
    """Phases 2 and 3 at ``eta = lrs[i]`` for every ``(beta, replica)``; arrays shaped ``(beta, replica)``."""
    x, y1h = data[0], data[1]
    nb, nr = momenta.size, cfg.replicas
    batch = [p.expand(nb * nr, *p.shape[1:]).clone() for p in start]
    mom = torch.from_numpy(np.repeat(momenta, nr)).float().reshape(-1, 1, 1)
    noise_gen = _seeded(torch, cfg.seed, 2, i)

    def noisy_targets():
        # one stream per replica, shared by every beta (common random numbers across the beta grid)
        xi = torch.randn(1, nr, *y1h.shape, generator=noise_gen).expand(nb, -1, -1, -1)
        return y1h + cfg.label_noise * xi.reshape(nb * nr, *y1h.shape)

    noisy, last = _heavy_ball(batch, x, noisy_targets, cfg.lrs[i], mom, cfg.steps, torch)
    diverged = ~torch.isfinite(last) | (last > _DIVERGED_LOSS)
    for p, s in zip(noisy, start, strict=True):
        p[diverged] = s[0]  # a diverged network would keep the projection running; it is reported instead
    end = _reach_valley(noisy, x, y1h, cfg.valley_loss, cfg.projection_lr, cfg.projection_steps, torch)[0]
    trace, train, test, acc = _evaluate(end, data, probes, torch)
    div = diverged.numpy().reshape(nb, nr)
    with np.errstate(invalid="ignore", divide="ignore"):
        travelled = np.where(div, np.nan, np.log(tr0 / trace.reshape(nb, nr)))
    named = (("trace", trace), ("train", train), ("test", test), ("acc", acc))
    shaped = {k: v.reshape(nb, nr) for k, v in named}
    return shaped | {"travelled": travelled, "diverged": div}


def peak_location(x: NDArray, curves: NDArray) -> tuple[NDArray, NDArray]:
    """Sub-grid maximiser of each row of ``curves`` on the grid ``x``, and whether it is interior.

    The vertex of the parabola through the grid maximum and its two neighbours (clipped to them); a maximum
    at the first or last grid point is returned as that point, flagged not interior (a bound, not an
    estimate). Non-finite values (diverged runs) count as the lowest, and next to one the vertex is the grid
    maximum itself.

    >>> xs = np.array([0.0, 1.0, 2.0, 3.0])
    >>> at, inside = peak_location(xs, -(xs[None, :] - 1.3) ** 2)  # one row per curve
    >>> round(float(at[0]), 12), bool(inside[0])
    (1.3, True)
    """
    y = np.where(np.isfinite(curves), curves, -np.inf)
    m = np.argmax(y, axis=-1)
    inside = (m > 0) & (m < x.size - 1)
    j = np.clip(m, 1, x.size - 2)
    take = np.take_along_axis
    y0, y1, y2 = (take(y, (j + k)[..., None], axis=-1)[..., 0] for k in (-1, 0, 1))
    x0, x1, x2 = x[j - 1], x[j], x[j + 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        num = (x1 - x0) ** 2 * (y1 - y2) - (x1 - x2) ** 2 * (y1 - y0)
        den = (x1 - x0) * (y1 - y2) - (x1 - x2) * (y1 - y0)
        vertex = np.clip(x1 - 0.5 * num / den, x0, x2)
    vertex = np.where(np.isfinite(vertex) & np.isfinite(y0) & np.isfinite(y2), vertex, x1)
    return np.where(inside, vertex, x[m]), inside


def _fit_sweep(cfg, i, raw: dict, momenta, lam: float, resamples: NDArray
               ) -> tuple[NDArray, LearningRateSweep]:
    """Peak of the replica-mean curve, its replica-resampled values (returned for ``gamma*``), the hinge."""
    x = -np.log10(1 - momenta)
    travelled = raw["travelled"]
    mean = travelled.mean(axis=1)
    ok = np.isfinite(mean)
    hinge = (fit_hinge(x[ok], mean[ok], n_bootstrap=cfg.n_bootstrap, seed=cfg.seed + i)
             if np.unique(x[ok]).size >= 4 else None)
    (peak,), (inside,) = peak_location(x, mean[None, :])
    boot = peak_location(x, travelled[:, resamples].mean(axis=2).T)[0]
    per_replica = peak_location(x, travelled.T)[0]
    return boot, LearningRateSweep(
        float(cfg.lrs[i]), momenta, raw["trace"], travelled, raw["train"], raw["test"], raw["acc"],
        raw["diverged"], (raw["train"] < cfg.valley_loss) & ~raw["diverged"],
        cfg.lrs[i] * lam < 2 * (1 + momenta), float(peak), bool(inside),
        percentile_interval(boot, _CONFIDENCE), per_replica, hinge,
    )


def _slopes(log_lr: NDArray, log_gap: NDArray) -> tuple[NDArray, NDArray]:
    """Least-squares slope and intercept of every row of ``log_gap`` against ``log_lr``."""
    xc = log_lr - log_lr.mean()
    slope = (log_gap - log_gap.mean(axis=-1, keepdims=True)) @ xc / (xc @ xc)
    return slope, log_gap.mean(axis=-1) - slope * log_lr.mean()


def _fit_exponent(cfg, sweeps, boot_x: NDArray) -> tuple:
    """``fitted eta, gamma*, interval, s.e., C, interval, replicas needed, eta needed`` (see the module).

    ``boot_x[b, i]`` is the resampled peak of ``eta_i`` in draw ``b``: the draws are joint over ``eta``.
    """
    used = [i for i, s in enumerate(sweeps) if s.bracketed]
    nan2 = (math.nan, math.nan)
    if len(used) < 2:
        return (), math.nan, nan2, math.nan, math.nan, nan2, None, None
    log_lr = np.log([sweeps[i].lr for i in used])
    log_gap = np.log1p(-np.array([sweeps[i].best_momentum for i in used]))
    slope, intercept = _slopes(log_lr, log_gap)
    boot_x = boot_x[:, used]
    keep = np.all(np.isfinite(boot_x), axis=1)
    b_slope, b_icpt = _slopes(log_lr, np.log(10.0 ** -boot_x[keep]))
    interval = percentile_interval(b_slope, _CONFIDENCE)
    width = interval[1] - interval[0]
    scale = (width / cfg.target_width) ** 2
    c_lo, c_hi = np.exp(percentile_interval(b_icpt, _CONFIDENCE))
    return (tuple(sweeps[i].lr for i in used), float(slope), interval, float(np.std(b_slope, ddof=1)),
            float(np.exp(intercept)), (float(c_lo), float(c_hi)),
            max(cfg.replicas, math.ceil(cfg.replicas * scale)), max(len(used), math.ceil(len(used) * scale)))


def fit_momentum_scaling(
    lrs: NDArray[np.float64],
    best_momenta: NDArray[np.float64],
    intervals: NDArray[np.float64],
    *,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, tuple[float, float], float, tuple[float, float]]:
    """Least squares ``log(1 - beta*) = log C + gamma* log eta``; returns ``gamma*, CI, C, CI``.

    The intervals come from a parametric bootstrap: each ``log(1 - beta*_i)`` is drawn from a normal centred
    on the measurement whose central ``confidence`` mass spans the log of its hinge interval ``intervals[i]``
    (``(lo, hi)`` in ``beta``), and the line is refitted.

    >>> eta = np.array([0.01, 0.1, 1.0])
    >>> g, _, c, _ = fit_momentum_scaling(eta, 1 - 0.2 * eta ** 0.5, np.c_[1 - 0.2 * eta ** 0.5] * [1, 1])
    >>> round(g, 9), round(c, 9)
    (0.5, 0.2)
    """
    lrs, best = np.asarray(lrs, np.float64), np.asarray(best_momenta, np.float64)
    ci = np.asarray(intervals, np.float64).reshape(-1, 2)
    if lrs.shape != best.shape or lrs.size < 2 or ci.shape[0] != lrs.size:
        raise ValueError(
            f"lrs {lrs.shape}, best_momenta {best.shape} and intervals {ci.shape} must pair up, "
            "with at least 2 learning rates"
        )
    if not (np.all(best < 1) and np.all(ci < 1)):
        raise ValueError(
            f"best_momenta={best.tolist()!r} is invalid: expected values (and intervals) below 1"
        )
    x = np.log(lrs)
    y = np.log1p(-best)
    slope, intercept = np.polyfit(x, y, 1)
    from scipy.stats import norm

    z = norm.ppf(0.5 + confidence / 2)
    sd = np.abs(np.log1p(-ci[:, 0]) - np.log1p(-ci[:, 1])) / (2 * z)
    rng = np.random.default_rng(seed)
    y_star = y + sd * rng.standard_normal((n_bootstrap, y.size))
    xc = x - x.mean()
    slopes = (y_star - y_star.mean(axis=1, keepdims=True)) @ xc / (xc @ xc)
    intercepts = y_star.mean(axis=1) - slopes * x.mean()
    tail = 100 * (1 - confidence) / 2
    g_lo, g_hi = np.percentile(slopes, [tail, 100 - tail])
    c_lo, c_hi = np.exp(np.percentile(intercepts, [tail, 100 - tail]))
    return float(slope), (float(g_lo), float(g_hi)), float(math.exp(intercept)), (float(c_lo), float(c_hi))


def predicted_best_momentum(lr: float, constant: float, exponent: float = OPTIMAL_EXPONENT) -> float:
    """``1 - C eta^gamma`` (003 eq. 2), for plotting the fitted law against the sweep."""
    return 1.0 - constant * lr**exponent
