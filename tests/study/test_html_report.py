import base64
import re

import numpy as np
import pytest

from sgd_dynamics.report import Comparison, ReportSection, Table, write_report
from sgd_dynamics.report import figures as F
from sgd_dynamics.report.html import PNG_SIGNATURE


def test_comparison_relative_error_and_verdict():
    assert Comparison("a", 1.04, 1.0, 0.05).verdict == "holds"
    assert Comparison("a", 0.9, 1.0, 0.05).verdict == "fails"
    assert Comparison("a", 0.9, 1.0).verdict == "reported"
    assert np.isnan(Comparison("a", 1.0, 0.0, 0.05).relative_error)


def test_write_report_escapes_text_and_embeds_figures(tmp_path):
    fig = F.hessian_spectrum(np.array([4.0, 2.0, -0.1]), np.array([3.0, 1.0, 0.2]))
    page = write_report(
        tmp_path / "r.html",
        "T <b>",
        [ReportSection("S & <i>", "reads <x>", figure=fig, table=Table(("a", "b"), ((1, 0.123456789),)))],
        summary=[Comparison("q", 1.0, 1.1, 0.05)],
        limitations=["<script>"],
        metadata={"cfg": {"k": [1, 2]}},
    )
    html = page.read_text()
    assert "<script>" not in html and "&lt;script&gt;" in html and "T &lt;b&gt;" in html
    assert "0.1235" in html and "fails" in html
    (src,) = re.findall(r"src='data:image/png;base64,([^']*)'", html)
    assert base64.b64decode(src).startswith(PNG_SIGNATURE)
    assert (tmp_path / "figures" / "00_s_i.png").exists() and (tmp_path / "figures" / "00_s_i.svg").exists()


def test_table_rows_must_match_columns():
    with pytest.raises(ValueError, match=r"rows\[0\] has 1 cells"):
        Table(("a", "b"), ((1,),))


def test_figure_path_must_be_png(tmp_path):
    bad = tmp_path / "x.png"
    bad.write_text("not a png")
    with pytest.raises(ValueError, match="is not a PNG file"):
        write_report(tmp_path / "r.html", "T", [ReportSection("s", "r", figure=bad)])
