"""The label-noise MLP classifier (003 App. A.3-A.4, scaled down to digits) and the momentum HTML report."""

import base64
import math
import re

import numpy as np
import pytest
from scipy.stats import norm

import sgd_dynamics.cli as cli
from sgd_dynamics.experiments.label_noise_classifier import (
    ClassifierConfig,
    fit_momentum_scaling,
    peak_location,
    run_classifier_study,
)
from sgd_dynamics.experiments.matrix_sensing import MatrixSensingConfig, run_matrix_sensing
from sgd_dynamics.experiments.momentum_uv import UVStudyConfig, run_activation_sweep
from sgd_dynamics.report import momentum_report
from sgd_dynamics.report.html import PNG_SIGNATURE

# Small enough for the suite (seconds), large enough to learn: digits at 64 training examples, a valley loss
# of 1e-3, two eta whose optimum lies inside the grid and one that diverges (eta lambda_max >> 2(1 + beta)).
TINY = dict(train_size=64, hidden=16, lrs=(0.05, 0.15, 0.95), momenta=(0.5, 0.7, 0.85, 0.92, 0.96, 0.98),
            replicas=2, steps=100, probes=2, valley_loss=1e-3, projection_steps=300, n_bootstrap=40)


@pytest.fixture(scope="module")
def quick_classifier():
    return run_classifier_study(ClassifierConfig(**TINY))


def test_classifier_learns_and_records_every_run(quick_classifier):
    res = quick_classifier
    cfg = res.config
    assert res.input_size == 64  # digits: the input size follows the data
    assert res.start_train_loss < cfg.valley_loss  # phase 1 reached the valley
    assert res.start_test_accuracy >= 0.6  # issue 16: well above chance (0.1)
    for s in res.sweeps:
        assert s.travelled.shape == s.returned.shape == (len(cfg.momenta), cfg.replicas)
        np.testing.assert_array_equal(s.returned, (s.train_loss < cfg.valley_loss) & ~s.diverged)
        np.testing.assert_array_equal(s.stable, s.lr * res.lambda_max < 2 * (1 + s.momenta))
        finite = ~s.diverged
        expected = np.log(res.start_trace_hessian / s.trace_hessian[finite])
        np.testing.assert_allclose(s.travelled[finite], expected)
        assert np.isnan(s.travelled[s.diverged]).all()
    last = res.sweeps[-1]  # eta = 0.95: eta lambda_max >> 4, every run diverges; reported, not fitted
    assert last.diverged.all() and not last.stable.any() and not last.bracketed and last.hinge is None
    listed = [run for run in res.summary()["diverged"] if run[0] == 0.95]
    assert len(listed) == last.diverged.size and [0.95, 0.5, 1] in listed
    assert 0.95 not in res.fitted_lrs and res.fitted_lrs == (0.05, 0.15)


def test_beta_star_is_the_peak_of_the_mean_curve_with_a_replica_interval(quick_classifier):
    res = quick_classifier
    for s in res.sweeps[:-1]:
        x = -np.log10(1 - s.momenta)
        mean = s.travelled.mean(axis=1)
        m = int(np.argmax(mean))
        assert s.bracketed == (0 < m < len(x) - 1)
        if s.bracketed:   # the vertex of the parabola through the three points (numpy's own fit)
            c2, c1, _ = np.polyfit(x[m - 1:m + 2], mean[m - 1:m + 2], 2)
            assert s.peak == pytest.approx(-c1 / (2 * c2), rel=1e-9)
        lo, hi = s.peak_interval
        assert x[0] <= lo <= hi <= x[-1]
        assert s.best_momentum == pytest.approx(1 - 10.0**-s.peak)
    used = [s for s in res.sweeps if s.bracketed]
    assert res.fitted_lrs == tuple(s.lr for s in used)
    if len(used) >= 2:  # least squares of log(1 - beta*) on log eta, recomputed with numpy
        gaps = np.log([1 - s.best_momentum for s in used])
        slope, icpt = np.polyfit(np.log([s.lr for s in used]), gaps, 1)
        assert res.exponent == pytest.approx(slope, rel=1e-9)
        assert res.constant == pytest.approx(math.exp(icpt), rel=1e-9)
        lo, hi = res.exponent_interval
        assert lo <= hi and res.exponent_stderr >= 0
        scale = ((hi - lo) / res.config.target_width) ** 2
        assert res.replicas_needed == max(res.config.replicas, math.ceil(res.config.replicas * scale))
    else:
        assert math.isnan(res.exponent) and res.replicas_needed is None


