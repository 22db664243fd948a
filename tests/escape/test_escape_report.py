import argparse
import base64
import json
import re
from html.parser import HTMLParser

import numpy as np
import pytest

from sgd_dynamics.cli import basins
from sgd_dynamics.experiments.basin_selection import SGD_ELIMINATION_ALLOWANCE, sgd_noise_occupation
from sgd_dynamics.experiments.basins import BasinsConfig, basins_curves, basins_rows, load_basins, run_basins
from sgd_dynamics.experiments.escape_study import (
    EscapeStudyConfig,
    arrhenius_slope_stderr,
    run_escape_study,
)
from sgd_dynamics.report import escape_report, timescale_figures
from sgd_dynamics.report.html import PNG_SIGNATURE, ReportSection
from sgd_dynamics.theory.escape import fit_arrhenius


@pytest.fixture(scope="module")
def study():
    return run_escape_study(quick=True, seed=0)


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.open: dict[str, int] = {}
        self.closed: dict[str, int] = {}
        self.images: list[str] = []
        self.h2: list[str] = []
        self._in_h2 = False

    def handle_starttag(self, tag, attrs):
        self.open[tag] = self.open.get(tag, 0) + 1
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        self._in_h2 = tag == "h2"

    def handle_endtag(self, tag):
        self.closed[tag] = self.closed.get(tag, 0) + 1
        self._in_h2 = False

    def handle_data(self, data):
        if self._in_h2:
            self.h2.append(data)


def _parse(path):
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def test_quick_study_monte_carlo_exit_times_agree_with_the_exact_mfpt(study):
    a = study.arrhenius
    assert np.all(np.abs(a.mc_mean - a.exact) < 3 * a.mc_stderr)
    # ERRATA 004.4 value at T = 0.5 from -0.9; here from -1, so slightly longer.
    assert a.exact[list(a.temperatures).index(0.5)] > 4.541
    assert abs(a.fit_mc.barrier - a.fit_exact.barrier) < 3 * a.mc_slope_stderr
    assert a.barrier == 1.0
    # Kramers / exact well-to-well tends to 1 as T falls (ERRATA 004.4), from below.
    ratio = (a.kramers / a.exact_well_to_well)[np.argsort(a.temperatures)]
    assert np.all(np.diff(ratio) < 0) and np.all(ratio < 1)


def test_propagated_slope_error_matches_refitting_perturbed_times():
    rng = np.random.default_rng(5)
    T = np.array([0.25, 0.3, 0.4, 0.5, 0.6])
    tau = np.exp(1.0 / T)
    se = 0.03 * tau
    slopes = [fit_arrhenius(T, tau * np.exp(rng.normal(0.0, 0.03, T.size))).barrier for _ in range(4000)]
    # 4000 refits: the sample std has a relative standard error of 1/sqrt(2 * 4000) ~ 1.1 %.
    assert np.std(slopes) == pytest.approx(arrhenius_slope_stderr(T, tau, se), rel=0.04)


def test_quick_study_occupation_isotropic_matches_gibbs_and_sgd_noise_lowers_the_wide_basin(study):
    o = study.occupation
    iso = np.array([s.wide for s in o.isotropic])
    iso_se = np.array([s.stderr for s in o.isotropic])
    sgd = np.array([s.wide for s in o.sgd])
    sgd_se = np.array([s.stderr for s in o.sgd])
    # + 0.01: Euler-Maruyama bias at dt = 0.01 (h dt / 2 = 2 % in the stiffest direction).
    assert np.all(np.abs(iso - o.quadrature) < 3 * iso_se + 0.01)
    assert np.all(iso - sgd > 3 * np.hypot(iso_se, sgd_se))
    # The SGD-noise prediction (y eliminated) holds within 3 SE plus its measured one-sided elimination error.
    gap = sgd - o.sgd_prediction
    assert np.all((gap > -3 * sgd_se) & (gap < 3 * sgd_se + SGD_ELIMINATION_ALLOWANCE))
    assert o.sgd_prediction[0] == sgd_noise_occupation(o.landscape, o.temperatures[0])
    assert np.all(o.simulated_time >= 8 * o.relaxation_time)
    assert np.allclose(o.laplace, o.laplace[0])  # equal minimum energies: Laplace does not depend on T


