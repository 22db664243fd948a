"""``device`` and ``dtype`` of the study: the sweep in float64, device errors, CUDA where there is one."""

import dataclasses

import numpy as np
import pytest
import torch

from sgd_dynamics.experiments.setup import check_device
from sgd_dynamics.experiments.study import StudyConfig, prepare, run_sweep, sweep_points
from sgd_dynamics.store import read_arrays

CONFIG = StudyConfig.quick()


def _sweep_point(config, out):
    """The default point of ``config`` resumed from the (float32-built) initialisation; its arrays."""
    torch.set_num_threads(1)
    setup = prepare(config)
    theta_star = {k: v.detach().clone() for k, v in setup.build_model().state_dict().items()}
    m = sum(v.numel() for v in theta_star.values())
    directions = np.linalg.qr(np.random.default_rng(0).standard_normal((m, 3)))[0]
    [directory] = run_sweep(config, setup, theta_star, directions, out, progress=False,
                            points=sweep_points(config)[:1])
    return setup, read_arrays(directory / "result.h5")


def test_float64_runs_the_same_trajectory_in_higher_precision(tmp_path):
    setup32, single = _sweep_point(CONFIG, tmp_path / "float32")
    setup64, double = _sweep_point(dataclasses.replace(CONFIG, dtype="float64"), tmp_path / "float64")
    assert setup64.x.dtype == torch.float64 and setup64.y.dtype == setup32.y.dtype == torch.int64
    assert {p.dtype for p in setup64.build_model().parameters()} == {torch.float64}
    for name in ("global_sq_displacement", "loss", "noise_trace"):
        # float32 rounding (~1e-7 per step) grows over 60 steps; far below the signal, far above 0
        np.testing.assert_allclose(single[name], double[name], rtol=2e-3, err_msg=name)
        assert not np.array_equal(single[name], double[name]), f"{name}: float64 was not used"


def test_bad_or_unavailable_devices_are_errors_naming_device(tmp_path, cli_main, capsys):
    for bad in ("gpu", "cuda:", "cuda:x", "CPU"):
        with pytest.raises(ValueError, match=r"device=.* is invalid: expected 'cpu', 'cuda' or 'cuda:N'"):
            dataclasses.replace(CONFIG, device=bad)
    with pytest.raises(ValueError, match=r"device='cuda:99' is invalid: expected 'cpu' or a CUDA device"):
        check_device("cuda:99")
    assert check_device("cpu") == torch.device("cpu")
    config = tmp_path / "c.toml"
    config.write_text('dataset = "teacher"\n')
    assert cli_main(["study", str(config), "--out", str(tmp_path / "run"), "--device", "cuda:99"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "device='cuda:99' is invalid" in err and "visible" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_runs_the_sweep_point_close_to_the_cpu(tmp_path):
    _, cpu = _sweep_point(dataclasses.replace(CONFIG, dtype="float64"), tmp_path / "cpu")
    setup, gpu = _sweep_point(dataclasses.replace(CONFIG, dtype="float64", device="cuda"), tmp_path / "cuda")
    assert setup.x.device.type == "cuda"
    for name in ("global_sq_displacement", "loss", "noise_trace"):
        np.testing.assert_allclose(gpu[name], cpu[name], rtol=1e-6, err_msg=name)