def test_peak_location_matches_a_quadratic_fit_and_flags_the_grid_edges():
    rng = np.random.default_rng(3)
    x = np.sort(rng.uniform(0, 3, 7))
    curves = rng.normal(size=(50, 7))
    at, inside = peak_location(x, curves)
    for row, a, ok in zip(curves, at, inside, strict=True):
        m = int(np.argmax(row))
        assert ok == (0 < m < 6)
        if ok:
            c2, c1, _ = np.polyfit(x[m - 1:m + 2], row[m - 1:m + 2], 2)
            assert a == pytest.approx(-c1 / (2 * c2), rel=1e-9) and x[m - 1] <= a <= x[m + 1]
        else:
            assert a == x[m]
    # a diverged (nan) neighbour: the grid maximum itself
    assert peak_location(x, np.array([[0, 1, 3, np.nan, 0, 0, 0.0]]))[0][0] == x[2]


def test_momentum_scaling_fit_recovers_the_law_and_the_ols_standard_error():
    # Exact data give back C and gamma exactly; the bootstrap spread of gamma equals the analytic standard
    # error of an OLS slope with known per-point noise, sqrt(sum xc_i^2 sd_i^2) / sum xc_i^2.
    eta = np.array([0.003, 0.01, 0.03, 0.1])
    best = 1 - 0.3 * eta ** (2 / 3)
    half = np.array([0.1, 0.2, 0.15, 0.3])  # half-widths of the 95 % intervals in log(1 - beta)
    ci = np.c_[1 - (1 - best) * np.exp(half), 1 - (1 - best) * np.exp(-half)]
    n = 4000
    g, (g_lo, g_hi), c, _ = fit_momentum_scaling(eta, best, ci, n_bootstrap=n, seed=1)
    assert g == pytest.approx(2 / 3, abs=1e-12) and c == pytest.approx(0.3, rel=1e-12)
    x = np.log(eta) - np.log(eta).mean()
    se = math.sqrt(np.sum(x**2 * (half / norm.ppf(0.975)) ** 2)) / np.sum(x**2)
    measured = (g_hi - g_lo) / (2 * norm.ppf(0.975))
    # Percentile half-width of n normal draws: relative standard error about 1.1 / sqrt(n) (4 sigma here).
    assert measured == pytest.approx(se, rel=4 * 1.1 / math.sqrt(n))
    with pytest.raises(ValueError, match=r"best_momenta=.*expected values \(and intervals\) below 1"):
        fit_momentum_scaling(eta, np.ones(4), ci)


def test_report_embeds_decodable_png_figures(tmp_path, quick_classifier):
    uv = run_activation_sweep(UVStudyConfig.quick(gammas=(0.3, 0.8), lrs=(0.03, 0.1), replicas=4))
    sensing = run_matrix_sensing(
        MatrixSensingConfig(momenta=(0.9, 0.988, 0.998), steps=500, max_steps=500, replicas=2,
                            record_every=50, n_bootstrap=20)
    )
    results = momentum_report.MomentumResults(uv, sensing, quick_classifier, {"test": 0.0})
    page = momentum_report.build_momentum_report(tmp_path, results)
    text = page.read_text(encoding="utf-8")
    sources = re.findall(r"<img [^>]*src='([^']*)'", text)
    assert len(sources) == 4
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        data = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert data.startswith(PNG_SIGNATURE)
        import io

        from PIL import Image  # matplotlib's own dependency; decoding proves the PNG is well formed

        with Image.open(io.BytesIO(data)) as im:
            im.load()
            assert im.size[0] > 100 and im.size[1] > 100
    assert "alpha(gamma=0.3), tanh first layer" in text and "classifier: gamma*" in text
    assert ">nan<" not in text and "no drift prediction above 2/3" in text  # gamma = 0.8 row