def test_quick_report_is_valid_html_with_embedded_pngs_all_sections_and_measured_numbers(study, tmp_path):
    extra = ReportSection("Time-scales: spectral gap", "An appended section. It reads from its own numbers.")
    path = escape_report.build_escape_report(tmp_path, study, basins_curves(study), extra_sections=[extra])
    assert path == tmp_path / "report.html"
    page = _parse(path)
    for tag in ("html", "body", "section", "figure", "table"):
        assert page.open.get(tag, 0) == page.closed.get(tag, 0) > 0, tag
    headings = [h for h in page.h2]
    for title in escape_report.SECTION_TITLES:
        assert title in headings
    assert headings.index(extra.title) > headings.index(escape_report.SECTION_TITLES[-1])
    for required in ("Summary: predicted vs measured", "What the theory does not explain",
                     "Configuration, seeds, versions, timings"):
        assert required in headings
    assert len(page.images) == 4
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG_SIGNATURE)
    for name in ("arrhenius", "exit_time_histograms", "basin_occupation", "annealing"):
        assert (tmp_path / "figures" / f"{name}.png").read_bytes().startswith(PNG_SIGNATURE)
    text = path.read_text(encoding="utf-8")
    # The readings carry the measured numbers, not canned text.
    a, ann = study.arrhenius, study.annealing
    assert f"fitted slope {a.fit_mc.barrier:.3f}" in text
    assert f"constant {ann.outcome('constant').deep_fraction:.3f}" in text
    assert f"{study.occupation.sgd[0].wide:.3f}" in text
    assert f"predicts {study.occupation.sgd_prediction[0]:.3f}" in text
    assert "volume bonus" in text and "P(wide), SGD-shaped noise, T=0.2" in text
    assert re.search(r"\d+ of \d+ tested predictions hold", text)


def test_bad_input_names_the_parameter(study, tmp_path):
    with pytest.raises(ValueError, match=r"extra_sections\[0\]='oops' is invalid: expected a ReportSection"):
        escape_report.build_escape_report(tmp_path, study, basins_curves(study), extra_sections=["oops"])
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="--out=.* is invalid: expected a directory"):
        run_basins(BasinsConfig.quick(), blocker)
    with pytest.raises(ValueError, match="seed=-1 is invalid: expected an integer >= 0"):
        run_escape_study(quick=True, seed=-1)
    with pytest.raises(ValueError, match="exit_replicas=5 is invalid: expected an integer >= 10"):
        EscapeStudyConfig(exit_replicas=5)
    with pytest.raises(ValueError, match="arrhenius_temperatures=.* is invalid"):
        EscapeStudyConfig(arrhenius_temperatures=(0.3, 0.5))
    with pytest.raises(ValueError, match="occupation_dt=0 is invalid: expected a finite number > 0"):
        EscapeStudyConfig(occupation_dt=0)


def _parser():
    parser = argparse.ArgumentParser(prog="sgd-dynamics")
    basins.register(parser.add_subparsers(dest="command", required=True))
    return parser


def _stand_in_timescales():
    """Small AutocorrelationStudy / RateMatrixStudy records (the real ones take ~10 s)."""
    from sgd_dynamics.experiments.timescales import AutocorrelationStudy, RateMatrixStudy
    from sgd_dynamics.simulate.timescales import MeasuredRateMatrix
    from sgd_dynamics.theory.metastability import RateMatrix

    q = np.array([[-1.0, 1.0, 0.0], [0.5, -1.0, 0.5], [0.0, 1.0, -1.0]])
    measured = MeasuredRateMatrix(q, q * 0.1, np.ones((3, 3), np.int64), np.ones(3))
    rates = RateMatrixStudy(0.2, np.array([-1.0, 0.0, 1.0]), 0.1, measured, RateMatrix(q), RateMatrix(q),
                            10.0, np.array([0.2]), np.ones((1, 4)))
    return AutocorrelationStudy((), (0.5, 2.0), 0.01, 10, 5.0), rates


