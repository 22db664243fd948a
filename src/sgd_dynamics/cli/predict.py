"""``sgd-dynamics predict``: stationary speed and global displacement from a Hessian spectrum and noise.

Prints the exact SDE (002 eq. 18, and the SDE's own displacement ``2 (P_xx - [exp(-A eta t) P]_xx)`` of
ERRATA 002.6) next to the exact discrete recursion, with eq. 19's sampled lag sum labelled as such (no
exponent: it grows linearly for every mode). ``--json`` keeps the keys ``continuous`` (now the exact SDE) and
``discrete`` and adds ``eq19_sampled_sum``.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from sgd_dynamics.cli import UsageError
from sgd_dynamics.hyper import Hyperparams
from sgd_dynamics.theory import global_displacement, local_exponent, per_mode_noise, stationary_speed

_DEFAULT_STEPS = "1,10,100,1000,10000"
_MAX_STEP = 10**15
_FILE_SUFFIXES = (".npy", ".txt", ".csv", ".dat")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``predict`` subcommand."""
    p = subparsers.add_parser(
        "predict", help="predict stationary speed and global displacement from a Hessian spectrum",
        description="Predict E||theta_{k+1}-theta_k||^2 and E||theta_{k+t}-theta_k||^2 at stationarity for "
                    "SGD with momentum on a quadratic: the SDE (002 eq. 18 and the SDE's exact displacement, "
                    "corrected), eq. 19's sampled lag sum, and the exact discrete recursion. Sigma is the "
                    "per-example gradient covariance; a batch of S drawn with replacement has noise Sigma/S.")
    p.add_argument("--lr", type=float, required=True, help="learning rate eta > 0")
    p.add_argument("--momentum", type=float, default=0.0,
                   help="heavy-ball momentum 0 <= beta < 1 (default 0)")
    p.add_argument("--batch-size", type=int, default=1, help="batch size S >= 1 (default 1)")
    p.add_argument("--weight-decay", type=float, default=0.0, help="weight decay lambda >= 0 (default 0)")
    p.add_argument("--eigenvalues", required=True,
                   help="Hessian eigenvalues: comma-separated numbers or a path to a 1-D .npy/.txt file")
    noise = p.add_mutually_exclusive_group(required=True)
    noise.add_argument("--sigma2", type=float,
                       help="Sigma = sigma^2 H (the paper's Assumption 3), sigma^2 > 0")
    noise.add_argument("--noise-variances",
                       help="per-mode s_i = q_i^T Sigma q_i >= 0: comma-separated or a 1-D .npy/.txt path")
    p.add_argument("--steps", default=_DEFAULT_STEPS,
                   help=f"lags t (integers >= 1) for the global displacement (default {_DEFAULT_STEPS})")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Execute ``predict`` for parsed arguments."""
    hyper, rho, s, steps = _validated_inputs(args)
    result = {model: {"stationary_speed": stationary_speed(rho, s, hyper, model=model),
                      "global_displacement": global_displacement(rho, s, hyper, steps, model=model).tolist()}
              for model in ("continuous", "discrete")}
    result["eq19_sampled_sum"] = {
        "global_displacement": global_displacement(rho, s, hyper, steps, model="eq19_sampled_sum").tolist()}
    if args.json:
        print(json.dumps(result))
        return 0
    exponents = {m: local_exponent(rho, s, hyper, steps, model=m) for m in ("sde", "discrete")}
    print(f"SGD: lr={hyper.lr:g} momentum={hyper.momentum:g} batch_size={hyper.batch_size} "
          f"weight_decay={hyper.weight_decay:g}; {rho.size} modes, tr(Sigma)={s.sum():.6g}")
    print("stationary speed E||theta_(k+1)-theta_k||^2: SDE (eq. 18) "
          f"{result['continuous']['stationary_speed']:.6g}"
          f"   exact discrete {result['discrete']['stationary_speed']:.6g}")
    print(f"{'t':>10}  {'E||Delta_t||^2 SDE':>19}  {'eq. 19 sampled sum':>18}  {'exact discrete':>14}  "
          f"{'exponent c (SDE)':>16}  {'c (discrete)':>12}")
    for j, t in enumerate(steps):
        print(f"{t:>10d}  {result['continuous']['global_displacement'][j]:>19.6g}  "
              f"{result['eq19_sampled_sum']['global_displacement'][j]:>18.6g}  "
              f"{result['discrete']['global_displacement'][j]:>14.6g}  {exponents['sde'][j]:>16.4f}  "
              f"{exponents['discrete'][j]:>12.4f}")
    return 0


def _validated_inputs(args: argparse.Namespace) -> tuple[Hyperparams, np.ndarray, np.ndarray, np.ndarray]:
    """Every option checked once, each failure one ``UsageError`` naming the option, value and valid range."""
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
        _require(math.isfinite(args.sigma2) and args.sigma2 > 0, "--sigma2", args.sigma2,
                 "a finite number > 0")
        try:
            s = per_mode_noise(rho, sigma2=args.sigma2)
        except ValueError as exc:
            raise UsageError(f"--sigma2: {exc}") from None
        if not np.any(s > 0):
            raise UsageError(f"--sigma2={args.sigma2!r} gives no noise: Sigma = sigma^2 H is 0 for these "
                             "eigenvalues (all 0); give --noise-variances with at least one value > 0")
    else:
        raw = _read_vector(args.noise_variances, "--noise-variances", nonnegative=True)
        try:
            s = per_mode_noise(rho, noise_variances=raw)
        except ValueError as exc:
            raise UsageError(f"--noise-variances: {exc}") from None
        if not np.any(s > 0):
            raise UsageError(f"--noise-variances={args.noise_variances!r} is invalid: expected values >= 0 "
                             "with at least one > 0 (without noise nothing diffuses)")
    return hyper, rho, s, _read_steps(args.steps)


def _require(condition: bool, option: str, value: object, valid: str) -> None:
    if not condition:
        raise UsageError(f"{option}={value!r} is invalid: expected {valid}")


def _read_vector(text: str, option: str, nonnegative: bool = False) -> np.ndarray:
    """A 1-D array of finite real numbers from comma-separated text or a ``.npy``/``.txt``/``.csv`` file."""
    path = Path(text)
    try:
        if path.suffix in _FILE_SUFFIXES and not path.exists():
            raise UsageError(f"{option}: file {text!r} does not exist")
        if path.suffix == ".npy":
            values = np.load(path)
        elif path.suffix in _FILE_SUFFIXES:
            values = np.loadtxt(path, delimiter="," if path.suffix == ".csv" else None, ndmin=1)
        else:
            values = np.array([float(v) for v in text.split(",") if v.strip()])
    except UsageError:
        raise
    except (ValueError, OSError, EOFError) as exc:
        raise UsageError(f"{option}: cannot read numbers from {text!r} ({exc})") from None
    values = np.asarray(values)
    if values.ndim != 1:
        raise UsageError(f"{option}: {text!r} holds an array of shape {values.shape}: expected a 1-D array "
                         "of per-mode values (pass a matrix's eigenvalues, not the matrix)")
    if values.dtype.kind == "c":
        # a complex dtype with zero imaginary parts (e.g. from numpy.linalg.eigvals) loses nothing
        nonreal = np.flatnonzero(values.imag != 0)
        if nonreal.size:
            i = int(nonreal[0])
            raise UsageError(f"{option}[{i}]={complex(values[i])!r} is invalid: expected real numbers")
        values = values.real
    if values.dtype.kind not in "biuf":
        raise UsageError(f"{option}: {text!r} holds values of type {values.dtype}: expected real numbers")
    values = values.astype(np.float64)
    _require(values.size > 0, option, text, "at least one value")
    bad = np.flatnonzero(~np.isfinite(values) | (nonnegative & (values < 0)))
    if bad.size:
        i = int(bad[0])
        valid = "finite values >= 0" if nonnegative else "finite values"
        raise UsageError(f"{option}[{i}]={float(values[i])!r} is invalid: expected {valid}")
    return values


def _read_steps(text: str) -> np.ndarray:
    valid = f"comma-separated integers 1 <= t <= {_MAX_STEP:.0e}"
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"--steps={text!r} is invalid: expected {valid}") from None
    _require(bool(values) and all(1 <= v <= _MAX_STEP for v in values), "--steps", text, valid)
    return np.array(values, dtype=np.int64)
