"""``sgd-dynamics escape``: exact, Kramers and Monte Carlo escape times of a 1-D overdamped diffusion.

``dx = -U'(x) dt + sqrt(2 T) dW`` with ``U`` a safe math expression in ``x``
(:mod:`sgd_dynamics.theory.potential`). Prints the exact mean first-passage time from ``--start`` to
``--target`` (ERRATA 004.4), the Kramers well-to-well time of the well containing ``--start`` over the first
barrier towards ``--target`` (``null`` when there is no barrier), and the Monte Carlo mean exit time
(Euler–Maruyama with the Brownian-bridge crossing correction, compiled:
:func:`sgd_dynamics.simulate.first_passage.first_passage_times_1d`).

Step size: by default the step whose modelled discretisation bias equals the standard error of the
replicas (:func:`sgd_dynamics.simulate.first_passage.escape_time_step`); the measured bias is about a quarter
of that. The double well at ``T = 0.1`` then takes about 7e9 steps for 2000 replicas (about 40 s on two
cores). A run whose expected number of steps exceeds ``--max-steps`` is refused up front (exit code 2).
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from tqdm import tqdm

from sgd_dynamics.simulate.first_passage import escape_time_step, first_passage_times_1d
from sgd_dynamics.theory.escape import kramers_time, locate_well_and_barrier, mean_first_passage_time
from sgd_dynamics.theory.potential import parse_potential

# All replicas together; about 10 minutes on two cores at ~4 ns per step.
DEFAULT_MAX_STEPS = 150_000_000_000
# A replica still inside after this many mean first-passage times is reported as not exited.
_PATIENCE = 50


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``escape`` subcommand."""
    p = subparsers.add_parser("escape", help="escape times over a barrier: exact MFPT, Kramers, Monte Carlo",
                              description=__doc__.splitlines()[0])
    p.add_argument("--potential", required=True, help='math expression in x, e.g. "(x**2-1)**2"')
    p.add_argument("--temperature", required=True, type=float, help="temperature T > 0")
    p.add_argument("--start", required=True, type=float, help="starting point x0")
    p.add_argument("--target", required=True, type=float, help="absorbing point b (either side of x0)")
    p.add_argument("--replicas", type=int, default=2000, help="Monte Carlo replicas (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--dt", type=float, default=None, help="Euler–Maruyama step (default: automatic)")
    p.add_argument("--max-steps", type=int, default=DEFAULT_MAX_STEPS,
                   help="cap on the expected Euler steps of all replicas together "
                        f"(default {DEFAULT_MAX_STEPS:.3g})")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def escape_times(expression: str, temperature: float, start: float, target: float, *, replicas: int = 2000,
                 seed: int = 0, dt: float | None = None, max_steps: int = DEFAULT_MAX_STEPS,
                 progress: bool = False) -> dict:
    """The three escape times as the ``--json`` object; ``ValueError`` naming the option on bad input."""
    try:
        U = parse_potential(expression, variables=("x",))
    except ValueError as exc:
        raise ValueError(f"--potential: {exc}") from None
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"--temperature {temperature!r} is invalid: expected a finite temperature > 0")
    if not (math.isfinite(start) and math.isfinite(target)):
        raise ValueError("--start and --target must be finite numbers")
    if start == target:
        raise ValueError(f"--start {start!r} is already at --target {target!r}: expected start != target")
    if replicas < 2:
        raise ValueError(f"--replicas {replicas!r} is invalid: expected an integer >= 2")
    if not max_steps >= 1:
        raise ValueError(f"--max-steps {max_steps!r} is invalid: expected an integer >= 1")
    u0 = float(U.energy(start))
    if not math.isfinite(u0):
        raise ValueError(f"--potential is not finite at --start {start!r}")
    try:
        well, barrier = locate_well_and_barrier(U, start, target)
    except ValueError:
        well = barrier = None  # no well-barrier pair towards the target: Kramers does not apply (JSON null)
    try:
        exact = mean_first_passage_time(U, temperature, start, target)
    except ValueError as exc:
        raise ValueError(f"--potential: {exc}") from None
    if well is not None:
        kramers: float | None = kramers_time(U, temperature, well, barrier)
        curvature, barrier_curvature = float(U.hessian(well)), float(U.hessian(barrier))
    else:
        kramers, curvature, barrier_curvature = None, max(abs(float(U.hessian(start))), 1.0), 0.0
    if dt is None:
        dt = escape_time_step(curvature, barrier_curvature, replicas)
    elif not (math.isfinite(dt) and dt > 0):
        raise ValueError(f"--dt {dt!r} is invalid: expected a step > 0")
    needed = replicas * exact / dt
    if needed > max_steps:
        raise ValueError(f"--temperature {temperature:g}: the Monte Carlo needs about {needed:.3g} steps of "
                         f"dt={dt:.3g} ({replicas} replicas x exact MFPT {exact:.4g}), above --max-steps "
                         f"{max_steps:.3g}; raise --temperature or --max-steps, or lower --replicas")
    bar = tqdm(total=replicas, desc="escape replicas", unit="replica", disable=not progress, leave=False)
    try:
        fp = first_passage_times_1d(U, start, target, temperature, dt, replicas, seed,
                                    max_steps=int(math.ceil(_PATIENCE * exact / dt)),
                                    progress=lambda done: bar.update(done - bar.n))
    finally:
        bar.close()
    mean, stderr = fp.mean_and_stderr()
    return {"exact_mfpt": exact, "kramers": kramers,
            "monte_carlo": {"mean": mean, "stderr": stderr, "replicas": int(replicas)}}


def run(args: argparse.Namespace) -> int:
    """Compute and print the escape times."""
    result = escape_times(args.potential, args.temperature, args.start, args.target, replicas=args.replicas,
                          seed=args.seed, dt=args.dt, max_steps=args.max_steps,
                          progress=sys.stderr.isatty())
    if args.json:
        print(json.dumps(result))
        return 0
    mc = result["monte_carlo"]
    print(f"escape of dx = -U'(x) dt + sqrt(2T) dW,  U = {args.potential},  T = {args.temperature:g}")
    print(f"  exact MFPT  {args.start:g} -> {args.target:g}      {result['exact_mfpt']:.6g}")
    kramers = "n/a (no barrier)" if result["kramers"] is None else f"{result['kramers']:.6g}"
    print(f"  Kramers well-to-well time           {kramers}")
    print(f"  Monte Carlo mean ({mc['replicas']} replicas)   {mc['mean']:.6g} ± {mc['stderr']:.2g}")
    return 0
