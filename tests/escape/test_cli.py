import importlib.util
import json

import pytest

from sgd_dynamics import cli
from sgd_dynamics.theory.escape import mean_first_passage_time
from sgd_dynamics.theory.potential import parse_potential


@pytest.fixture(autouse=True)
def escape_registered(monkeypatch):
    # The lead registers "escape" in cli/__init__.py; until then add it here (and skip absent siblings).
    present = tuple(n for n in cli._SUBCOMMANDS if importlib.util.find_spec(f"sgd_dynamics.cli.{n}"))
    monkeypatch.setattr(cli, "_SUBCOMMANDS", present + (() if "escape" in present else ("escape",)))


def test_json_output(capsys):
    code = cli.main(["escape", "--potential", "(x**2-1)**2", "--temperature", "0.5", "--start", "-0.9",
                     "--target", "0", "--replicas", "1000", "--seed", "1", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"exact_mfpt", "kramers", "monte_carlo"}
    assert set(out["monte_carlo"]) == {"mean", "stderr", "replicas"}
    assert out["exact_mfpt"] == pytest.approx(4.541, abs=5e-4)
    assert out["kramers"] == pytest.approx(1.1107 * 7.389056, rel=1e-4)  # 2 pi / sqrt(32) e^{1/T}
    mc = out["monte_carlo"]
    assert mc["replicas"] == 1000
    assert abs(mc["mean"] - out["exact_mfpt"]) < 3 * mc["stderr"]


def test_readable_table_and_potential_without_barrier(capsys):
    code = cli.main(["escape", "--potential", "x**2", "--temperature", "1", "--start", "0.5", "--target",
                     "-1", "--replicas", "200"])
    assert code == 0
    text = capsys.readouterr().out
    assert "exact MFPT" in text and "n/a (no barrier)" in text
    exact = mean_first_passage_time(parse_potential("x**2"), 1.0, 0.5, -1.0)
    assert f"{exact:.6g}" in text


@pytest.mark.parametrize(("argv", "message"), [
    (["--potential", "__import__('os')"], "--potential: .*'__import__' is not allowed"),
    (["--potential", "x.real"], "--potential: .*attribute access"),
    (["--potential", "(x**2-1"], "--potential: .*not a valid expression"),
    (["--temperature", "0"], "--temperature 0.0 is invalid"),
    (["--temperature", "nan"], "--temperature nan is invalid"),
    (["--start", "0"], "--start 0.0 is already at --target"),
    (["--temperature", "0.05"], "--temperature 0.05: the Monte Carlo needs about"),
    (["--replicas", "1"], "--replicas 1 is invalid"),
])
def test_invalid_input_exits_with_code_2_and_one_line(capsys, argv, message):
    base = {"--potential": "(x**2-1)**2", "--temperature": "0.5", "--start": "-0.9", "--target": "0"}
    base.update(dict(zip(argv[::2], argv[1::2], strict=True)))
    args = ["escape", *[t for kv in base.items() for t in kv], "--json"]
    assert cli.main(args) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.strip()
    assert "\n" not in err
    import re
    assert re.search(message, err), err