def test_cli_basins_writes_the_run_directory_the_page_and_prints_its_path_and_summary(study, tmp_path,
                                                                                      monkeypatch, capsys,
                                                                                      theorem_checks_quick):
    from sgd_dynamics.experiments import basins as basins_study
    from sgd_dynamics.experiments import theorem_checks

    calls = []
    auto, rates = _stand_in_timescales()

    def cached(**kwargs):
        calls.append(kwargs)
        return study

    section_calls = []

    def sections(**kwargs):
        section_calls.append(kwargs)
        return [ReportSection("Time-scales stand-in", "Appended by the CLI. It reads from its own numbers.")]

    monkeypatch.setattr(basins_study, "run_escape_study", cached)
    monkeypatch.setattr(basins_study, "autocorrelation_study", lambda quick, seed: auto)
    monkeypatch.setattr(basins_study, "rate_matrix_study", lambda quick, seed: rates)
    monkeypatch.setattr(theorem_checks, "run_theorem_checks", lambda quick, seed: theorem_checks_quick)
    monkeypatch.setattr(timescale_figures, "timescale_sections", sections)
    out = tmp_path / "runs" / "basins"
    args = _parser().parse_args(["basins", "--quick", "--out", str(out), "--seed", "3"])
    assert args.func(args) == 0
    assert calls == [{"config": EscapeStudyConfig.quick(), "seed": 3}]
    assert [sorted(c) for c in section_calls] == [["autocorrelation", "rate_matrix"]]
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == str(out / "report.html") and (out / "report.html").is_file()
    headings = _parse(out / "report.html").h2
    assert headings.index("Time-scales stand-in") > headings.index(escape_report.SECTION_TITLES[-1])
    assert f"Arrhenius slope {study.arrhenius.fit_mc.barrier:.3f}" in lines[1]
    assert lines[3].startswith("annealing, fraction in the deeper basin")
    # the stored study comes back equal to the one computed, and the summary has the six-key rows
    again = load_basins(out)
    np.testing.assert_array_equal(again.study.arrhenius.mc_mean, study.arrhenius.mc_mean)
    landscape = study.occupation.landscape
    assert again.study.occupation.landscape.potential.expression == landscape.potential.expression
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stationarity"] == {"stationary": None, "criteria": []}
    assert len(summary["rows"]) == len(basins_rows(study, again.rate_matrix, again.theorems))
    assert sum(r["quantity"].startswith("Theorem 9") for r in summary["rows"]) >= 2
    assert "Chapter 004's theorems, checked" in headings
    assert set(summary["rows"][0]) == {"quantity", "predicted", "measured", "relative_error", "tolerance",
                                       "verdict"}
    defaults = _parser().parse_args(["basins"])
    assert (defaults.out, defaults.seed, defaults.quick) == ("runs/basins", 0, False)


def test_cli_basins_rejects_a_file_as_output_and_a_negative_seed(tmp_path):
    blocker = tmp_path / "f"
    blocker.write_text("x")
    args = _parser().parse_args(["basins", "--out", str(blocker)])
    with pytest.raises(ValueError, match="--out=.* is invalid: expected a directory path"):
        args.func(args)
    args = _parser().parse_args(["basins", "--out", str(tmp_path / "d"), "--seed", "-2"])
    with pytest.raises(ValueError, match="--seed=-2 is invalid: expected an integer >= 0"):
        args.func(args)


def test_every_summary_row_states_its_interval_or_that_it_is_exact(study, theorem_checks_quick):
    # issue 16: a simulated number without its standard error could hide a verdict inside the noise
    auto, rates = _stand_in_timescales()
    rows = basins_rows(study, rates, theorem_checks_quick, auto)
    for r in rows:
        assert np.isfinite(r.predicted) and np.isfinite(r.measured), r.quantity
        if r.measured_stderr is None:
            assert r.note.startswith("exact ("), r.quantity
        else:
            assert np.isfinite(r.measured_stderr) and r.measured_stderr > 0 and "±" in r.note, r.quantity
    assert sum(r.measured_stderr is not None for r in rows) >= 30  # every Monte Carlo row, not a few
