"""One row of a study's verdict table: a predicted and a measured value of the same quantity.

Every study (limiting dynamics, momentum scaling, basins) reports its claims as :class:`Row` objects, so the
HTML summary table and ``RUN_DIR/summary.json`` have one format::

    {"quantity", "predicted", "measured", "relative_error", "tolerance", "verdict"}

``relative_error = (predicted - measured) / |measured|`` (signed: positive means the theory overshoots).
``verdict`` is ``"holds"`` when ``|relative_error| <= tolerance``, ``"fails"`` otherwise, ``"reported"``
without a tolerance (an informative row; a tolerance of 0 or a qualitative check encoded as 1 vs 1 is
reported, never judged), and ``"not_stationary"`` when the run's stationarity certificate says the
measurement is not of a stationary state (the prediction assumes one).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["VERDICTS", "Row", "verdict_counts"]

VERDICTS = ("holds", "fails", "reported", "not_stationary")


@dataclass(frozen=True)
class Row:
    """A claim checked by a study.

    >>> r = Row("speed", predicted=1.1, measured=1.0, tolerance=0.05)
    >>> round(r.relative_error, 6), r.verdict
    (0.1, 'fails')
    >>> Row("qualitative", 1.0, 1.0, tolerance=0.0).verdict
    'reported'
    >>> Row("noisy", 1.1, 1.0, tolerance=0.5, measured_stderr=0.3).verdict  # 2 s.e. > the tolerance
    'reported'
    >>> Row("drifting", 1.1, 1.0, tolerance=0.5, stationary=False, measured_stderr=0.3).verdict
    'not_stationary'
    """

    quantity: str
    predicted: float
    measured: float
    tolerance: float | None = None
    note: str = ""
    stationary: bool | None = None  # from the stationarity certificate; None: not certified either way
    # Standard error of ``measured``: a verdict is given only where the tolerance exceeds the estimate's
    # spread (2 s.e., relative to |measured|); otherwise the row is ``reported`` with its interval.
    measured_stderr: float | None = None

    def __post_init__(self) -> None:
        if self.tolerance is not None and not self.tolerance > 0:
            object.__setattr__(self, "tolerance", None)  # a zero tolerance is a check that cannot hold

    @property
    def relative_error(self) -> float:
        """Signed relative error of the prediction; ``nan`` when the measurement is zero or missing."""
        p, m = float(self.predicted), float(self.measured)
        if not (math.isfinite(p) and math.isfinite(m)) or m == 0:
            return math.nan
        return (p - m) / abs(m)

    @property
    def verdict(self) -> str:
        """One of :data:`VERDICTS`."""
        if self.tolerance is None:
            return "reported"
        if self.stationary is False:   # before the noise test: the state itself is not the one predicted
            return "not_stationary"
        if self._inside_the_noise():
            return "reported"
        err = self.relative_error
        return "holds" if math.isfinite(err) and abs(err) <= self.tolerance else "fails"

    def _inside_the_noise(self) -> bool:
        if self.measured_stderr is None:
            return False
        m = abs(float(self.measured))
        return not (math.isfinite(self.measured_stderr) and 2 * self.measured_stderr < self.tolerance * m)

    def to_json(self) -> dict[str, Any]:
        """The six keys of ``summary.json`` (non-finite numbers as ``null``)."""
        return {
            "quantity": self.quantity,
            "predicted": _finite(self.predicted),
            "measured": _finite(self.measured),
            "relative_error": _finite(self.relative_error),
            "tolerance": self.tolerance,
            "verdict": self.verdict,
        }


def _finite(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def verdict_counts(rows: Sequence[Row]) -> dict[str, int]:
    """``{"tested", "holds", "fails", "reported", "not_stationary"}``: how many rows got each verdict.

    ``tested = holds + fails``: only rows with a verdict on the theory count as tested; a ``not_stationary``
    row was not tested (its measurement is not of the state the prediction assumes), nor a ``reported`` one.

    >>> verdict_counts([Row("a", 1.0, 1.0, 0.1), Row("b", 2.0, 1.0, 0.1), Row("c", 1.0, 1.0)])
    {'tested': 2, 'holds': 1, 'fails': 1, 'reported': 1, 'not_stationary': 0}
    """
    verdicts = [r.verdict for r in rows]
    counts = {v: verdicts.count(v) for v in VERDICTS}
    return {"tested": counts["holds"] + counts["fails"], **counts}
