"""Batched replicas of SGD from ``theta*``, each with its own minibatch stream (issue 11 section 2).

``R`` replicas restart from the same ``theta*`` with a fresh momentum buffer and run exactly the update of
``torch.optim.SGD`` (dampening 0, no Nesterov; :mod:`sgd_dynamics.hyper`)::

    b_k^r = beta b_{k-1}^r + g_{B_k^r}(theta_{k-1}^r) + lambda theta_{k-1}^r,
    theta_k^r = theta_{k-1}^r - eta b_k^r,

with replica ``r``'s minibatch ``B_k^r`` drawn from its own index stream (both samplers of
``experiments.training.minibatch_indices``, seeded per replica, e.g. with :func:`replica_seeds`). The
``R`` parameter vectors are stacked into one ``(R, m)`` tensor and a single vectorised forward/backward
serves all replicas: the replicas' minibatch losses are computed by ``torch.func.functional_call`` under
``torch.func.vmap`` over the replica axis (inputs ``(R, S, ...)``), and one reverse pass differentiates
their sum. Replica ``r``'s loss depends only on its own row, so the gradient's row ``r`` is replica ``r``'s
gradient. The reverse pass is ``torch.autograd.grad`` on the vmapped forward: ``torch.func.grad`` of the
same sum gives a bitwise identical gradient but cost 14% more per step on a CPU (median of 15 interleaved
rounds, MLP 40-256-256-10, R = 4, S = 128). ``benchmarks/bench_replicas.py`` prints the cost against
sequential ``torch.optim.SGD`` runs: on one CPU thread the batched step is compute-bound (``bmm`` does the
FLOPs of ``R`` ``mm``) and costs about as much as the ``R`` runs; the saving is the per-step launch and
Python overhead, which dominates small networks on a GPU.

Modules run in train mode, as in ``experiments.training.train``. Buffers (BatchNorm running statistics)
are kept per replica, ``(R, ...)``, and updated in place by each replica's batch; the model's own
parameters and buffers are never modified. Dropout draws independent masks per replica
(``randomness="different"``) from the global generator seeded from ``seed`` inside
``torch.random.fork_rng``, which restores it afterwards; replicas with dropout therefore match separate
runs in distribution only.
BatchNorm with ``momentum=None`` (a cumulative average that reads the batch count into Python) cannot be
vectorised and is refused.

At the recorded steps (a schedule, default :class:`~sgd_dynamics.measure.tracker.LogSchedule` with 20
points per decade: every early step, then log-spaced) it keeps, never a parameter vector per step:

- the Gram matrix ``G_rs = (theta_k^r - theta*) . (theta_k^s - theta*)`` in float64, from which
  :func:`sgd_dynamics.estimation.replica_decomposition.replica_decomposition` gives the unbiased total,
  drift ``||E theta_k - theta*||^2`` and diffusion ``tr Cov(theta_k)`` with jackknife standard errors;
- the speed ``||theta_k^r - theta_{k-1}^r||^2`` per replica (002 eq. 18) and the minibatch loss of step ``k``;
- projections ``q_i . (theta_k^r - theta*)`` and ``q_i . v_k^r``, ``v = -b`` (002 eq. 2; with momentum 0,
  ``v_k = -(g + lambda theta_{k-1})``, the tracker's convention) on the rows ``q_i`` of ``directions``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray
from torch import Tensor, nn

from sgd_dynamics._validation import require as _require
from sgd_dynamics.estimation.replica_decomposition import ReplicaDecomposition, replica_decomposition
from sgd_dynamics.hyper import Hyperparams
from sgd_dynamics.measure.flat_params import ParameterLayout
from sgd_dynamics.measure.seeding import seeded_torch_rng
from sgd_dynamics.measure.tracker import LogSchedule, Schedule, as_schedule

__all__ = [
    "ReplicaSGD",
    "ReplicaState",
    "ReplicaTrajectory",
    "init_replicas",
    "replica_seeds",
    "run_replicas",
]

LossFn = Callable[[Tensor, Tensor], Tensor]
RECORD_SCHEDULE = LogSchedule(20)   # every step up to ~20, then 20 log-spaced steps per decade


def replica_seeds(seed: int, replicas: int) -> list[int]:
    """Independent per-replica seeds spawned from one seed (``numpy.random.SeedSequence``).

    >>> replica_seeds(0, 3) == replica_seeds(0, 3), len(set(replica_seeds(0, 3)))
    (True, 3)
    """
    _require(isinstance(replicas, int) and replicas >= 1, "replicas", replicas, "an integer >= 1")
    return [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(replicas)]


@dataclass
class ReplicaState:
    """The stacked state of ``R`` replicas, updated in place by :meth:`ReplicaSGD.step`."""

    params: Tensor                 # (R, m) flat parameters, order of model.parameters()
    momentum: Tensor               # (R, m) b_k (with momentum 0: the last g + lambda theta)
    buffers: dict[str, Tensor]     # name -> (R, *shape), e.g. BatchNorm running statistics
    step: int = 0                  # steps taken since theta*

    @property
    def replicas(self) -> int:
        """Number of replicas ``R``."""
        return int(self.params.shape[0])

    def load_into(self, model: nn.Module, replica: int) -> nn.Module:
        """Copy replica ``replica``'s parameters and buffers into ``model`` (same architecture); return it."""
        _require(isinstance(replica, int) and 0 <= replica < self.replicas, "replica", replica,
                 f"an integer in [0, {self.replicas})")
        layout = ParameterLayout.from_module(model)
        with torch.no_grad():
            params = layout.unflatten(self.params[replica])
            for name, p in model.named_parameters():
                p.copy_(params[name])
            for name, b in model.named_buffers():
                b.copy_(self.buffers[name][replica])
        return model


