"""The verdicts of the limiting-dynamics study: its :class:`~sgd_dynamics.verdicts.Row` list and summary.json.

:func:`study_rows` turns the stored analyses (speed per sweep point, the exponent's trend, phase-space
frequencies and spreads of the default run, the linear-regression companion) into rows; the HTML report's
summary table and ``RUN_DIR/summary.json`` show the same rows. :func:`displacement_record` is the
``"displacement"`` object of summary.json; :func:`stationarity` is the settle loop's certificate (issue 11
section 1), and a failed certificate marks the rows that assume stationarity ``not_stationary``.
"""

from __future__ import annotations

import math
from typing import Any

from sgd_dynamics.experiments.analysis import SweepAnalysis
from sgd_dynamics.experiments.settle import load_settle
from sgd_dynamics.experiments.study_config import StudyConfig
from sgd_dynamics.verdicts import Row

__all__ = ["displacement_record", "lr_sweep", "one_at_a_time", "stationarity", "study_rows"]


def stationarity(run_dir: Any, config: StudyConfig) -> dict[str, Any]:
    """The stationarity certificate of summary.json: ``{"stationary", "criteria"}``.

    The certificate of the settle loop (:mod:`sgd_dynamics.experiments.settle`, criteria
    ``{"name", "value", "threshold", "holds"}``); ``{"stationary": None, "criteria": []}`` when the run did
    not settle (``settle_steps = 0``): nothing certified either way, no row marked ``not_stationary``.
    """
    record = load_settle(run_dir, config.pretrain_key()) if run_dir is not None else None
    return record["certificate"] if record is not None else {"stationary": None, "criteria": []}


def one_at_a_time(rows: tuple, default: StudyConfig) -> dict[str, list]:
    """The lr, momentum and batch-size sweeps through the default point, each sorted by its own value."""
    hyper = ("lr", "momentum", "batch_size")
    return {key: sorted((r for r in rows if all(getattr(r, o) == getattr(default, o) for o in hyper
                                                if o != key)), key=lambda r: getattr(r, key))
            for key in hyper}


def lr_sweep(sweep: SweepAnalysis, config: StudyConfig) -> list:
    """The with-replacement rows of the lr sweep through the default point, by lr."""
    wr = tuple(r for r in sweep.rows if r.sampler == "with_replacement")
    return one_at_a_time(wr, config)["lr"]


def _speed_rows(sweep: SweepAnalysis, config: StudyConfig, stationary: bool | None) -> list[Row]:
    out = []
    for r in sweep.rows:
        label = (f"speed, lr={r.lr:g}, momentum={r.momentum:g}, S={r.batch_size}, "
                 f"{r.sampler.replace('_', ' ')}")
        out.append(Row(label, r.predicted_speed, r.measured_speed,
                       config.speed_tolerance if r.sampler == "with_replacement" else None,
                       "eta^2 tr(Sigma)/(S(1-beta^2)), no fitted constant", stationary))
    for d in sweep.diverged:
        out.append(Row(f"sweep point lr={d.lr:g}, momentum={d.momentum:g}, S={d.batch_size}, "
                       f"{d.sampler.replace('_', ' ')}: diverged at step {d.step} (loss={d.loss:.3g})",
                       math.nan, math.nan, None, "not analysed"))
    return out


def _default_rows(default: dict[str, Any]) -> list[Row]:
    k = int(default["modes"][1])
    out = [Row(f"mean FFT frequency on {lab} (cycles/step)", default["fft_theory"][i],
               default["fft_measured"][i], None, "exact discrete spectrum of the mode")
           for i, lab in enumerate(("q_1", f"q_{k}"))]
    ps, pst = default["position_std"], default["position_std_theory"]
    vs, vst = default["velocity_std"], default["velocity_std_theory"]
    out.append(Row("spread ratio std(q_1)/std(q_k), modified loss", pst[0] / pst[1], ps[0] / ps[1], None,
                   f"original-loss Gibbs law would give {default['gibbs_spread_ratio']:.3g}"))
    out.append(Row("velocity spread ratio std(v_1)/std(v_k)", vst[0] / vst[1], vs[0] / vs[1], None))
    return out


def _linear_regression_rows(lin: dict[str, Any]) -> list[Row]:
    out = [Row(f"linear regression R^2 of eq. 9 on q_1, momentum {b:g}", r2, 1.0, 0.01,
               "R^2 >= 0.99 required") for b, r2 in zip(lin["momenta"], lin["r2_continuous"], strict=True)]
    st = lin["stationary"]
    out.append(Row("linear regression stationary speed (exact discrete)", st["predicted_speed"],
                   st["measured_speed"], 0.05))
    return out


def study_rows(config: StudyConfig, sweep: SweepAnalysis, default: dict[str, Any] | None,
               companions: dict[str, dict[str, Any]], stationary: bool | None = None) -> list[Row]:
    """Every verdict of the study, in the order of the report's summary table.

    ``stationary``: the certificate's verdict on ``theta*``; ``False`` marks every row that assumes a
    stationary start (speed, displacement) ``not_stationary``.
    """
    rows = _speed_rows(sweep, config, stationary)
    cs = [r.c for r in lr_sweep(sweep, config)]
    falling = all(a > b for a, b in zip(cs, cs[1:], strict=False))
    # A qualitative check (1 = holds): reported, since a 1-vs-1 row with zero tolerance cannot fail honestly.
    rows.append(Row(f"exponent c falls with lr ({', '.join(f'{c:.2f}' for c in cs)})", float(falling), 1.0,
                    None, "1 = monotone decrease (qualitative check)", stationary))
    if default is not None:
        rows += _default_rows(default)
    if "linear_regression" in companions:
        rows += _linear_regression_rows(companions["linear_regression"])
    return rows


def displacement_record(config: StudyConfig, sweep: SweepAnalysis) -> dict[str, Any]:
    """The ``"displacement"`` object of summary.json: ``||Delta_k||^2`` of the default point vs theory.

    ``replicas``, ``drift``, ``diffusion``, ``diffusion_stderr``, ``predicted_drift`` and
    ``predicted_diffusion`` are filled by the replica study of a later issue (empty/null here).
    """
    name = next((r.name for r in sweep.rows if r.sampler == "with_replacement" and
                 (r.lr, r.momentum, r.batch_size) == (config.lr, config.momentum, config.batch_size)), None)
    curve = sweep.curves.get(name, {}) if name else {}
    return {"lr": config.lr, "momentum": config.momentum, "batch_size": config.batch_size,
            "sampler": "with_replacement",
            "step": [int(s) for s in curve.get("steps", [])],
            "total": [float(x) for x in curve.get("measured", [])],
            "predicted_total": [float(x) for x in curve.get("theory", [])],
            "replicas": [], "drift": [], "diffusion": [], "diffusion_stderr": None,
            "predicted_drift": [], "predicted_diffusion": []}
