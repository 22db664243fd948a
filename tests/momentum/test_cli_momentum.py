"""``sgd-dynamics momentum`` through the real dispatcher (registers the subcommand if the lead has not
yet)."""

import dataclasses
import json

import pytest

import sgd_dynamics.cli as cli
from sgd_dynamics.experiments import momentum_uv


@pytest.fixture(autouse=True)
def registered(monkeypatch):
    if "momentum" not in cli._SUBCOMMANDS:
        monkeypatch.setattr(cli, "_SUBCOMMANDS", cli._SUBCOMMANDS + ("momentum",))


def _json(capsys, argv):
    assert cli.main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_advise_uv_model_json(capsys):
    out = _json(
        capsys,
        [
            "momentum",
            "advise",
            "--lr",
            "0.001",
            "--model",
            "uv",
            "--width",
            "10",
            "--dataset-size",
            "5",
            "--label-noise",
            "0.5",
            "--input-variance",
            "1",
            "--json",
        ],
    )
    assert set(out) == {"momentum", "constant", "exponent", "tau_relax", "tau_drift"}
    c = (0.25 * 1 / (5 * 10)) ** (1 / 3)  # 003 eq. 10
    assert out["constant"] == pytest.approx(c)
    assert out["momentum"] == pytest.approx(1 - c * 0.001 ** (2 / 3))
    assert out["exponent"] == 0.6667
    assert out["tau_relax"] == pytest.approx(2 / (c * 0.001 ** (2 / 3)))
    # At the eq. 10 constant the two timescales meet.
    assert out["tau_drift"] == pytest.approx(out["tau_relax"], rel=1e-9)