def init_replicas(model: nn.Module, replicas: int = 4) -> ReplicaState:
    """``R`` copies of the model's parameters and buffers (``theta*``) with a fresh momentum buffer."""
    _require(isinstance(replicas, int) and replicas >= 2, "replicas", replicas, "an integer >= 2")
    layout = ParameterLayout.from_module(model)
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    buffers = {n: b.detach().unsqueeze(0).repeat(replicas, *([1] * b.ndim)) for n, b in model.named_buffers()}
    return ReplicaState(flat.unsqueeze(0).repeat(replicas, 1), torch.zeros(replicas, layout.dim,
                        dtype=layout.dtype, device=layout.device), buffers)


@contextlib.contextmanager
def training_mode(model: nn.Module) -> Iterator[None]:
    """Every submodule in train mode (what a training step sees); each module's mode restored after."""
    modes = [(m, m.training) for m in model.modules()]
    model.train()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def _check_vectorisable(model: nn.Module) -> None:
    for name, module in model.named_modules():
        if (isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats
                and module.momentum is None):
            raise ValueError(f"model.{name or 'self'} is BatchNorm with momentum=None: expected a float "
                             "momentum (the cumulative average reads the batch count into Python and cannot "
                             "be vectorised over replicas)")


class ReplicaSGD:
    """One vectorised SGD step for all replicas: ``torch.optim.SGD``'s update on the stacked parameters.

    Parameters
    ----------
    model : the network (its parameters and buffers are never modified); defines the architecture.
    loss_fn : ``loss_fn(outputs, targets)``, a mean over the minibatch.
    hyper : learning rate, momentum and weight decay (batch size: the streams' minibatch size).
    """

    def __init__(self, model: nn.Module, loss_fn: LossFn, hyper: Hyperparams) -> None:
        _check_vectorisable(model)
        self.model, self.loss_fn, self.hyper = model, loss_fn, hyper
        self.layout = ParameterLayout.from_module(model)

        def replica_loss(params: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor, y: Tensor
                         ) -> Tensor:
            return loss_fn(torch.func.functional_call(model, (params, buffers), (x,)), y)

        self._losses = torch.func.vmap(replica_loss, randomness="different")

    def gradient(self, state: ReplicaState, inputs: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """Per-replica minibatch gradients ``(R, m)`` and losses ``(R,)`` at ``state.params``.

        One vmapped forward and one backward through it for all replicas; the parameters enter as
        views of the rows of ``state.params`` (so each gradient arrives per parameter, not as a slice
        scattered into an ``(R, m)`` zero block).
        """
        views = self.layout.unflatten(state.params)
        params = {name: v.detach().requires_grad_(True) for name, v in views.items()}
        losses = self._losses(params, state.buffers, inputs, targets)
        grads = torch.autograd.grad(losses.sum(), list(params.values()))
        return torch.cat([g.reshape(g.shape[0], -1) for g in grads], dim=1), losses.detach()

    def step(self, state: ReplicaState, inputs: Tensor, targets: Tensor) -> Tensor:
        """One step of every replica on its minibatch, ``inputs (R, S, ...)``; return the losses ``(R,)``.

        Call inside train mode (as :func:`run_replicas` does); updates ``state`` in place.
        """
        hyper = self.hyper
        grad, losses = self.gradient(state, inputs, targets)
        with torch.no_grad():
            # The arithmetic of torch.optim.SGD (_single_tensor_sgd), element by element.
            if hyper.weight_decay != 0:
                grad = grad.add(state.params, alpha=hyper.weight_decay)
            if hyper.momentum == 0:
                state.momentum.copy_(grad)
            elif state.step == 0:
                state.momentum.copy_(grad)                  # fresh buffer: b_1 = g + lambda theta_0
            else:
                state.momentum.mul_(hyper.momentum).add_(grad)
            state.params.add_(state.momentum, alpha=-hyper.lr)
        state.step += 1
        return losses


@dataclass(frozen=True)
class ReplicaTrajectory:
    """What :func:`run_replicas` recorded (arrays on the CPU) and the final state.

    ``T`` recorded steps, ``R`` replicas, ``k`` directions.
    """

    steps: NDArray[np.int64]                      # (T,) 1-based steps since theta*
    gram: NDArray[np.float64]                     # (T, R, R) (theta^r - theta*) . (theta^s - theta*)
    local_sq_displacement: NDArray[np.float64]    # (T, R) ||theta_k^r - theta_{k-1}^r||^2
    loss: NDArray[np.float64]                     # (T, R) minibatch loss of step k, at theta_{k-1}
    position_projection: NDArray[np.float64]      # (T, R, k) q_i . (theta_k^r - theta*)
    velocity_projection: NDArray[np.float64]      # (T, R, k) q_i . v_k^r
    loss_per_step: NDArray[np.float64]            # (steps, R) every step's minibatch loss
    state: ReplicaState = field(repr=False)

    @property
    def global_sq_displacement(self) -> NDArray[np.float64]:
        """``||theta_k^r - theta*||^2``, ``(T, R)``: the diagonal of the Gram matrices."""
        return np.diagonal(self.gram, axis1=-2, axis2=-1).copy()

    def decomposition(self) -> ReplicaDecomposition:
        """Total, drift and diffusion of ``||theta_k - theta*||^2`` per recorded step, ``(T,)``."""
        return replica_decomposition(self.gram)

    def mode_decomposition(self) -> ReplicaDecomposition:
        """The same split of ``(q_i . (theta_k - theta*))^2`` per direction, arrays ``(T, k)``."""
        x = np.swapaxes(self.position_projection, 1, 2)           # (T, k, R)
        return replica_decomposition(x[..., :, None] * x[..., None, :])


def _directions_rows(directions: ArrayLike | Tensor | None, layout: ParameterLayout) -> Tensor:
    m = layout.dim
    if directions is None:
        return torch.zeros(0, m, dtype=layout.dtype, device=layout.device)
    d = torch.as_tensor(directions)
    if d.ndim != 2 or d.shape[1] != m:
        hint = " (transpose an (m, k) eigenvector matrix)" if d.ndim == 2 and d.shape[0] == m else ""
        raise ValueError(f"directions has shape {tuple(d.shape)}: expected (k, {m}), one direction per row "
                         f"in the flat parameter order{hint}")
    return d.to(dtype=layout.dtype, device=layout.device)


def _next_indices(streams: Sequence[Iterator[Tensor]], batch_size: int, device: torch.device) -> Tensor:
    idx = [next(s) for s in streams]
    shapes = {tuple(i.shape) for i in idx}
    _require(shapes == {(batch_size,)}, "index_streams minibatch shapes", sorted(shapes),
             f"one shape, ({batch_size},) (hyper.batch_size)")
    return torch.stack(idx).to(device)


def run_replicas(model: nn.Module, loss_fn: LossFn, x: Tensor, y: Tensor, hyper: Hyperparams, steps: int,
                 index_streams: Sequence[Iterator[Tensor]], *, directions: ArrayLike | Tensor | None = None,
                 schedule: Schedule | int | None = RECORD_SCHEDULE, seed: int = 0,
                 state: ReplicaState | None = None) -> ReplicaTrajectory:
    """Run ``R = len(index_streams)`` replicas for ``steps`` steps from ``theta*`` (the model's parameters).

    ``index_streams``: one endless stream of minibatch index tensors ``(S,)`` per replica, e.g.
    ``[minibatch_indices(N, S, sampler, s) for s in replica_seeds(seed, R)]``. ``directions``: ``(k, m)``
    rows ``q_i``. ``schedule``: the recorded steps (``None``: every step; an integer stride; a callable).
    ``seed``: the dropout masks' RNG, seeded from ``(seed, state.step)`` so that a continued state draws
    fresh masks. ``state``: continue these replicas (their step count goes on) instead of restarting from
    ``theta*``; displacements are still measured from the model's parameters.
    """
    _require(isinstance(steps, int) and steps >= 1, "steps", steps, "an integer >= 1")
    streams = list(index_streams)
    _require(len(streams) >= 2, "len(index_streams)", len(streams), ">= 2 (one stream per replica)")
    _require(len({id(s) for s in streams}) == len(streams), "index_streams", "(a stream repeated)",
             "a distinct stream per replica (a shared stream would interleave the replicas' minibatches)")
    state = init_replicas(model, len(streams)) if state is None else state
    _require(state.replicas == len(streams), "state.replicas", state.replicas,
             f"len(index_streams) = {len(streams)}")
    rows = _directions_rows(directions, ParameterLayout.from_module(model))
    recorder = _Recorder(model, state, rows, steps)
    sgd, due = ReplicaSGD(model, loss_fn, hyper), as_schedule(schedule)
    stream = int(np.random.SeedSequence([seed, state.step]).generate_state(1)[0])
    with seeded_torch_rng(stream, state.params.device), training_mode(model):
        for i in range(steps):
            idx = _next_indices(streams, hyper.batch_size, x.device)
            record = due(state.step + 1)
            if record:
                recorder.before_step(state)
            losses = sgd.step(state, x[idx], y[idx])
            recorder.every_step(i, losses)
            if record:
                recorder.after_step(state, losses)
    return recorder.trajectory(state)


def _gram(displacement: Tensor, scratch: Tensor | None = None, chunk: int = 16384) -> Tensor:
    """``G_rs = d_r . d_s`` in float64 for ``d_r = theta^r - theta*``, without a float64 copy of the block.

    Pivot on replica 0: ``d_r = f_r + h`` with ``f_r = d_r - d_0`` and ``h = d_0``, so
    ``G = F + b 1^T + 1 b^T + a`` with ``F = f f^T``, ``b = f h``, ``a = h . h``. The diffusion
    ``(tr G - 1^T G 1 / R) / (R - 1)`` then depends on ``F`` alone (the ``b`` and ``a`` terms cancel exactly
    in float64), so it keeps the precision of the differences however large the drift is. The products
    are accumulated in float64 over column chunks: a float32 accumulation over ``m`` terms loses up to
    ``~sqrt(m) eps`` (1.3e-6 relative at m = 78 858 with this machine's BLAS), and its size depends on the
    BLAS kernel, so a result that differed between machines.
    """
    f = torch.sub(displacement, displacement[0], out=scratch)
    h = displacement[0]
    r = f.shape[0]
    ff = torch.zeros(r, r, dtype=torch.float64, device=f.device)
    b = torch.zeros(r, dtype=torch.float64, device=f.device)
    a = torch.zeros((), dtype=torch.float64, device=f.device)
    for j in range(0, f.shape[1], chunk):
        fc, hc = f[:, j:j + chunk].double(), h[j:j + chunk].double()
        ff += fc @ fc.T
        b += fc @ hc
        a += hc @ hc
    return ff + b[:, None] + b[None, :] + a


class _Recorder:
    """The per-step records of :func:`run_replicas`, kept on the parameters' device until the end.

    Positions ``theta_k - theta*`` and velocities ``-b_k`` share one ``(2R, m)`` block, so the ``(m, k)``
    directions (the largest operand) are read once per recorded step.
    """

    def __init__(self, model: nn.Module, state: ReplicaState, directions: Tensor, steps: int) -> None:
        self.reference = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
        self.directions = directions.T.contiguous()          # (m, k)
        self.previous = torch.empty_like(state.params)
        self.block = torch.empty(2 * state.replicas, state.params.shape[1], dtype=state.params.dtype,
                                 device=state.params.device)
        self.scratch = torch.empty_like(state.params)
        self.losses = torch.empty(steps, state.replicas, dtype=torch.float64, device=state.params.device)
        self.rows: dict[str, list[Tensor]] = {k: [] for k in ("gram", "speed", "loss", "projection")}
        self.steps: list[int] = []

    def before_step(self, state: ReplicaState) -> None:
        self.previous.copy_(state.params)

    def every_step(self, i: int, losses: Tensor) -> None:
        self.losses[i] = losses

    def after_step(self, state: ReplicaState, losses: Tensor) -> None:
        if not bool(torch.isfinite(losses).all()):
            raise FloatingPointError(f"a replica diverged at step {state.step}: losses="
                                     f"{losses.cpu().numpy()}; lower the lr")
        r, rows = state.replicas, self.rows
        displacement = torch.sub(state.params, self.reference, out=self.block[:r])
        rows["gram"].append(_gram(displacement, self.scratch))
        delta = torch.sub(state.params, self.previous, out=self.previous)
        rows["speed"].append(torch.linalg.vector_norm(delta, dim=1).square())
        rows["loss"].append(losses)
        if self.directions.shape[1]:
            torch.neg(state.momentum, out=self.block[r:])
            rows["projection"].append(self.block @ self.directions)       # (2R, k)
        self.steps.append(state.step)

    def trajectory(self, state: ReplicaState) -> ReplicaTrajectory:
        r, k, t = state.replicas, self.directions.shape[1], len(self.steps)
        shapes = {"gram": (t, r, r), "speed": (t, r), "loss": (t, r), "projection": (t, 2 * r, k)}
        out = {name: (torch.stack(v).double().cpu().numpy() if v else np.zeros(shapes[name]))
               for name, v in self.rows.items()}
        positions, velocities = out["projection"][:, :r], out["projection"][:, r:]
        return ReplicaTrajectory(np.asarray(self.steps, np.int64), out["gram"], out["speed"], out["loss"],
                                 positions, velocities, self.losses.cpu().numpy(), state)
