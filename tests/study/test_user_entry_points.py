"""``sgd-dynamics study`` on a model and dataset defined outside the package, through entry points."""

import sys
import textwrap

import pytest

from sgd_dynamics.experiments.study import load_config

MODULE = """
import numpy as np
import torch
from torch import nn


def load(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((600, 24)).astype(np.float32)
    w = rng.standard_normal((24, 4))
    y = np.argmax(x @ w + 0.3 * rng.standard_normal((600, 4)), axis=1)
    return {"x_train": x[:500], "y_train": y[:500], "x_test": x[500:], "y_test": y[500:], "num_classes": 4}


def small_cnn(input_shape, num_classes):
    return nn.Sequential(nn.Unflatten(1, (1, input_shape[0])), nn.Conv1d(1, 4, 5, padding=2),
                         nn.BatchNorm1d(4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * input_shape[0], num_classes))
"""

TOML = """
dataset = "user_study_mod:load"
model = "user_study_mod:small_cnn"
model_options = {}
loss = "cross_entropy"
pretrain_epochs = 5
pretrain_lr = 0.05
settle_steps = 100
settle_windows_max = 2
settle_observations = 4
monitor_examples = 200
lr = 0.01
momentum = 0.9
batch_size = 50
weight_decay = 0.005
lrs = [0.01]
momenta = [0.9]
batch_sizes = [50]
samplers = ["with_replacement"]
steps = 200
burn_in = 50
noise_snapshots = 1
num_eigenpairs = 3
trace_matvecs = 3
slice_points = 5
companions = []
"""


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "user_study_mod.py").write_text(textwrap.dedent(MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop("user_study_mod", None)


def test_study_on_user_model_and_data_writes_report(tmp_path, user_module, cli_main, capsys):
    cfg = tmp_path / "user.toml"
    cfg.write_text(TOML)
    out = tmp_path / "run"
    assert cli_main(["study", str(cfg), "--out", str(out), "--quiet"]) == 0
    page = (out / "report.html").read_text()
    assert "user_study_mod:small_cnn" in page and "<img" in page
    assert "report:" in capsys.readouterr().out


def test_unknown_config_key_is_an_error_naming_it(tmp_path, cli_main, capsys):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('modle = "mlp"\n')
    with pytest.raises(ValueError, match="config key 'modle' is unknown"):
        load_config(cfg)
    assert cli_main(["study", str(cfg)]) == 2
    assert "modle" in capsys.readouterr().err


def test_bad_entry_point_names_the_option(tmp_path, cli_main, capsys):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('model = "no_such_module_xyz:build"\ncompanions = []\n')
    assert cli_main(["study", str(cfg), "--out", str(tmp_path / "r"), "--quiet"]) == 2
    assert "model='no_such_module_xyz:build'" in capsys.readouterr().err


def test_report_of_missing_run_is_usage_error(tmp_path, cli_main, capsys):
    assert cli_main(["report", str(tmp_path)]) == 2
    assert "RUN_DIR" in capsys.readouterr().err
