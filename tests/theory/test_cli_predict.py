"""The ``predict`` command: JSON contract, table, and one-line errors with exit code 2."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sgd_dynamics import Hyperparams
from sgd_dynamics.cli import main
from sgd_dynamics.theory import global_displacement, stationary_speed


def test_json_contract(capsys):
    code = main(["predict", "--lr", "0.01", "--momentum", "0.9", "--batch-size", "32",
                 "--eigenvalues", "0.5,1,2", "--sigma2", "1.0", "--steps", "1,10,100", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    hp = Hyperparams(lr=0.01, momentum=0.9, batch_size=32)
    rho = np.array([0.5, 1.0, 2.0])
    assert set(out) == {"continuous", "discrete", "eq19_sampled_sum"}
    # "continuous" is the exact SDE (ERRATA 002.6); eq. 19's sampled sum has its own key, and no exponent
    for key, model in (("continuous", "sde"), ("discrete", "discrete")):
        assert set(out[key]) == {"stationary_speed", "global_displacement"}
        assert out[key]["stationary_speed"] == pytest.approx(stationary_speed(rho, rho, hp, model=model))
        np.testing.assert_allclose(out[key]["global_displacement"],
                                   global_displacement(rho, rho, hp, [1, 10, 100], model=model))
    assert set(out["eq19_sampled_sum"]) == {"global_displacement"}
    np.testing.assert_allclose(out["eq19_sampled_sum"]["global_displacement"],
                               global_displacement(rho, rho, hp, [1, 10, 100], model="eq19_sampled_sum"))
    # at t = 1 the exact discrete displacement, and eq. 19's sampled sum, are the speeds (exact, eq. 18)
    assert out["discrete"]["global_displacement"][0] == pytest.approx(out["discrete"]["stationary_speed"])
    assert out["eq19_sampled_sum"]["global_displacement"][0] == pytest.approx(
        out["continuous"]["stationary_speed"])


def test_files_and_noise_variances(tmp_path, capsys):
    np.save(tmp_path / "rho.npy", np.array([0.1, 1.0]))
    (tmp_path / "s.txt").write_text("0.3\n0.7\n")
    code = main(["predict", "--lr", "0.1", "--eigenvalues", str(tmp_path / "rho.npy"), "--noise-variances",
                 str(tmp_path / "s.txt"), "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["continuous"]["stationary_speed"] == pytest.approx(0.1**2 * 1.0)


def test_table_output(capsys):
    assert main(["predict", "--lr", "0.01", "--eigenvalues", "1,2", "--sigma2", "1"]) == 0
    text = capsys.readouterr().out
    assert "stationary speed" in text and "exact discrete" in text
    assert "eq. 19 sampled sum" in text and "exponent c (SDE)" in text and "nan" not in text


@pytest.mark.parametrize(("argv", "match"), [
    (["--lr", "-1", "--eigenvalues", "1", "--sigma2", "1"], "--lr"),
    (["--lr", "0.1", "--momentum", "1.5", "--eigenvalues", "1", "--sigma2", "1"], "--momentum"),
    (["--lr", "1", "--eigenvalues", "1,5", "--sigma2", "1"], "--eigenvalues: .*unstable"),
    (["--lr", "0.1", "--eigenvalues", "1,x", "--sigma2", "1"], "--eigenvalues: cannot read"),
    (["--lr", "0.1", "--eigenvalues", "missing.npy", "--sigma2", "1"], "does not exist"),
    (["--lr", "0.1", "--eigenvalues", "1", "--sigma2", "1", "--steps", "0,5"], "--steps"),
    (["--lr", "0.1", "--eigenvalues", "1,2", "--noise-variances", "1"], "--noise-variances"),
    (["--lr", "0.1", "--eigenvalues", "1"], "--sigma2 --noise-variances"),
])
def test_invalid_input_exits_2_with_one_line(argv, match, capsys):
    assert main(["predict", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("sgd-dynamics: error: ")
    assert __import__("re").search(match, err)


def _predict(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2] / "src"))
    return subprocess.run([sys.executable, "-m", "sgd_dynamics", "predict", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("predict_inputs")
    np.save(root / "hessian.npy", np.diag([1.0, 2.0, 3.0]))  # a matrix passed by mistake
    np.save(root / "complex.npy", np.array([1.0 + 0.5j, 2.0]))
    (root / "two_columns.txt").write_text("1 2\n3 4\n")
    return root


OK = ["--lr", "0.1", "--eigenvalues", "1,2"]


BAD_INPUT = [
    (["--lr", "0.1", "--eigenvalues", "hessian.npy", "--sigma2", "1"],
     r"--eigenvalues: 'hessian.npy' holds an array of shape \(3, 3\): expected a 1-D array"),
    (["--lr", "0.1", "--eigenvalues", "two_columns.txt", "--sigma2", "1"], r"shape \(2, 2\): expected a 1-D"),
    (["--lr", "0.1", "--eigenvalues", "complex.npy", "--sigma2", "1"],
     r"--eigenvalues\[0\]=\(1\+0.5j\) is invalid: expected real numbers"),
    ([*OK, "--noise-variances", "complex.npy"], r"--noise-variances\[0\]=\(1\+0.5j\) is invalid"),
    ([*OK, "--sigma2", "0"], r"--sigma2=0.0 is invalid: expected a finite number > 0"),
    ([*OK, "--sigma2", "-1"], r"--sigma2=-1.0 is invalid: expected a finite number > 0"),
    ([*OK, "--sigma2", "nan"], r"--sigma2=nan is invalid"),
    ([*OK, "--sigma2", "inf"], r"--sigma2=inf is invalid"),
    (["--lr", "0.1", "--eigenvalues", "0,0", "--sigma2", "1"], r"--sigma2=1.0 gives no noise"),
    ([*OK, "--noise-variances", "1,-2"],
     r"--noise-variances\[1\]=-2.0 is invalid: expected finite values >= 0"),
    ([*OK, "--noise-variances", "0,0"], r"--noise-variances='0,0' is invalid: expected .*at least one > 0"),
    ([*OK, "--noise-variances", "1,nan"], r"--noise-variances\[1\]=nan is invalid"),
    ([*OK, "--noise-variances", ","], r"--noise-variances=',' is invalid: expected at least one value"),
    (["--lr", "0.1", "--eigenvalues", "", "--sigma2", "1"],
     r"--eigenvalues='' is invalid: expected at least one"),
    (["--lr", "0.1", "--eigenvalues", "1,inf", "--sigma2", "1"], r"--eigenvalues\[1\]=inf is invalid"),
    (["--lr", "0.1", "--eigenvalues", "-1", "--noise-variances", "1"],
     r"--eigenvalues: .*rho \+ weight_decay >= 0"),
    (["--lr", "nan", "--eigenvalues", "1", "--sigma2", "1"], r"--lr: lr=nan is invalid: expected a finite"),
    (["--lr", "inf", "--eigenvalues", "1", "--sigma2", "1"], r"--lr: lr=inf is invalid"),
    (["--lr", "0", "--eigenvalues", "1", "--sigma2", "1"], r"--lr: lr=0.0 is invalid"),
    ([*OK, "--sigma2", "1", "--momentum", "nan"],
     r"--momentum: momentum=nan is invalid: expected 0 <= momentum < 1"),
    ([*OK, "--sigma2", "1", "--momentum", "-0.5"], r"--momentum: momentum=-0.5 is invalid"),
    ([*OK, "--sigma2", "1", "--batch-size", "0"],
     r"--batch-size: batch_size=0 is invalid: expected an integer >= 1"),
    ([*OK, "--sigma2", "1", "--batch-size", "2.5"], r"--batch-size: invalid int value: '2.5'"),
    ([*OK, "--sigma2", "1", "--weight-decay", "-0.1"], r"--weight-decay: weight_decay=-0.1 is invalid"),
    ([*OK, "--sigma2", "1", "--weight-decay", "inf"], r"--weight-decay: weight_decay=inf is invalid"),
    (["--lr", "1", "--momentum", "0.5", "--eigenvalues", "1,3", "--sigma2", "1"],
     r"--eigenvalues: eigenvalues\[1\]=3.0 is unstable: .* i.e. rho < 3"),
    ([*OK, "--sigma2", "1", "--steps", "0,10"],
     r"--steps='0,10' is invalid: expected comma-separated integers 1 <="),
    ([*OK, "--sigma2", "1", "--steps=-5"], r"--steps='-5' is invalid"),
    ([*OK, "--sigma2", "1", "--steps", ""], r"--steps='' is invalid"),
    ([*OK, "--sigma2", "1", "--steps", "1e3"], r"--steps='1e3' is invalid"),
    ([*OK, "--sigma2", "1", "--steps", "1" + "0" * 20], r"--steps='1000.*' is invalid"),
]
# one case of each kind the issue lists, also run as the installed command would be (a fresh process)
IN_A_SUBPROCESS = [0, 2, 4, 6, 13, 25, 26]


@pytest.mark.parametrize(("argv", "message"), BAD_INPUT)
def test_bad_input_exits_2_with_one_line_and_no_traceback(argv, message, bad_files, capsys, monkeypatch):
    monkeypatch.chdir(bad_files)
    assert main(["predict", *argv]) == 2
    out, err = capsys.readouterr()
    assert "Traceback" not in err and out == ""
    assert err.count("\n") == 1 and err.startswith("sgd-dynamics: error: "), err
    assert re.search(message, err), err


@pytest.mark.parametrize(("argv", "message"), [BAD_INPUT[i] for i in IN_A_SUBPROCESS])
def test_bad_input_in_a_subprocess(argv, message, bad_files):
    done = _predict(argv, bad_files)
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("sgd-dynamics: error: "), done.stderr
    assert re.search(message, done.stderr), done.stderr


def test_valid_input_in_a_subprocess_prints_finite_exponents(bad_files):
    np.save(bad_files / "rho.npy", np.array([0.0, 0.5, 2.0]))
    done = _predict(["--lr", "0.1", "--momentum", "0.9", "--eigenvalues", "rho.npy", "--sigma2", "0.5"],
                    bad_files)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert "nan" not in done.stdout and "inf" not in done.stdout
