"""track(): the step post-hook against a hand-driven TrajectoryTracker; TensorBoard scalars read back."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn
from training_setup import make_batches, make_directions, make_net

from sgd_dynamics.integrations import track
from sgd_dynamics.measure import TrajectoryTracker

LOSS = nn.functional.cross_entropy


def _scalars(log_dir) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    events.Reload()
    out = {}
    for tag in events.Tags()["scalars"]:
        scalars = events.Scalars(tag)
        out[tag] = (np.array([e.step for e in scalars]), np.array([e.value for e in scalars]))
    return out


def _train(net, opt, batches, on_step=None, observe=None) -> None:
    for x, y in batches * 2:
        opt.zero_grad()
        loss = LOSS(net(x), y)
        loss.backward()
        if observe is not None:
            observe(loss)
        opt.step()
        if on_step is not None:
            on_step(loss)


def test_hook_equals_hand_recorded_tracker_and_writes_tensorboard(tmp_path):
    batches, net = make_batches(), make_net()
    directions = make_directions(sum(p.numel() for p in net.parameters()), k=2)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    tracker = TrajectoryTracker(net, opt, directions, block_size=5)
    with track(net, opt, directions, tensorboard=tmp_path, block_size=5) as tracking:
        _train(net, opt, batches, on_step=lambda loss: tracker.record(loss.item()),
               observe=tracking.observe_loss)
    expected, got = tracker.history, tracking.history
    assert set(got) == set(expected) and len(got["step"]) == 2 * len(batches)
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-13, atol=0, err_msg=key)

    scalars = _scalars(tmp_path)   # float32 in the event files
    columns = {"trajectory/speed": expected["local_sq_displacement"],
               "trajectory/global_sq_displacement": expected["global_sq_displacement"],
               "trajectory/loss": expected["loss"]}
    for i in range(2):
        columns[f"trajectory/position_projection/{i}"] = expected["position_projection"][:, i]
        columns[f"trajectory/velocity_projection/{i}"] = expected["velocity_projection"][:, i]
    assert set(scalars) == set(columns)
    for tag, values in columns.items():
        steps, logged = scalars[tag]
        np.testing.assert_array_equal(steps, expected["step"], err_msg=tag)
        np.testing.assert_allclose(logged, values, rtol=2e-7, atol=1e-30, err_msg=tag)


def test_hook_accepts_a_summary_writer_and_stops_after_close(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    batches, net = make_batches(), make_net()
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    writer = SummaryWriter(log_dir=str(tmp_path))
    tracking = track(net, opt, tensorboard=writer)
    _train(net, opt, batches[:3])
    tracking.close()
    _train(net, opt, batches[:2])          # no longer tracked
    writer.close()
    history = tracking.history
    np.testing.assert_array_equal(history["step"], np.arange(1, 7))
    assert np.all(np.isnan(history["loss"]))
    steps, speed = _scalars(tmp_path)["trajectory/speed"]
    np.testing.assert_array_equal(steps, np.arange(1, 7))
    np.testing.assert_allclose(speed, history["local_sq_displacement"], rtol=2e-7)
    assert "trajectory/loss" not in _scalars(tmp_path)


def test_hook_counts_optimizer_steps_not_backward_passes():
    batches, net = make_batches(), make_net()
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.5)
    tracking = track(net, opt)
    thetas = [torch.nn.utils.parameters_to_vector(net.parameters()).detach().clone()]
    for i, (x, y) in enumerate(batches):    # two backward passes per step
        (LOSS(net(x), y) / 2).backward()
        if i % 2 == 1:
            opt.step()
            opt.zero_grad()
            thetas.append(torch.nn.utils.parameters_to_vector(net.parameters()).detach().clone())
    history = tracking.history
    assert len(history["step"]) == len(batches) // 2
    delta = torch.stack(thetas[1:]) - torch.stack(thetas[:-1])
    np.testing.assert_allclose(history["local_sq_displacement"], delta.square().sum(1).numpy(), rtol=1e-13)


def test_tensorboard_argument_is_checked():
    net = make_net()
    with pytest.raises(ValueError, match=r"tensorboard=.* is invalid: expected a log directory or a Summ"):
        track(net, torch.optim.SGD(net.parameters(), lr=0.1), tensorboard=42)


def test_record_on_is_checked():
    net = make_net()
    with pytest.raises(ValueError, match=r"record_on='rank1' is invalid: expected 'rank0' or 'all'"):
        TrajectoryTracker(net, torch.optim.SGD(net.parameters(), lr=0.1), record_on="rank1")
