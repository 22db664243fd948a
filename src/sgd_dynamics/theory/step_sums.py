"""Sums over consecutive steps of a per-mode 2x2 linear recursion, composed exactly in few products.

The exact theory of random reshuffling (:mod:`sgd_dynamics.theory.reshuffling`) needs, for the per-mode
recursion ``z_{i+1} = T z_i + b w_i`` (``T`` a stable or marginally stable 2x2 matrix), the sums over a block
of ``n`` steps::

    T^n,    E_n = T^n - I,    F_n = sum_{i<n} T^i b,    V_n = sum_{i<n} T^i Y T^{iT}

(``Y`` a fixed symmetric matrix: ``b b^T`` for the response to a noise kick, or any other covariance), and,
for averages over the steps of an epoch, the prefix sums::

    SF_n = sum_{j=1}^n F_j,    SV_n = sum_{j=1}^n V_j,    SFF_n = sum_{j=1}^n F_j F_j^T.

A block of ``p`` steps followed by one of ``q`` steps is again a block (all powers of ``T`` commute)::

    T = T_p T_q,    E = E_p + E_q + E_p E_q,    F = F_p + T_p F_q,    V = V_p + T_p V_q T_p^T,
    SF = SF_p + q F_p + T_p SF_q,    SV = SV_p + q V_p + T_p SV_q T_p^T,
    SFF = SFF_p + q F_p F_p^T + F_p G^T + G F_p^T + T_p SFF_q T_p^T,    G = T_p SF_q,

so ``n`` steps cost ``O(log n)`` 2x2 products (binary powering), and the blocks of ``0..n-1`` steps about
``2 n`` (doubling a table), vectorised over modes and over many ``n`` at once. Nothing
overflows while ``T`` is stable (no eigenvalue of modulus above 1). ``E`` is carried beside ``T`` because
``T^n - I`` formed from ``T^n`` loses every digit where ``T^n ~ I`` (a mode with curvature near 0); its
composition adds terms of one sign there.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

_MAX_DOUBLINGS = 2048  # 2^2048 steps: far beyond any relaxation time a float64 curvature can give
_DECAYED = 1e-12       # |T^n| below this: the next doubling adds |T^n|^2 ~ 1e-24 of the sum


@dataclass(frozen=True)
class StepBlock:
    """The sums of the module docstring over ``length`` steps, per mode (last axes ``2`` or ``(2, 2)``).

    ``length`` broadcasts against the leading axes (a scalar, or one count per block along axis 0).
    ``response_sum`` is ``None`` where no ``b`` is tracked; the prefix sums are ``None`` unless asked for.
    """

    length: NDArray[np.float64]
    power: NDArray[np.float64]
    power_minus_identity: NDArray[np.float64]
    response_sum: NDArray[np.float64] | None
    outer_sum: NDArray[np.float64]
    prefix_response_sum: NDArray[np.float64] | None = None
    prefix_outer_sum: NDArray[np.float64] | None = None
    prefix_response_outer: NDArray[np.float64] | None = None


def one_step(power: NDArray[np.float64], power_minus_identity: NDArray[np.float64],
             outer: NDArray[np.float64], response: NDArray[np.float64] | None = None,
             prefix: bool = False) -> StepBlock:
    """The block of a single step.

    ``T``, ``T - I`` (given by the caller, computed without cancellation), ``V_1 = Y`` and ``F_1 = b``; with
    ``prefix`` also ``SF_1 = b``, ``SV_1 = Y``, ``SFF_1 = b b^T``.
    """
    block = StepBlock(length=np.asarray(1.0), power=power, power_minus_identity=power_minus_identity,
                      response_sum=response, outer_sum=outer)
    if not prefix:
        return block
    if response is None:
        raise ValueError("prefix sums need the response vector b")
    return replace(block, prefix_response_sum=response, prefix_outer_sum=outer,
                   prefix_response_outer=_outer(response, response))


def compose(first: StepBlock, second: StepBlock) -> StepBlock:
    """The block of ``first``'s steps followed by ``second``'s (exact, see the module docstring)."""
    tp = first.power
    tpt = np.swapaxes(tp, -1, -2)
    e = first.power_minus_identity + second.power_minus_identity \
        + first.power_minus_identity @ second.power_minus_identity
    f = None
    if first.response_sum is not None and second.response_sum is not None:
        f = first.response_sum + _apply(tp, second.response_sum)
    out = StepBlock(length=first.length + second.length, power=tp @ second.power, power_minus_identity=e,
                    response_sum=f, outer_sum=first.outer_sum + tp @ second.outer_sum @ tpt)
    if first.prefix_response_sum is None or second.prefix_response_sum is None:
        return out
    q = np.asarray(second.length)[..., None]
    fp = first.response_sum
    g = _apply(tp, second.prefix_response_sum)
    fg = _outer(fp, g)
    return replace(
        out,
        prefix_response_sum=first.prefix_response_sum + q * fp + g,
        prefix_outer_sum=first.prefix_outer_sum + q[..., None] * first.outer_sum
        + tp @ second.prefix_outer_sum @ tpt,
        prefix_response_outer=first.prefix_response_outer + q[..., None] * _outer(fp, fp) + fg
        + np.swapaxes(fg, -1, -2) + tp @ second.prefix_response_outer @ tpt)


def block_power(step: StepBlock, n: int) -> StepBlock:
    """``step`` repeated ``n >= 1`` times, by binary powering (``O(log n)`` compositions)."""
    if n < 1:
        raise ValueError(f"n={n!r} is invalid: expected an integer >= 1")
    acc: StepBlock | None = None
    square = step
    while True:
        if n & 1:
            acc = square if acc is None else compose(acc, square)
        n >>= 1
        if not n:
            return acc
        square = compose(square, square)


def blocks_at(step: StepBlock, counts: NDArray[np.int64]) -> StepBlock:
    """``step`` (arrays over modes, ``(modes, 2, 2)``) repeated ``counts[i] >= 0`` times, all ``i`` at once.

    The result has a leading axis of ``len(counts)``; prefix sums are not carried. Counts that fill most of
    their range are read off a table of consecutive blocks (about two compositions each); sparse ones are
    binary powers (``O(log count)`` compositions each). Memory is ``O(len(counts))`` times that of ``step``.
    """
    counts = np.asarray(counts, dtype=np.int64)
    values, inverse = np.unique(counts, return_inverse=True)
    first, span = int(values[0]), int(values[-1] - values[0]) + 1
    if span <= 2 * values.size:
        table = consecutive_blocks(step, span)
        if first > 0:
            table = compose(block_power(_plain(step), first), table)
        picked = _take(table, values - first)
    else:
        picked = _binary_blocks(step, values)
    return _take(picked, inverse.reshape(-1))


def consecutive_blocks(step: StepBlock, count: int) -> StepBlock:
    """``step`` repeated ``0, 1, ..., count - 1`` times (leading axis ``count``), by doubling the table.

    The blocks ``L..2L-1`` are the block of ``L`` steps followed by the blocks ``0..L-1``.
    """
    table = _identity(step, 1)
    power = _plain(step)
    while table.power.shape[0] < count:
        table = _concatenate(table, compose(power, table))
        power = compose(power, power)
    return _take(table, np.arange(count))


def consecutive_chunks(step: StepBlock, start: int, stop: int, chunk: int) -> Iterator[StepBlock]:
    """The blocks of ``start, start + 1, ..., stop - 1`` steps, ``chunk`` at a time (leading axis).

    One table of ``chunk`` consecutive blocks is built once; each chunk is then one composition of it with
    the block of its first count, which advances by one composition per chunk.
    """
    table = consecutive_blocks(step, min(chunk, max(stop - start, 1)))
    size = table.power.shape[0]
    stride = block_power(_plain(step), size)
    base = block_power(_plain(step), start) if start > 0 else None
    for lo in range(start, stop, size):
        part = table if lo + size <= stop else _take(table, np.arange(stop - lo))
        yield part if base is None else compose(base, part)
        base = stride if base is None else compose(base, stride)


def _binary_blocks(step: StepBlock, counts: NDArray[np.int64]) -> StepBlock:
    acc = _identity(step, counts.size)
    square = _plain(step)
    remaining = counts.copy()
    while np.any(remaining):
        take = (remaining & 1).astype(bool)[:, None]
        if np.any(take):
            acc = _where(take, compose(acc, square), acc)
        remaining >>= 1
        if np.any(remaining):
            square = compose(square, square)
    return acc


def _plain(step: StepBlock) -> StepBlock:
    """``step`` without its prefix sums."""
    return StepBlock(length=step.length, power=step.power, power_minus_identity=step.power_minus_identity,
                     response_sum=step.response_sum, outer_sum=step.outer_sum)


def _identity(step: StepBlock, count: int) -> StepBlock:
    """``count`` copies of the empty block (0 steps) shaped like ``step``."""
    shape = (count,) + step.power.shape
    return StepBlock(length=np.zeros((count, 1)), power=np.broadcast_to(np.eye(2), shape).copy(),
                     power_minus_identity=np.zeros(shape), outer_sum=np.zeros(shape),
                     response_sum=None if step.response_sum is None else np.zeros(shape[:-1]))


def _take(block: StepBlock, index: NDArray[np.int64]) -> StepBlock:
    return StepBlock(length=block.length[index], power=block.power[index],
                     power_minus_identity=block.power_minus_identity[index], outer_sum=block.outer_sum[index],
                     response_sum=None if block.response_sum is None else block.response_sum[index])


def _concatenate(a: StepBlock, b: StepBlock) -> StepBlock:
    def cat(x, y):
        return np.concatenate([x, y])

    return StepBlock(length=cat(a.length, b.length), power=cat(a.power, b.power),
                     power_minus_identity=cat(a.power_minus_identity, b.power_minus_identity),
                     outer_sum=cat(a.outer_sum, b.outer_sum),
                     response_sum=None if a.response_sum is None else cat(a.response_sum, b.response_sum))


def stationary_sum(step: StepBlock, converged_rows: NDArray[np.bool_]) -> tuple[NDArray[np.float64], int]:
    """``sum_{i>=0} T^i Y T^{iT}`` by doubling (Smith): ``V_{2n} = V_n + T^n V_n T^{nT}``.

    Stops when, in every mode, the rows of ``T^n`` marked in ``converged_rows`` (shape ``(modes, 2)``) have
    decayed below ``1e-12``; a marginal direction (a row of ``T`` that does not decay) must be left unmarked,
    and its entries of the sum are then meaningless (they grow with the number of doublings). Returns the
    sum and the number of doublings used.
    """
    v, power = step.outer_sum, step.power
    for doublings in range(1, _MAX_DOUBLINGS + 1):
        v = v + power @ v @ np.swapaxes(power, -1, -2)
        power = power @ power
        if np.all(np.where(converged_rows, np.abs(power).max(axis=-1), 0.0) < _DECAYED):
            return v, doublings
    raise ArithmeticError(f"the doubling sum did not converge in {_MAX_DOUBLINGS} doublings")


def _apply(m: NDArray[np.float64], x: NDArray[np.float64]) -> NDArray[np.float64]:
    return (m @ x[..., None])[..., 0]


def _outer(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    return a[..., :, None] * b[..., None, :]


def _where(mask: NDArray[np.bool_], a: StepBlock, b: StepBlock) -> StepBlock:
    """``a`` where ``mask`` (shape ``(blocks, 1)``), else ``b``."""
    m1, m2 = mask[..., None], mask[..., None, None]
    return StepBlock(length=np.where(mask, a.length, b.length), power=np.where(m2, a.power, b.power),
                     power_minus_identity=np.where(m2, a.power_minus_identity, b.power_minus_identity),
                     response_sum=None if a.response_sum is None
                     else np.where(m1, a.response_sum, b.response_sum),
                     outer_sum=np.where(m2, a.outer_sum, b.outer_sum))
