"""``sgd-dynamics report RUN_DIR``: redraw the page of any study's run directory from what it stores.

The run directory's ``config.json`` names the study (``kind``); each kind has one writer that only formats.
"""

from __future__ import annotations

from pathlib import Path

from sgd_dynamics.store import read_kind

__all__ = ["REPORT_WRITERS", "write_run_report"]

# kind -> (module, function): imported on use, so redrawing one study does not import the others
REPORT_WRITERS = {
    "study": ("sgd_dynamics.report.study", "write_study_report"),
    "momentum": ("sgd_dynamics.report.momentum_report", "write_momentum_report"),
    "basins": ("sgd_dynamics.report.escape_report", "write_basins_report"),
}


def write_run_report(run_dir: Path | str) -> Path:
    """Write ``run_dir/report.html`` with the writer of the study that made ``run_dir``; returns its path."""
    import importlib

    kind = read_kind(run_dir)
    if kind not in REPORT_WRITERS:
        raise ValueError(f"RUN_DIR={str(run_dir)!r} holds a run of kind {kind!r}: expected one of "
                         f"{', '.join(REPORT_WRITERS)}")
    module, name = REPORT_WRITERS[kind]
    return getattr(importlib.import_module(module), name)(run_dir)