def test_cli_report_runs_the_study_into_the_run_directory_and_prints_the_page(tmp_path, monkeypatch, capsys):
    from sgd_dynamics.experiments import momentum_study

    if "momentum" not in cli._SUBCOMMANDS:
        monkeypatch.setattr(cli, "_SUBCOMMANDS", cli._SUBCOMMANDS + ("momentum",))
    calls = []

    def fake_run(config, out, force=False):
        calls.append((config, out, force))
        return out

    monkeypatch.setattr(momentum_study, "run_momentum", fake_run)
    monkeypatch.setattr(momentum_report, "write_momentum_report", lambda out: out / "report.html")
    assert cli.main(["momentum", "report", "--quick", "--out", str(tmp_path / "r")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "r" / "report.html")
    assert calls == [(momentum_study.MomentumConfig.quick(), tmp_path / "r", False)]
    assert cli.main(["momentum", "report", "--quick", "--out", str(tmp_path / "s"), "--seed", "4"]) == 0
    seeded = calls[-1][0]
    assert (seeded.uv.seed, seeded.sensing.seed, seeded.classifier.seed) == (4, 4, 4)
    assert seeded == momentum_study.MomentumConfig.quick().with_seed(4)
    capsys.readouterr()
    bad = tmp_path / "file"
    bad.write_text("x")
    monkeypatch.undo()
    monkeypatch.setattr(cli, "_SUBCOMMANDS", tuple(dict.fromkeys((*cli._SUBCOMMANDS, "momentum"))))
    assert cli.main(["momentum", "report", "--out", str(bad)]) == 2
    assert "--out=" in capsys.readouterr().err


def test_run_momentum_writes_one_run_directory_that_report_run_dir_redraws(tmp_path, monkeypatch, capsys,
                                                                          quick_classifier):
    import json

    from sgd_dynamics.experiments import momentum_study

    config = momentum_study.MomentumConfig(
        uv=UVStudyConfig.quick(gammas=(0.3, 0.8), lrs=(0.03, 0.1), replicas=4),
        sensing=MatrixSensingConfig(momenta=(0.9, 0.988, 0.998), steps=500, max_steps=500, replicas=2,
                                    record_every=50, n_bootstrap=20),
        classifier=quick_classifier.config)
    monkeypatch.setattr(momentum_study, "run_classifier_study", lambda cfg: quick_classifier)
    run = momentum_study.run_momentum(config, tmp_path / "run")
    stored = json.loads((run / "config.json").read_text())
    assert stored["kind"] == "momentum" and momentum_study.momentum_config(run) == config
    loaded = momentum_study.load_momentum(run)
    assert loaded.classifier.exponent == quick_classifier.exponent
    again = run_matrix_sensing(config.sensing)   # the stored arrays are the computed ones, bit for bit
    np.testing.assert_array_equal(loaded.sensing.trace_hessian, again.trace_hessian)
    summary = json.loads((run / "summary.json").read_text())
    rows = momentum_study.momentum_rows(loaded)
    assert [r["quantity"] for r in summary["rows"]] == [r.quantity for r in rows]
    assert cli.main(["report", str(run)]) == 0
    assert capsys.readouterr().out.strip() == f"report: {(run / 'report.html').resolve()}"
    assert "classifier: gamma*" in (run / "report.html").read_text()
