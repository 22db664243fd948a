"""A self-contained HTML report of predictions against measurements.

One page, no external files: every figure is embedded as a base64 PNG (and also saved as PNG and SVG in
``figures/`` next to the page, for papers and slides). The page has, in order: a summary table of predicted
vs measured quantities with signed relative errors, one section per figure with a two-sentence reading
(what it shows, whether the theory holds), the list of what the theory does not explain, and the run's
metadata (configuration, seeds, versions, timings).

Plain string templating with :func:`html.escape`: no template engine.

Usage::

    from sgd_dynamics.report import Comparison, ReportSection, Table, write_report
    page = write_report(run_dir / "report.html", "Limiting dynamics of an MLP",
                        sections=[ReportSection("Speed", "Measured vs predicted. The theory holds.",
                                                figure=fig)],
                        summary=[Comparison("speed, lr=0.01", predicted=1.0e-4, measured=1.02e-4,
                                            tolerance=0.05)],
                        limitations=["The theory is quadratic ..."], metadata={"seed": 0})

``figure`` is a :class:`matplotlib.figure.Figure` (saved by :func:`write_report`) or the path of an
existing PNG file (embedded as is).
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sgd_dynamics.verdicts import Row, verdict_counts

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Comparison = Row  # the summary table's row: one definition for every study (sgd_dynamics.verdicts)

__all__ = ["Comparison", "ReportSection", "Table", "save_figure", "write_report", "PNG_SIGNATURE"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class Table:
    """A plain table: ``columns`` headers and ``rows`` of cells.

    Numbers are formatted with 4 significant digits.
    """

    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    caption: str = ""

    def __post_init__(self) -> None:
        for i, row in enumerate(self.rows):
            if len(row) != len(self.columns):
                raise ValueError(f"rows[{i}] has {len(row)} cells; expected len(columns)={len(self.columns)}")


@dataclass(frozen=True)
class ReportSection:
    """One section of the report: a title, a reading of two sentences, and optionally a figure and a table.

    ``reading`` says what the figure shows and whether the theory holds; write it from the numbers, so that a
    failed prediction reads as one. ``figure`` is a matplotlib ``Figure`` or the path of a PNG file.
    """

    title: str
    reading: str
    figure: Figure | Path | str | None = None
    table: Table | None = None
    name: str | None = None  # file stem for the saved figure; defaults to a slug of the title


@dataclass(frozen=True)
class SavedFigure:
    """The files a figure was saved to."""

    png: Path
    svg: Path | None


def save_figure(figure: Figure, directory: Path | str, name: str, svg: bool = True) -> SavedFigure:
    """Save a matplotlib figure as ``directory/name.png`` (and ``.svg``); returns the paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    png = directory / f"{name}.png"
    figure.savefig(png, format="png", dpi=110, bbox_inches="tight")
    svg_path = None
    if svg:
        svg_path = directory / f"{name}.svg"
        figure.savefig(svg_path, format="svg", bbox_inches="tight")
    return SavedFigure(png, svg_path)


