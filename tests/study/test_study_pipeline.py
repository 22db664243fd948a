"""A reduced study on a small MLP: the speed prediction, samplers, c(lr), eq. 9, resumability, the report."""

import base64
import json
import re

import h5py
import numpy as np
import pytest
import torch

from sgd_dynamics.experiments.analysis import load_analysis
from sgd_dynamics.experiments.study import StudyConfig, run_study
from sgd_dynamics.hyper import Hyperparams
from sgd_dynamics.report.html import PNG_SIGNATURE
from sgd_dynamics.report.study import write_study_report
from sgd_dynamics.store import read_arrays
from sgd_dynamics.theory import reshuffled_stationary_speed

CONFIG = StudyConfig(
    model_options={"hidden": [128, 128]},
    pretrain_epochs=15,
    settle_steps=500,
    settle_windows_max=2,
    settle_observations=5,
    monitor_examples=512,
    lrs=(0.0025, 0.005, 0.01),
    momenta=(0.0, 0.5, 0.9),
    batch_sizes=(128,),
    steps=1500,
    burn_in=400,
    noise_snapshots=2,
    num_eigenpairs=5,
    trace_matvecs=5,
    slice_points=7,
    companions=("linear_regression", "ou"),
    threads=1,
)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("study")
    run_study(CONFIG, out, progress=False, log=lambda s: None)
    write_study_report(out)
    return out


@pytest.fixture(scope="module")
def rows(run_dir):
    return load_analysis(run_dir / "analysis", "sweep")["rows"]


def test_grid_covers_three_lrs_by_three_momenta_with_both_samplers(rows):
    wr = {(r["lr"], r["momentum"]) for r in rows if r["sampler"] == "with_replacement"}
    wor = {(r["lr"], r["momentum"]) for r in rows if r["sampler"] == "without_replacement"}
    assert len(wr) == 9 and wr == wor


def test_speed_without_fitted_constant_within_5_percent_with_replacement(rows):
    # ERRATA 002.3: eta^2 tr(Sigma)/(S(1-beta^2)) with tr(Sigma) measured along the measured window
    errors = {
        (r["lr"], r["momentum"]): r["relative_error"] for r in rows if r["sampler"] == "with_replacement"
    }
    assert max(abs(e) for e in errors.values()) <= 0.05, sorted(errors.items())


def test_without_replacement_deviates_at_high_momentum(rows):
    # epoch shuffling anti-correlates the noise; with momentum 0.9 the speed falls below the formula by more
    # than the 5% that sampling with replacement meets (ERRATA 002.3 reports 25-35% on a small MLP)
    dev = [
        r["relative_error"] for r in rows if r["sampler"] == "without_replacement" and r["momentum"] == 0.9
    ]
    assert len(dev) == 3 and min(dev) > 0.05, dev


def test_exponent_c_falls_as_lr_grows(rows):
    sel = sorted(
        (r for r in rows if r["sampler"] == "with_replacement" and r["momentum"] == CONFIG.momentum),
        key=lambda r: r["lr"],
    )
    c = [r["c"] for r in sel]
    assert all(a > b for a, b in zip(c, c[1:], strict=False)), c


def test_linear_regression_mean_matches_eq9(run_dir):
    lin = load_analysis(run_dir / "companions", "linear_regression")
    assert min(lin["r2_continuous"]) >= 0.99, lin["r2_continuous"]


def test_report_images_are_embedded_pngs_and_files_exist(run_dir):
    page = (run_dir / "report.html").read_text()
    srcs = re.findall(r"<img [^>]*src='([^']*)'", page)
    assert len(srcs) >= 8
    for src in srcs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1], validate=True).startswith(PNG_SIGNATURE)
    assert len(list((run_dir / "figures").glob("*.png"))) == len(srcs)
    assert len(list((run_dir / "figures").glob("*.svg"))) == len(srcs)
    assert "What the theory does not explain" in page and "without replacement" in page


def test_rerun_and_report_recompute_nothing(run_dir, cli_main):
    stored = sorted(run_dir.rglob("*.h5")) + sorted((run_dir / "pretrain").glob("*.pt"))
    before = {p: p.stat().st_mtime_ns for p in stored}
    run_study(CONFIG, run_dir, progress=False, log=lambda s: None)
    assert cli_main(["report", str(run_dir)]) == 0
    assert {p: p.stat().st_mtime_ns for p in stored} == before


