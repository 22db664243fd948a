"""TrajectoryCallback in a real Lightning Trainer against a plain loop with TrajectoryTracker and track().

The reference is the loop Lightning's automatic optimization runs, written out by hand: the loss of each
micro-batch divided by ``accumulate_grad_batches``, a step every ``a`` batches and at the end of an
epoch, the tracker recording after each step with the summed micro-batch losses.
"""

from __future__ import annotations

import copy
import importlib
import sys

import numpy as np
import pytest
import torch
from torch import nn
from training_setup import make_batches, make_directions, make_net

from sgd_dynamics.integrations import track
from sgd_dynamics.measure import TrajectoryTracker

pl = pytest.importorskip("lightning.pytorch")
from sgd_dynamics.integrations.lightning import TrajectoryCallback  # noqa: E402

LOSS = nn.functional.cross_entropy
HISTORY_KEYS = ("step", "loss", "local_sq_displacement", "global_sq_displacement", "position_projection",
                "velocity_projection")


class Classifier(pl.LightningModule):
    def __init__(self, net: nn.Module, momentum: float, optimizer: str = "sgd") -> None:
        super().__init__()
        self.net, self.momentum, self.optimizer_name = net, momentum, optimizer

    def training_step(self, batch, batch_idx):
        x, y = batch
        return LOSS(self.net(x), y)

    def configure_optimizers(self):
        if self.optimizer_name == "adam":
            return torch.optim.Adam(self.parameters(), lr=0.01)
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=self.momentum, weight_decay=1e-3)


def _loader(batches) -> torch.utils.data.DataLoader:
    """The batches again, in order, through a DataLoader (Lightning would wrap a list as a data set)."""
    x, y = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=len(batches[0][1]))


def _trainer(epochs: int, accumulate: int, callback, **options) -> pl.Trainer:
    return pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, accumulate_grad_batches=accumulate,
                      callbacks=[callback], enable_progress_bar=False, logger=False,
                      enable_checkpointing=False, enable_model_summary=False, num_sanity_val_steps=0,
                      **options)


def _plain_loop(net: nn.Module, batches, epochs: int, accumulate: int, momentum: float, directions):
    """Lightning's automatic optimization by hand; returns the tracker's and the hook's histories."""
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=momentum, weight_decay=1e-3)
    tracker = TrajectoryTracker(net, opt, directions)
    tracking = track(net, opt, directions)
    for _ in range(epochs):
        step_loss = 0.0
        for i, (x, y) in enumerate(batches):
            loss = LOSS(net(x), y) / accumulate
            loss.backward()
            step_loss = step_loss + loss.detach()
            if (i + 1) % accumulate == 0 or i == len(batches) - 1:
                tracking.observe_loss(step_loss)
                opt.step()
                tracker.record(step_loss)
                opt.zero_grad()
                step_loss = 0.0
    tracking.close()
    return tracker.history, tracking.history


@pytest.mark.parametrize(("accumulate", "momentum"), [(1, 0.9), (4, 0.9), (1, 0.0)])
def test_callback_history_equals_plain_loop_and_hook(accumulate, momentum):
    batches, epochs = make_batches(), 3        # 6 batches per epoch, the last one of 8 examples
    net = make_net()
    directions = make_directions(sum(p.numel() for p in net.parameters()))
    callback = TrajectoryCallback(directions)
    module = Classifier(copy.deepcopy(net), momentum)
    _trainer(epochs, accumulate, callback).fit(module, train_dataloaders=_loader(batches))
    expected, hooked = _plain_loop(copy.deepcopy(net), batches, epochs, accumulate, momentum, directions)

    got = callback.history
    steps_per_epoch = -(-len(batches) // accumulate)   # Lightning also steps on an epoch's last batch
    assert len(got["step"]) == epochs * steps_per_epoch
    np.testing.assert_array_equal(got["step"], np.arange(1, epochs * steps_per_epoch + 1))
    for key in HISTORY_KEYS:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-12, atol=1e-14, err_msg=key)
        np.testing.assert_allclose(hooked[key], expected[key], rtol=1e-12, atol=1e-14, err_msg=key)
    assert set(got) == set(expected)
    # The trained parameters agree too: the rows describe the same trajectory.
    reference = copy.deepcopy(net)
    _plain_loop(reference, batches, epochs, accumulate, momentum, None)
    np.testing.assert_allclose(_flat(module.net), _flat(reference), rtol=1e-12, atol=1e-14)


def _flat(net: nn.Module) -> np.ndarray:
    return torch.nn.utils.parameters_to_vector(net.parameters()).detach().numpy()


def test_callback_refuses_a_non_sgd_optimizer():
    callback = TrajectoryCallback()
    with pytest.raises(ValueError, match="optimizer=Adam is invalid: expected torch.optim.SGD"):
        _trainer(1, 1, callback).fit(Classifier(make_net(), 0.9, "adam"),
                                     train_dataloaders=_loader(make_batches()))


def test_importing_without_lightning_names_the_extra(monkeypatch):
    for name in [n for n in sys.modules if n == "lightning" or n.startswith("lightning.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "lightning", None)      # makes `import lightning...` fail
    monkeypatch.delitem(sys.modules, "sgd_dynamics.integrations.lightning")
    with pytest.raises(ImportError, match=r"pip install 'sgd-dynamics\[lightning\]'"):
        importlib.import_module("sgd_dynamics.integrations.lightning")