def write_report(
    path: Path | str,
    title: str,
    sections: Sequence[ReportSection],
    *,
    summary: Sequence[Comparison] = (),
    limitations: Sequence[str] = (),
    metadata: Mapping[str, Any] | None = None,
    introduction: str = "",
    save_svg: bool = True,
) -> Path:
    """Write the self-contained HTML report to ``path``; figures also go to ``path.parent / "figures"``.

    Returns the path of the page. Raises ``ValueError`` for a figure path that is not a PNG file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure_dir = path.parent / "figures"
    body: list[str] = [f"<h1>{_e(title)}</h1>"]
    if introduction:
        body.append(f"<p class='intro'>{_e(introduction)}</p>")
    if summary:
        body.append(_summary_html(summary))
    used: set[str] = set()
    for i, section in enumerate(sections):
        body.append(_section_html(section, i, figure_dir, used, save_svg))
    if limitations:
        items = "".join(f"<li>{_e(x)}</li>" for x in limitations)
        body.append(f"<section><h2>What the theory does not explain</h2><ul>{items}</ul></section>")
    if metadata:
        body.append(_metadata_html(metadata))
    page = _PAGE.format(title=_e(title), style=_STYLE, body="\n".join(body))
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)  # atomic: an interrupted write never leaves half a page
    return path


# --- rendering ----------------------------------------------------------------------------------------


def _e(x: object) -> str:
    return html.escape(str(x), quote=True)


def _fmt(x: object) -> str:
    if isinstance(x, bool) or x is None:
        return _e(x)
    if isinstance(x, int):
        return _e(x)
    if isinstance(x, float):
        if not math.isfinite(x):
            return _e(x)
        return _e(f"{x:.4g}")
    try:  # numpy scalars
        import numpy as np

        if isinstance(x, np.integer):
            return _e(int(x))
        if isinstance(x, np.floating):
            return _fmt(float(x))
    except ImportError:  # pragma: no cover - numpy is a dependency
        pass
    return _e(x)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:60] or "figure"


def _summary_html(summary: Sequence[Comparison]) -> str:
    rows = []
    for c in summary:
        err = c.relative_error
        err_s = "n/a" if not math.isfinite(err) else f"{100 * err:+.2f}%"
        tol = "" if c.tolerance is None else f"{100 * c.tolerance:.3g}%"
        rows.append(
            f"<tr class='{c.verdict}'><td>{_e(c.quantity)}</td><td>{_fmt(float(c.predicted))}</td>"
            f"<td>{_fmt(float(c.measured))}</td><td>{_e(err_s)}</td><td>{_e(tol)}</td>"
            f"<td>{_e(c.verdict)}</td><td>{_e(c.note)}</td></tr>"
        )
    n = verdict_counts(summary)
    head = (
        "<tr><th>quantity</th><th>predicted</th><th>measured</th><th>relative error</th>"
        "<th>tolerance</th><th>verdict</th><th>note</th></tr>"
    )
    return (
        f"<section><h2>Summary: predicted vs measured</h2><p>{n['holds']} of {n['tested']} tested "
        f"predictions hold within their tolerance; {n['fails']} fail. Not tested: {n['reported']} reported "
        f"(no tolerance, or the measurement's spread exceeds it) and {n['not_stationary']} not_stationary "
        f"(the run is not in the stationary state the prediction assumes). Relative error = (predicted - "
        f"measured) / |measured|.</p><table class='summary'>{head}{''.join(rows)}</table></section>"
    )


def _table_html(table: Table) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in table.columns)
    rows = "".join("<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in row) + "</tr>" for row in table.rows)
    cap = f"<caption>{_e(table.caption)}</caption>" if table.caption else ""
    return f"<table>{cap}<tr>{head}</tr>{rows}</table>"


def _png_bytes(section: ReportSection, index: int, figure_dir: Path, used: set[str], save_svg: bool) -> bytes:
    fig = section.figure
    if isinstance(fig, (str, Path)):
        data = Path(fig).read_bytes()
        if not data.startswith(PNG_SIGNATURE):
            raise ValueError(
                f"figure={str(fig)!r} is not a PNG file: expected a path to a .png or a matplotlib Figure"
            )
        return data
    name = section.name or f"{index:02d}_{_slug(section.title)}"
    while name in used:
        name += "_"
    used.add(name)
    saved = save_figure(fig, figure_dir, name, svg=save_svg)
    return saved.png.read_bytes()


def _section_html(
    section: ReportSection, index: int, figure_dir: Path, used: set[str], save_svg: bool
) -> str:
    parts = [f"<section><h2>{_e(section.title)}</h2>"]
    if section.figure is not None:
        data = base64.b64encode(_png_bytes(section, index, figure_dir, used, save_svg)).decode("ascii")
        parts.append(
            f"<figure><img alt='{_e(section.title)}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{_e(section.reading)}</figcaption></figure>"
        )
    else:
        parts.append(f"<p>{_e(section.reading)}</p>")
    if section.table is not None:
        parts.append(_table_html(section.table))
    parts.append("</section>")
    return "".join(parts)


def _metadata_html(metadata: Mapping[str, Any]) -> str:
    rows = []
    for key, value in metadata.items():
        if isinstance(value, (Mapping, list, tuple)):
            text = json.dumps(value, indent=2, default=str, sort_keys=False)
            cell = f"<pre>{_e(text)}</pre>"
        else:
            cell = _fmt(value)
        rows.append(f"<tr><th>{_e(key)}</th><td>{cell}</td></tr>")
    return ("<section><h2>Configuration, seeds, versions, timings</h2>"
            f"<table class='meta'>{''.join(rows)}</table></section>")


_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em}h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}td,th{border:1px solid #ccc;padding:.25em .5em;
text-align:left;vertical-align:top}tr.holds td:nth-child(6){color:#186a1f;font-weight:600}
tr.fails td:nth-child(6){color:#a11;font-weight:600}figure{margin:.8em 0}img{max-width:100%;height:auto}
figcaption{font-size:.95em;color:#333;margin-top:.3em}pre{margin:0;font-size:.85em;white-space:pre-wrap}
caption{caption-side:top;text-align:left;font-style:italic}.intro{font-size:1.05em}
"""

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{style}</style></head>
<body>
{body}
</body></html>
"""
