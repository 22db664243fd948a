"""Trajectory tracker: displacements and phase-space projections recorded during SGD training.

For the update of ``torch.optim.SGD`` (:mod:`sgd_dynamics.hyper`; ``dampening=0``, no Nesterov)::

    b_k = beta b_{k-1} + g(theta_{k-1}) + lambda theta_{k-1},   theta_k = theta_{k-1} - eta b_k,

the tracker records at step ``k`` (the ``k``-th call of :meth:`TrajectoryTracker.record`):

- ``local_sq_displacement = ||delta_k||^2 = ||theta_k - theta_{k-1}||^2`` (002 fig. 1, eq. 18),
- ``global_sq_displacement = ||Delta_k||^2 = ||theta_k - theta_ref||^2`` (002 section 2; the
  anomalous-diffusion power law ``||Delta_k||^2 ~ k^c``),
- ``position_projection[:, i] = q_i . (theta_k - theta_ref)`` and ``velocity_projection[:, i] = q_i . v_k``
  onto the given directions (the phase-space oscillations of 002 eqs. 9-10 and section 7),
- the loss, and optionally full copies of ``theta_k`` and ``v_k`` on a sparse schedule.

Velocity (002 eq. 2): ``v_k = -b_k``, minus the momentum buffer, so that ``theta_k - theta_{k-1} = eta v_k``.
With momentum 0 PyTorch keeps no buffer; the tracker then uses what the buffer would hold,
``v_k = -(g(theta_{k-1}) + lambda theta_{k-1})``, read from ``.grad`` — so call :meth:`record` after
``optimizer.step()`` and before ``optimizer.zero_grad()``. Parameters the optimizer does not update
(or that had no gradient) have ``v = 0``.

Cost: the flat vectors are copied into preallocated ``(B, 2, m)`` blocks (no per-step allocation of a
flat vector) and projected with one matrix-matrix product per block of ``B`` recorded steps; reading
:attr:`TrajectoryTracker.history` flushes the partial block. Everything stays on the parameters' device
until a flush moves the few numbers per step to the CPU. The projections still cost ``2 k m``
multiply-adds per recorded step against roughly ``3 S m`` for a training step of batch ``S`` on an MLP,
i.e. ``2k / 3S`` (16% for ``k = 30``, ``S = 128``); on a CPU, recording every step with many directions
therefore costs more than 10%, and a stride (``schedule=10``) brings it down to a few percent
(``benchmarks/bench_measure.py`` prints the ratios).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor, nn

from sgd_dynamics.measure.flat_params import ParameterLayout

Schedule = Callable[[int], bool]


@dataclass(frozen=True)
class LinearSchedule:
    """Steps ``start, start + stride, start + 2 stride, ...`` (1-based step numbers).

    >>> [k for k in range(1, 12) if LinearSchedule(stride=4)(k)]
    [1, 5, 9]
    """

    stride: int = 1
    start: int = 1

    def __post_init__(self) -> None:
        if not (isinstance(self.stride, int) and self.stride >= 1):
            raise ValueError(f"stride={self.stride!r} is invalid: expected an integer >= 1")
        if not (isinstance(self.start, int) and self.start >= 1):
            raise ValueError(f"start={self.start!r} is invalid: expected an integer >= 1")

    def __call__(self, step: int) -> bool:
        return step >= self.start and (step - self.start) % self.stride == 0


@dataclass(frozen=True)
class LogSchedule:
    """Steps ``round(10^(j / points_per_decade))`` for ``j = 0, 1, ...`` (all small steps, then log-spaced).

    >>> [k for k in range(1, 120) if LogSchedule(points_per_decade=5)(k)]
    [1, 2, 3, 4, 6, 10, 16, 25, 40, 63, 100]
    """

    points_per_decade: int = 10

    def __post_init__(self) -> None:
        if not (isinstance(self.points_per_decade, int) and self.points_per_decade >= 1):
            raise ValueError(f"points_per_decade={self.points_per_decade!r} is invalid: "
                             "expected an integer >= 1")

    def __call__(self, step: int) -> bool:
        if step < 1:
            return False
        n = self.points_per_decade
        j = n * math.log10(step)
        return any(round(10 ** (i / n)) == step for i in range(max(0, math.floor(j) - 1), math.ceil(j) + 2))


def as_schedule(schedule: Schedule | int | None, name: str = "schedule") -> Schedule:
    """``None``: every step; an integer ``s``: every ``s``-th step starting at step 1; else a callable."""
    if schedule is None:
        return LinearSchedule(1)
    if isinstance(schedule, int) and not isinstance(schedule, bool):
        if schedule < 1:
            raise ValueError(f"{name}={schedule!r} is invalid: expected a stride >= 1, None or a callable")
        return LinearSchedule(schedule)
    if callable(schedule):
        return schedule
    raise ValueError(f"{name}={schedule!r} is invalid: expected None, an integer stride >= 1, or a callable "
                     "step -> bool (LinearSchedule, LogSchedule)")


def _check_sgd(optimizer: torch.optim.Optimizer) -> None:
    if not isinstance(optimizer, torch.optim.SGD):
        raise ValueError(f"optimizer={type(optimizer).__name__} is invalid: expected torch.optim.SGD "
                         "(the velocity is read from its momentum buffer)")
    for i, group in enumerate(optimizer.param_groups):
        if group.get("nesterov", False):
            raise ValueError(f"optimizer.param_groups[{i}]['nesterov']=True is invalid: "
                             "expected nesterov=False (the heavy-ball velocity v = -momentum_buffer is not "
                             "the Nesterov step)")
        if group.get("dampening", 0) != 0:
            raise ValueError(f"optimizer.param_groups[{i}]['dampening']={group['dampening']!r} is invalid: "
                             "expected dampening=0")
        if group.get("maximize", False):
            raise ValueError(f"optimizer.param_groups[{i}]['maximize']=True is invalid: "
                             "expected maximize=False")


class TrajectoryTracker:
    """Record displacements, projections and the loss of an SGD trajectory.

    Parameters
    ----------
    model : the trained ``nn.Module``; the reference point ``theta_ref`` is its parameters now.
    optimizer : its ``torch.optim.SGD`` (momentum and weight decay allowed; dampening 0, no Nesterov).
    directions : ``(k, m)`` rows ``q_i`` (e.g. ``hessian_eigenpairs(...).eigenvectors.T``) or ``None``.
        Projections are plain inner products, so orthonormal rows give coordinates.
    schedule : which steps to record: ``None`` (every step), an integer stride, or a callable
        ``step -> bool`` such as :class:`LinearSchedule` or :class:`LogSchedule`. Steps count from 1.
    snapshot_schedule : steps at which full ``theta_k`` and ``v_k`` are kept (on the CPU); ``None``: never.
        Only steps that ``schedule`` records can be snapshotted.
    block_size : recorded steps per projection block ``B`` (memory ``2 B m`` numbers).
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                 directions: Tensor | None = None, *, schedule: Schedule | int | None = None,
                 snapshot_schedule: Schedule | int | None = None, block_size: int = 64) -> None:
        _check_sgd(optimizer)
        if not (isinstance(block_size, int) and block_size >= 1):
            raise ValueError(f"block_size={block_size!r} is invalid: expected an integer >= 1")
        self.layout = ParameterLayout.from_module(model)
        self._params = list(model.parameters())
        if not all(p.is_contiguous() for p in self._params):
            raise ValueError("model has non-contiguous parameters: expected contiguous ones (the tracker "
                             "reads them through flat views; call .contiguous() on them before training)")
        self._flat_params = [p.detach().view(-1) for p in self._params]
        m, dtype, device = self.layout.dim, self.layout.dtype, self.layout.device
        self.optimizer = optimizer
        owned = {id(p) for g in optimizer.param_groups for p in g["params"]}
        if not any(id(p) in owned for p in self._params):
            raise ValueError("optimizer does not update any parameter of model: "
                             "expected the model's optimizer")
        self._group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
        self._zeros = [torch.zeros_like(f) for f in self._flat_params]
        self.schedule = as_schedule(schedule)
        self.snapshot_schedule = None if snapshot_schedule is None else as_schedule(snapshot_schedule,
                                                                                   "snapshot_schedule")
        if directions is None:
            self._directions = torch.zeros(0, m, dtype=dtype, device=device)
        else:
            d = torch.as_tensor(directions)
            if d.ndim != 2 or d.shape[1] != m:
                hint = " (transpose an (m, k) eigenvector matrix)" if d.ndim == 2 and d.shape[0] == m else ""
                raise ValueError(f"directions has shape {tuple(d.shape)}: expected (k, {m}), one direction "
                                 f"per row in the flat parameter order{hint}")
            self._directions = d.to(dtype=dtype, device=device)
        self.block_size = block_size
        self._reference = torch.cat(self._flat_params).clone()
        # theta_{k-1} whenever step k is due and step k-1 is not in the current block:
        self._prev = self._reference.clone()
        self._block = torch.empty(block_size, 2, m, dtype=dtype, device=device)  # rows: (theta_k, v_k)
        self._local = torch.empty(block_size, dtype=dtype, device=device)
        self._scratch = torch.empty(m, dtype=dtype, device=device)
        self._rows = 0
        self._step = 0
        self._last_recorded = 0
        self._steps: list[int] = []
        self._losses: list[Any] = []
        self._chunks: list[dict[str, NDArray]] = []
        self._snapshots: list[tuple[int, NDArray, NDArray]] = []

    @property
    def reference(self) -> Tensor:
        """``theta_ref``, the flat parameters at construction."""
        return self._reference

    @property
    def step(self) -> int:
        """Number of :meth:`record` calls so far (the current step ``k``)."""
        return self._step

    def record(self, loss: float | Tensor | None = None) -> None:
        """Register one optimizer step; call right after ``optimizer.step()`` at every step."""
        self._step += 1
        k = self._step
        if self.schedule(k):
            row = self._rows
            position, velocity = self._block[row, 0], self._block[row, 1]   # velocity row holds b_k = -v_k
            torch.cat(self._flat_params, out=position)
            previous = self._block[row - 1, 0] if row > 0 and self._last_recorded == k - 1 else self._prev
            torch.sub(position, previous, out=self._scratch)
            torch.dot(self._scratch, self._scratch, out=self._local[row])
            self._velocity_into(velocity, previous)
            self._steps.append(k)
            self._losses.append(loss.detach() if isinstance(loss, Tensor) else loss)
            self._rows += 1
            self._last_recorded = k
            if self.snapshot_schedule is not None and self.snapshot_schedule(k):
                self._snapshots.append((k, position.cpu().numpy().copy(), -velocity.cpu().numpy()))
            if self._rows == self.block_size:
                self._flush()
        elif self.schedule(k + 1):
            torch.cat(self._flat_params, out=self._prev)

    def _velocity_into(self, out: Tensor, previous: Tensor) -> None:
        """The buffer ``b_k = -v_k`` into ``out`` (negated at flush); ``previous`` is ``theta_{k-1}``."""
        sources, decay_terms, offset = [], [], 0
        momentum_free = momentum_free_without_grad = 0
        for p, zero in zip(self._params, self._zeros, strict=True):
            group, n = self._group_of.get(id(p)), zero.numel()
            if group is None:
                sources.append(zero)
            elif group["momentum"] != 0:
                buf = self.optimizer.state[p].get("momentum_buffer")
                sources.append(zero if buf is None else buf.reshape(-1))
            else:
                momentum_free += 1
                if p.grad is None:
                    momentum_free_without_grad += 1
                    sources.append(zero)
                else:
                    sources.append(p.grad.reshape(-1))
                    if group["weight_decay"] != 0:
                        decay_terms.append((offset, n, group["weight_decay"]))
            offset += n
        if momentum_free and momentum_free_without_grad == momentum_free:
            raise RuntimeError("momentum=0 and no parameter has a .grad: call tracker.record() after "
                               "optimizer.step() and before optimizer.zero_grad(), so the velocity can be "
                               "read")
        torch.cat(sources, out=out)
        for start, n, decay in decay_terms:
            out[start:start + n].add_(previous[start:start + n], alpha=decay)

    def _flush(self) -> None:
        n = self._rows
        if n == 0:
            return
        block = self._block[:n]
        self._prev.copy_(block[n - 1, 0])   # theta of the last recorded step, for a next step in a new block
        block[:, 0].sub_(self._reference)
        global_sq = torch.linalg.vector_norm(block[:, 0], dim=1).square()
        projections = block.reshape(2 * n, -1) @ self._directions.T
        projections = projections.reshape(n, 2, -1).cpu().numpy()
        losses = [float(x) if x is not None else np.nan for x in self._losses]
        self._chunks.append({
            "step": np.asarray(self._steps, dtype=np.int64),
            "loss": np.asarray(losses, dtype=np.float64),
            "local_sq_displacement": self._local[:n].cpu().numpy().copy(),
            "global_sq_displacement": global_sq.cpu().numpy(),
            "position_projection": projections[:, 0].copy(),
            "velocity_projection": -projections[:, 1],
        })
        self._rows, self._steps, self._losses = 0, [], []

    @property
    def history(self) -> dict[str, NDArray]:
        """The recorded arrays (flushes the current block), one row per recorded step.

        Keys: ``step`` (1-based), ``loss`` (NaN where none was given), ``local_sq_displacement``,
        ``global_sq_displacement`` (steps,), ``position_projection``, ``velocity_projection`` (steps, k),
        ``snapshot_step`` (s,), ``position_snapshot``, ``velocity_snapshot`` (s, m): positions are
        ``theta_k`` itself (not ``theta_k - theta_ref``).
        """
        self._flush()
        k, m = self._directions.shape[0], self.layout.dim
        keys = {"step": (np.int64, ()), "loss": (np.float64, ()), "local_sq_displacement": (None, ()),
                "global_sq_displacement": (None, ()), "position_projection": (None, (k,)),
                "velocity_projection": (None, (k,))}
        out: dict[str, NDArray] = {}
        for key, (dtype, tail) in keys.items():
            if self._chunks:
                out[key] = np.concatenate([c[key] for c in self._chunks])
            else:
                out[key] = np.zeros((0, *tail), dtype=dtype or np.float64)
        self._chunks = [out] if self._chunks else []
        out = {key: value.copy() for key, value in out.items()}   # the caller may modify its arrays
        out["snapshot_step"] = np.asarray([s for s, _, _ in self._snapshots], dtype=np.int64)
        out["position_snapshot"] = (np.stack([p for _, p, _ in self._snapshots]) if self._snapshots
                                    else np.zeros((0, m)))
        out["velocity_snapshot"] = (np.stack([v for _, _, v in self._snapshots]) if self._snapshots
                                    else np.zeros((0, m)))
        return out
