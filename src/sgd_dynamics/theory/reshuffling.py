"""Exact discrete theory of SGD with momentum under random reshuffling (epoch shuffling; issue 11 §4).

002 eq. 18 (with ERRATA 002.3), ``E||theta_{k+1} - theta_k||^2 = eta^2 tr(Sigma) / (S (1 - beta^2))``, assumes
minibatch noise that is independent across steps: minibatches drawn *with* replacement. ``DataLoader(
shuffle=True)`` instead draws a random permutation of the ``N`` examples per epoch and walks it in ``M``
batches: ``M = ceil(N / S)``, the last of size ``S_last = N - (M - 1) S`` (``drop_last=False``), or
``M = floor(N / S)`` batches of ``S`` and ``N - M S`` examples unused (``drop_last=True``, the study's
sampler).
The noise is anti-correlated within an epoch and independent across epochs; the state is cyclostationary
with period ``M`` steps. This module gives its second moments exactly (no continuous approximation).

Model. A quadratic with fixed per-example offsets: ``g_i(theta) = H theta - u_i``, ``sum_i u_i = 0``,
``Sigma = (1/N) sum_i u_i u_i^T``; batch ``b`` (size ``S_b``) has noise ``xi_b = (1/S_b) sum_{i in b} u_i``.
For linear regression the ``u_i`` are the per-example gradients at the minimum; the noise's dependence on
``theta`` (multiplicative noise, relative size ``O(eta d / (S (1 - beta)))``) is neglected, as in discrete.py.

Noise. Two distinct slots of a uniform permutation carry ``E[u_i u_j^T] = -Sigma / (N - 1)``, so within an
epoch ``Cov(xi_b, xi_b') = c_bb' Sigma`` with ``c_bb' = a_b delta_bb' + d``, ``a_b = N / ((N - 1) S_b)`` and
``d = -1 / (N - 1)`` (``Cov(xi_b) = (Sigma / S_b)(N - S_b) / (N - 1)``); across epochs 0. ``S_b = N``: no
noise.

Dynamics per Hessian mode (``rho``, ``s = q^T Sigma q``, ``h = rho + lambda``): ``z = (x, v)`` obeys the
recursion of discrete.py, ``z_{k+1} = A z_k + B xi_k`` with ``B = (eta, 1)`` (the sign of the noise does not
enter second moments). Batch ``b`` reaches the end of its epoch through ``f_b = A^{M-1-b} B``, and the
double sum over the epoch's batches collapses (``F = sum_b f_b``)::

    Q = s sum_{b,b'} c_bb' f_b f_b'^T = s [sum_b a_b f_b f_b^T + d F F^T]
      = s N / (N - 1) [V_M / S + (1 / S_last - 1 / S) B B^T - F F^T / N],   V_j = sum_{i<j} A^i B B^T A^{iT}.

The first ``j < M`` batches (all of size ``S``) inject ``Q_j = s N / (N - 1) [V_j / S - F_j F_j^T / N]`` with
``F_j = sum_{i<j} A^i B``. Then, with every sum evaluated by binary powering (:mod:`step_sums`):

1. the periodic stationary covariance at an epoch boundary solves the one-epoch Lyapunov equation
   ``P = A^M P A^{MT} + Q``;
2. after ``j`` steps of an epoch, ``P_j = A^j P A^{jT} + Q_j`` (``P_M = P``); the speed of step ``j`` is
   ``eta^2 sum_modes (P_j)_vv``, and its epoch average uses ``sum_{j=1}^M P_j = sum_{j=1}^M A^j P A^{jT}
   + s N / (N - 1) [sum_j V_j / S - sum_j F_j F_j^T / N + (1 / S_last - 1 / S) B B^T]``;
3. from a start ``z_0`` at an epoch boundary, independent of the later noise, after ``k = n M + j`` steps::

       E(x_k - x_0)^2 = a_k^T C_0 a_k + [A^j S_n A^{jT} + Q_j]_xx,    S_n = sum_{e<n} A^{eM} Q A^{eMT},

   with ``a_k`` the x-row of ``A^k - I`` and ``C_0 = Cov z_0``: ``P`` (training resumed at an epoch boundary),
   ``diag(P_xx, 0)`` (a fresh optimizer, ``v_0 = 0``, as :func:`diffusion.global_displacement_from_start`
   for sampling with replacement) or 0 (from the minimum);
4. limits: ``N -> inf`` at fixed ``S`` gives ``Q -> (s / S) V_M`` and the with-replacement theory of
   discrete.py; ``S = N`` gives ``Q = 0``.

A mode with ``h = 0`` has no stationary position (``Var x = inf``) but a finite speed; when ``S`` divides
``N`` (no ``drop_last``) every epoch's noise sums to zero along it, so it does not even diffuse.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from sgd_dynamics._validation import require
from sgd_dynamics.hyper import Hyperparams
from sgd_dynamics.theory.discrete import transition_matrix
from sgd_dynamics.theory.moments import StationaryMoments
from sgd_dynamics.theory.step_sums import (
    StepBlock,
    block_power,
    blocks_at,
    consecutive_chunks,
    one_step,
    stationary_sum,
)

ReshuffledStart = Literal["cyclostationary", "fresh_optimizer", "zero"]
RESHUFFLED_STARTS: tuple[str, ...] = ("cyclostationary", "fresh_optimizer", "zero")
_CHUNK_ELEMENTS = 1 << 16  # (steps x modes) per chunk of the displacement: ~40 MB of temporaries


@dataclass(frozen=True)
class EpochSchedule:
    """How one epoch splits a random permutation of ``dataset_size`` examples into minibatches, in order.

    >>> sch = EpochSchedule(dataset_size=10, batch_size=4)
    >>> sch.batches, sch.batch_sizes.tolist(), EpochSchedule(10, 4, drop_last=True).unused_examples
    (3, [4, 4, 2], 2)
    """

    dataset_size: int
    batch_size: int
    drop_last: bool = False

    def __post_init__(self) -> None:
        require(_is_int(self.batch_size) and self.batch_size >= 1, "batch_size", self.batch_size,
                "an integer >= 1")
        require(_is_int(self.dataset_size) and self.dataset_size >= self.batch_size, "dataset_size",
                self.dataset_size, f"an integer >= batch_size={self.batch_size}")
        require(isinstance(self.drop_last, (bool, np.bool_)), "drop_last", self.drop_last, "True or False")

    @classmethod
    def of(cls, hyper: Hyperparams, drop_last: bool = False) -> EpochSchedule:
        """The schedule of ``hyper`` (``sampler="without_replacement"``, ``dataset_size`` set)."""
        require(isinstance(hyper, Hyperparams), "hyper", hyper, "a sgd_dynamics.Hyperparams")
        require(hyper.sampler == "without_replacement", "sampler", hyper.sampler,
                "'without_replacement' (this is the theory of epoch reshuffling; for independent minibatches "
                "use sgd_dynamics.theory.stationary_speed)")
        return cls(dataset_size=int(hyper.dataset_size), batch_size=hyper.batch_size, drop_last=drop_last)

    @property
    def batches(self) -> int:
        """``M``, the steps per epoch."""
        n, s = self.dataset_size, self.batch_size
        return n // s if self.drop_last else -(-n // s)

    @property
    def last_batch_size(self) -> int:
        """Size of the epoch's last batch (``S`` with ``drop_last`` or when ``S`` divides ``N``)."""
        return self.batch_size if self.drop_last else self.dataset_size - (self.batches - 1) * self.batch_size

    @property
    def unused_examples(self) -> int:
        """Examples of each permutation that no batch uses (only with ``drop_last``)."""
        return self.dataset_size - self.batches * self.batch_size if self.drop_last else 0

    @property
    def batch_sizes(self) -> NDArray[np.int64]:
        """``S_b`` for the ``M`` batches of an epoch."""
        sizes = np.full(self.batches, self.batch_size, dtype=np.int64)
        sizes[-1] = self.last_batch_size
        return sizes

    @property
    def noise_scale(self) -> float:
        """``N / (N - 1)`` (0 for ``N = 1``, whose only batch is the full batch)."""
        n = self.dataset_size
        return n / (n - 1) if n > 1 else 0.0

    def noise_correlation(self) -> NDArray[np.float64]:
        """``c`` with ``Cov(xi_b, xi_b') = c_bb' Sigma`` for the batches of one epoch, shape ``(M, M)``.

        >>> EpochSchedule(dataset_size=4, batch_size=2).noise_correlation().round(6).tolist()
        [[0.333333, -0.333333], [-0.333333, 0.333333]]
        """
        n = self.dataset_size
        if n == 1:
            return np.zeros((1, 1))
        return np.diag(n / ((n - 1) * self.batch_sizes.astype(np.float64))) - 1.0 / (n - 1)