def test_advise_with_constant(capsys):
    out = _json(capsys, ["momentum", "advise", "--lr", "0.001", "--constant", "0.2", "--json"])
    assert out["momentum"] == pytest.approx(0.998)
    assert out["tau_relax"] == pytest.approx(1000.0)
    assert out["tau_drift"] is None
    assert cli.main(["momentum", "advise", "--lr", "0.001", "--constant", "0.2"]) == 0
    assert "momentum beta" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, option",
    [
        (["--lr", "0.001"], "--constant"),
        (["--lr", "0.001", "--constant", "0.2", "--model", "uv"], "--constant"),
        (["--lr", "-1", "--constant", "0.2"], "--lr"),
        (["--lr", "0.001", "--constant", "500"], "--constant"),
        (["--lr", "0.001", "--model", "uv", "--width", "10"], "--dataset-size"),
        (
            [
                "--lr",
                "0.001",
                "--model",
                "uv",
                "--width",
                "0",
                "--dataset-size",
                "5",
                "--label-noise",
                "0.5",
                "--input-variance",
                "1",
            ],
            "--width",
        ),
        (["--lr", "0.001", "--constant", "0.2", "--width", "3"], "--width"),
    ],
)
def test_bad_advise_input_exits_2_with_one_line(capsys, argv, option):
    assert cli.main(["momentum", "advise", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and option in err


def test_experiment_uv_json_shape(capsys, monkeypatch):
    # Format only (the science is in test_momentum_uv_experiment): a tiny grid instead of --quick's.
    tiny = momentum_uv.UVStudyConfig(gammas=(0.3, 0.5), lrs=(0.03, 0.1), replicas=4, seeds=2)
    monkeypatch.setattr(momentum_uv.UVStudyConfig, "quick",
                        classmethod(lambda cls, **kw: dataclasses.replace(tiny, **kw)))
    out = _json(capsys, ["momentum", "experiment", "uv", "--quick", "--json"])
    assert set(out) == {"alpha", "alpha_interval", "constant"} and set(out["alpha"]) == {"0.3", "0.5"}
    assert set(out["alpha_interval"]) == set(out["alpha"])
    for key, (low, high) in out["alpha_interval"].items():   # the interval of the mean it is printed beside
        assert low < out["alpha"][key] < high
    assert all(isinstance(a, float) for a in out["alpha"].values()) and out["constant"] > 0
    assert cli.main(["momentum", "experiment", "uv", "--quick"]) == 0
    assert "fitted C" in capsys.readouterr().out


def test_experiment_uv_passes_seed_explicitly_and_rejects_a_negative_one(capsys, monkeypatch):
    seen = []

    def fake(cfg):
        seen.append(cfg)
        raise SystemExit(0)

    monkeypatch.setattr(momentum_uv, "run_uv_study", fake)
    for argv in (["--quick", "--seed", "7"], ["--seed", "3"], ["--quick"]):
        with pytest.raises(SystemExit):
            cli.main(["momentum", "experiment", "uv", *argv])
    assert [c.seed for c in seen] == [7, 3, 0]
    assert seen[0] == momentum_uv.UVStudyConfig.quick(seed=7) and seen[1] == momentum_uv.UVStudyConfig(seed=3)
    assert cli.main(["momentum", "experiment", "uv", "--quick", "--seed", "-1"]) == 2
    assert "--seed=-1 is invalid" in capsys.readouterr().err


def _strict_json(text):
    """JSON without NaN/Infinity (Python's json accepts them; other readers do not)."""
    def reject(name):
        raise AssertionError(f"{name} in the JSON output")

    return json.loads(text, parse_constant=reject)


def test_experiment_classifier_json_has_the_contract_keys(capsys, monkeypatch):
    from sgd_dynamics.experiments import label_noise_classifier as lnc

    # Format only (the science is in test_classifier_and_report): a tiny configuration instead of --quick's.
    tiny = lnc.ClassifierConfig(train_size=48, hidden=16, lrs=(0.05, 0.15), momenta=(0.7, 0.85, 0.92, 0.96),
                                replicas=2, steps=40, probes=2, valley_loss=1e-2, projection_steps=100,
                                n_bootstrap=20)
    monkeypatch.setattr(lnc.ClassifierConfig, "quick",
                        classmethod(lambda cls, **kw: dataclasses.replace(tiny, **kw)))
    run, runs = lnc.run_classifier_study, {}

    def once(cfg):  # the text output below formats the same result
        if cfg not in runs:
            runs[cfg] = run(cfg)
        return runs[cfg]

    monkeypatch.setattr(lnc, "run_classifier_study", once)
    assert cli.main(["momentum", "experiment", "classifier", "--quick", "--json", "--seed", "2"]) == 0
    out = _strict_json(capsys.readouterr().out)
    assert {"test_accuracy", "lrs", "gamma_star", "gamma_star_interval"} <= set(out)
    assert isinstance(out["test_accuracy"], float) and 0 <= out["test_accuracy"] <= 1
    assert out["lrs"] == [0.05, 0.15] and len(out["gamma_star_interval"]) == 2
    assert out["gamma_star"] is None or isinstance(out["gamma_star"], float)
    assert [len(a) for a in out["post_projection_test_accuracy"]] == [4, 4]
    assert {"not_returned", "diverged", "replicas_needed", "lrs_needed", "bracketed"} <= set(out)
    assert cli.main(["momentum", "experiment", "classifier", "--quick", "--seed", "2"]) == 0
    assert "test accuracy at the valley start" in capsys.readouterr().out


def test_experiment_classifier_passes_seed_and_dataset_and_rejects_bad_input(capsys, monkeypatch):
    from sgd_dynamics.experiments import label_noise_classifier as lnc

    seen = []

    def fake(cfg):
        seen.append(cfg)
        raise SystemExit(0)

    monkeypatch.setattr(lnc, "run_classifier_study", fake)
    for argv in (["--quick", "--seed", "7"], ["--seed", "3", "--dataset", "mnist1d"]):
        with pytest.raises(SystemExit):
            cli.main(["momentum", "experiment", "classifier", *argv])
    assert seen[0] == lnc.ClassifierConfig.quick(seed=7)
    assert seen[1] == lnc.ClassifierConfig(seed=3, dataset="mnist1d")
    assert cli.main(["momentum", "experiment", "classifier", "--seed", "-1"]) == 2
    assert "--seed=-1 is invalid" in capsys.readouterr().err
    assert cli.main(["momentum", "experiment", "classifier", "--dataset", "cifar"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--dataset" in err and "digits" in err
