import pytest

import sgd_dynamics.cli as cli


@pytest.fixture
def cli_main(monkeypatch):
    """``sgd_dynamics.cli.main`` with the study subcommands registered (until the lead registers them)."""
    if "study" not in cli._SUBCOMMANDS:
        monkeypatch.setattr(cli, "_SUBCOMMANDS", (*cli._SUBCOMMANDS, "study"))
    return cli.main


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A real run directory of a tiny study (seconds): 2 lrs x 2 momenta, 60 steps per point, 3 replicas.

    No pretraining (theta* is the initialisation): the files and their layout are what a full study writes.
    """
    import torch

    from sgd_dynamics.experiments.study import run_study

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("tiny_run")
    run_study(tiny_config(), out, progress=False, log=lambda s: None)
    return out


def tiny_config():
    """The configuration of :func:`tiny_run`."""
    import dataclasses

    from sgd_dynamics.experiments.study import StudyConfig

    return dataclasses.replace(StudyConfig.quick(), lrs=(0.005, 0.01), momenta=(0.0, 0.9),
                               pretrain_epochs=0, settle_steps=0)