@dataclass(frozen=True)
class _Epoch:
    """Everything per mode that the predictions share: one step, one epoch, and the noise they inject."""

    hyper: Hyperparams
    schedule: EpochSchedule
    free: NDArray[np.bool_]                 # modes with h = 0
    noise: NDArray[np.float64]              # s, per mode
    step: StepBlock                         # one step, with prefix sums
    epoch: StepBlock                        # M steps, with prefix sums
    epoch_noise: NDArray[np.float64]        # Q
    boundary_covariance: NDArray[np.float64]  # P, with P_xx = 0 where h = 0 (it never enters there)

    def partial_noise(self, steps: StepBlock) -> NDArray[np.float64]:
        """``Q_j`` for blocks of ``j < M`` steps (each with its own ``j``)."""
        sch = self.schedule
        f = steps.response_sum
        scale = self.noise[..., None, None] * sch.noise_scale
        ff = f[..., :, None] * f[..., None, :]
        return scale * (steps.outer_sum / sch.batch_size - ff / sch.dataset_size)


def _epoch(eigenvalues: ArrayLike, noise_variances: ArrayLike, hyper: Hyperparams, drop_last: bool) -> _Epoch:
    schedule = EpochSchedule.of(hyper, drop_last)
    rho = hyper.check_stable(eigenvalues)
    s = np.atleast_1d(np.asarray(noise_variances, dtype=np.float64))
    if s.shape != rho.shape:
        raise ValueError(f"noise_variances must have one entry per eigenvalue ({rho.size}); "
                         f"got shape {s.shape}")
    bad = ~np.isfinite(s) | (s < 0)
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"noise_variances[{i}]={float(s[i])!r} is invalid: expected finite values >= 0")
    step = _one_step(rho, hyper)
    epoch = block_power(step, schedule.batches)
    q = _epoch_noise(epoch, step, s, schedule)
    free = hyper.curvature(rho) == 0
    return _Epoch(hyper=hyper, schedule=schedule, free=free, noise=s, step=step, epoch=epoch, epoch_noise=q,
                  boundary_covariance=_periodic_fixed_point(epoch, q, free))


