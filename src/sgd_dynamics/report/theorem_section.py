"""Report section for the checks of chapter 004's theorems (Theorems 1, 7, 9, 10 and Key idea 5; issue 16).

:func:`theorem_section` formats :class:`sgd_dynamics.experiments.theorem_checks.TheoremChecks` (as stored by
:func:`sgd_dynamics.experiments.basins.run_basins`) into one table: each statement, the number it predicts,
the independent number, and the verdict, with a reading written from those numbers.
"""

from __future__ import annotations

import math

from sgd_dynamics.experiments.theorem_checks import TheoremChecks, theorem_rows
from sgd_dynamics.report.html import ReportSection, Table


def theorem_section(checks: TheoremChecks) -> ReportSection:
    """One table row per check; the reading counts the statements that need a correction."""
    rows = theorem_rows(checks)
    fails = [r for r in rows if r.verdict == "fails"]
    s, w = checks.stability, checks.many_wells
    at_tc = int(abs(w.temperatures - w.claimed_tc).argmin())
    reading = (
        f"Of {len(rows)} checks, {len(fails)} find the chapter's statement wrong as written. "
        f"Theorem 9's step-size bound 2/lambda_max = {s.naive_critical:.3g} is far above the exact limit "
        f"{s.critical:.3g} of SGD with its own least-squares noise (batch 1), and Theorem 10's hop rate at "
        f"T_c = {w.claimed_tc:.3g} is {w.dimension * w.hop_rate[at_tc]:.3g}"
        ", not 1, with the same Arrhenius slope on both sides: no phase transition. Theorems 1 and 7's gap "
        "bound hold as written; 7's start-free mixing time does not; Key idea 5 holds to O(eta h).")
    table = Table(("statement", "predicted", "measured", "rel. error", "tolerance", "verdict"),
                  tuple((r.quantity, r.predicted, r.measured,
                         f"{100 * r.relative_error:+.2f}%" if math.isfinite(r.relative_error) else "n/a",
                         "—" if r.tolerance is None else r.tolerance, r.verdict) for r in rows),
                  caption="rows 'reported' are bounds (see the statement) or carry no tolerance")
    return ReportSection("Chapter 004's theorems, checked", reading, table=table, name="theorems")
