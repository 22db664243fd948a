"""What a new user hits, tried as they would: the ``sgd-dynamics`` command in a subprocess.

Each case checks the exit code, the one-line message (never a traceback) and that nothing is lost. The
studies are tiny (``StudyConfig.quick()``: a small MLP on the teacher data, 60 steps per point).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sgd_dynamics.config_schema import to_mapping
from sgd_dynamics.experiments.study_config import StudyConfig

SRC = str(Path(__file__).parents[2] / "src")

USER_MODULE = '''
from torch import nn


def build(input_shape, num_classes, width=16):
    return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[0], width), nn.ReLU(),
                         nn.Linear(width, num_classes))


def build_wrong(input_shape):
    return nn.Linear(input_shape[0], 10)
'''


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    return repr(value)


def _toml(**overrides) -> str:
    """``StudyConfig.quick()`` as TOML, with ``overrides``."""
    keys = {**to_mapping(StudyConfig.quick()), **overrides}
    return "".join(f"{k} = {_toml_value(v)}\n" for k, v in keys.items() if v is not None)


def _cli(*args, cwd: Path, wait: bool = True, timeout: float = 300):
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "sgd_dynamics", *args]
    if not wait:
        return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _one_line_error(result, *fragments: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sgd-dynamics: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "mymod.py").write_text(USER_MODULE)
    return tmp_path


def test_typo_then_fix_then_changed_config_then_force_with_a_model_from_the_current_directory(workdir):
    # 1. A typo fails before anything is written.
    (workdir / "my_study.toml").write_text(_toml(model="mymod:bild"))
    bad = _cli("study", "my_study.toml", "--quiet", cwd=workdir)
    _one_line_error(bad, "model='mymod:bild'", "has no attribute 'bild'")
    assert not (workdir / "runs").exists()
    # 2. The fixed file runs; mymod.py is found in the current directory without PYTHONPATH tricks;
    #    steps = 60 is short, and internal choices (bootstrap blocks) adapt to it.
    (workdir / "my_study.toml").write_text(_toml(model="mymod:build", model_options={"width": 8}))
    ok = _cli("study", "my_study.toml", "--quiet", cwd=workdir)
    assert ok.returncode == 0, ok.stderr
    run = workdir / "runs" / "my_study"
    assert (run / "report.html").is_file() and "mymod:build" in (run / "report.html").read_text()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["rows"] and summary["displacement"]["step"][:3] == [1, 2, 3]
    # 3. A deliberate change without --force is refused with the way on; nothing is touched.
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    (workdir / "my_study.toml").write_text(_toml(model="mymod:build", model_options={"width": 8}, steps=80))
    refused = _cli("study", "my_study.toml", "--quiet", cwd=workdir)
    _one_line_error(refused, "--out='runs/my_study' holds a run with a different configuration", "'steps'",
                    "--force")
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()} == before
    # 4. --force starts over and keeps the old results, renamed, and says so.
    forced = _cli("study", "my_study.toml", "--force", cwd=workdir)
    assert forced.returncode == 0, forced.stderr
    (old,) = (workdir / "runs").glob("my_study.old-*")
    assert "kept it as" in forced.stdout and old.name in forced.stdout
    assert json.loads((old / "config.json").read_text())["config"]["steps"] == 60
    assert json.loads((run / "config.json").read_text())["config"]["steps"] == 80
    assert (old / "report.html").is_file() and (old / "theta_star.h5").is_file()


def test_a_diverging_point_is_recorded_and_reported_while_a_second_process_is_refused(workdir):
    (workdir / "div.toml").write_text(_toml(lrs=[0.005, 30.0]))
    first = _cli("study", "div.toml", "--quiet", cwd=workdir, wait=False)
    lock = workdir / "runs" / "div" / "run.lock"
    deadline = time.monotonic() + 120
    while not (lock.exists() and lock.read_text().strip()) and first.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    second = _cli("study", "div.toml", "--quiet", cwd=workdir)
    out, err = first.communicate(timeout=300)
    if first.returncode is not None and second.returncode == 0:
        pytest.skip("the first run finished before the second started; the lock is tested in test_store")
    _one_line_error(second, "is in use by process", lock.read_text().strip() or str(first.pid))
    assert first.returncode == 0, err
    run = workdir / "runs" / "div"
    page = (run / "report.html").read_text()
    assert "Diverged sweep points" in page and "lr=30" in page
    rows = json.loads((run / "summary.json").read_text())["rows"]
    diverged = [r for r in rows if "diverged at step" in r["quantity"]]
    assert diverged and all(r["verdict"] == "reported" for r in diverged)
    assert any(r["quantity"].startswith("speed, lr=0.005") for r in rows)   # the study went on
    point = next(p for p in (run / "points").iterdir() if p.name.startswith("lr30_"))
    record = json.loads((point / "diverged.json").read_text())
    assert record["step"] >= 1 and "loss" in record
    redraw = _cli("report", str(run), cwd=workdir)
    assert redraw.returncode == 0 and "report:" in redraw.stdout


def test_clean_errors_for_bad_values_options_signatures_and_a_diverging_pretraining(workdir):
    for name, text, fragments in (
        ("float.toml", _toml().replace("lrs = [0.005]", "lrs = 0.01"),
         ("lrs=0.01 is invalid: expected a list",)),
        ("option.toml", _toml(model_options={"widht": 8}),
         ("model_options.widht=8 is invalid", "one of hidden")),
        ("signature.toml", _toml(model="mymod:build_wrong", model_options={}),
         ("model='mymod:build_wrong' does not accept the call build(input_shape, num_classes)",)),
        ("key.toml", _toml() + "modle = 1\n", ("config key 'modle' is unknown: did you mean 'model'?",)),
        ("lr50.toml", _toml(lr=50.0), ("lr=50.0 is invalid: pretraining diverged", "expected a smaller lr")),
    ):
        (workdir / name).write_text(text)
        result = _cli("study", name, "--quiet", cwd=workdir)
        _one_line_error(result, *fragments)
        if name != "lr50.toml":   # validated before anything is created
            assert not (workdir / "runs" / name.removesuffix(".toml")).exists()
    rerun = _cli("study", "lr50.toml", "--quiet", cwd=workdir)   # and the failed start does not block a rerun
    _one_line_error(rerun, "lr=50.0 is invalid: pretraining diverged")


def test_version_and_help_texts_without_markup(workdir):
    version = _cli("--version", cwd=workdir)
    assert version.returncode == 0 and version.stdout.startswith("sgd-dynamics ")
    for args in (("--help",), ("momentum", "--help"), ("study", "--help"), ("report", "--help"),
                 ("basins", "--help")):
        result = _cli(*args, cwd=workdir)
        assert result.returncode == 0 and "``" not in result.stdout and ":func:" not in result.stdout, args
    missing = _cli("report", "nowhere", cwd=workdir)
    _one_line_error(missing, "RUN_DIR='nowhere' is not a run directory")
