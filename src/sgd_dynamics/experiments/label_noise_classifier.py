"""Optimal momentum of a small MLP classifier on MNIST-1D under label noise (003 Sec. 4.2, App. A.3-A.4).

The three phases of 003 Fig. 2a, scaled down to run in minutes on two CPU cores:

1. **Reach the valley.** A tanh MLP ``40 -> h -> h -> 10`` is trained with Adam on the clean one-hot targets
   of ``P`` MNIST-1D examples (generated offline by ``mnist1d.data.make_dataset``) until the mean-squared
   training loss ``(1/2P) sum_a |f(x_a) - y_a|^2`` is below ``valley_loss`` (the criterion of phase 3 as well,
   so the start and the ends are measured alike).
2. **Label-noise SGD with heavy-ball momentum** (003 eq. 1, full batch, fresh Gaussian label noise
   ``y + eps xi`` every step) for every ``(eta, beta)`` of the sweep, from that same point, for a fixed number
   of steps. The sweep runs all ``beta`` of one ``eta`` as a batch of independent networks (batched matmuls).
3. **Project back** by noiseless full-batch Adam to the same training loss, which removes the transverse
   spread ``~ eps^2 eta / (1 - beta)`` that would otherwise penalise large ``beta`` (003 App. A.3).

Mean-squared loss with Gaussian label noise is the setting of the theory: the valley is the set of
interpolating weights, the label-noise covariance is ``eps^2 / P`` times the Gauss-Newton matrix, which equals
the Hessian on the valley, so eq. 7 drifts down ``Tr H``. The distance travelled along the valley is therefore
measured by the log-decrease ``A = log(Tr H_start / Tr H_end)`` of the Hessian trace after projection
(Hutchinson estimate of ``(1/P) sum_a |J_a|_F^2`` with the same probes for every run, common random numbers),
with the test loss and accuracy recorded alongside. Per ``eta``, ``beta*`` is the breakpoint of the continuous
hinge of 003 eq. 14 (:func:`sgd_dynamics.estimation.fit_hinge`, bootstrap interval) fitted to ``A`` against
``x = -log10(1 - beta)`` rather than against ``beta`` itself: the ``beta`` grid is geometric in ``1 - beta``
over more than two decades, where ``A`` is close to a hinge in ``log(1 - beta)`` (the two timescales are
powers of ``1 - beta``: ``tau_1 ~ (1 - beta)^-1``, ``tau_2 ~ (1 - beta)^2``) and not in ``beta``. Then
``gamma*`` and ``C`` come from ``log(1 - beta*) = log C + gamma* log eta`` by least squares, with a parametric
bootstrap that draws each ``log(1 - beta*)`` from a normal whose spread matches its hinge interval.
The theory predicts ``gamma* = 2/3``; what is measured is reported as measured.
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
from sgd_dynamics.theory.momentum_scaling import OPTIMAL_EXPONENT

_CLASSES = 10


@dataclass(frozen=True)
class ClassifierConfig:
    """The three-phase protocol. ``momenta`` is the ``beta`` grid, shared by every ``eta``."""

    train_size: int = setting(256, "training examples", minimum=1)
    test_size: int = setting(512, "test examples", minimum=1)
    hidden: int = setting(32, "hidden width", minimum=1)
    lrs: tuple[float, ...] = setting((0.01, 0.02, 0.05, 0.1), "learning rates eta (at least two)", minimum=0,
                                     maximum=1, exclusive_minimum=True, exclusive_maximum=True)
    momenta: tuple[float, ...] = setting((0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.998, 0.999),
                                         "momenta beta, shared by every eta (at least 4 distinct)", minimum=0,
                                         maximum=1, exclusive_maximum=True)
    label_noise: float = setting(0.5, "label-noise standard deviation eps", minimum=0, exclusive_minimum=True)
    steps: int = setting(2000, "label-noise steps per run", minimum=1)
    valley_loss: float = setting(1e-4, "loss that defines the valley", minimum=0, maximum=1,
                                 exclusive_minimum=True, exclusive_maximum=True)
    valley_max_steps: int = setting(20_000, "step cap to reach the valley", minimum=1)
    projection_lr: float = setting(1e-3, "learning rate of the projection back to the valley", minimum=0,
                                   exclusive_minimum=True)
    projection_steps: int = setting(5000, "projection steps", minimum=1)
    probes: int = setting(16, "Hutchinson probes of the Hessian trace", minimum=1)
    n_bootstrap: int = setting(1000, "bootstrap resamples of the hinge fits", minimum=10)
    seed: int = setting(0, "random seed", minimum=0)

    @classmethod
    def quick(cls, **overrides) -> ClassifierConfig:
        """A reduced protocol (smaller data and network, two ``eta``, short runs) that runs in seconds."""
        base = dict(
            train_size=256,
            test_size=256,
            hidden=32,
            lrs=(0.03, 0.1),
            momenta=(0.8, 0.9, 0.95, 0.98, 0.99, 0.995),
            steps=400,
            probes=8,
            valley_max_steps=8000,
            projection_steps=2000,
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
    """One ``eta``: per ``beta`` the trace, losses and accuracy after projection, and the hinge fit."""

    lr: float
    momenta: NDArray[np.float64]
    trace_hessian: NDArray[np.float64]
    travelled: NDArray[np.float64]
    train_loss: NDArray[np.float64]
    test_loss: NDArray[np.float64]
    test_accuracy: NDArray[np.float64]
    hinge: HingeFit

    @property
    def best_momentum(self) -> float:
        """``beta* = 1 - 10^-x*`` from the hinge breakpoint ``x*`` in ``x = -log10(1 - beta)``."""
        return 1.0 - 10.0**-self.hinge.breakpoint

    @property
    def best_momentum_interval(self) -> tuple[float, float]:
        """The bootstrap interval of ``beta*`` (the hinge interval mapped through ``1 - 10^-x``)."""
        lo, hi = self.hinge.breakpoint_interval
        return 1.0 - 10.0**-lo, 1.0 - 10.0**-hi


@dataclass(frozen=True)
class ClassifierResult:
    """Start of phase 2, the per-``eta`` sweeps, and the fit ``1 - beta* = C eta^gamma*`` with intervals."""

    config: ClassifierConfig
    start_trace_hessian: float
    start_train_loss: float
    start_test_loss: float
    start_test_accuracy: float
    valley_steps: int
    sweeps: tuple[LearningRateSweep, ...]
    exponent: float
    exponent_interval: tuple[float, float]
    constant: float
    constant_interval: tuple[float, float]
    seconds: float


# ----------------------------------------------------------------------------------------------- network


def _dataset(cfg: ClassifierConfig):
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = cfg.train_size + cfg.test_size
    args.train_split = cfg.train_size / args.num_samples
    args.seed = cfg.seed
    d = make_dataset(args)
    x, xt = np.asarray(d["x"], np.float64), np.asarray(d["x_test"], np.float64)
    mean, std = x.mean(), x.std()
    return (x - mean) / std, np.asarray(d["y"]), (xt - mean) / std, np.asarray(d["y_test"])


def _init(cfg: ClassifierConfig, torch):
    """LeCun-normal weights, zero biases.

    Returns a list of ``(1, fan_in, fan_out)`` and ``(1, 1, fan_out)`` tensors.
    """
    gen = torch.Generator().manual_seed(cfg.seed)
    sizes = (40, cfg.hidden, cfg.hidden, _CLASSES)
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
        params.append(torch.randn(1, fan_in, fan_out, generator=gen, dtype=torch.float64) / math.sqrt(fan_in))
        params.append(torch.zeros(1, 1, fan_out, dtype=torch.float64))
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
    """003 eq. 1: ``pi <- beta pi - grad L``, ``w <- w + eta pi``.

    ``lr``, ``momentum`` shaped ``(R, 1, 1)``.
    """
    params = [p.detach().clone().requires_grad_(True) for p in params]
    buffers = [torch.zeros_like(p) for p in params]
    for _ in range(steps):
        loss = _losses(params, x, targets_fn(), torch).sum()  # networks are independent: sum = per-net grads
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for p, b, g in zip(params, buffers, grads, strict=True):
                b.mul_(momentum).sub_(g)
                p.add_(lr * b)
    return [p.detach() for p in params]


def _trace_gauss_newton(params, x, probes, torch):
    """Hutchinson ``Tr G = (1/P) E_v |grad_w (v . f)|^2``, ``v ~ N(0, I)`` over ``(P, 10)``; per network.

    On the valley (zero residual) the Gauss-Newton matrix is the Hessian of the mean-squared loss.
    """
    params = [p.detach().clone().requires_grad_(True) for p in params]
    total = torch.zeros(params[0].shape[0], dtype=torch.float64)
    for v in probes:
        out = (_forward(params, x, torch) * v).sum()
        grads = torch.autograd.grad(out, params)
        total += sum((g**2).sum(dim=tuple(range(1, g.ndim))) for g in grads)
    return (total / (len(probes) * x.shape[0])).numpy()


def _evaluate(params, data, probes, torch):
    x, y1h, xt, yt = data
    with torch.no_grad():
        train = _losses(params, x, y1h, torch).numpy()
        out = _forward(params, xt, torch)
        test = (
            0.5 * ((out - torch.nn.functional.one_hot(yt, _CLASSES).double()) ** 2).sum(-1).mean(-1)
        ).numpy()
        acc = (out.argmax(-1) == yt).double().mean(-1).numpy()
    return _trace_gauss_newton(params, x, probes, torch), train, test, acc


def _reach_valley(params, x, y1h, valley_loss: float, lr: float, max_steps: int, torch):
    """Full-batch Adam on the clean targets until every network's loss is below ``valley_loss``.

    Adam is elementwise, so on batched parameters it is exactly one Adam per network (003 App. A.3 projects
    with Adam as well). Returns the parameters and the number of steps taken.
    """
    params = [p.detach().clone().requires_grad_(True) for p in params]
    opt = torch.optim.Adam(params, lr=lr)
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
    """Run the three phases for every ``(eta, beta)``.

    Then fit ``beta*(eta)`` and ``1 - beta* = C eta^gamma*``.
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