def _one_step(rho: NDArray[np.float64], hyper: Hyperparams) -> StepBlock:
    """One step: ``A`` (discrete.py), ``A - I``, the noise response ``B = (eta, 1)`` and ``B B^T``."""
    h = hyper.curvature(rho)
    eta, beta = hyper.lr, hyper.momentum
    b = np.broadcast_to(np.array([eta, 1.0]), h.shape + (2,)).copy()
    minus_identity = np.empty(h.shape + (2, 2))
    minus_identity[..., 0, 0] = -eta * h       # A - I written out: (1 - eta h) - 1 would cancel
    minus_identity[..., 0, 1] = eta * beta
    minus_identity[..., 1, 0] = -h
    minus_identity[..., 1, 1] = beta - 1
    return one_step(transition_matrix(rho, hyper), minus_identity, b[..., :, None] * b[..., None, :], b,
                    prefix=True)


def _epoch_noise(epoch: StepBlock, step: StepBlock, s: NDArray[np.float64],
                 schedule: EpochSchedule) -> NDArray[np.float64]:
    """``Q = s N/(N-1) [V_M / S + (1/S_last - 1/S) B B^T - F F^T / N]``, the covariance one epoch injects."""
    f = epoch.response_sum
    q = (s * schedule.noise_scale)[:, None, None] * (
        epoch.outer_sum / schedule.batch_size
        + (1 / schedule.last_batch_size - 1 / schedule.batch_size) * step.outer_sum
        - f[:, :, None] * f[:, None, :] / schedule.dataset_size)
    return (q + np.swapaxes(q, -1, -2)) / 2


def _periodic_fixed_point(epoch: StepBlock, q: NDArray[np.float64], free: NDArray[np.bool_]
                          ) -> NDArray[np.float64]:
    """``P = sum_{e>=0} A^{eM} Q A^{eMT}``, the one-epoch Lyapunov fixed point.

    A free mode's ``x`` never decays, so only its ``v`` row is converged and its ``P_xx`` (meaningless, never
    used: ``x`` does not feed back when ``h = 0``) is set to 0.
    """
    p = np.zeros_like(q)
    for mask, rows in ((~free, [True, True]), (free, [False, True])):
        if np.any(mask):
            per_epoch = StepBlock(length=np.asarray(1.0), power=epoch.power[mask],
                                  power_minus_identity=epoch.power_minus_identity[mask], response_sum=None,
                                  outer_sum=q[mask])
            p[mask] = stationary_sum(per_epoch, np.broadcast_to(np.array(rows), (int(mask.sum()), 2)))[0]
    p[free, 0, 0] = 0.0
    return p


