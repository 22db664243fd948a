"""Named studies: plain functions of a typed configuration, on top of theory, simulators and measurements.

Every study has one shape, ``config -> run_<study>(config, run_dir) -> run directory ->
write_<study>_report(run_dir)`` (the report in :mod:`sgd_dynamics.report`); each configuration has a
``quick()`` variant and every key is documented in docs/config.md:

- the limiting-dynamics study of issue 5 (:mod:`sgd_dynamics.experiments.study`): ``run_study(StudyConfig.
  demo(), "runs/demo")`` pretrains, measures at ``theta*``, sweeps, analyses and writes ``summary.json``;
- the momentum-scaling study of 003 (:mod:`sgd_dynamics.experiments.momentum_study`): ``run_momentum``;
- the escape and basin-selection study of 004 (:mod:`sgd_dynamics.experiments.basins`): ``run_basins``.

Built-in datasets and models live beside them (``datasets``, ``models``).
"""

from __future__ import annotations

import importlib
from typing import Any

# Each public name and the submodule defining it; imported on first use (PEP 562), since most
# of these modules pull in torch or matplotlib.
_EXPORTS: dict[str, str] = {
    # Predictions vs measurements for the stored sweep of a study (002 sections 7-8, ERRATA 002.2, 002.3, ...
    "DivergedPoint": "analysis",
    "PointAnalysis": "analysis",
    "SweepAnalysis": "analysis",
    "analyse_default": "analysis",
    "analyse_sweep": "analysis",
    "block_length": "analysis",
    "load_analysis": "analysis",
    "noise_measure_rest": "analysis",
    "reshuffled_speed_prediction": "analysis",
    "save_analysis": "analysis",
    # Annealing schedules and reaching the deeper basin of an asymmetric double well
    "TiltedDoubleWell": "annealing",
    "tilted_double_well": "annealing",
    "gibbs_deep_fraction": "annealing",
    "ScheduleOutcome": "annealing",
    "AnnealingResult": "annealing",
    "run_annealing": "annealing",
    # Basin selection by noise: escape-time statistics and basin occupation, isotropic vs SGD-shaped noise
    "Landscape": "basin_selection",
    "sharp_wide_landscape": "basin_selection",
    "laplace_occupation": "basin_selection",
    "quadrature_occupation": "basin_selection",
    "sgd_transverse_temperatures": "basin_selection",
    "sgd_noise_occupation": "basin_selection",
    "sgd_noise_factor": "basin_selection",
    "Occupation": "basin_selection",
    "simulated_occupation": "basin_selection",
    "ExitTimeStatistics": "basin_selection",
    "exit_time_statistics": "basin_selection",
    "coefficient_of_variation": "basin_selection",
    # The escape and basin-selection study (chapter 004, issue 7) in one run directory
    "BasinsConfig": "basins",
    "BasinsCurves": "basins",
    "BasinsResults": "basins",
    "basins_curves": "basins",
    "basins_rows": "basins",
    "load_basins": "basins",
    "run_basins": "basins",
    # Companion experiments of the study, where the theory is exact or the ground truth is known
    "architecture_experiment": "companions",
    "linear_regression_experiment": "companions",
    "ou_experiment": "companions",
    "mean_sq_displacement": "companions",
    "r_squared": "companions",
    "sample_covariance": "companions",
    # The configuration reference, ``docs/config.md``: every key of every study, generated from the schema
    "config_markdown": "config_reference",
    # Built-in datasets of the study, all small and generated offline
    "DATASETS": "datasets",
    "Dataset": "datasets",
    "as_dataset": "datasets",
    "load_dataset": "datasets",
    # Resolve a user's model, data or loss given as a Python entry point ``"package.module:function"``
    "check_signature": "entry_points",
    "is_entry_point": "entry_points",
    "resolve_entry_point": "entry_points",
    # Escape and basin selection study: the numbers behind the escape report page (chapter 004, issue 7)
    "EscapeStudyConfig": "escape_study",
    "ArrheniusData": "escape_study",
    "OccupationData": "escape_study",
    "EscapeStudy": "escape_study",
    "arrhenius_slope_stderr": "escape_study",
    "run_arrhenius": "escape_study",
    "run_occupation": "escape_study",
    "run_escape_study": "escape_study",
    "EscapeTimes": "escape_study",
    "run_escape_times": "escape_study",
    # Optimal momentum of a small MLP classifier (digits, MNIST-1D) under label noise (003 Sec. 4.2, A.3-A.4)
    "ClassifierConfig": "label_noise_classifier",
    "LearningRateSweep": "label_noise_classifier",
    "ClassifierResult": "label_noise_classifier",
    "run_classifier_study": "label_noise_classifier",
    "fit_momentum_scaling": "label_noise_classifier",
    "predicted_best_momentum": "label_noise_classifier",
    "peak_location": "label_noise_classifier",
    # Matrix sensing with label noise: Hessian trace and test error against steps for a sweep of ``beta``
    "MatrixSensingConfig": "matrix_sensing",
    "MatrixSensingResult": "matrix_sensing",
    "OptimalMomentum": "matrix_sensing",
    "estimate_optimal_momentum": "matrix_sensing",
    "run_matrix_sensing": "matrix_sensing",
    # Where the continuous model departs from the exact discrete recursion as ``eta * rho`` grows (ERRATA ...
    "ModelComparison": "model_comparison",
    "compare_models": "model_comparison",
    # Where the sweep points run: ``--executor local:N`` (N local processes) or ``dask://HOST:PORT``
    "ExecutorSpec": "executors",
    "MissingExtraError": "executors",
    "entry_point_files": "executors",
    "open_executor": "executors",
    "parse_executor": "executors",
    # Built-in models of the study: tiny networks for 1-D inputs (MNIST-1D sequences of length 40)
    "MODELS": "models",
    "build_model": "models",
    "cnn": "models",
    "linear": "models",
    "mlp": "models",
    "resnet": "models",
    # The momentum-scaling study (003) in one run directory: vector UV model, matrix sensing, a classifier
    "DRIFT_GAMMAS": "momentum_study",
    "MomentumConfig": "momentum_study",
    "MomentumResults": "momentum_study",
    "load_momentum": "momentum_study",
    "momentum_config": "momentum_study",
    "momentum_rows": "momentum_study",
    "run_momentum": "momentum_study",
    # Vector-UV study: training timescale against ``eta`` and ``gamma`` (003 Sec. 4.1, App. A.1)
    "UVStudyConfig": "momentum_uv",
    "TimescalePoint": "momentum_uv",
    "UVStudyResult": "momentum_uv",
    "gamma_key": "momentum_uv",
    "uv_dataset": "momentum_uv",
    "uv_valley_start": "momentum_uv",
    "run_uv_study": "momentum_uv",
    "run_activation_sweep": "momentum_uv",
    "SeedEstimate": "momentum_uv",
    "seed_estimate": "momentum_uv",
    "repetition_seed": "momentum_uv",
    # The resolved data, model factory and loss of a study configuration (built-in names or entry points)
    "Setup": "setup",
    "check_device": "setup",
    "prepare": "setup",
    # The limiting-dynamics study of one network (issue 5; 002 sections 2, 7, 8, Figs. 1-8)
    "DivergenceError": "study",
    "landscape_slices": "study",
    "measure_displacement": "study",
    "measure_theta_star": "study",
    "pretrain": "study",
    "run_study": "study",
    "run_sweep": "study",
    "sweep_executor": "study",
    "sweep_points": "study",
    # The configuration of the limiting-dynamics study (issue 5): every key, its type, default and valid range
    "COMPANIONS": "study_config",
    "StudyConfig": "study_config",
    "load_config": "study_config",
    "read_toml": "study_config",
    # The verdicts of the limiting-dynamics study: its :class:`~sgd_dynamics.verdicts.Row` list and ...
    "EXPONENT_TOLERANCE": "study_summary",
    "exponent_row": "study_summary",
    "displacement_record": "study_summary",
    "displacement_rows": "study_summary",
    "lr_sweep": "study_summary",
    "one_at_a_time": "study_summary",
    "stationarity": "study_summary",
    "study_rows": "study_summary",
    # One sweep point of the study: resume training from ``theta*`` with given hyperparameters and track it
    "Divergence": "sweep",
    "StudyContext": "sweep",
    "SweepPoint": "sweep",
    "load_divergence": "sweep",
    "load_point": "sweep",
    "point_status": "sweep",
    "run_point": "sweep",
    "warm_up": "sweep",
    # Time-scales of the Langevin diffusion on potentials with several wells: measured against predicted
    "AutocorrelationPoint": "timescales",
    "AutocorrelationStudy": "timescales",
    "autocorrelation_study": "timescales",
    "RateMatrixStudy": "timescales",
    "TimeFractions": "timescales",
    "rate_matrix_study": "timescales",
    # The chapter's theorems (004 Theorems 1, 7, 9, 10, Key idea 5) checked for the basins page (issue 16)
    "GradientFlowCheck": "theorem_checks",
    "StabilityCheck": "theorem_checks",
    "MixingCheck": "theorem_checks",
    "ManyWellsCheck": "theorem_checks",
    "CertificateCheck": "theorem_checks",
    "TheoremChecks": "theorem_checks",
    "gradient_flow_check": "theorem_checks",
    "stability_check": "theorem_checks",
    "mixing_check": "theorem_checks",
    "many_wells_check": "theorem_checks",
    "certificate_check": "theorem_checks",
    "run_theorem_checks": "theorem_checks",
    "theorem_rows": "theorem_checks",
    "spread_note": "theorem_checks",
    # Run-to-run spread of the basins study: its simulated numbers with their intervals, two runs compared
    "FittedNumber": "seed_spread",
    "SeedComparison": "seed_spread",
    "basins_fitted_numbers": "seed_spread",
    "fitted_numbers": "seed_spread",
    "seed_agreement": "seed_spread",
    # Minibatch SGD loops on in-memory tensors, with both samplers of ``Hyperparams.sampler``
    "LOSSES": "training",
    "full_batches": "training",
    "make_optimizer": "training",
    "minibatch_indices": "training",
    "resolve_loss": "training",
    "train": "training",
    # Settling until the stationarity certificate holds (issue 11 section 1)
    "SERIES": "settle",
    "SettleRecord": "settle",
    "load_settle": "settle",
    "monitor_subset": "settle",
    "monitored_values": "settle",
    "save_settle": "settle",
    "settle_until_certified": "settle",
    # Replicas, drift/diffusion split and the full-spectrum prediction (issue 11 sections 2-3)
    "bulk_parts": "displacement_study",
    "full_spectrum_parts": "displacement_study",
    "measure_replicas": "displacement_study",
    "predict_parts": "displacement_study",
    "spectral_measures": "displacement_study",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"sgd_dynamics.experiments.{_EXPORTS[name]}"), name)
        globals()[name] = value  # later look-ups skip this hook
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