def _run(cfg: ClassifierConfig, torch, t0: float) -> ClassifierResult:
    xs, ys, xts, yts = _dataset(cfg)
    x, xt = torch.from_numpy(xs), torch.from_numpy(xts)
    y, yt = torch.from_numpy(ys).long(), torch.from_numpy(yts).long()
    y1h = torch.nn.functional.one_hot(y, _CLASSES).double()
    data = (x, y1h, xt, yt)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    probes = [
        torch.randn(1, x.shape[0], _CLASSES, generator=gen, dtype=torch.float64) for _ in range(cfg.probes)
    ]

    def project(params):
        return _reach_valley(params, x, y1h, cfg.valley_loss, cfg.projection_lr, cfg.projection_steps, torch)[
            0
        ]

    start, valley_steps = _reach_valley(
        _init(cfg, torch), x, y1h, cfg.valley_loss, 3e-3, cfg.valley_max_steps, torch
    )
    tr0, train0, test0, acc0 = (float(a[0]) for a in _evaluate(start, data, probes, torch))

    momenta = np.asarray(sorted(set(cfg.momenta)), dtype=np.float64)
    nb = momenta.size
    noise_gen = torch.Generator().manual_seed(cfg.seed + 2)
    sweeps = []
    for i, eta in enumerate(cfg.lrs):
        batch = [p.expand(nb, *p.shape[1:]).clone() for p in start]
        lr = torch.full((nb, 1, 1), eta, dtype=torch.float64)
        mom = torch.from_numpy(momenta).reshape(nb, 1, 1)
        noise_gen.manual_seed(cfg.seed + 2 + i)

        def noisy_targets():
            return y1h + cfg.label_noise * torch.randn(
                nb, *y1h.shape, generator=noise_gen, dtype=torch.float64
            )

        end = project(_heavy_ball(batch, x, noisy_targets, lr, mom, cfg.steps, torch))
        trace, train, test, acc = _evaluate(end, data, probes, torch)
        with np.errstate(invalid="ignore", divide="ignore"):
            travelled = np.log(tr0 / trace)
        ok = np.isfinite(travelled)
        hinge = fit_hinge(
            -np.log10(1 - momenta[ok]), travelled[ok], n_bootstrap=cfg.n_bootstrap, seed=cfg.seed + i
        )
        sweeps.append(LearningRateSweep(float(eta), momenta, trace, travelled, train, test, acc, hinge))

    exponent, exponent_ci, constant, constant_ci = fit_momentum_scaling(
        np.array([s.lr for s in sweeps]),
        np.array([s.best_momentum for s in sweeps]),
        np.array([s.best_momentum_interval for s in sweeps]),
        n_bootstrap=cfg.n_bootstrap,
        seed=cfg.seed,
    )
    return ClassifierResult(
        cfg,
        tr0,
        train0,
        test0,
        acc0,
        valley_steps,
        tuple(sweeps),
        exponent,
        exponent_ci,
        constant,
        constant_ci,
        time.perf_counter() - t0,
    )


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
