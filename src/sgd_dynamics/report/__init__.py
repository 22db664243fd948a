"""Reports: matplotlib figures from plain NumPy data and a self-contained HTML page.

The HTML writer (:mod:`sgd_dynamics.report.html`) is independent of the study: any experiment can build a
list of :class:`ReportSection` and call :func:`write_report`. Figure functions live in
:mod:`sgd_dynamics.report.figures` (imported lazily by callers, since they need matplotlib).
"""

from __future__ import annotations

import importlib
from typing import Any

# Each public name and the submodule defining it; imported on first use (PEP 562), since most
# of these modules pull in torch or matplotlib.
_EXPORTS: dict[str, str] = {
    # The escape and basin-selection report (chapter 004, issue 7): one self-contained HTML page
    "REPORT_NAME": "escape_report",
    "SECTION_TITLES": "escape_report",
    "build_escape_report": "escape_report",
    "write_basins_report": "escape_report",
    # Figures of the limiting-dynamics study, from plain NumPy data (002 Figs. 1-8)
    "architecture_comparison": "figures",
    "displacement_curves": "figures",
    "exponent_sweep": "figures",
    "frequency_spectrum": "figures",
    "hessian_spectrum": "figures",
    "linear_regression_mean": "figures",
    "ou_modified_loss": "figures",
    "phase_space": "figures",
    "speed_over_time": "figures",
    "speed_sweep": "figures",
    "trajectory_on_slices": "figures",
    "velocity_on_psi": "figures",
    "window_dependence": "figures",
    # A self-contained HTML report of predictions against measurements
    "Comparison": "html",
    "ReportSection": "html",
    "Table": "html",
    "save_figure": "html",
    "write_report": "html",
    "PNG_SIGNATURE": "html",
    # The momentum-scaling report (003), one HTML page
    "build_momentum_report": "momentum_report",
    "write_momentum_report": "momentum_report",
    # The metadata block of every study's page: configuration, seed, environment and timings of the run
    # ``sgd-dynamics report RUN_DIR``: redraw the page of any study's run directory from what it stores
    "REPORT_WRITERS": "run_report",
    "write_run_report": "run_report",
    # The HTML report of a limiting-dynamics study, drawn only from what the run directory stores
    "write_study_report": "study",
    # A study's sweep as TensorBoard event files, written from its stored arrays after the run
    "write_study_tensorboard": "study_tensorboard",
    # Figures of the theory: continuous vs exact discrete predictions (ERRATA 002.5)
    "model_comparison_figure": "theory_figures",
    # Report sections for the time-scales studies (chapter 004; ERRATA 004.4, 004.6)
    "autocorrelation_figure": "timescale_figures",
    "rate_matrix_figure": "timescale_figures",
    "timescale_sections": "timescale_figures",
    "theorem_section": "theorem_report",
    # Figures of the stationarity certificate, the drift/diffusion split and the spectral measures
    "displacement_parts": "stationarity_figures",
    "monitored_series": "stationarity_figures",
    "spectral_measures": "stationarity_figures",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"sgd_dynamics.report.{_EXPORTS[name]}"), name)
        globals()[name] = value  # later look-ups skip this hook
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
