"""``sgd-dynamics basins``: the escape and basin-selection study and its page (chapter 004, issue 7).

Runs :func:`sgd_dynamics.experiments.basins.run_basins` (Arrhenius plot, exit-time law, basin occupation for
isotropic vs SGD-shaped noise, annealing schedules, autocorrelation vs spectral gap, rate matrix) into the run
directory ``DIR``, writes ``DIR/report.html`` (figures in ``DIR/figures``) with
:func:`sgd_dynamics.report.escape_report.write_basins_report`, prints the page's path and a short summary.
``sgd-dynamics report DIR`` redraws the page.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from sgd_dynamics._validation import require

if TYPE_CHECKING:
    from sgd_dynamics.experiments.escape_study import EscapeStudy


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``basins [--quick] [--out DIR] [--seed N]``."""
    parser = subparsers.add_parser(
        "basins",
        help="escape times, basin occupation and annealing: write the HTML report (004)",
        description="Writes DIR/report.html (figures in DIR/figures): Arrhenius plot, exit-time law, basin "
        "occupation for isotropic vs SGD-shaped noise, annealing schedules, autocorrelation vs spectral gap, "
        "rate matrix; prints the path and a summary.",
    )
    parser.add_argument("--quick", action="store_true", help="reduced configuration that runs in seconds")
    parser.add_argument("--out", default="runs/basins", help="output directory (default: runs/basins)")
    parser.add_argument("--seed", type=int, default=0, help="random seed >= 0 (default: 0)")
    parser.add_argument("--force", action="store_true",
                        help="start over if --out holds another run (the old one is kept, renamed)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write the report and print its path, then one summary line per part."""
    from sgd_dynamics.experiments.basins import BasinsConfig, load_basins, run_basins
    from sgd_dynamics.report.escape_report import write_basins_report

    require(args.seed >= 0, "--seed", args.seed, "an integer >= 0")
    config = BasinsConfig.quick(seed=args.seed) if args.quick else BasinsConfig(seed=args.seed)
    out = run_basins(config, Path(args.out), force=args.force)
    print(write_basins_report(out))
    for line in summary_lines(load_basins(out).study):
        print(line)
    return 0


def summary_lines(study: EscapeStudy) -> list[str]:
    """A few lines of text: the numbers a reader checks first."""
    a, o, ann = study.arrhenius, study.occupation, study.annealing
    ratios = ", ".join(f"{T:g}: {m / e:.3f}±{s / e:.3f}"
                       for T, m, s, e in zip(a.temperatures, a.mc_mean, a.mc_stderr, a.exact, strict=True))
    iso = ", ".join(f"{s.wide:.3f}±{s.stderr:.3f}" for s in o.isotropic)
    sgd = ", ".join(f"{s.wide:.3f}±{s.stderr:.3f}" for s in o.sgd)
    fractions = ", ".join(f"{x.kind} {x.deep_fraction:.3f}±{x.stderr:.3f}" for x in ann.outcomes)
    return [
        f"Arrhenius slope {a.fit_mc.barrier:.3f} ± {a.mc_slope_stderr:.3f} (barrier {a.barrier:g}, exact "
        f"quadrature {a.fit_exact.barrier:.3f}); Monte Carlo / exact MFPT by T: {ratios}",
        f"P(wide basin) at T = {', '.join(f'{T:g}' for T in o.temperatures)}: Gibbs "
        f"{', '.join(f'{q:.3f}' for q in o.quadrature)}; isotropic {iso}; SGD-shaped noise {sgd}",
        f"annealing, fraction in the deeper basin after {ann.n_steps} steps: {fractions}",
    ]
