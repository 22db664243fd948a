"""``sgd-dynamics predict``: stationary speed and global displacement from a Hessian spectrum and noise.

Prints the continuous model (002 eqs. 18-19 as corrected) next to the exact discrete recursion.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from sgd_dynamics.cli import UsageError
from sgd_dynamics.hyper import Hyperparams
from sgd_dynamics.theory import global_displacement, local_exponent, per_mode_noise, stationary_speed

_DEFAULT_STEPS = "1,10,100,1000,10000"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``predict`` subcommand."""
    p = subparsers.add_parser(
        "predict", help="predict stationary speed and global displacement from a Hessian spectrum",
        description="Predict E||theta_{k+1}-theta_k||^2 and E||theta_{k+t}-theta_k||^2 at stationarity for "
                    "SGD with momentum on a quadratic: the continuous model (002 eqs. 18-19, corrected) "
                    "and the exact discrete recursion. Sigma is the per-example gradient covariance; a batch "
                    "of S drawn with replacement has noise Sigma/S.")
    p.add_argument("--lr", type=float, required=True, help="learning rate eta > 0")
    p.add_argument("--momentum", type=float, default=0.0,
                   help="heavy-ball momentum 0 <= beta < 1 (default 0)")
    p.add_argument("--batch-size", type=int, default=1, help="batch size S >= 1 (default 1)")
    p.add_argument("--weight-decay", type=float, default=0.0, help="weight decay lambda >= 0 (default 0)")
    p.add_argument("--eigenvalues", required=True,
                   help="Hessian eigenvalues: comma-separated numbers or a path to a .npy/.txt file")
    noise = p.add_mutually_exclusive_group(required=True)
    noise.add_argument("--sigma2", type=float, help="Sigma = sigma^2 H (the paper's Assumption 3)")
    noise.add_argument("--noise-variances",
                       help="per-mode s_i = q_i^T Sigma q_i: comma-separated or a .npy/.txt path")
    p.add_argument("--steps", default=_DEFAULT_STEPS,
                   help=f"lags t (integers >= 1) for the global displacement (default {_DEFAULT_STEPS})")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Execute ``predict`` for parsed arguments."""
    try:
        hyper = Hyperparams(lr=args.lr, momentum=args.momentum, batch_size=args.batch_size,
                            weight_decay=args.weight_decay)
    except ValueError as exc:
        raise UsageError(f"--{str(exc).split('=')[0].replace('_', '-')}: {exc}") from None
    rho = _read_vector(args.eigenvalues, "--eigenvalues")
    try:
        hyper.check_stable(rho)
    except ValueError as exc:
        raise UsageError(f"--eigenvalues: {exc}") from None
    if args.sigma2 is not None:
        try:
            s = per_mode_noise(rho, sigma2=args.sigma2)
        except ValueError as exc:
            raise UsageError(f"--sigma2: {exc}") from None
    else:
        try:
            s = per_mode_noise(rho, noise_variances=_read_vector(args.noise_variances, "--noise-variances"))
        except ValueError as exc:
            raise UsageError(f"--noise-variances: {exc}") from None
    steps = _read_steps(args.steps)
    result = {model: {"stationary_speed": stationary_speed(rho, s, hyper, model=model),
                      "global_displacement": global_displacement(rho, s, hyper, steps, model=model).tolist()}
              for model in ("continuous", "discrete")}
    if args.json:
        print(json.dumps(result))
        return 0
    exponents = {m: local_exponent(rho, s, hyper, steps, model=m) for m in ("continuous", "discrete")}
    print(f"SGD: lr={hyper.lr:g} momentum={hyper.momentum:g} batch_size={hyper.batch_size} "
          f"weight_decay={hyper.weight_decay:g}; {rho.size} modes, tr(Sigma)={s.sum():.6g}")
    print("stationary speed E||theta_(k+1)-theta_k||^2: continuous "
          f"{result['continuous']['stationary_speed']:.6g}"
          f"   exact discrete {result['discrete']['stationary_speed']:.6g}")
    print(f"{'t':>10}  {'E||Delta_t||^2 cont.':>22}  {'exact discrete':>16}  {'exponent c (cont.)':>18}  "
          f"{'c (discrete)':>12}")
    for j, t in enumerate(steps):
        print(f"{t:>10d}  {result['continuous']['global_displacement'][j]:>22.6g}  "
              f"{result['discrete']['global_displacement'][j]:>16.6g}  {exponents['continuous'][j]:>18.4f}  "
              f"{exponents['discrete'][j]:>12.4f}")
    return 0


def _read_vector(text: str, option: str) -> np.ndarray:
    path = Path(text)
    try:
        if path.suffix == ".npy" and path.exists():
            values = np.load(path)
        elif path.suffix in (".txt", ".csv", ".dat") and path.exists():
            values = np.loadtxt(path, delimiter="," if path.suffix == ".csv" else None)
        elif path.suffix in (".npy", ".txt", ".csv", ".dat"):
            raise UsageError(f"{option}: file {text!r} does not exist")
        else:
            values = np.array([float(v) for v in text.split(",") if v.strip()])
    except UsageError:
        raise
    except (ValueError, OSError) as exc:
        raise UsageError(f"{option}: cannot read numbers from {text!r} ({exc})") from None
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        raise UsageError(f"{option}: no values given")
    if not np.all(np.isfinite(values)):
        raise UsageError(f"{option}: values must be finite")
    return values


def _read_steps(text: str) -> np.ndarray:
    try:
        steps = np.array([int(v) for v in text.split(",") if v.strip()], dtype=np.int64)
    except ValueError:
        raise UsageError(f"--steps: expected comma-separated integers >= 1; got {text!r}") from None
    if steps.size == 0 or np.any(steps < 1):
        raise UsageError(f"--steps: expected comma-separated integers >= 1; got {text!r}")
    return steps
