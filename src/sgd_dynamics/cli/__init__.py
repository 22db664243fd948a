"""The ``sgd-dynamics`` command line: thin parsing on top of theory, simulators and experiments.

Each subcommand lives in its own module with ``register(subparsers)``; the module sets
``func`` on its parser. Invalid input exits with code 2 and one line on stderr naming the bad option.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import re
import sys
from collections.abc import Sequence

# Subcommand modules, in the order ``--help`` lists them (``study`` registers demo, study and report).
_SUBCOMMANDS = ("study", "predict", "escape", "basins", "momentum")


class UsageError(ValueError):
    """Bad command-line input; reported in one line with exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # noqa: D102 - argparse hook
        raise UsageError(message)


def plain(text: str) -> str:
    """Help text without reST markup (double backticks and roles), as a terminal shows it.

    >>> plain("``momentum``: see :func:`run`")
    'momentum: see run'
    """
    return re.sub(r":[a-z]+:`~?([^`]*)`", r"\1", text).replace("``", "")


def _version() -> str:
    try:
        return importlib.metadata.version("sgd-dynamics")
    except importlib.metadata.PackageNotFoundError:  # a source checkout on PYTHONPATH
        import sgd_dynamics

        return getattr(sgd_dynamics, "__version__", "unknown")


def build_parser() -> argparse.ArgumentParser:
    """The full parser with every registered subcommand."""
    parser = _Parser(prog="sgd-dynamics",
                     description="Measure, simulate and predict the limiting dynamics of SGD.")
    parser.add_argument("--version", action="version", version=f"sgd-dynamics {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in _SUBCOMMANDS:
        importlib.import_module(f"sgd_dynamics.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sgd-dynamics`` script; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return int(args.func(args) or 0)
    except (UsageError, ValueError) as exc:
        # One line: the message already names the option, the value and the valid range.
        print(f"sgd-dynamics: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sgd-dynamics: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
