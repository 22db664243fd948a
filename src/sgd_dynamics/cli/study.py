"""``sgd-dynamics demo | study CONFIG.toml | report RUN_DIR``: the limiting-dynamics study (issue 5).

``demo`` runs the built-in study (scikit-learn digits, MLP 2x128, cross-entropy; <= 5 minutes on 2 cores,
``--full`` for the larger sweeps); ``study`` runs a user's TOML configuration (built-in names or entry points
``module:function`` for the model, data and loss, imported from the current directory first; every key is
listed in docs/config.md); ``report`` redraws the HTML page of any study's run directory (limiting dynamics,
momentum, basins) from its stored data without recomputing. Re-running a command on the same ``--out``
continues an interrupted study and recomputes nothing finished; ``--force`` starts over in a directory that
holds another configuration, keeping the old one as ``RUN_DIR.old-<timestamp>``. ``--executor local:N`` or
``dask://HOST:PORT`` runs the sweep points on N local processes or a Dask cluster
(:mod:`sgd_dynamics.experiments.executors`); ``--device cuda`` runs the torch path on a GPU;
``--tensorboard`` writes the sweep's scalars as TensorBoard event files under ``RUN_DIR/tensorboard``
(:mod:`sgd_dynamics.report.study_tensorboard`).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from sgd_dynamics.cli import plain

__all__ = ["register"]

_FORCE = "start over if --out holds a run with another configuration (the old one is kept, renamed)"
_DEVICE = "torch device of the study: cpu, cuda or cuda:N (overrides the configuration's device key)"
_TENSORBOARD = ("also write the sweep's scalars (speed, displacement, loss, projections, tr Sigma per point) "
                "as TensorBoard event files under RUN_DIR/tensorboard, from the stored arrays")
_EXECUTOR = ("where the sweep points run: local:N (N local processes) or dask://HOST:PORT (a running Dask "
             "scheduler; the run directory must be on a filesystem its workers share). Default: this process")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo``, ``study`` and ``report`` subcommands."""
    demo = subparsers.add_parser("demo", help="run the built-in limiting-dynamics study and write its report")
    demo.add_argument("--full", action="store_true", help="larger sweeps and k = 30 eigenpairs (slower)")
    demo.add_argument("--out", default=None, help="run directory (default: runs/demo or runs/demo-full)")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.add_argument("--force", action="store_true", help=_FORCE)
    demo.add_argument("--device", default=None, help=_DEVICE)
    demo.add_argument("--tensorboard", action="store_true", help=_TENSORBOARD)
    demo.add_argument("--executor", default=None, metavar="local:N|dask://HOST:PORT", help=_EXECUTOR)
    demo.set_defaults(func=_demo)
    study = subparsers.add_parser(
        "study", help="run the study on a configuration (TOML) and write its report",
        description=plain("Runs the limiting-dynamics study of CONFIG.toml (every key, its type, default and "
                          "range: docs/config.md). Entry points 'module:function' are imported from the "
                          "current directory first, then from PYTHONPATH and installed packages."))
    study.add_argument("config", metavar="CONFIG.toml", help="study configuration; every key has a default")
    study.add_argument("--out", default=None, help="run directory (default: runs/<config name>)")
    study.add_argument("--quiet", action="store_true", help="no progress bars")
    study.add_argument("--force", action="store_true", help=_FORCE)
    study.add_argument("--device", default=None, help=_DEVICE)
    study.add_argument("--tensorboard", action="store_true", help=_TENSORBOARD)
    study.add_argument("--executor", default=None, metavar="local:N|dask://HOST:PORT", help=_EXECUTOR)
    study.set_defaults(func=_study)
    report = subparsers.add_parser(
        "report", help="redraw the report of a run directory (study, momentum or basins; no recomputation)")
    report.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by demo, study, "
                        "momentum report or basins")
    report.set_defaults(func=_report)


def _run(config, out: Path, args: argparse.Namespace) -> int:
    from sgd_dynamics.experiments.executors import entry_point_files, open_executor, parse_executor
    from sgd_dynamics.experiments.study import run_study
    from sgd_dynamics.report.study import write_study_report

    spec = parse_executor(args.executor) if args.executor is not None else None   # before any work
    if args.device is not None:
        config = dataclasses.replace(config, device=args.device)   # validated again, naming device
    t0 = time.perf_counter()
    log = (lambda s: None) if args.quiet else print
    if spec is None:
        run_study(config, out, progress=not args.quiet, log=log, force=args.force)
    else:
        ship = entry_point_files((config.dataset, config.model, config.loss))
        with open_executor(spec, ship=ship) as executor:
            run_study(config, out, executor=executor, progress=not args.quiet, log=log, force=args.force)
    page = write_study_report(out)
    if args.tensorboard:
        from sgd_dynamics.report.study_tensorboard import write_study_tensorboard

        print(f"tensorboard --logdir {write_study_tensorboard(out).resolve()}")
    print(f"report: {page.resolve()}  ({time.perf_counter() - t0:.0f} s)")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from sgd_dynamics.experiments.study_config import StudyConfig

    out = Path(args.out) if args.out else Path("runs") / ("demo-full" if args.full else "demo")
    return _run(StudyConfig.demo(full=args.full), out, args)


def _study(args: argparse.Namespace) -> int:
    from sgd_dynamics.experiments.study_config import load_config

    config = load_config(args.config)
    out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    return _run(config, out, args)


def _report(args: argparse.Namespace) -> int:
    from sgd_dynamics.report.run_report import write_run_report

    print(f"report: {write_run_report(Path(args.run_dir)).resolve()}")
    return 0
