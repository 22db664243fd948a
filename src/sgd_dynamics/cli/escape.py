"""``sgd-dynamics escape``: exact, Kramers and Monte Carlo escape times of a 1-D overdamped diffusion.

``dx = -U'(x) dt + sqrt(2 T) dW`` (ERRATA 004.1, 004.4) with ``U`` a safe math expression in ``x``
(:mod:`sgd_dynamics.theory.potential`). Prints the exact mean first-passage time from ``--start`` to
``--target`` (ERRATA 004.4); the Kramers time from the well of ``--start`` over every barrier up to
``--target`` (the Laplace asymptotic of the time to the well beyond the last one; ``null`` with the reason
when there is no barrier); and the Monte Carlo mean exit time (compiled continuous Euler scheme,
:func:`sgd_dynamics.simulate.first_passage.first_passage_times_1d`).

Step size: by default the step at which the modelled discretisation bias, force at the target included, is at
most a third of the replicas' standard error (:func:`sgd_dynamics.simulate.first_passage.choose_time_step`).
A run whose expected number of steps exceeds ``--max-steps`` is refused up front (exit code 2). The command
only parses and prints: the work is :func:`sgd_dynamics.experiments.escape_study.run_escape_times`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from tqdm import tqdm

from sgd_dynamics.simulate.first_passage import DEFAULT_MAX_STEPS

if TYPE_CHECKING:
    from sgd_dynamics.experiments.escape_study import EscapeTimes

__all__ = ["DEFAULT_MAX_STEPS", "compute", "escape_times", "register", "run"]

# Each option that takes a value, by the parameter name of run_escape_times that it sets.
_FLAGS = {"potential": "--potential", "temperature": "--temperature", "start": "--start",
          "target": "--target", "replicas": "--replicas", "seed": "--seed", "dt": "--dt",
          "max_steps": "--max-steps"}


def _values_joined(args: Sequence[str], known: set[str]) -> list[str]:
    """``["--potential", "-x**4"]`` as ``["--potential=-x**4"]``: argparse would read ``-x**4`` as an option.

    Only a value that is itself one of our option strings stays separate (so a missing value is reported).
    """
    out, i = [], 0
    while i < len(args):
        if args[i] in _FLAGS.values() and i + 1 < len(args) and args[i + 1] not in known:
            out.append(f"{args[i]}={args[i + 1]}")
            i += 2
        else:
            out.append(args[i])
            i += 1
    return out


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``escape`` subcommand."""
    p = subparsers.add_parser("escape", help="escape times over a barrier: exact MFPT, Kramers, Monte Carlo",
                              description=__doc__.splitlines()[0])
    p.add_argument("--potential", required=True,
                   help='math expression in x, e.g. "(x**2-1)**2" (a leading minus is fine: "-x**4+x**2")')
    p.add_argument("--temperature", required=True, type=float, help="temperature T > 0")
    p.add_argument("--start", required=True, type=float, help="starting point x0")
    p.add_argument("--target", required=True, type=float, help="absorbing point b (either side of x0)")
    p.add_argument("--replicas", type=int, default=2000, help="Monte Carlo replicas (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="random seed >= 0 (default 0)")
    p.add_argument("--dt", type=float, default=None,
                   help="Euler–Maruyama step (default: bias at most a third of the standard error)")
    p.add_argument("--max-steps", type=int, default=DEFAULT_MAX_STEPS,
                   help="cap on the expected Euler steps of all replicas together "
                        f"(default {DEFAULT_MAX_STEPS:.3g})")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)
    known = {*_FLAGS.values(), "--json", "-h", "--help"}
    parse = p.parse_known_args

    def parse_known_args(args: Sequence[str] | None = None,
                         namespace: argparse.Namespace | None = None) -> tuple[argparse.Namespace, list[str]]:
        return parse(None if args is None else _values_joined(list(args), known), namespace)

    # argparse hands the subcommand's arguments to this method of the subparser: normalise them first.
    p.parse_known_args = parse_known_args  # type: ignore[method-assign]


def _with_flags(exc: ValueError) -> ValueError:
    """The message of ``run_escape_times`` with its leading parameter name spelt as the option."""
    message = str(exc)
    name, sep, rest = message.partition("=")
    return ValueError(f"{_FLAGS[name]}={rest}" if sep and name in _FLAGS else message)


def compute(args: argparse.Namespace, progress: bool = False) -> EscapeTimes:
    """Run :func:`~sgd_dynamics.experiments.escape_study.run_escape_times`; errors name the options."""
    # Imported here, as the other commands do: the experiments package pulls in torch.
    from sgd_dynamics.experiments.escape_study import run_escape_times

    bar = tqdm(total=args.replicas, desc="escape replicas", unit="replica", disable=not progress, leave=False)
    try:
        return run_escape_times(args.potential, args.temperature, args.start, args.target,
                                replicas=args.replicas, seed=args.seed, dt=args.dt, max_steps=args.max_steps,
                                progress=lambda done: bar.update(done - bar.n))
    except ValueError as exc:
        raise _with_flags(exc) from None
    finally:
        bar.close()


def escape_times(expression: str, temperature: float, start: float, target: float, *, replicas: int = 2000,
                 seed: int = 0, dt: float | None = None, max_steps: int = DEFAULT_MAX_STEPS,
                 progress: bool = False) -> dict:
    """The three escape times as the ``--json`` object; ``ValueError`` naming the option on bad input."""
    args = argparse.Namespace(potential=expression, temperature=temperature, start=start, target=target,
                              replicas=replicas, seed=seed, dt=dt, max_steps=max_steps)
    return compute(args, progress).as_json()


def _kramers_line(result: EscapeTimes) -> str:
    k = result.kramers
    if k is None:
        return f"n/a ({result.kramers_note})"
    over = "1 barrier" if len(k.saddles) == 1 else f"{len(k.saddles)} barriers"
    well, saddle = k.dominant
    return f"{k.time:.6g}   (over {over}; dominant: well {well:.4g} -> barrier {saddle:.4g})"


def run(args: argparse.Namespace) -> int:
    """Compute and print the escape times."""
    result = compute(args, progress=sys.stderr.isatty())
    if args.json:
        print(json.dumps(result.as_json()))
        return 0
    step = result.step
    print(f"escape of dx = -U'(x) dt + sqrt(2T) dW,  U = {args.potential},  T = {args.temperature:g}")
    print(f"  exact MFPT  {args.start:g} -> {args.target:g}      {result.exact_mfpt:.6g}")
    print(f"  Kramers well-to-well time           {_kramers_line(result)}")
    print(f"  Monte Carlo mean ({result.replicas} replicas)   {result.monte_carlo_mean:.6g} ± "
          f"{result.monte_carlo_stderr:.2g}")
    print(f"  Euler step dt = {step.dt:.3g}: modelled bias {100 * step.modelled_bias:+.2f} % "
          f"(standard error {100 * step.relative_stderr:.2f} %)")
    return 0
