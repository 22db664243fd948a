"""The trajectory tracker's CPU kernels (numba): per-step copy, flush-time increments, displacement.

:func:`gather_parameters` copies the parameters into a row with stores that bypass the caches
(non-temporal stores), for rows that are read again only later.

The trajectory tracker copies ``theta_k`` into a row of its block at every step and reads the row back
only when the block is projected, ``B`` steps later. A plain copy writes through the caches: it first
reads every destination line (read for ownership) and leaves ``4 m`` bytes in L2, where they push out the
training step's own parameters, gradients and activations, which the next step then reloads. Streaming
(non-temporal) stores write whole lines straight to memory: on the issue 15 machine (Sapphire Rapids, one
thread, ``m = 78858`` float32, after a training step) a row costs 33-42 us against 65 us for
``np.concatenate`` and 72 us for ``torch.cat`` into the row. The whole tracked step gains less than that
suggests, since the flush then reads the rows from memory rather than from L3: in two interleaved runs
1.13x vs 1.17x and 1.106x vs 1.107x the plain step, streamed vs ``np.concatenate``.

The stores are LLVM ``store`` instructions with ``!nontemporal`` metadata on 64-byte vectors (``vmovntdq``
on x86; targets without such stores emit ordinary ones), aligned: a copy starts with scalar stores up to
the first 64-byte boundary of its destination. A fence at the end of :func:`gather_parameters` orders
the weakly ordered streaming stores before anything another thread may read afterwards.

:func:`increments_from_rows` turns a block of such rows into the rows that are projected, and
:func:`fused_displacement` is the per-step kernel of the tracker without directions.

Every kernel and intrinsic is defined at module level so that numba's disk cache finds it again in a
new process: defined inside a function (as before), each was a closure over the others, a new process
missed the cache, compiled anew (seconds per kernel and signature, in every sweep worker and test
process) and added a cache entry. The tracker imports this module on first use.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

_VECTOR_BYTES = 64


@intrinsic
def _stream_vector(typingctx, dst, i, src):
    """``dst[i:i + w] = src[i:i + w]``, one 64-byte streaming store; ``dst[i]`` on a 64-byte boundary."""
    signature = types.void(dst, types.intp, src)

    def codegen(context, builder, sig, args):
        dst_type, _, src_type = sig.args
        dst_array = context.make_array(dst_type)(context, builder, args[0])
        src_array = context.make_array(src_type)(context, builder, args[2])
        element = context.get_data_type(dst_type.dtype)
        vector = ir.VectorType(element, _VECTOR_BYTES // context.get_abi_sizeof(element)).as_pointer()
        source = builder.bitcast(builder.gep(src_array.data, [args[1]], inbounds=True), vector)
        target = builder.bitcast(builder.gep(dst_array.data, [args[1]], inbounds=True), vector)
        value = builder.load(source, align=context.get_abi_sizeof(element))   # src read unaligned
        store = builder.store(value, target, align=_VECTOR_BYTES)
        store.set_metadata("nontemporal", builder.module.add_metadata([ir.Constant(ir.IntType(32), 1)]))
        return context.get_dummy_value()

    return signature, codegen


@intrinsic
def _store_fence(typingctx):
    """A sequentially consistent fence (``mfence`` on x86)."""
    def codegen(context, builder, sig, args):
        builder.fence("seq_cst")
        return context.get_dummy_value()

    return types.void(), codegen


@intrinsic
def _pointer(typingctx, address, like):
    """The int64 ``address`` as a pointer to ``like``'s dtype."""
    result = types.CPointer(like.dtype)

    def codegen(context, builder, sig, args):
        return builder.inttoptr(args[0], context.get_value_type(result))

    return result(address, like), codegen


