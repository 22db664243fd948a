"""``sgd-dynamics momentum``: momentum advice ``1 - beta = C eta^(2/3)`` and the vector-UV study (003).

``advise`` timescales, in SGD steps, at ``beta = 1 - C eta^(2/3)``:

- ``tau_relax = 2 / (1 - beta)``: the ``sqrt(beta)^k`` envelope of the transverse modes (003 Sec. 3.3-3.4); it
  depends on ``beta`` only, so it is given for ``--constant`` too.
- ``tau_drift``: the drift along the valley, 003 eq. 9 for ``--model uv``
  (``2 n P (1 - beta)^2 / (eps^2 mu_2 eta^2)``, equal to ``tau_relax`` at the eq. 10 constant). With
  ``--constant`` it needs the model's drift coefficient, which is unknown, so it is ``null``.
"""

from __future__ import annotations

import argparse
import json
import math

from sgd_dynamics._validation import require
from sgd_dynamics.cli import plain
from sgd_dynamics.theory.momentum_scaling import (
    OPTIMAL_EXPONENT,
    envelope_relaxation_time,
    momentum_from_constant,
    uv_drift_time,
    uv_optimal_constant,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``momentum advise``, ``momentum experiment uv``/``classifier`` and ``momentum report``."""
    parser = subparsers.add_parser(
        "momentum",
        help="optimal momentum for label-noise SGD near a valley (003)",
        description=plain(__doc__.split("\n\n")[0]),
    )
    sub = parser.add_subparsers(dest="momentum_command", required=True, parser_class=type(parser))

    advise = sub.add_parser(
        "advise",
        help="momentum beta = 1 - C lr^(2/3) and the two timescales",
        description="beta = 1 - C lr^(2/3). tau_relax = 2/(1 - beta) steps (transverse envelope, any model). "
        "tau_drift = 2 n P (1 - beta)^2 / (eps^2 mu2 lr^2) steps for --model uv (003 eq. 9); "
        "null with --constant, because the drift coefficient of an unknown model is not known.",
    )
    advise.add_argument("--lr", type=float, required=True, help="learning rate eta > 0")
    advise.add_argument("--constant", type=float, help="your constant C > 0 (instead of --model)")
    advise.add_argument("--model", choices=("uv",), help="compute C from a solvable model (003 eq. 10)")
    advise.add_argument("--width", type=int, help="hidden width n (uv)")
    advise.add_argument("--dataset-size", type=int, help="number of training examples P (uv)")
    advise.add_argument("--label-noise", type=float, help="label-noise standard deviation eps (uv)")
    advise.add_argument(
        "--input-variance", type=float, default=None, help="mu2 = Tr of the input covariance (uv)"
    )
    advise.add_argument("--json", action="store_true", help="print one JSON object")
    advise.set_defaults(func=_advise)

    experiment = sub.add_parser("experiment", help="run a momentum-scaling study")
    studies = experiment.add_subparsers(dest="study", required=True, parser_class=type(parser))
    uv = studies.add_parser("uv", help="vector UV model: timescale exponent alpha(gamma) and constant C")
    uv.add_argument("--quick", action="store_true", help="reduced grid that runs in seconds")
    uv.add_argument("--json", action="store_true",
                    help='print {"alpha": {gamma: alpha}, "alpha_interval": {gamma: [low, high]}, '
                    '"constant": C}')
    _add_seed(uv)
    uv.set_defaults(func=_experiment_uv)
    classifier = studies.add_parser(
        "classifier",
        help="label-noise MLP classifier: optimal momentum beta*(eta) and 1 - beta* = C eta^gamma*",
        description="Valley start by Adam, label-noise heavy-ball SGD per (eta, beta, replica), projection "
        "back by Adam, beta*(eta) from the travelled log-decrease of Tr H, gamma* by least squares with a "
        "replica-resampling interval (003 Sec. 4.2, App. A.3-A.4). test_accuracy is the test accuracy of "
        "the network at the valley start; post_projection_test_accuracy is per eta and beta (replica mean).",
    )
    classifier.add_argument("--quick", action="store_true", help="three eta, short runs (under a minute)")
    classifier.add_argument("--dataset", choices=("digits", "mnist1d"), default="digits",
                            help="built-in data set (default: scikit-learn's digits)")
    classifier.add_argument("--json", action="store_true", help="print one JSON object")
    _add_seed(classifier)
    classifier.set_defaults(func=_experiment_classifier)

    report = sub.add_parser(
        "report",
        help="run the vector-UV, matrix-sensing and classifier studies and write the HTML report",
        description="Runs the three studies into the run directory DIR, writes DIR/report.html (figures in "
        "DIR/figures) and prints its path; 'sgd-dynamics report DIR' redraws it.",
    )
    report.add_argument("--quick", action="store_true", help="reduced configurations that run in seconds")
    report.add_argument("--out", default="runs/momentum",
                        help="run directory (default: runs/momentum)")
    report.add_argument("--force", action="store_true",
                        help="start over if --out holds another run (the old one is kept, renamed)")
    _add_seed(report)
    report.set_defaults(func=_report)


def _add_seed(parser: argparse.ArgumentParser) -> None:
    """``--seed N``: every ``momentum experiment`` and ``momentum report`` take one (issue 16 contract)."""
    parser.add_argument("--seed", type=int, default=0,
                        help="random seed of the study (default 0), passed to every part of it")


def _seed(args: argparse.Namespace) -> int:
    require(args.seed >= 0, "--seed", args.seed, "an integer >= 0")
    return int(args.seed)


def _advise(args: argparse.Namespace) -> int:
    lr = args.lr
    require(math.isfinite(lr) and 0 < lr < 1, "--lr", lr, "0 < lr < 1")
    uv_opts = {
        "--width": args.width,
        "--dataset-size": args.dataset_size,
        "--label-noise": args.label_noise,
        "--input-variance": args.input_variance,
    }
    if (args.constant is None) == (args.model is None):
        raise ValueError("give exactly one of --constant C or --model uv")
    tau_drift: float | None = None
    if args.constant is not None:
        given = [k for k, v in uv_opts.items() if v is not None]
        if given:
            raise ValueError(f"{given[0]} is only valid with --model uv, not with --constant")
        require(math.isfinite(args.constant) and args.constant > 0, "--constant", args.constant,
                "a finite C > 0")
        constant = args.constant
    else:
        missing = [k for k, v in uv_opts.items() if v is None]
        if missing:
            raise ValueError(f"{missing[0]} is required with --model uv")
        for name, value, ok, valid in (
            ("--width", args.width, args.width >= 1, "an integer >= 1"),
            ("--dataset-size", args.dataset_size, args.dataset_size >= 1, "an integer >= 1"),
            (
                "--label-noise",
                args.label_noise,
                math.isfinite(args.label_noise) and args.label_noise > 0,
                "a finite eps > 0",
            ),
            (
                "--input-variance",
                args.input_variance,
                math.isfinite(args.input_variance) and args.input_variance > 0,
                "a finite mu2 > 0",
            ),
        ):
            require(ok, name, value, valid)
        constant = uv_optimal_constant(args.width, args.dataset_size, args.label_noise, args.input_variance)
    try:
        beta = momentum_from_constant(lr, constant)
    except ValueError as exc:
        raise ValueError(f"--constant/--lr: {exc}") from None
    tau_relax = envelope_relaxation_time(lr, beta)
    if args.model == "uv":
        tau_drift = uv_drift_time(
            lr, beta, args.width, args.dataset_size, args.label_noise, args.input_variance
        )
    out = {
        "momentum": beta,
        "constant": constant,
        "exponent": round(OPTIMAL_EXPONENT, 4),
        "tau_relax": tau_relax,
        "tau_drift": tau_drift,
    }
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{'learning rate':<22}{lr:.6g}")
        print(f"{'momentum beta':<22}{beta:.6g}   (1 - beta = C lr^(2/3))")
        print(f"{'constant C':<22}{constant:.6g}" + ("   (003 eq. 10)" if args.model else "   (given)"))
        print(f"{'tau_relax [steps]':<22}{tau_relax:.6g}")
        print(
            f"{'tau_drift [steps]':<22}"
            + (f"{tau_drift:.6g}" if tau_drift is not None else "n/a (needs a model: --model uv)")
        )
    return 0


def _experiment_uv(args: argparse.Namespace) -> int:
    from sgd_dynamics.experiments.momentum_uv import UVStudyConfig, run_uv_study

    seed = _seed(args)
    result = run_uv_study(UVStudyConfig.quick(seed=seed) if args.quick else UVStudyConfig(seed=seed))
    if args.json:
        # alpha is the mean over the study's repetitions; alpha_interval its 95% t interval (issue 16)
        print(json.dumps({"alpha": result.alpha, "alpha_interval": result.alpha_interval,
                          "constant": result.constant}))
        return 0
    print(
        f"vector UV model, C_sim = {result.simulated_constant:.4f} "
        f"(eq. 10: {result.theoretical_constant:.4f}); {result.config.seeds} repetitions, 95% intervals"
    )
    print(f"{'gamma':>6} {'alpha (fit)':>12} {'95% interval':>18} {'2(1-gamma)':>11} "
          f"{'alpha (first passage)':>22}")
    for key, a in result.alpha.items():
        g = float(key)
        lo, hi = result.alpha_interval[key]
        pred = f"{2 * (1 - g):11.3f}" if g < OPTIMAL_EXPONENT else f"{'(>2/3)':>11}"
        interval = f"[{lo:.3f}, {hi:.3f}]"
        print(f"{key:>6} {a:12.3f} {interval:>18} {pred} {result.alpha_first_passage[key]:22.3f}")
    ci = result.constant_spread.interval if result.constant_spread else (math.nan, math.nan)
    print(
        f"fitted C = {result.constant:.4f} [{ci[0]:.4f}, {ci[1]:.4f}] (common T_0 over gamma = "
        f"{', '.join(f'{g:g}' for g in result.drift_gammas)}); paper: 0.2, theory: 0.17"
    )
    return 0


def _experiment_classifier(args: argparse.Namespace) -> int:
    from sgd_dynamics.experiments.label_noise_classifier import ClassifierConfig, run_classifier_study

    seed = _seed(args)
    make = ClassifierConfig.quick if args.quick else ClassifierConfig
    result = run_classifier_study(make(seed=seed, dataset=args.dataset))
    out = result.summary()
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"{result.config.dataset} classifier: test accuracy at the valley start "
          f"{out['test_accuracy']:.3f}, lambda_max {result.lambda_max:.3g}")
    print(f"{'eta':>8} {'beta*':>8} {'95% CI':>20} {'bracketed':>10} {'post-projection acc.':>21}")
    for s in result.sweeps:
        lo, hi = s.best_momentum_interval
        acc = s.test_accuracy.mean(axis=1)
        print(f"{s.lr:8.3g} {s.best_momentum:8.4f} {f'[{lo:.4f}, {hi:.4f}]':>20} {str(s.bracketed):>10} "
              f"{f'{acc.min():.3f}-{acc.max():.3f}':>21}")
    if out["gamma_star"] is None:
        print("gamma*: fewer than two learning rates with an optimum inside the momentum grid")
    else:
        lo, hi = result.exponent_interval
        print(f"gamma* = {result.exponent:.3f}, 95% CI [{lo:.3f}, {hi:.3f}] (2/3 predicted); width "
              f"{result.config.target_width:g} needs ~{result.replicas_needed} replicas per eta or "
              f"~{result.lrs_needed} learning rates")
    print(f"runs not back in the valley: {len(out['not_returned'])}, diverged: {len(out['diverged'])}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from sgd_dynamics.experiments.momentum_study import MomentumConfig, run_momentum
    from sgd_dynamics.report.momentum_report import write_momentum_report

    config = (MomentumConfig.quick() if args.quick else MomentumConfig()).with_seed(_seed(args))
    print(write_momentum_report(run_momentum(config, Path(args.out), force=args.force)))
    return 0
