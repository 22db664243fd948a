"""The tracker's CPU kernels against plain NumPy: the streamed gather of the parameters into a block row,
and the flush-time projection of rows of parameters as increments, anchors and buffers with the squared
displacements (against float64 products of the same rows)."""

from __future__ import annotations

import platform
import re

import numba
import numpy as np
import pytest
import torch

from sgd_dynamics.measure import LogSchedule, _tracker_kernels
from sgd_dynamics.measure._tracker_kernels import (
    CHUNK,
    TILE_ROWS,
    gather_parameters,
    increments_from_rows,
    pack_directions,
    project_increments,
)
from sgd_dynamics.measure.tracker import TrajectoryTracker


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("sizes", [(10240, 256, 65536, 3, 2560, 10), (1,), (15, 0, 17), (64,)])
def test_gather_parameters_equals_concatenation_at_every_alignment(dtype, sizes):
    g = torch.Generator().manual_seed(0)
    tensors = [torch.randn(n, generator=g, dtype=dtype) for n in sizes]
    addresses = np.array([t.data_ptr() for t in tensors], dtype=np.int64)
    counts = np.array(sizes, dtype=np.int64)
    total = int(counts.sum())
    expected = torch.cat(tensors).numpy()
    out = np.full(total + 40, np.nan, dtype=expected.dtype)
    # Offsets 0..16 elements cover every start of the destination relative to a 64-byte line.
    for offset in range(17):
        out[:] = np.nan
        gather_parameters(addresses, counts, out[offset:offset + total])
        np.testing.assert_array_equal(out[offset:offset + total], expected)
        assert np.isnan(out[:offset]).all() and np.isnan(out[offset + total:]).all()   # nothing outside


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86 streaming-store mnemonics")
def test_gather_parameters_compiles_to_streaming_stores():
    # A fresh compile of the copy loop (a function loaded from numba's disk cache has no assembly text).
    copy = numba.njit(_tracker_kernels._stream_copy.py_func)
    copy(np.zeros(64, dtype=np.float32), np.zeros(64, dtype=np.float32))
    assembly = copy.inspect_asm(copy.signatures[0])
    assert re.search(r"\bv?movnt", assembly), "the vector stores are not non-temporal"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [1, 7, 8, 16, 17, 30, 33, 70])
