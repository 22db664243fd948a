"""The MNIST-1D label-noise classifier (003 App. A.3-A.4, scaled down) and the momentum HTML report."""

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
    run_classifier_study,
)
from sgd_dynamics.experiments.matrix_sensing import MatrixSensingConfig, run_matrix_sensing
from sgd_dynamics.experiments.momentum_uv import UVStudyConfig, run_activation_sweep
from sgd_dynamics.report import momentum_report
from sgd_dynamics.report.html import PNG_SIGNATURE


@pytest.fixture(scope="module")
def quick_classifier():
    return run_classifier_study(ClassifierConfig.quick())


def test_quick_classifier_gives_a_finite_beta_star_inside_the_sweep_with_an_interval(quick_classifier):
    res = quick_classifier
    cfg = res.config
    assert res.start_train_loss < cfg.valley_loss  # phase 1 reached the valley
    lo, hi = min(cfg.momenta), max(cfg.momenta)
    for s in res.sweeps:
        assert np.isfinite(s.train_loss).all()
        b = s.best_momentum
        ci = s.best_momentum_interval
        assert math.isfinite(b) and lo <= b <= hi
        assert math.isfinite(ci[0]) and math.isfinite(ci[1]) and ci[0] <= b <= ci[1] and ci[0] < ci[1]
        assert np.all(np.isfinite(s.travelled))
    assert math.isfinite(res.exponent) and res.exponent_interval[0] < res.exponent_interval[1]
    assert res.constant_interval[0] < res.constant < res.constant_interval[1]


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
