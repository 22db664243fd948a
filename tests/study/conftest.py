import pytest

import sgd_dynamics.cli as cli


@pytest.fixture
def cli_main(monkeypatch):
    """``sgd_dynamics.cli.main`` with the study subcommands registered (until the lead registers them)."""
    if "study" not in cli._SUBCOMMANDS:
        monkeypatch.setattr(cli, "_SUBCOMMANDS", (*cli._SUBCOMMANDS, "study"))
    return cli.main