@pytest.mark.parametrize("m", [5, CHUNK, 2 * CHUNK + 301])
@pytest.mark.parametrize("vector_bytes", [32, 64])
def test_project_increments_against_numpy(dtype, k, m, vector_bytes):
    # Steps 0-2 consecutive (0 an anchor after its predecessor row 0), step 3 non-consecutive (anchor with
    # predecessor row 5), step 4 consecutive to step 3, and a buffer row 7: rows 0-7 of 9 (8 is no row
    # of the plan, filled with NaN, and the tile padding beyond 8 rows holds whatever it holds). k covers
    # one to four vectors per tile, partial tiles and several tiles; m a part of a chunk, one, several.
    rng = np.random.default_rng(k * 10_000 + m)
    theta_rows = np.array([1, 2, 3, 6, 4], dtype=np.int64)
    predecessor_rows = np.array([0, 1, 2, 5, 6], dtype=np.int64)
    anchors = np.array([True, False, False, True, False])
    buffer_rows = np.array([7], dtype=np.int64)
    block = (rng.standard_normal(m) + 1e-3 * rng.standard_normal((9, m))).astype(dtype)
    block[8] = np.nan
    reference = rng.standard_normal(m).astype(dtype)
    directions = rng.standard_normal((k, m)).astype(dtype)
    before = block.copy()
    packed, tiles, width = pack_directions(directions, vector_bytes)   # both widths on any x86 CPU: LLVM
    # splits 64-byte vectors where there is no AVX-512
    assert width >= k and np.all(tiles[:, 2] < width)
    assert np.all(tiles[:, 3] * directions.itemsize == vector_bytes)
    tiled = -(-8 // TILE_ROWS) * TILE_ROWS
    chunk = np.full((tiled, CHUNK), 7.0, dtype=dtype)
    out = np.full((tiled, width), np.nan)
    squares = np.full((6, 2), np.nan)
    project_increments(block, theta_rows, predecessor_rows, anchors, buffer_rows, 8, reference, packed, tiles,
                       0, m, chunk, out, squares)
    np.testing.assert_array_equal(block[:8], before[:8])   # the block is read, never written
    b = before.astype(np.float64)
    rows = np.zeros((8, m))
    for s, (t, p) in enumerate(zip(theta_rows, predecessor_rows, strict=True)):
        rows[t] = (before[t] - before[p]).astype(np.float64)   # the difference is made in the dtype
        if anchors[s]:
            rows[p] = (before[t] - reference).astype(np.float64)
        d, g = rows[t], (before[t] - reference).astype(np.float64)
        rtol = 1e-13 if dtype == np.float64 else 2e-6
        np.testing.assert_allclose(squares[s], [d @ d, g @ g], rtol=rtol)
    rows[7] = b[7]
    q = directions.astype(np.float64)
    # A sum of m products in the dtype is within m eps sum |q r| of the exact one.
    bound = m * np.finfo(dtype).eps * (np.abs(rows) @ np.abs(q).T)
    np.testing.assert_array_less(np.abs(out[:8, :k] - rows @ q.T), bound + 1e-300)
    np.testing.assert_array_equal(out[:8, k:], 0.0)   # zero-padded directions
    assert np.isnan(squares[5:]).all()
    # Two column parts add up to the whole.
    split = min(m, CHUNK)
    parts = [(np.zeros_like(out), np.zeros_like(squares)) for _ in range(2)]
    for (o, q2), (a, b_) in zip(parts, [(0, split), (split, m)], strict=True):
        project_increments(block, theta_rows, predecessor_rows, anchors, buffer_rows, 8, reference, packed,
                           tiles, a, b_, chunk, o, q2)
    np.testing.assert_allclose(parts[0][0] + parts[1][0], out, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose((parts[0][1] + parts[1][1])[:5], squares[:5], rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_increments_from_rows_against_numpy(dtype):
    rng = np.random.default_rng(1)
    m = 1001
    # Steps 0-2 consecutive (0 an anchor after its predecessor row 0), step 3 non-consecutive (anchor
    # with predecessor row 5), step 4 consecutive to step 3: theta rows 1, 2, 3, 6, 4.
    theta_rows = np.array([1, 2, 3, 6, 4], dtype=np.int64)
    predecessor_rows = np.array([0, 1, 2, 5, 6], dtype=np.int64)
    anchors = np.array([True, False, False, True, False])
    block = rng.standard_normal((8, m)).astype(dtype)
    reference = rng.standard_normal(m).astype(dtype)
    before = block.copy()
    squares = np.full((8, 2), np.nan)
    increments_from_rows(block, theta_rows, predecessor_rows, anchors, reference, squares)
    for s, (t, p) in enumerate(zip(theta_rows, predecessor_rows, strict=True)):
        delta = before[t] - before[p]
        np.testing.assert_array_equal(block[t], delta)
        if anchors[s]:
            np.testing.assert_array_equal(block[p], before[t] - reference)
        d64, g64 = delta.astype(np.float64), (before[t] - reference).astype(np.float64)
        np.testing.assert_allclose(squares[s], [d64 @ d64, g64 @ g64], rtol=1e-13)
    np.testing.assert_array_equal(block[7], before[7])   # rows no step names are left alone
    assert np.isnan(squares[5:]).all()



@pytest.mark.parametrize("read_at", [(3,), (4,), (5,), (4, 5, 6)])
def test_history_reads_between_strided_steps_keep_the_predecessor(read_at):
    # Stride 2 and block_size 3: a read of history after a recorded step, after the unrecorded step
    # that captured theta_{k-1}, or both, must not replace the predecessor of the next recorded step.
    torch.manual_seed(2)
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 2)).double()
    m = sum(p.numel() for p in model.parameters())
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    directions = torch.from_numpy(np.random.default_rng(2).standard_normal((2, m)))
    tracker = TrajectoryTracker(model, opt, directions, schedule=2, block_size=3)
    g = torch.Generator().manual_seed(2)
    thetas = [torch.cat([p.detach().reshape(-1) for p in model.parameters()]).numpy().copy()]
    for k in range(1, 10):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(torch.randn(8, 4, generator=g, dtype=torch.float64)),
                                          torch.randint(0, 2, (8,), generator=g)).backward()
        opt.step()
        tracker.record()
        thetas.append(torch.cat([p.detach().reshape(-1) for p in model.parameters()]).numpy().copy())
        if k in read_at:
            tracker.history  # noqa: B018 - reading flushes the partial block
    h = tracker.history
    thetas = np.array(thetas)
    steps = np.arange(1, 10, 2)
    delta = thetas[steps] - thetas[steps - 1]
    np.testing.assert_array_equal(h["step"], steps)
    np.testing.assert_allclose(h["local_sq_displacement"], np.sum(delta**2, axis=1), rtol=1e-12)
    np.testing.assert_allclose(h["velocity_projection"], delta / 0.1 @ directions.numpy().T,
                               rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(h["position_projection"], (thetas[steps] - thetas[0]) @ directions.numpy().T,
                               rtol=1e-9, atol=1e-14)


def _tracked_history(kind, dtype, block_size, schedule, two_groups, momentum, rows_of_parameters):
    torch.manual_seed(0)
    if kind == "conv":
        model = torch.nn.Sequential(torch.nn.Conv1d(1, 3, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                                    torch.nn.Linear(18, 2)).to(dtype)
    else:
        model = torch.nn.Sequential(torch.nn.Linear(8, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2)).to(dtype)
    params = list(model.parameters())
    groups = [{"params": params[:1], "lr": 0.03}, {"params": params[1:]}] if two_groups else params
    opt = torch.optim.SGD(groups, lr=0.05, momentum=momentum, weight_decay=1e-3)
    m = sum(p.numel() for p in params)
    directions = torch.from_numpy(np.random.default_rng(0).standard_normal((3, m)))
    tracker = TrajectoryTracker(model, opt, directions, block_size=block_size, schedule=schedule,
                                snapshot_schedule=5)
    if not rows_of_parameters:
        tracker._fused = None   # the portable torch path, used off the CPU
    g = torch.Generator().manual_seed(1)
    for step in range(25):
        x = torch.randn(6, 1, 8, generator=g, dtype=dtype)
        x = x if kind == "conv" else x[:, 0]
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), torch.randint(0, 2, (6,), generator=g))
        loss.backward()
        opt.step()
        tracker.record(loss.item())
        if step == 11:
            tracker.history  # noqa: B018 - reading flushes a partial block mid-run
    return tracker.history


