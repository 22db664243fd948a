"""Report section for the checks of chapter 004's theorems (Theorems 1, 7, 9, 10 and Key idea 5; issue 16).

:func:`theorem_section` formats :class:`sgd_dynamics.experiments.theorem_checks.TheoremChecks` (as stored by
:func:`sgd_dynamics.experiments.basins.run_basins`) into one table: each statement, the number it predicts,
the independent number, and the verdict, with a reading written from those numbers.
"""

from __future__ import annotations

import math

from sgd_dynamics.experiments.theorem_checks import TheoremChecks, theorem_rows
from sgd_dynamics.report.html import ReportSection, Table
from sgd_dynamics.verdicts import Row


def theorem_section(checks: TheoremChecks) -> ReportSection:
    """One table row per check; the reading counts the statements that need a correction."""
    rows = theorem_rows(checks)
    fails = [r for r in rows if r.verdict == "fails"]
    s, w = checks.stability, checks.many_wells
    at_tc = int(abs(w.temperatures - w.claimed_tc).argmin())
    m, g = checks.mixing, checks.gradient_flow
    slope = next(r for r in rows if r.quantity.startswith("Theorem 10: Arrhenius slope"))
    reading = (
        f"Of {len(rows)} checks, {len(fails)} find the chapter's statement wrong as written. "
        f"Theorem 1's rate: the flow decays at {g.late_rate:.4f} against mu = {g.strong_convexity:g}. "
        f"Theorem 7: the gap {m.ou_gap:.4f} of the OU process (m = 1) is m, twice the chapter's bound, and "
        f"from x0 = {m.far_start:g} TV needs {m.far_exact_time:.2f} to reach 0.1 against the chapter's "
        f"start-free {m.chapter_time:.2f}. "
        f"Theorem 9's step-size bound 2/lambda_max = {s.naive_critical:.3g} is far above the exact limit "
        f"{s.critical:.3g} of SGD with its own least-squares noise (batch 1), and Theorem 10's hop rate at "
        f"T_c = {w.claimed_tc:.3g} is {w.dimension * w.hop_rate[at_tc]:.3g} ± "
        f"{w.dimension * w.hop_stderr[at_tc]:.2g} (1 SE), not 1, "
        + ("with no change of the Arrhenius slope across it. " if slope.verdict == "holds" else
           f"and the Arrhenius slope test across it gives '{slope.verdict}'. ")
        + "Key idea 5's Gibbs variance is off by eta h / (2(1 + beta)).")
    table = Table(("statement", "predicted", "measured", "spread of measured", "rel. error", "tolerance",
                   "verdict"),
                  tuple((r.quantity, r.predicted, r.measured, _spread(r),
                         f"{100 * r.relative_error:+.2f}%" if math.isfinite(r.relative_error) else "n/a",
                         "—" if r.tolerance is None else f"{100 * r.tolerance:.3g}%", r.verdict)
                        for r in rows),
                  caption="rows 'reported' are bounds (see the statement), carry no tolerance, or have a "
                  "tolerance within twice the measurement's standard error; 'exact': a deterministic "
                  "computation (ODE solver, Fokker–Planck operator, discrete Lyapunov equation)")
    return ReportSection("Chapter 004's theorems, checked", reading, table=table, name="theorems")


def _spread(row: Row) -> str:
    """``± SE`` of a simulated number; the deterministic ones are exact."""
    if row.measured_stderr is not None:
        return f"± {row.measured_stderr:.3g} (1 SE)"
    return "exact" if row.note.startswith("exact") else "—"