@numba.njit(nogil=True, cache=True)
def _stream_copy(src, dst):
    n = src.size
    width = _VECTOR_BYTES // dst.itemsize
    head = min(n, (-(dst.ctypes.data // dst.itemsize)) % width)   # elements to the first boundary
    for i in range(head):
        dst[i] = src[i]
    i = head
    while i + width <= n:
        _stream_vector(dst, i, src)
        i += width
    for j in range(i, n):
        dst[j] = src[j]


@numba.njit(nogil=True, cache=True)
def gather_parameters(addresses, sizes, out):
    """The arrays at ``addresses`` one after another into ``out``, with streaming stores.

    Array ``j`` holds ``sizes[j]`` elements of ``out``'s dtype, contiguous, from address ``addresses[j]``
    (``Tensor.data_ptr()``); ``out`` is 1-d and contiguous, of the total size. Nothing is checked: the
    caller, the tracker, builds all three once, from tensors it keeps alive. Addresses rather than a tuple
    of arrays because a call unboxes each argument: two int64 arrays cost a fixed few us where a tuple
    of parameter arrays cost 26 us with the caches cold after a training step (issue 15 profile).
    """
    offset = 0
    for j in range(addresses.size):
        n = sizes[j]
        _stream_copy(numba.carray(_pointer(addresses[j], out), n), out[offset:offset + n])
        offset += n
    _store_fence()


@numba.njit(nogil=True, fastmath={"reassoc"}, cache=True)
def _increment(theta, predecessor, reference):
    local = 0.0
    global_ = 0.0
    for i in range(theta.size):
        t = theta[i]
        d = t - predecessor[i]
        g = t - reference[i]
        theta[i] = d
        local += np.float64(d) * np.float64(d)
        global_ += np.float64(g) * np.float64(g)
    return local, global_


@numba.njit(nogil=True, fastmath={"reassoc"}, cache=True)
def _anchored_increment(theta, predecessor, reference):
    local = 0.0
    global_ = 0.0
    for i in range(theta.size):
        t = theta[i]
        d = t - predecessor[i]
        g = t - reference[i]
        theta[i] = d
        predecessor[i] = g
        local += np.float64(d) * np.float64(d)
        global_ += np.float64(g) * np.float64(g)
    return local, global_


@numba.njit(nogil=True, cache=True)
def increments_from_rows(block, theta_rows, predecessor_rows, anchors, reference, squares):
    """Rows of parameters into the rows that are projected, in place, and the squared displacements.

    Step ``s`` of the block has ``theta_s`` in row ``theta_rows[s]`` and ``theta_{s-1}`` in row
    ``predecessor_rows[s]`` (the previous step's theta row when the steps are consecutive). The theta
    row becomes ``delta_s = theta_s - theta_{s-1}``, an anchor step's predecessor row becomes
    ``theta_s - theta_ref``, and ``squares[s] = (||delta_s||^2, ||theta_s - theta_ref||^2)`` in float64
    (``reassoc`` lets the sums vectorise; it changes only their rounding and keeps NaN and inf). Steps go
    last to first, so that every predecessor is still a theta when it is read; each row is read from
    memory once (its predecessor and the reference are then in L2).
    """
    for s in range(theta_rows.size - 1, -1, -1):
        theta, predecessor = block[theta_rows[s]], block[predecessor_rows[s]]
        if anchors[s]:
            local, global_ = _anchored_increment(theta, predecessor, reference)
        else:
            local, global_ = _increment(theta, predecessor, reference)
        squares[s, 0] = local
        squares[s, 1] = global_


@numba.njit(nogil=True, fastmath={"reassoc"}, cache=True)
def _segment_displacement(theta, previous, reference, delta):
    local = 0.0
    global_ = 0.0
    for i in range(theta.size):
        t = theta[i]
        d = t - previous[i]
        g = t - reference[i]
        delta[i] = d
        previous[i] = t
        local += np.float64(d) * np.float64(d)
        global_ += np.float64(g) * np.float64(g)
    return local, global_


@numba.njit(nogil=True, cache=True)
def fused_displacement(params, previous, reference, delta):
    """One pass for the per-step displacements of the tracker without directions.

    ``delta = theta_k - theta_{k-1}`` into ``delta``, ``theta_k`` into ``previous``, and returns
    ``(||delta||^2, ||theta_k - theta_ref||^2)`` accumulated in float64. Replaces a concatenation, two
    subtractions and two dot products (five passes over ``m`` numbers) by one. ``params`` is a tuple of
    flat arrays: a call unboxes it in half the time of a typed ``List`` (2.4 vs 5.3 us warm, 26 vs 46 us
    with the caches cold after a training step, issue 15 profile); each tuple length compiles once, into
    numba's cache.
    """
    local = 0.0
    global_ = 0.0
    offset = 0
    for theta in params:
        n = theta.size
        a, b = _segment_displacement(theta, previous[offset:offset + n], reference[offset:offset + n],
                                     delta[offset:offset + n])
        local += a
        global_ += b
        offset += n
    return local, global_
