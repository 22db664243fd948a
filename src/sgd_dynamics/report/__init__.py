"""Reports: matplotlib figures from plain NumPy data and a self-contained HTML page.

The HTML writer (:mod:`sgd_dynamics.report.html`) is independent of the study: any experiment can build a
list of :class:`ReportSection` and call :func:`write_report`. Figure functions live in
:mod:`sgd_dynamics.report.figures` (imported lazily by callers, since they need matplotlib).
"""

from sgd_dynamics.report.html import Comparison, ReportSection, Table, save_figure, write_report

__all__ = ["Comparison", "ReportSection", "Table", "save_figure", "write_report"]
