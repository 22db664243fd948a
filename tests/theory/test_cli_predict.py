"""The ``predict`` command: JSON contract, table, and one-line errors with exit code 2."""

from __future__ import annotations

import json

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
    for model in ("continuous", "discrete"):
        assert set(out[model]) == {"stationary_speed", "global_displacement"}
        assert out[model]["stationary_speed"] == pytest.approx(stationary_speed(rho, rho, hp, model=model))
        np.testing.assert_allclose(out[model]["global_displacement"],
                                   global_displacement(rho, rho, hp, [1, 10, 100], model=model))
        # at t = 1 the displacement is the speed
        assert out[model]["global_displacement"][0] == pytest.approx(out[model]["stationary_speed"])


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