@pytest.mark.parametrize(("kind", "dtype"), [("mlp", torch.float32), ("conv", torch.float64)])
@pytest.mark.parametrize(("block_size", "schedule"), [(1, None), (3, 3), (7, LogSchedule(4))])
@pytest.mark.parametrize(("two_groups", "momentum"), [(False, 0.9), (True, 0.0)])
@pytest.mark.parametrize("threads", [1, 2])
def test_rows_of_parameters_equal_the_torch_path(kind, dtype, block_size, schedule, two_groups, momentum,
                                                 threads):
    # The same projected rows (deltas, anchors, buffers) by two routes: steps, losses and snapshots agree
    # to the bit; the squares differ by their summation (numba's chunks, torch's own), the projections by
    # the product's: the two routes place the rows differently in their blocks, and a BLAS may block (and
    # round) a product by its shape and alignment (MKL on AMD EPYC differs by 1e-13 relative). At one
    # thread the rows of parameters take the tile kernel, at two the in-place increments and torch's product.
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        rows = _tracked_history(kind, dtype, block_size, schedule, two_groups, momentum, True)
    finally:
        torch.set_num_threads(before)
    portable = _tracked_history(kind, dtype, block_size, schedule, two_groups, momentum, False)
    assert rows.keys() == portable.keys()
    rtol = 1e-6 if dtype == torch.float32 else 1e-14
    product_tol = 1e-5 if dtype == torch.float32 else 1e-12
    for key, value in rows.items():
        if key.endswith("sq_displacement"):
            np.testing.assert_allclose(value, portable[key], rtol=rtol, err_msg=key)
        elif key.endswith("_projection"):
            scale = float(np.max(np.abs(portable[key]), initial=0.0))
            np.testing.assert_allclose(value, portable[key], rtol=product_tol, atol=product_tol * scale,
                                       err_msg=key)
        else:
            np.testing.assert_array_equal(value, portable[key], err_msg=key)


def test_pack_directions_rejects_other_vector_widths():
    with pytest.raises(ValueError, match=r"vector_bytes=16 is invalid: expected 32 or 64"):
        pack_directions(np.ones((3, 10)), 16)


@pytest.mark.parametrize(("name", "features", "expected"), [
    (None, "+avx2,+fma,+avx512f", 64),
    (None, "+avx2,+fma,-avx512f", 32),
    ("generic", None, 32),
])
def test_product_width_follows_numba_target(monkeypatch, name, features, expected):
    monkeypatch.setattr(numba.config, "CPU_NAME", name)
    monkeypatch.setattr(numba.config, "CPU_FEATURES", features)
    assert _tracker_kernels._vector_bytes() == expected


def test_product_width_of_the_host():
    from llvmlite import binding
    host = 64 if binding.get_host_cpu_features().get("avx512f", False) else 32
    if numba.config.CPU_NAME is not None or numba.config.CPU_FEATURES is not None:
        pytest.skip("NUMBA_CPU_NAME / NUMBA_CPU_FEATURES name the target, not the host")
    assert _tracker_kernels._PRODUCT_BYTES == host
