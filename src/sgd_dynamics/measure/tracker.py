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

Data parallelism (``torch.nn.parallel.DistributedDataParallel``): every rank holds the same parameters
and momentum buffers after each step, so one rank's record is the trajectory. With
``record_on="rank0"`` (the default) only rank 0 of the default process group records; the other ranks
count steps and do nothing else (their history has no rows). ``record_on="all"`` records on every rank.
Neither communicates. Pass the wrapped model or its ``.module``: both have the same parameters in the
same order.

Cost (``benchmarks/bench_measure.py`` prints the ratios). With directions, on a CPU with float32/64
parameters, a recorded step only copies ``theta_k`` into a row of a preallocated ``(B, m)`` block (one
pass with streaming stores, which leave the caches to the training step) and appends to a plan. When
the block's ``B`` rows are full, a flush projects ``delta_k = theta_k - theta_{k-1}`` and the anchors and
accumulates both squared displacements. At one torch thread one kernel does all of it, column chunk by
column chunk: the chunk's increments into a scratch, then a register-tiled product of the scratch with
the directions, packed once in column tiles (``_tracker_kernels.project_increments``): each row is read
from memory once, nothing is written back. With more torch threads the rows are turned into increments
in place and projected by one ``(B, m) @ (m, k)`` product in torch's thread pool, in float32 by oneDNN
(:func:`_block_projection`); a thread of the tracker's own would compete with the pool's spinning
workers. Issue 15 profile (``m = 78858``, k = 30, float32, a 1.8-2.0 ms training step, AMD EPYC): at one
thread the flush costs 97-105 us a row (the in-place increments and the BLAS product it replaced: 44 +
103 us), the copy 22-26 us, Python a few us; 1.077x the plain step. On Sapphire Rapids (AVX-512 tiles,
a 1.0 ms step) 83 us, 33 us (the streamed copy is bound by the memory's write bandwidth) and 1.12-1.17x.
Without directions a step runs a one-pass kernel (``delta_k``, both squares, ``theta_k`` kept; no
rows), and off the CPU five torch operations (sums in the parameters' dtype). The few numbers per step
are moved to the CPU at a flush. Reading :attr:`TrajectoryTracker.history` flushes the partial block.

Velocity from the displacement: with a single learning rate ``eta`` for every parameter group, equal
when ``theta_{k-1}`` was taken and at step ``k``, PyTorch's update gives ``q.v_k = q.delta_k / eta``, and
``q.(theta_k - theta_ref) = q.(theta_a - theta_ref) + sum_{a<j<=k} q.delta_j`` from an anchor step ``a``
projected directly (the first step of each block and any step whose predecessor was not recorded), so
one row per step is projected instead of two. Otherwise (groups with different lrs, an lr changed by a
scheduler, lr 0) the tracker projects the momentum buffer itself, as ``v_k = -b_k`` defines it.
Precision: ``delta_k`` is the exact difference of the stored parameters, so the two velocities differ
only by the rounding of ``theta_k``: about ``eps |theta| / (eta |b|)`` relative (1e-13 in float64, up to
~1e-4 in float32, where ``-b_k`` is the velocity of the exact-arithmetic update and ``delta_k / eta`` that
of the float32 trajectory actually stored). Anchored positions differ from a direct projection by the
rounding of at most ``B`` projected increments. The projections cost ``k m`` multiply-adds per step
against roughly ``3 S m`` for a training step of batch ``S`` on an MLP (``k / 3S``, 8% for ``k = 30``,
``S = 128``); a stride (``schedule=10``) makes the tracker nearly free.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor, nn

from sgd_dynamics._validation import require
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


def _distributed_rank() -> int:
    """The rank of this process in the default ``torch.distributed`` group; 0 without one."""
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    return torch.distributed.get_rank() if distributed else 0


_NO_GRAD = ("momentum=0 and no parameter has a .grad: call tracker.record() after optimizer.step() and "
            "before optimizer.zero_grad(), so the velocity can be read")


def _compiled(kernel: Any, *args: Any) -> Callable[..., Any]:
    """``kernel`` compiled for the types of ``args`` (loaded from numba's cache when it is there).

    The tracker's arrays keep their types for its whole life, so it calls this entry point directly: a
    call then skips the dispatcher's type resolution, 13 of the 26 us that a dispatched call takes with
    the caches cold after a training step (1.7 vs 2.5 us warm; issue 15 profile).
    """
    import numba

    return kernel.compile(tuple(numba.typeof(a) for a in args))


def _kernels() -> Any:
    """The numba kernels (:mod:`sgd_dynamics.measure._tracker_kernels`), imported on first use.

    numba is a hard dependency, imported this late so that importing the tracker stays light.
    """
    from sgd_dynamics.measure import _tracker_kernels

    return _tracker_kernels


def _block_projection(directions: Tensor) -> Callable[[Tensor], Tensor]:
    """``rows -> rows @ directions.T``, the ``(B, k)`` projections of a block of rows.

    On a CPU in float32 through oneDNN's inner-product primitive (the op behind ``torch.compile``'s
    frozen linear layers), which reads the ``(k, m)`` directions as they are: 0.65x the time of
    ``torch.mm`` (MKL) for ``k = 30`` and 64 or 128 rows of ``m = 78858`` (68 vs 102 and 62 vs 90 us per
    row, one thread), 0.85x for ``k = 100``; float32 sums either way. The probe below also refuses it
    where a reduced-precision mode would round the directions. Elsewhere, or where the op is missing,
    ``(k, m) @ (m, B)`` with ``torch.mm``: the fastest of MKL's layouts (issue 15 profile, k = 30: 0.7x
    the time of ``(B, m) @ (m, k)``, of numpy's product and of 8192-column ``addmm`` chunks).
    """
    def blas(rows: Tensor) -> Tensor:
        return torch.mm(directions, rows.T).T

    if directions.device.type != "cpu" or directions.dtype != torch.float32 or not directions.shape[0]:
        return blas
    try:   # a private op: check once that this build has it and that it computes the product
        inner_product = torch.ops.mkldnn._linear_pointwise

        def onednn(rows: Tensor) -> Tensor:
            return inner_product(rows, directions, None, "none", [], "")

        probe = torch.zeros(1, directions.shape[1], dtype=directions.dtype)
        probe[0, 0] = 1.0
        if torch.backends.mkldnn.is_available() and torch.equal(onednn(probe)[0], directions[:, 0]):
            return onednn
    except (RuntimeError, TypeError, AttributeError):
        pass
    return blas


class TrajectoryTracker:
    """Record displacements, projections and the loss of an SGD trajectory.

    Parameters
    ----------
    model : the trained ``nn.Module``; the reference point ``theta_ref`` is its parameters now. The
        tracker reads the parameters' storage as it is now: build it after moving or casting the model
        (``.to(...)``), and do not rebind ``p.data`` afterwards (in-place updates are fine).
    optimizer : its ``torch.optim.SGD`` (momentum and weight decay allowed; dampening 0, no Nesterov).
    directions : ``(k, m)`` rows ``q_i`` (e.g. ``hessian_eigenpairs(...).eigenvectors.T``) or ``None``.
        Projections are plain inner products, so orthonormal rows give coordinates.
    schedule : which steps to record: ``None`` (every step), an integer stride, or a callable
        ``step -> bool`` such as :class:`LinearSchedule` or :class:`LogSchedule`. Steps count from 1.
    snapshot_schedule : steps at which full ``theta_k`` and ``v_k`` are kept (on the CPU); ``None``: never.
        Only steps that ``schedule`` records can be snapshotted.
    block_size : rows per projection block ``B`` (memory ``B m`` numbers): a block holds at most ``B``
        recorded steps, ``B - 1`` when the velocity comes from the displacement (one anchor row), ``B / 2``
        when it is projected from the momentum buffer (two rows a step). The default 128 keeps the memory
        of the former ``2 x 64`` rows; per row, the product of 128 costs 0.85x that of 64 (k = 30).
    record_on : under ``torch.distributed``, ``"rank0"`` (record on rank 0 only) or ``"all"``.
    on_flush : called with the rows of every flushed block (the keys of :attr:`history` without the
        snapshots), in order, e.g. to stream them to TensorBoard.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                 directions: Tensor | None = None, *, schedule: Schedule | int | None = None,
                 snapshot_schedule: Schedule | int | None = None, block_size: int = 128,
                 record_on: Literal["rank0", "all"] = "rank0",
                 on_flush: Callable[[dict[str, NDArray]], None] | None = None) -> None:
        _check_sgd(optimizer)
        require(record_on in ("rank0", "all"), "record_on", record_on, "'rank0' or 'all'")
        require(on_flush is None or callable(on_flush), "on_flush", on_flush, "None or a callable")
        self.recording = record_on == "all" or _distributed_rank() == 0
        self._on_flush = on_flush
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
        tracked = {id(p) for p in self._params}
        # The groups whose learning rate moves the tracked parameters, each with its tracked parameters.
        self._groups = [(g, [p for p in g["params"] if id(p) in tracked]) for g in optimizer.param_groups
                        if any(id(p) in tracked for p in g["params"])]
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
            self._directions = d.to(dtype=dtype, device=device).contiguous()
        self._projection = _block_projection(self._directions)
        self.block_size = block_size
        # Room for the first step of a block, which takes up to three rows (its predecessor or anchor,
        # its delta, its buffer).
        self._capacity = max(block_size, 3) if self._directions.shape[0] else 0
        self._reference = torch.cat(self._flat_params).clone()
        # theta_{k-1} whenever step k is due (theta_k once it is recorded), and the common learning rate
        # read when it was taken:
        self._prev = self._reference.clone()
        self._prev_lr = self._common_lr()
        self._prev_is_in_block = False
        self._current = torch.empty(m, dtype=dtype, device=device)   # receives theta_k (torch path)
        self._scratch = torch.empty(m, dtype=dtype, device=device)
        self._block = torch.empty(self._capacity, m, dtype=dtype, device=device)
        self._squares = torch.empty(2, block_size, dtype=dtype, device=device)   # local, global (torch path)
        self._numpy_dtype = torch.empty(0, dtype=dtype).numpy().dtype
        self._fused = None
        if device.type == "cpu" and dtype in (torch.float32, torch.float64):
            self._param_arrays = tuple(f.numpy() for f in self._flat_params)
            self._prev_array, self._reference_array = self._prev.numpy(), self._reference.numpy()
            self._block_array, self._scratch_array = self._block.numpy(), self._scratch.numpy()
            # Block rows and the scratch vector have one type: contiguous 1-d arrays of the dtype.
            self._fused = _compiled(_kernels().fused_displacement, self._param_arrays, self._prev_array,
                                    self._reference_array, self._scratch_array)
            self._squares_array = np.empty((block_size, 2))
        if self._rows_of_parameters:
            # Kept alive by self._flat_params (views of the parameters, as the other paths read them).
            self._param_addresses = np.array([f.data_ptr() for f in self._flat_params], dtype=np.int64)
            self._param_sizes = np.array([f.numel() for f in self._flat_params], dtype=np.int64)
            self._stream = _compiled(_kernels().gather_parameters, self._param_addresses, self._param_sizes,
                                     self._scratch_array)
            kernels = _kernels()
            # The directions twice: as given (the torch route) and packed in column tiles (k m numbers).
            self._packed, self._tiles, width = kernels.pack_directions(self._directions.numpy())
            tiled = -(-self._capacity // kernels.TILE_ROWS) * kernels.TILE_ROWS
            self._chunk = np.zeros((tiled, kernels.CHUNK), dtype=self._numpy_dtype)
            self._projected = np.zeros((tiled, width))
            rows = np.zeros(1, dtype=np.int64)
            self._project_increments = _compiled(
                kernels.project_increments, self._block_array, rows, rows, rows.astype(np.bool_), rows, 0,
                self._reference_array, self._packed, self._tiles, 0, 1, self._chunk, self._projected,
                self._squares_array)
            self._increments = _compiled(kernels.increments_from_rows, self._block_array, rows, rows,
                                         rows.astype(np.bool_), self._reference_array, self._squares_array)
        self._rows = 0
        self._step = 0
        self._last_recorded = 0
        self._steps: list[int] = []
        self._losses: list[Any] = []
        self._plan: list[tuple[int, int, int, float]] = []   # per step: delta, position, buffer row; lr
        self._chunks: list[dict[str, NDArray]] = []
        self._snapshots: list[tuple[int, NDArray, NDArray]] = []

    @property
    def _rows_of_parameters(self) -> bool:
        """Whether steps are rows of parameters (CPU path with directions).

        A step then only streams ``theta_k`` into a row of the block; the block's deltas, anchors and
        squares are made and projected at its flush (``_tracker_kernels.project_increments``).
        """
        return self._fused is not None and self._capacity > 0

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
        if not self.recording:
            return
        k = self._step
        if self.schedule(k):
            self._record(k, loss)
        elif self.schedule(k + 1):
            torch.cat(self._flat_params, out=self._prev)   # theta_{k}, the theta_{k-1} of the next step
            self._prev_is_in_block = False
            self._prev_lr = self._common_lr()

    def _record(self, k: int, loss: float | Tensor | None) -> None:
        project = self._capacity > 0
        lr = self._common_lr()
        # theta_k - theta_{k-1} = -lr b_k exactly when the lr read now equals the one read with theta_{k-1}
        # (a scheduler stepped before or after record() makes one of the two reads the lr of step k).
        derived = lr is not None and lr == self._prev_lr
        chained = len(self._steps) > 0 and self._last_recorded == k - 1
        if project and self._rows + self._rows_needed(derived, chained) > self._capacity:
            self._flush()   # this step's rows do not fit: it opens the next block (as its anchor)
            chained = False
        snapshot = self.snapshot_schedule is not None and self.snapshot_schedule(k)
        if self._rows_of_parameters:
            rows, snapshots = self._record_parameters(derived, chained, snapshot)
        else:
            rows, snapshots = self._record_increment(project, derived, chained, snapshot)
        if snapshots is not None:
            self._snapshots.append((k, *snapshots))
        self._steps.append(k)
        self._losses.append(loss.detach() if isinstance(loss, Tensor) else loss)
        self._plan.append((*rows, lr if derived else math.nan))
        self._prev_lr = lr
        self._last_recorded = k
        if len(self._steps) == self.block_size or (project and self._rows == self._capacity):
            self._flush()

    def _rows_needed(self, derived: bool, chained: bool) -> int:
        if self._rows_of_parameters:   # theta_k, theta_{k-1} unless the last row has it, the buffer
            return 1 + (not chained) + (not derived)
        return 1 + (not derived and chained) + (not chained)   # delta or buffer, anchor, both

    def _record_increment(self, project: bool, derived: bool, chained: bool, snapshot: bool
                          ) -> tuple[tuple[int, int, int], tuple[NDArray, NDArray] | None]:
        """A step as projection rows made now: ``delta_k``, an anchor, the buffer (as needed)."""
        s = len(self._steps)
        d_row = p_row = b_row = -1
        if project and not derived:
            b_row = self._take_row()
            self._velocity_into(self._block[b_row], self._prev)
        else:
            self._check_readable_velocity()
        velocity = self._velocity_snapshot(self._prev) if snapshot else None
        if project and (derived or chained):
            d_row = self._take_row()
        self._advance(s, d_row)
        theta = self._prev   # now theta_k
        if project and not chained:
            p_row = self._take_row()
            torch.sub(theta, self._reference, out=self._block[p_row])
        return (d_row, p_row, b_row), None if velocity is None else (theta.cpu().numpy().copy(), velocity)

    def _record_parameters(self, derived: bool, chained: bool, snapshot: bool
                           ) -> tuple[tuple[int, int, int], tuple[NDArray, NDArray] | None]:
        """A step as rows of parameters: ``theta_k``, ``theta_{k-1}`` and the buffer (as needed).

        The plan's delta row holds ``theta_k`` and its position row (non-consecutive steps and the first
        of a block) ``theta_{k-1}`` until the flush turns them into ``delta_k`` and the anchor.
        """
        p_row = b_row = -1
        if not chained:
            p_row = self._take_row()
            self._block_array[p_row] = self._prev_array
        if derived:
            self._check_readable_velocity()
        if not derived or snapshot:   # these read theta_{k-1}
            previous = self._block[self._plan[-1][0] if chained else p_row]
            if not derived:
                b_row = self._take_row()
                self._velocity_into(self._block[b_row], previous)
            velocity = self._velocity_snapshot(previous) if snapshot else None
        d_row = self._take_row()
        self._stream(self._param_addresses, self._param_sizes, self._block_array[d_row])
        self._prev_is_in_block = True   # self._prev now lags: theta_k is in row d_row only
        return (d_row, p_row, b_row), (self._block_array[d_row].copy(), velocity) if snapshot else None

    def _velocity_snapshot(self, previous: Tensor) -> NDArray:
        self._velocity_into(self._scratch, previous)
        return -self._scratch.cpu().numpy()

    def _take_row(self) -> int:
        self._rows += 1
        return self._rows - 1

    def _advance(self, s: int, d_row: int) -> None:
        """Advance ``self._prev`` from ``theta_{k-1}`` to ``theta_k``.

        Writes ``delta_k`` into row ``d_row`` (or the scratch vector) and the squared local and global
        displacements of step ``s`` of the block.
        """
        if self._fused is not None:
            delta = self._block_array[d_row] if d_row >= 0 else self._scratch_array
            self._squares_array[s] = self._fused(self._param_arrays, self._prev_array,
                                                 self._reference_array, delta)
            return
        current = self._current
        torch.cat(self._flat_params, out=current)
        delta = self._block[d_row] if d_row >= 0 else self._scratch
        torch.sub(current, self._prev, out=delta)
        torch.dot(delta, delta, out=self._squares[0, s])
        torch.sub(current, self._reference, out=self._scratch)
        torch.dot(self._scratch, self._scratch, out=self._squares[1, s])
        self._current, self._prev = self._prev, current

    def _common_lr(self) -> float | None:
        """The learning rate shared by every group moving the model, or ``None`` (differing, or 0)."""
        lr = self._groups[0][0]["lr"]
        for group, _ in self._groups[1:]:
            if group["lr"] != lr:
                return None
        lr = float(lr)
        return lr if lr != 0 and math.isfinite(lr) else None

    def _check_readable_velocity(self) -> None:
        free = [p for group, params in self._groups if group["momentum"] == 0 for p in params]
        if free and all(p.grad is None for p in free):
            # Same contract as the buffer path, which reads .grad when momentum is 0.
            raise RuntimeError(_NO_GRAD)

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
            raise RuntimeError(_NO_GRAD)
        torch.cat(sources, out=out)
        for start, n, decay in decay_terms:
            out[start:start + n].add_(previous[start:start + n], alpha=decay)

    def _flush(self) -> None:
        n = len(self._steps)
        if n == 0:
            return
        k = self._directions.shape[0]
        position = np.zeros((n, k))
        velocity = np.zeros((n, k))
        plan = np.array(self._plan, dtype=np.float64).reshape(n, 4)
        d_row, p_row, b_row = (plan[:, i].astype(np.int64) for i in range(3))
        if self._rows:
            if self._rows_of_parameters:
                rows = self._project_rows_of_parameters(d_row, p_row, b_row)
            else:
                rows = self._projection(self._block[:self._rows]).cpu().numpy().astype(np.float64)
            # Row index -1 (no such row) reads the appended zeros.
            rows = np.concatenate([rows, np.zeros((1, k))])
            lr = plan[:, 3]
            delta = rows[d_row]
            anchor = p_row >= 0   # the first step of a block always is one
            # q.(theta_s - theta_ref) = q.(theta_a - theta_ref) + sum_{a<j<=s} q.delta_j, a the last anchor
            since = np.cumsum(np.where(anchor[:, None], 0.0, delta), axis=0)
            last = np.maximum.accumulate(np.where(anchor, np.arange(n), 0))
            position = rows[p_row][last] + since - since[last]
            derived = ~np.isnan(lr)
            velocity = np.where(derived[:, None], delta / np.where(derived, lr, 1.0)[:, None], -rows[b_row])
        squares = (self._squares_array[:n] if self._fused is not None
                   else self._squares[:, :n].T.cpu().numpy().astype(np.float64))
        losses = [float(x) if x is not None else np.nan for x in self._losses]
        self._chunks.append({
            "step": np.asarray(self._steps, dtype=np.int64),
            "loss": np.asarray(losses, dtype=np.float64),
            "local_sq_displacement": squares[:, 0].astype(self._numpy_dtype),
            "global_sq_displacement": squares[:, 1].astype(self._numpy_dtype),
            "position_projection": position.astype(self._numpy_dtype),
            "velocity_projection": velocity.astype(self._numpy_dtype),
        })
        self._rows, self._steps, self._losses, self._plan = 0, [], [], []
        if self._on_flush is not None:
            self._on_flush({key: value.copy() for key, value in self._chunks[-1].items()})

    def _project_rows_of_parameters(self, theta_rows: NDArray[np.int64], anchor_rows: NDArray[np.int64],
                                    buffer_rows: NDArray[np.int64]) -> NDArray[np.float64]:
        """The ``(rows, k)`` projections of a block of rows of parameters, and the squares.

        The rows (:meth:`_record_parameters`) are projected as deltas, anchors and buffers;
        ``theta_rows``, ``anchor_rows``, ``buffer_rows`` are the plan's delta, position and buffer rows of
        the block's steps (-1: none).
        """
        anchors = anchor_rows >= 0
        predecessor_rows = np.where(anchors, anchor_rows, np.roll(theta_rows, 1))
        if self._prev_is_in_block:   # theta of the last recorded step, still the latest: keep it
            self._prev_array[:] = self._block_array[theta_rows[-1]]
            self._prev_is_in_block = False
        if torch.get_num_threads() > 1:
            # Increments in place, then the product in torch's thread pool: a thread of our own for half
            # the kernel's columns competes with the pool's workers, which spin for milliseconds after
            # the training step's last op (issue 15, k = 30, 2 threads: 1.08-1.10x the plain step this
            # way, 1.109x with the columns split over a thread of ours, 1.113x with the kernel on one).
            self._increments(self._block_array, theta_rows, predecessor_rows, anchors, self._reference_array,
                             self._squares_array)
            return self._projection(self._block[:self._rows]).numpy().astype(np.float64)
        self._project_increments(self._block_array, theta_rows, predecessor_rows, anchors,
                                 buffer_rows[buffer_rows >= 0], self._rows, self._reference_array,
                                 self._packed, self._tiles, 0, self.layout.dim, self._chunk, self._projected,
                                 self._squares_array)
        return self._projected[:self._rows, :self._directions.shape[0]]

    def flush(self) -> None:
        """Project the partial block now (as reading :attr:`history` does), calling ``on_flush``."""
        self._flush()

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