def test_results_are_hdf5_files_readable_with_plain_h5py(run_dir):
    assert not list(run_dir.rglob("*.npz")) and not list(run_dir.rglob("*.tmp.h5"))
    with h5py.File(run_dir / "theta_star.h5", "r") as f:
        m = int(f["num_parameters"][()])
        assert f["eigenvalues"].shape == (CONFIG.num_eigenpairs,)
        assert f["eigenvectors"].shape == (m, CONFIG.num_eigenpairs)
    points = sorted((run_dir / "points").iterdir())
    assert len(points) == 3 * 3 * 2   # lr x momentum x sampler; the one batch size is the default
    for point in points:
        with h5py.File(point / "result.h5", "r") as f:
            assert f["local_sq_displacement"].shape == (CONFIG.steps,)
            assert f["position_projection"].shape == (CONFIG.steps, CONFIG.num_eigenpairs)
            assert f["noise_trace"].shape == (CONFIG.noise_snapshots,)
    for directory in ("analysis", "companions"):
        for stored in (run_dir / directory).glob("*.json"):
            assert stored.with_suffix(".h5").is_file(), stored
    sweep = load_analysis(run_dir / "analysis", "sweep")
    with h5py.File(run_dir / "analysis" / "sweep.h5", "r") as f:
        # nested results are groups: curves/<point>/<array>
        assert sorted(f["curves"].keys()) == sorted(sweep["curves"])
        for name, arrays in sweep["curves"].items():
            for key, array in arrays.items():
                np.testing.assert_array_equal(f["curves"][name][key][()], array)


def test_changed_config_in_same_directory_is_refused(run_dir):
    with pytest.raises(ValueError, match="different configuration.*'steps'"):
        run_study(StudyConfig(**{**CONFIG.__dict__, "steps": 1600}), run_dir, progress=False)


def test_ou_covariance_matches_lyapunov(run_dir):
    ou = load_analysis(run_dir / "companions", "ou")
    # one Euler-Maruyama path of 80 time units (~80 correlation times): ~15% Monte Carlo error on entries
    np.testing.assert_allclose(ou["measured_covariance"], ou["theory_covariance"], rtol=0.25, atol=0.03)


def _summary_rows(run_dir):
    return json.loads((run_dir / "summary.json").read_text())["rows"]


def test_without_replacement_speed_is_the_reshuffling_theory_of_the_stored_spectrum(run_dir, rows):
    """Wiring (issue 11 §4): each without-replacement row, recomputed from the stored arrays with the theory
    (which tests/simulate/test_reshuffling.py checks against real reshuffled SGD)."""
    theta = read_arrays(run_dir / "theta_star.h5")
    parts = read_arrays(run_dir / "displacement.h5")
    k = int(parts["deflated"])
    assert k == CONFIG.num_eigenpairs            # the top-k converged, so the stored rule is deflated
    nodes = parts["nodes"].reshape(CONFIG.spectral_probes, -1)[:, k:].ravel()
    weights = parts["weights"].reshape(CONFIG.spectral_probes, -1)[:, k:].ravel()
    summary = {r["quantity"]: r for r in _summary_rows(run_dir)}
    wor = [r for r in rows if r["sampler"] == "without_replacement"]
    for r in wor:
        data = read_arrays(run_dir / "points" / r["name"] / "result.h5")
        modes = np.nanmean(data["noise_modes"], axis=0)
        trace = float(np.nanmean(data["noise_trace"]))
        rho = np.maximum(np.concatenate([theta["eigenvalues"], nodes]), -CONFIG.weight_decay)
        s = np.concatenate([modes, weights * (trace - modes.sum()) / weights.sum()])
        hp = Hyperparams(lr=r["lr"], momentum=r["momentum"], batch_size=r["batch_size"],
                         weight_decay=CONFIG.weight_decay, dataset_size=int(theta["num_examples"]),
                         sampler="without_replacement")
        expected = reshuffled_stationary_speed(rho, s, hp, drop_last=True)
        assert r["predicted_speed_reshuffled"] == pytest.approx(expected, rel=1e-9)
        row = summary[f"speed, lr={r['lr']:g}, momentum={r['momentum']:g}, S={r['batch_size']}, "
                      "without replacement"]
        assert row["predicted"] == pytest.approx(expected, rel=1e-9)
        assert row["measured"] == pytest.approx(r["measured_speed"], rel=1e-9)
        assert row["tolerance"] == CONFIG.speed_tolerance and row["verdict"] != "reported"
    assert all(np.isnan(r["predicted_speed_reshuffled"]) for r in rows if r["sampler"] == "with_replacement")


def test_exponent_row_fits_the_stored_diffusion_parts_on_the_last_two_thirds(run_dir):
    parts = read_arrays(run_dir / "displacement.h5")
    steps = parts["step"].astype(float)
    inside = steps >= steps[-1] / 3
    x = np.log(steps[inside])
    row = next(r for r in _summary_rows(run_dir) if r["quantity"].startswith("exponent c of the diffusion"))
    assert row["predicted"] == pytest.approx(np.polyfit(x, np.log(parts["full_diffusion"][inside]), 1)[0])
    assert row["measured"] == pytest.approx(np.polyfit(x, np.log(parts["diffusion"][inside]), 1)[0])
    assert row["tolerance"] == 0.25
    assert not any(r["predicted"] == r["measured"] == 1.0 for r in _summary_rows(run_dir))  # no 1-vs-1 row