def periodic_stationary_covariance(eigenvalues: ArrayLike, noise_variances: ArrayLike, hyper: Hyperparams,
                                   drop_last: bool = False) -> StationaryMoments:
    """Per-mode ``Var x``, ``Cov(x, v)``, ``Var v`` at an epoch boundary in the cyclostationary law (item 1).

    ``hyper`` needs ``sampler="without_replacement"`` and ``dataset_size``; ``Var x = inf`` where ``h = 0``.

    >>> hp = Hyperparams(lr=0.1, momentum=0.0, batch_size=2, dataset_size=4, sampler="without_replacement")
    >>> # beta = 0: xi_1 = -xi_0, v_2 = -0.9 x_0 + 1.1 xi_0, Var x = (1e-4 / 3) / (1 - 0.81)(1 + 0.81)
    >>> float(periodic_stationary_covariance([1.0], [1.0], hp).velocity_variance[0])
    0.4034118445284482
    """
    ep = _epoch(eigenvalues, noise_variances, hyper, drop_last)
    p = ep.boundary_covariance
    return StationaryMoments(position_variance=np.where(ep.free, np.inf, p[:, 0, 0]),
                             cross_covariance=p[:, 0, 1].copy(), velocity_variance=p[:, 1, 1].copy())


def reshuffled_speed_per_step(eigenvalues: ArrayLike, noise_variances: ArrayLike, hyper: Hyperparams,
                              drop_last: bool = False) -> NDArray[np.float64]:
    """``E||theta_j - theta_{j-1}||^2`` for the steps ``j = 1..M`` of an epoch, cyclostationary (item 2).

    Step ``j`` uses the epoch's ``j``-th batch; cost ``O(M modes)``, memory bounded by chunks of steps.

    >>> hp = Hyperparams(lr=0.1, momentum=0.9, batch_size=4, dataset_size=4, sampler="without_replacement")
    >>> reshuffled_speed_per_step([1.0, 2.0], [1.0, 3.0], hp).tolist()  # full batch: no noise
    [0.0]
    """
    ep = _epoch(eigenvalues, noise_variances, hyper, drop_last)
    m, p = ep.schedule.batches, ep.boundary_covariance
    out = np.empty(m)
    out[-1] = np.sum(p[:, 1, 1])
    chunk = max(1, _CHUNK_ELEMENTS // max(p.shape[0], 1))
    lo = 0
    for within in consecutive_chunks(ep.step, 1, m, chunk):
        row = within.power[..., 1, :]  # (A^j P A^jT)_vv = row P row^T
        out[lo:lo + row.shape[0]] = np.sum(
            np.einsum("jmi,mik,jmk->jm", row, p, row) + ep.partial_noise(within)[..., 1, 1], axis=1)
        lo += row.shape[0]
    return hyper.lr**2 * out


def reshuffled_stationary_speed(eigenvalues: ArrayLike, noise_variances: ArrayLike, hyper: Hyperparams,
                                drop_last: bool = False) -> float:
    """Epoch-averaged ``E||theta_{k+1} - theta_k||^2`` under reshuffling (item 2), in ``O(log M)``.

    The counterpart of 002 eq. 18 (ERRATA 002.3) for ``DataLoader(shuffle=True)``; tends to
    ``stationary_speed(..., model="discrete")`` as ``N -> inf``.

    >>> hp = Hyperparams(lr=0.1, momentum=0.0, batch_size=2, dataset_size=4, sampler="without_replacement")
    >>> round(reshuffled_stationary_speed([1.0], [1.0], hp), 10)  # eta^2 (Var v_1 + Var v_2) / 2
    0.0036842105
    """
    ep = _epoch(eigenvalues, noise_variances, hyper, drop_last)
    sch, m = ep.schedule, ep.schedule.batches
    a = ep.step.power
    drift = a @ ep.boundary_covariance @ np.swapaxes(a, -1, -2)
    # sum_{j=1}^M A^j P A^jT: the outer sums of M steps with Y = A P A^T
    propagated = block_power(one_step(a, ep.step.power_minus_identity, drift), m).outer_sum
    e = ep.epoch
    bb = ep.step.outer_sum
    noise = (ep.noise * sch.noise_scale)[:, None, None] * (
        e.prefix_outer_sum / sch.batch_size - e.prefix_response_outer / sch.dataset_size
        + (1 / sch.last_batch_size - 1 / sch.batch_size) * bb)
    return float(hyper.lr**2 * np.sum(propagated[:, 1, 1] + noise[:, 1, 1]) / m)


def reshuffled_displacement_from_start(eigenvalues: ArrayLike, noise_variances: ArrayLike, hyper: Hyperparams,
                                       steps: ArrayLike, start: ReshuffledStart = "cyclostationary",
                                       drop_last: bool = False) -> NDArray[np.float64]:
    """``E||theta_k - theta_0||^2`` for each ``k`` in ``steps`` (integers >= 0), from an epoch boundary.

    Item 3 of the module docstring.

    ``start``: ``"cyclostationary"`` (training resumed at an epoch boundary, ``(x_0, v_0)`` from the periodic
    stationary law), ``"fresh_optimizer"`` (``x_0`` from that law, momentum buffer reset: ``v_0 = 0``, the
    study's start) or ``"zero"`` (``theta_0`` at the minimum, ``v_0 = 0``). Cost ``O(len(steps) modes)`` for
    steps that fill their range (``1..K``), ``O(len(steps) modes log k)`` for sparse ones (log-spaced);
    memory bounded by chunks of steps.

    >>> hp = Hyperparams(lr=0.1, momentum=0.0, batch_size=2, dataset_size=4, sampler="without_replacement")
    >>> reshuffled_displacement_from_start([0.0], [1.0], hp, [0, 1, 2, 10]).round(12).tolist()
    [0.0, 0.003333333333, 0.0, 0.0]
    """
    require(start in RESHUFFLED_STARTS, "start", start, f"one of {', '.join(RESHUFFLED_STARTS)}")
    ep = _epoch(eigenvalues, noise_variances, hyper, drop_last)
    k = _validated_steps(steps)
    m = ep.schedule.batches
    p = ep.boundary_covariance
    c0 = {"cyclostationary": p, "fresh_optimizer": p * np.array([[1.0, 0.0], [0.0, 0.0]]),
          "zero": np.zeros_like(p)}[start]
    per_epoch = StepBlock(length=np.asarray(1.0), power=ep.epoch.power,
                          power_minus_identity=ep.epoch.power_minus_identity, response_sum=None,
                          outer_sum=ep.epoch_noise)
    step = StepBlock(length=np.asarray(1.0), power=ep.step.power,
                     power_minus_identity=ep.step.power_minus_identity, response_sum=ep.step.response_sum,
                     outer_sum=ep.step.outer_sum)
    values, inverse = np.unique(k, return_inverse=True)
    chunk = max(1, _CHUNK_ELEMENTS // max(p.shape[0], 1))
    out = np.empty(values.size)
    for lo in range(0, values.size, chunk):
        kk = values[lo:lo + chunk]
        epochs = blocks_at(per_epoch, kk // m)
        within = blocks_at(step, kk % m)
        e_j = within.power_minus_identity[..., 0, :]  # x-rows: a_k = x-row of E_j + E_n + E_j E_n
        a = e_j + epochs.power_minus_identity[..., 0, :] + np.einsum("kmi,kmij->kmj", e_j,
                                                                    epochs.power_minus_identity)
        row = within.power[..., 0, :]
        noise = (np.einsum("kmi,kmij,kmj->km", row, epochs.outer_sum, row)
                 + ep.partial_noise(within)[..., 0, 0])
        start_term = (a[..., 0] ** 2 * c0[:, 0, 0] + 2 * a[..., 0] * a[..., 1] * c0[:, 0, 1]
                      + a[..., 1] ** 2 * c0[:, 1, 1])
        out[lo:lo + chunk] = np.sum(start_term + noise, axis=1)
    return out[inverse.reshape(-1)]


def _validated_steps(steps: ArrayLike) -> NDArray[np.int64]:
    t = np.atleast_1d(np.asarray(steps))
    ok = t.ndim == 1 and t.size > 0 and np.issubdtype(t.dtype, np.number)
    if ok:
        tf = t.astype(np.float64)
        ok = bool(np.all(np.isfinite(tf)) and np.all(tf >= 0) and np.all(tf == np.round(tf)))
    require(ok, "steps", np.asarray(steps).tolist() if np.asarray(steps).size < 8 else "array",
            "a non-empty 1-D array of integers >= 0")
    return t.astype(np.int64)


def _is_int(x: object) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)
