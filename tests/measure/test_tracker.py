"""TrajectoryTracker against a direct recomputation from explicit parameter copies at every step."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from sgd_dynamics.measure import LinearSchedule, LogSchedule, TrajectoryTracker

LOSS = nn.functional.cross_entropy
pytestmark = pytest.mark.usefixtures("single_thread")


def _mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3)).double()


def _flat(tensors) -> np.ndarray:
    return torch.cat([t.detach().reshape(-1) for t in tensors]).numpy().copy()


def _train(model, optimizer, tracker, steps: int, seed: int = 0, tensor_loss: bool = False,
           read_history_at: tuple[int, ...] = ()):
    """SGD on random minibatches; returns explicit copies of theta_k (k = 0..steps) and the losses."""
    g = torch.Generator().manual_seed(seed)
    thetas, losses = [_flat(model.parameters())], []
    for k in range(1, steps + 1):
        x = torch.randn(16, 8, generator=g, dtype=torch.float64)
        y = torch.randint(0, 3, (16,), generator=g)
        optimizer.zero_grad()
        loss = LOSS(model(x), y)
        loss.backward()
        optimizer.step()
        tracker.record(loss=loss.detach() if tensor_loss else loss.item())
        thetas.append(_flat(model.parameters()))
        losses.append(loss.item())
        if k in read_history_at:
            tracker.history  # noqa: B018 - reading flushes a partial block mid-run
    return np.array(thetas), np.array(losses)


def _expected(thetas, losses, steps, directions, lr):
    """Direct recomputation at the given (1-based) steps; velocity from theta_k - theta_{k-1} = lr v_k."""
    steps = np.asarray(steps)
    pos = thetas[steps] - thetas[0]
    delta = thetas[steps] - thetas[steps - 1]
    vel = delta / lr
    return {
        "step": steps,
        "loss": losses[steps - 1],
        "local_sq_displacement": np.sum(delta**2, axis=1),
        "global_sq_displacement": np.sum(pos**2, axis=1),
        "position_projection": pos @ directions.T,
        "velocity_projection": vel @ directions.T,
    }


def _assert_history(history, expected):
    for key, value in expected.items():
        assert history[key].shape == value.shape, key
        np.testing.assert_allclose(history[key], value, rtol=1e-9, atol=1e-14, err_msg=key)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize(("momentum", "weight_decay"), [(0.9, 0.0), (0.9, 1e-2), (0.0, 0.0), (0.0, 1e-2)])
def test_every_step_matches_direct_recomputation(momentum, weight_decay, fused):
    model = _mlp()
    m = sum(p.numel() for p in model.parameters())
    directions = torch.from_numpy(np.random.default_rng(0).standard_normal((5, m)))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=momentum, weight_decay=weight_decay)
    tracker = TrajectoryTracker(model, opt, directions=directions, block_size=4)
    if not fused:
        tracker._fused = None   # the portable torch path, used off the CPU
    thetas, losses = _train(model, opt, tracker, 23, read_history_at=(6,))
    steps = np.arange(1, 24)
    _assert_history(tracker.history, _expected(thetas, losses, steps, directions.numpy(), 0.05))


def test_velocity_is_minus_momentum_buffer():
    # Two groups with different learning rates: the velocity is read from the buffer, bit for bit.
    model = _mlp(1)
    groups = [{"params": [model[0].weight]}, {"params": [model[0].bias, *model[2].parameters()], "lr": 0.05}]
    opt = torch.optim.SGD(groups, lr=0.1, momentum=0.5, weight_decay=1e-3)
    tracker = TrajectoryTracker(model, opt, directions=torch.eye(sum(p.numel() for p in model.parameters())))
    _train(model, opt, tracker, 3)
    buffer = _flat(opt.state[p]["momentum_buffer"] for p in model.parameters())
    np.testing.assert_array_equal(tracker.history["velocity_projection"][-1], -buffer)


def _buffer_projections(model, opt, directions, steps, scheduler=None, scheduler_first=False, fused=True):
    """Train with a tracker and collect -q.b_k from the momentum buffers, independently of the tracker."""
    tracker = TrajectoryTracker(model, opt, directions=directions, block_size=5)
    if not fused:
        tracker._fused = None   # the portable torch path, used off the CPU
    g = torch.Generator().manual_seed(3)
    expected = []
    for _ in range(steps):
        x, y = torch.randn(16, 8, generator=g, dtype=torch.float64), torch.randint(0, 3, (16,), generator=g)
        opt.zero_grad()
        LOSS(model(x), y).backward()
        opt.step()
        if scheduler is not None and scheduler_first:
            scheduler.step()
        tracker.record()
        if scheduler is not None and not scheduler_first:
            scheduler.step()
        buffer = _flat(opt.state[p]["momentum_buffer"] for p in model.parameters())
        expected.append(-directions.numpy() @ buffer)
    return tracker.history["velocity_projection"], np.array(expected)


@pytest.mark.parametrize("fused", [True, False])
def test_velocity_from_displacement_equals_buffer_projection(fused):
    # One constant lr: q.v_k = q.(theta_k - theta_{k-1}) / lr, the same number as -q.b_k up to the
    # rounding of theta_k (about eps |theta| / (lr |b|) relative in float64).
    model = _mlp(4)
    m = sum(p.numel() for p in model.parameters())
    directions = torch.from_numpy(np.random.default_rng(4).standard_normal((6, m)))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    got, expected = _buffer_projections(model, opt, directions, 17, fused=fused)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12 * np.abs(expected).max())


@pytest.mark.parametrize("scheduler_first", [False, True])
def test_velocity_falls_back_to_buffer_when_lr_changes(scheduler_first):
    # StepLR halves the lr every 4 steps; dividing theta_k - theta_{k-1} by a stale lr would be off by 2x.
    model = _mlp(5)
    m = sum(p.numel() for p in model.parameters())
    directions = torch.from_numpy(np.random.default_rng(5).standard_normal((4, m)))
    opt = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=4, gamma=0.5)
    got, expected = _buffer_projections(model, opt, directions, 14, scheduler, scheduler_first)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12 * np.abs(expected).max())


@pytest.mark.parametrize("fused", [True, False])
def test_blocks_end_where_their_rows_run_out(fused):
    # Two learning rates: each step projects its momentum buffer and its displacement (two rows), so
    # block_size=5 rows hold two steps and the third opens the next block before taking its rows.
    model = _mlp(6)
    groups = [{"params": [model[0].weight], "lr": 0.03}, {"params": [model[0].bias, *model[2].parameters()]}]
    opt = torch.optim.SGD(groups, lr=0.05, momentum=0.9, weight_decay=1e-3)
    m = sum(p.numel() for p in model.parameters())
    directions = np.random.default_rng(6).standard_normal((4, m))
    sizes = []
    tracker = TrajectoryTracker(model, opt, directions=torch.from_numpy(directions), block_size=5,
                                on_flush=lambda rows: sizes.append(len(rows["step"])))
    if not fused:
        tracker._fused = None   # the portable torch path, used off the CPU
    g = torch.Generator().manual_seed(6)
    thetas, buffers = [_flat(model.parameters())], []
    for _ in range(11):
        x, y = torch.randn(16, 8, generator=g, dtype=torch.float64), torch.randint(0, 3, (16,), generator=g)
        opt.zero_grad()
        LOSS(model(x), y).backward()
        opt.step()
        tracker.record()
        thetas.append(_flat(model.parameters()))
        buffers.append(_flat(opt.state[p]["momentum_buffer"] for p in model.parameters()))
    h = tracker.history
    assert sizes == [2, 2, 2, 2, 2, 1]
    thetas, pos = np.array(thetas), np.array(thetas)[1:] - thetas[0]
    np.testing.assert_allclose(h["position_projection"], pos @ directions.T, rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(h["velocity_projection"], -np.array(buffers) @ directions.T, rtol=1e-12,
                               atol=1e-14)
    np.testing.assert_allclose(h["global_sq_displacement"], np.sum(pos**2, axis=1), rtol=1e-12)
    np.testing.assert_allclose(h["local_sq_displacement"], np.sum(np.diff(thetas, axis=0)**2, axis=1),
                               rtol=1e-12)


def test_derived_velocity_blocks_hold_one_step_less_than_their_rows():
    # One lr: a block's first step takes an anchor and a displacement row, every later step one row.
    model = _mlp(7)
    m = sum(p.numel() for p in model.parameters())
    directions = torch.from_numpy(np.random.default_rng(7).standard_normal((3, m)))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sizes = []
    tracker = TrajectoryTracker(model, opt, directions=directions, block_size=4,
                                on_flush=lambda rows: sizes.append(len(rows["step"])))
    thetas, losses = _train(model, opt, tracker, 10)
    _assert_history(tracker.history, _expected(thetas, losses, np.arange(1, 11), directions.numpy(), 0.05))
    assert sizes == [3, 3, 3, 1]


def test_float32_block_projection_within_its_rounding_bound():
    # The float32 CPU product (oneDNN where the build has it) against float64 products of the same rows:
    # a sum of m float32 products is within m eps sum_i |q_i r_i| of the exact one (recursive summation).
    from sgd_dynamics.measure.tracker import _block_projection

    rng = np.random.default_rng(8)
    m = 3000
    directions = torch.from_numpy(rng.standard_normal((7, m)).astype(np.float32))
    rows = torch.from_numpy((rng.standard_normal((9, m)) * 1e-3).astype(np.float32))
    project = _block_projection(directions)
    if torch.backends.mkldnn.is_available():
        assert project.__name__ == "onednn"
    got = project(rows).numpy().astype(np.float64)
    q, r = directions.numpy().astype(np.float64), rows.numpy().astype(np.float64)
    bound = m * np.finfo(np.float32).eps * (np.abs(r) @ np.abs(q).T)
    assert got.shape == (9, 7)
    assert np.all(np.abs(got - r @ q.T) <= bound)


def test_float32_tracker_matches_float64_recomputation():
    # float32 parameters take the oneDNN product: every step against float64 arithmetic on the stored
    # float32 parameters, within the float32 rounding of each projected row (summed over a block's
    # increments for the anchored positions).
    model = _mlp(9).float()
    m = sum(p.numel() for p in model.parameters())
    directions = np.random.default_rng(9).standard_normal((5, m)).astype(np.float32)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    tracker = TrajectoryTracker(model, opt, directions=torch.from_numpy(directions), block_size=6)
    g = torch.Generator().manual_seed(9)
    thetas = [_flat(model.parameters()).astype(np.float64)]
    for _ in range(14):
        x, y = torch.randn(16, 8, generator=g), torch.randint(0, 3, (16,), generator=g)
        opt.zero_grad()
        LOSS(model(x), y).backward()
        opt.step()
        tracker.record()
        thetas.append(_flat(model.parameters()).astype(np.float64))
    h = tracker.history
    thetas, q = np.array(thetas), directions.astype(np.float64)
    delta, pos = np.diff(thetas, axis=0), thetas[1:] - thetas[0]
    # (m + 2) eps: the m-term sum, the float32 difference that makes the row, the float32 result.
    eps = np.finfo(np.float32).eps
    row_bound = (m + 2) * eps * (np.abs(delta) @ np.abs(q).T)
    velocity = delta @ q.T / 0.05
    np.testing.assert_array_less(np.abs(h["velocity_projection"] - velocity), row_bound / 0.05)
    # Anchors at steps 1, 6, 11 (five steps per block of six rows): each anchored position carries the
    # rounding of its anchor row and of the increments after it, and the float32 storage of the result.
    anchor_bound = (m + 2) * eps * (np.abs(pos) @ np.abs(q).T)
    block = np.arange(14) // 5
    within = np.cumsum(row_bound, axis=0)
    since = within - np.concatenate([np.zeros((1, 5)), within])[block * 5]
    bound = anchor_bound[block * 5] + since + eps * np.abs(pos @ q.T)
    np.testing.assert_array_less(np.abs(h["position_projection"] - pos @ q.T), bound)
    np.testing.assert_allclose(h["local_sq_displacement"], np.sum(delta**2, axis=1), rtol=1e-6)
    np.testing.assert_allclose(h["global_sq_displacement"], np.sum(pos**2, axis=1), rtol=1e-6)


@pytest.mark.parametrize("schedule", [3, LinearSchedule(stride=5, start=2), LogSchedule(points_per_decade=4)])
def test_schedules_match_direct_recomputation(schedule):
    model = _mlp(2)
    m = sum(p.numel() for p in model.parameters())
    directions = torch.from_numpy(np.random.default_rng(1).standard_normal((3, m)))
    opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.8, weight_decay=1e-3)
    tracker = TrajectoryTracker(model, opt, directions=directions, schedule=schedule, block_size=2,
                                snapshot_schedule=LogSchedule(points_per_decade=1))
    thetas, losses = _train(model, opt, tracker, 40, tensor_loss=True, read_history_at=(11,))
    rule = LinearSchedule(schedule) if isinstance(schedule, int) else schedule
    steps = [k for k in range(1, 41) if rule(k)]
    expected_steps = {3: list(range(1, 41, 3)), 5: list(range(2, 41, 5))}
    if isinstance(schedule, LogSchedule):
        # round(10^(j/4)) for j = 0..6: 1, 2 (1.78), 3 (3.16), 6 (5.62), 10, 18 (17.8), 32 (31.6)
        assert steps == [1, 2, 3, 6, 10, 18, 32]
    else:
        assert steps == expected_steps[rule.stride]
    h = tracker.history
    _assert_history(h, _expected(thetas, losses, steps, directions.numpy(), 0.02))
    snap = np.array([k for k in (1, 10) if k in steps], dtype=int)
    np.testing.assert_array_equal(h["snapshot_step"], snap)
    np.testing.assert_allclose(h["position_snapshot"], thetas[snap], rtol=0, atol=0)
    np.testing.assert_allclose(h["velocity_snapshot"], (thetas[snap] - thetas[snap - 1]) / 0.02,
                               rtol=1e-9, atol=1e-14)


def test_param_groups_frozen_parameters_and_no_directions():
    model = _mlp(3)
    model[0].bias.requires_grad_(False)
    opt = torch.optim.SGD([{"params": [model[0].weight], "lr": 0.1, "momentum": 0.0, "weight_decay": 1e-2},
                           {"params": list(model[2].parameters()), "lr": 0.03, "momentum": 0.9}], lr=0.5)
    tracker = TrajectoryTracker(model, opt, directions=None)
    m = sum(p.numel() for p in model.parameters())
    eye = TrajectoryTracker(model, opt, directions=torch.eye(m, dtype=torch.float64))
    g = torch.Generator().manual_seed(0)
    prev = _flat(model.parameters())
    for _ in range(4):
        x, y = torch.randn(16, 8, generator=g, dtype=torch.float64), torch.randint(0, 3, (16,), generator=g)
        opt.zero_grad()
        LOSS(model(x), y).backward()
        opt.step()
        tracker.record()
        eye.record()
        theta = _flat(model.parameters())
        lr = np.concatenate([np.full(model[0].weight.numel(), 0.1), np.full(model[0].bias.numel(), np.inf),
                             np.full(sum(p.numel() for p in model[2].parameters()), 0.03)])
        expected_velocity = (theta - prev) / lr      # frozen bias: 0 / inf = 0
        prev = theta
    h = tracker.history
    assert h["position_projection"].shape == (4, 0) and h["velocity_projection"].shape == (4, 0)
    assert np.all(np.isnan(h["loss"]))
    np.testing.assert_allclose(eye.history["velocity_projection"][-1], expected_velocity,
                               rtol=1e-9, atol=1e-14)


def test_history_is_a_copy_and_stable_across_reads():
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    tracker = TrajectoryTracker(model, opt, block_size=3)
    _train(model, opt, tracker, 7)
    first = tracker.history
    first["global_sq_displacement"][:] = -1.0
    second = tracker.history
    assert np.all(second["global_sq_displacement"] > 0) and len(second["step"]) == 7


def test_bad_input_messages():
    model = _mlp()
    m = sum(p.numel() for p in model.parameters())
    with pytest.raises(ValueError, match=r"\['nesterov'\]=True is invalid: expected nesterov=False"):
        TrajectoryTracker(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True))
    with pytest.raises(ValueError, match=r"\['dampening'\]=0.5 is invalid: expected dampening=0"):
        TrajectoryTracker(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, dampening=0.5))
    with pytest.raises(ValueError, match=r"optimizer=Adam is invalid: expected torch.optim.SGD"):
        TrajectoryTracker(model, torch.optim.Adam(model.parameters()))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=rf"directions has shape \({m}, 2\): expected \(k, {m}\).*transpose"):
        TrajectoryTracker(model, opt, directions=torch.zeros(m, 2))
    with pytest.raises(ValueError, match=rf"directions has shape \(3,\): expected \(k, {m}\)"):
        TrajectoryTracker(model, opt, directions=torch.zeros(3))
    with pytest.raises(ValueError, match=r"schedule=0 is invalid: expected a stride >= 1"):
        TrajectoryTracker(model, opt, schedule=0)
    with pytest.raises(ValueError, match=r"points_per_decade=0 is invalid"):
        LogSchedule(points_per_decade=0)
    with pytest.raises(ValueError, match=r"block_size=0 is invalid"):
        TrajectoryTracker(model, opt, block_size=0)
    other = _mlp(5)
    with pytest.raises(ValueError, match=r"optimizer does not update any parameter of model"):
        TrajectoryTracker(other, opt)
    tracker = TrajectoryTracker(model, opt)
    LOSS(model(torch.randn(4, 8, dtype=torch.float64)), torch.zeros(4, dtype=torch.long)).backward()
    opt.step()
    opt.zero_grad()
    with pytest.raises(RuntimeError, match=r"call tracker.record\(\) after optimizer.step\(\) and before"):
        tracker.record()
