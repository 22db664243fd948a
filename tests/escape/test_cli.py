import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sgd_dynamics import cli
from sgd_dynamics.theory.escape import mean_first_passage_time
from sgd_dynamics.theory.potential import parse_potential

SRC = str(Path(__file__).resolve().parents[2] / "src")


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
    assert "exact MFPT" in text and "n/a (no barrier" in text and "modelled bias" in text
    exact = mean_first_passage_time(parse_potential("x**2"), 1.0, 0.5, -1.0)
    assert f"{exact:.6g}" in text


def test_target_on_a_slope_is_within_three_standard_errors(capsys):
    # Issue 12, defect 3: the former curvature-only step gave 26.50 +- 0.58 against 28.30 (-3.1 s.e.).
    assert cli.main(["escape", "--potential", "x**2", "--temperature", "1", "--start", "0", "--target", "2",
                     "--replicas", "1000", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["exact_mfpt"] == pytest.approx(28.297, abs=1e-3)
    assert abs(out["monte_carlo"]["mean"] - out["exact_mfpt"]) < 3 * out["monte_carlo"]["stderr"]


def test_kramers_sums_every_barrier_up_to_the_target(capsys):
    # Issue 12, defect 4: the first barrier alone gave 156.8 against the exact 1273 (two barriers).
    assert cli.main(["escape", "--potential", "0.5*x**2*(x**2-2)**2+0.1*x", "--temperature", "0.12",
                     "--start", "-1.4203", "--target", "1.4078", "--replicas", "20", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["exact_mfpt"] == pytest.approx(1273.1, rel=1e-4)
    assert 0.85 < out["kramers"] / out["exact_mfpt"] < 1.0  # O(T) Laplace corrections, see test_mfpt.py


@pytest.mark.parametrize("argv", [
    ["--potential", "-x**4+x**2+x**6", "--start", "-0.5", "--target", "0.5"],  # a leading minus
    ["--potential=-x**4+x**2+x**6", "--start", "-0.5", "--target", "0.5"],
    ["--potential", "x**2", "--start", "-1e-1", "--target", "-2e-1"],  # negative numbers with exponents
])
def test_values_that_look_like_options_are_values(capsys, argv):
    assert cli.main(["escape", *argv, "--temperature", "0.5", "--replicas", "50", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["exact_mfpt"] > 0 and out["monte_carlo"]["replicas"] == 50


# Each bad input: exit code 2, nothing on stdout, one line on stderr that names the option, the value and
# what is valid. Run in a fresh interpreter (no pytest warning capture), so that a warning or a traceback
# anywhere would show on stderr.
BASE = {"--potential": "(x**2-1)**2", "--temperature": "0.5", "--start": "-0.9", "--target": "0"}
BAD_INPUT = [
    ({"--temperature": "0.001"}, r"--temperature=0\.001 is invalid: expected .*MFPT alone is about 10\^434"),
    ({"--temperature": "0.05"}, r"--temperature=0\.05 is invalid: expected .*the Monte Carlo needs about"),
    ({"--temperature": "1e-300"}, r"--temperature=1e-300 is invalid: expected"),
    ({"--temperature": "0"}, r"--temperature=0\.0 is invalid: expected a finite temperature > 0"),
    ({"--temperature": "-1"}, r"--temperature=-1\.0 is invalid: expected a finite temperature > 0"),
    ({"--temperature": "nan"}, r"--temperature=nan is invalid: expected a finite temperature > 0"),
    ({"--temperature": "inf"}, r"--temperature=inf is invalid: expected a finite temperature > 0"),
    ({"--temperature": "warm"}, r"argument --temperature: invalid float value: 'warm'"),
    ({"--potential": "x"}, r"--potential='x' is invalid .*not confining .*expected U\(x\) to rise"),
    ({"--potential": "-x**4+x**2"}, r"--potential='-x\*\*4\+x\*\*2' is invalid .*not confining"),
    ({"--potential": "exp(x)", "--start": "0", "--target": "1"},
     r"--potential='exp\(x\)' is invalid .*not confining"),
    ({"--potential": "z + x"}, r"--potential='z \+ x' is invalid: unknown name 'z'"),
    ({"--potential": "(x**2-1"}, r"--potential='\(x\*\*2-1' is invalid: not a valid expression"),
    ({"--potential": "__import__('os')"}, r"--potential='__import__\(\.\.\.\)' is invalid: .*not allowed"),
    ({"--potential": "x.real"}, r"--potential='x.real' is invalid: attribute access"),
    ({"--potential": "log(x)", "--start": "-1"}, r"--start=-1\.0 is invalid: expected a point where the "
                                                 r"potential is finite"),
    ({"--start": "0"}, r"--start=0\.0 is invalid: expected a point other than the target"),
    ({"--start": "nan"}, r"--start=nan is invalid: expected a finite number"),
    ({"--target": "inf"}, r"--target=inf is invalid: expected a finite number"),
    ({"--replicas": "1"}, r"--replicas=1 is invalid: expected an integer in \[2, "),
    ({"--replicas": "100000000000"}, r"--replicas=100000000000 is invalid: expected an integer in \[2, "),
    ({"--seed": "-3"}, r"--seed=-3 is invalid: expected an integer >= 0"),
    ({"--dt": "-0.01"}, r"--dt=-0\.01 is invalid: expected a step in \(0, "),
    ({"--dt": "nan"}, r"--dt=nan is invalid: expected a step in \(0, "),
    ({"--dt": "1"}, r"--dt=1\.0 is invalid: expected a step in \(0, 0\.03\d*\]: dt U'' <= 1"),
    ({"--max-steps": "0"}, r"--max-steps=0 is invalid: expected an integer >= 1"),
]

_DRIVER = """
import contextlib, io, json, sys, traceback, warnings
warnings.simplefilter("always")  # every warning, every time: stricter than the command itself
from sgd_dynamics import cli
results = []
for argv in json.load(sys.stdin):
    out, err, code = io.StringIO(), io.StringIO(), None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(argv)
        except BaseException:
            traceback.print_exc()
    results.append({"code": code, "out": out.getvalue(), "err": err.getvalue()})
print(json.dumps(results))
"""


def _environment():
    return {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}


@pytest.fixture(scope="module")
def bad_input_results():
    argvs = []
    for change, _ in BAD_INPUT:
        options = {**BASE, "--replicas": "100", **change}
        argvs.append(["escape", *[t for kv in options.items() for t in kv], "--json"])
    done = subprocess.run([sys.executable, "-c", _DRIVER], input=json.dumps(argvs), capture_output=True,
                          text=True, env=_environment(), timeout=300, check=False)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("case", range(len(BAD_INPUT)), ids=[str(c) for c, _ in BAD_INPUT])
def test_bad_input_exits_2_with_one_line_naming_the_option(bad_input_results, case):
    result, message = bad_input_results[case], BAD_INPUT[case][1]
    assert result["code"] == 2 and result["out"] == ""
    lines = result["err"].splitlines()
    assert len(lines) == 1 and lines[0].startswith("sgd-dynamics: error: "), result["err"]
    assert re.search(message, lines[0]), lines[0]


@pytest.mark.parametrize(("argv", "message"), [
    (["--potential", "-x**4+x**2"], r"--potential='-x\*\*4\+x\*\*2' is invalid .*not confining"),
    (["--potential", "x"], r"--potential='x' is invalid .*not confining"),
    (["--temperature", "0.001"], r"--temperature=0\.001 is invalid: expected"),
])
def test_the_installed_command_line_reports_bad_input_in_one_line(argv, message):
    # The real entry point, argv exactly as a shell passes it.
    options = {**BASE, **dict(zip(argv[::2], argv[1::2], strict=True))}
    done = subprocess.run([sys.executable, "-m", "sgd_dynamics", "escape",
                           *[t for kv in options.items() for t in kv], "--json"],
                          capture_output=True, text=True, env=_environment(), timeout=120, check=False)
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and re.search(message, lines[0]), done.stderr
