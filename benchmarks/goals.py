"""The goals of issue 15, and the line per measured goal that ``run_all.py`` gathers into its summary table.

A benchmark prints ``goal_line(n, ...)`` for each goal ``n`` it measures: ``  goal n: what <op> target:
measured value (met|NOT met)``. ``run_all.py`` keeps those lines and prints them per goal, with the goals
that no benchmark measured.
"""

from __future__ import annotations

import re

GOALS = {
    1: "real peers in the benchmarks (PyHessian, curvlinops, hessian-eigenthings, Cockpit, torchsde)",
    2: "top-k eigenpairs >= 3x PyHessian, >= 1.5x curvlinops + eigsh (k = 10, 20; rel. error <= 1e-6)",
    3: "global_displacement, 1e5 modes x 1e3 times in ~1 s",
    4: "tracker <= 1.10x the plain loop at k = 30, <= 1.25x at k = 100 (batch 128; 1 and 2 threads)",
    5: "gradient noise in the sweep cheaper (linear-layer identity, = per-example loop to 1e-12)",
    6: "langevin.euler_maruyama >= a plain NumPy loop",
    7: "demo sweep 2x faster at equal output",
}

LINE = re.compile(r"^\s*goal (\d+): (.*)$")


def goal_line(number: int, what: str, goal: float, measured: float, unit: str = "x", at_most: bool = False,
              digits: int = 2) -> str:
    """``at_most``: the goal is ``measured <= goal`` (a cost ratio, a time), else ``measured >= goal``."""
    if number not in GOALS:
        raise ValueError(f"number={number!r} is invalid: expected one of {sorted(GOALS)}")
    met = measured <= goal if at_most else measured >= goal
    return (f"  goal {number}: {what} {'<=' if at_most else '>='} {goal:g}{unit}: "
            f"measured {measured:.{digits}f}{unit} ({'met' if met else 'NOT met'})")


def note_line(number: int, what: str) -> str:
    """A goal a benchmark looked at but could not score (say why in ``what``)."""
    if number not in GOALS:
        raise ValueError(f"number={number!r} is invalid: expected one of {sorted(GOALS)}")
    return f"  goal {number}: {what}"
