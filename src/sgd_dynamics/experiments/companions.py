"""Companion experiments of the study, where the theory is exact or the ground truth is known.

* :func:`linear_regression_experiment` - linear regression with MSE on one-hot labels (002 Fig. 2): the
  projected position and velocity on the top Hessian eigenvector against eq. 9's mean (continuous, ERRATA
  002.2 time units) and the exact discrete mean, for two momenta; and the exact discrete stationary speed
  and displacement against the measured ones. The loss is ``mean_n ||W x_n + b - onehot(y_n)||^2 / 2``, so
  the Hessian is ``I_c (x) E[x~ x~^T]`` with ``x~ = (x, 1)``, computed exactly.
* :func:`ou_experiment` - a 2-D anisotropic OU process (002 Fig. 3, appendix I.4) with a symmetric drift and
  a diffusion that does not commute with it: original loss, modified loss ``Psi`` (ERRATA 002.4) and the
  stationary probability current, and the covariance of many independent exact-transition paths (with
  standard errors, :func:`sample_covariance`) against the Lyapunov solution.
* :func:`architecture_experiment` - 002 Fig. 1: local and global displacement of resumed training for
  several built-in architectures, with the fitted exponent ``c``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from sgd_dynamics._validation import require
from sgd_dynamics.experiments.datasets import Dataset
from sgd_dynamics.experiments.models import build_model
from sgd_dynamics.experiments.training import make_optimizer, minibatch_indices, mse_onehot, train
from sgd_dynamics.hyper import Hyperparams

__all__ = ["architecture_experiment", "linear_regression_experiment", "mean_sq_displacement", "ou_experiment",
           "r_squared", "sample_covariance"]


def r_squared(measured: np.ndarray, predicted: np.ndarray) -> float:
    """Coefficient of determination ``1 - SS_res / SS_tot`` of a prediction.

    >>> r_squared(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0]))
    1.0
    """
    measured = np.asarray(measured, np.float64)
    ss_res = float(np.sum((measured - predicted) ** 2))
    ss_tot = float(np.sum((measured - measured.mean()) ** 2))
    return 1.0 - ss_res / ss_tot


def linear_regression_experiment(
    dataset: Dataset,
    momenta: tuple[float, ...] = (0.9, 0.99),
    lr_scale: float = 0.01,
    batch_size: int = 512,
    steps: int = 600,
    stationary_steps: int = 4000,
    displacement: float = 1.0,
    seed: int = 0,
    replicas: int = 16,
) -> dict:
    """Fig. 2 on ``dataset`` (inputs flattened), float64, with ``lr = lr_scale / rho_1``.

    Starts at ``theta* + displacement * q_1`` (``theta*`` the least-squares minimiser), far from the minimum
    compared with the stationary spread, so the mean dominates the noise. The stationary part runs
    ``replicas`` independent chains of ``stationary_steps`` (the first quarter discarded).
    """
    from sgd_dynamics.theory import mean_trajectory

    x = torch.as_tensor(dataset.x_train, dtype=torch.float64).reshape(len(dataset.x_train), -1)
    y = torch.as_tensor(dataset.y_train)
    n, d = x.shape
    c = dataset.num_classes
    xt = torch.cat([x, torch.ones(n, 1, dtype=torch.float64)], 1)
    second = (xt.T @ xt / n).numpy()
    evals, evecs = np.linalg.eigh(second)
    rho1, u1 = float(evals[-1]), evecs[:, -1]
    targets = nn.functional.one_hot(y, c).double().numpy()
    # The minimum-norm minimiser: inputs may leave directions untouched (digits has constant pixels), where
    # the Hessian is singular; no gradient or noise ever acts along them, so any minimiser is as good.
    w_star = np.linalg.lstsq(second, xt.numpy().T @ targets / n, rcond=None)[0]  # (d + 1, c)
    # q_1 lives in the (degenerate) top eigenspace I_c (x) u_1; pick the class whose offset is largest
    cls = 0
    out: dict = {
        "rho1": rho1,
        "class": cls,
        "runs": {},
        "r2_continuous": [],
        "r2_discrete": [],
        "momenta": [],
    }
    for beta in momenta:
        lr = lr_scale / rho1
        hp = Hyperparams(lr=lr, momentum=beta, batch_size=batch_size, dataset_size=n)
        model = nn.Linear(d, c).double()
        start = w_star.copy()
        start[:, cls] += displacement * u1
        with torch.no_grad():
            model.weight.copy_(torch.as_tensor(start[:-1].T))
            model.bias.copy_(torch.as_tensor(start[-1]))
        opt = make_optimizer(model, hp)
        pos, vel = [], []

        def proj(model=model) -> float:
            wb = torch.cat([model.weight, model.bias[:, None]], 1).detach().numpy().T  # (d + 1, c)
            return float(u1 @ (wb[:, cls] - w_star[:, cls]))

        def vproj(opt=opt, model=model) -> float:
            bufs = [opt.state[p].get("momentum_buffer") for p in (model.weight, model.bias)]
            if bufs[0] is None:
                return 0.0
            v = -torch.cat([bufs[0], bufs[1][:, None]], 1).detach().numpy().T
            return float(u1 @ v[:, cls])

        pos.append(proj())
        vel.append(vproj())

        def on_step(k: int, loss: float, pos=pos, vel=vel, proj=proj, vproj=vproj) -> None:
            pos.append(proj())
            vel.append(vproj())

        batches = minibatch_indices(n, batch_size, "with_replacement", seed)
        train(model, opt, x, y, mse_onehot, steps, batches, on_step=on_step)
        pos_a, vel_a = np.array(pos), np.array(vel)
        t = np.arange(0, steps + 1)
        # t = eta * k in continuous time (ERRATA 002.2): mean_trajectory takes steps and converts itself
        pc, vc = mean_trajectory([rho1], hp, t, [pos_a[0]], [vel_a[0]], model="continuous")
        pd, vd = mean_trajectory([rho1], hp, t, [pos_a[0]], [vel_a[0]], model="discrete")
        label = f"momentum {beta:g}"
        out["runs"][label] = {
            "steps": t,
            "position": pos_a,
            "velocity": vel_a,
            "position_theory": pc[:, 0],
            "velocity_theory": vc[:, 0],
            "position_discrete": pd[:, 0],
            "velocity_discrete": vd[:, 0],
        }
        out["r2_continuous"].append(r_squared(pos_a, pc[:, 0]))
        out["r2_discrete"].append(r_squared(pos_a, pd[:, 0]))
        out["momenta"].append(beta)
        out["lr"] = lr
    beta = momenta[0]
    hp = Hyperparams(lr=8 * lr_scale / rho1, momentum=beta, batch_size=64, dataset_size=n)
    out["stationary"] = _stationary_linear_regression(xt, targets, w_star, hp, stationary_steps, replicas,
                                                      seed + 1)
    return out


def _stationary_linear_regression(xt: torch.Tensor, targets: np.ndarray, w_star: np.ndarray, hp: Hyperparams,
                                  steps: int, replicas: int, seed: int) -> dict:
    """Exact discrete stationary speed and displacement against ``replicas`` chains started at ``W*``.

    The chains are one ``torch.optim.SGD`` over stacked ``(replicas, d + 1, c)`` parameters (the update is
    elementwise, so each replica is an independent SGD run with its own i.i.d. minibatches), fed the exact
    minibatch gradient. The theory's
    noise includes the multiplicative part of least squares
    (:func:`~sgd_dynamics.theory.least_squares_stationary_noise`); the one of ``Sigma*`` alone is kept
    beside it (it is 0.4-0.8% low on digits). Standard errors are over replicas.
    """
    from sgd_dynamics.theory import global_displacement, least_squares_stationary_noise, stationary_speed

    n = xt.shape[0]
    tt = torch.as_tensor(targets)
    w = torch.nn.Parameter(torch.as_tensor(w_star).repeat(replicas, 1, 1))
    opt = torch.optim.SGD([w], lr=hp.lr, momentum=hp.momentum)
    gen = torch.Generator().manual_seed(int(seed))
    burn = steps // 4
    # displacements from W* in float32: 1e-7 relative error on differences of size ~1e-3, a quarter the memory
    traj = np.empty((steps - burn, replicas, w_star.size), np.float32)
    start = w_star.reshape(-1)
    for k in range(steps):
        idx = torch.randint(n, (replicas, hp.batch_size), generator=gen)
        xb = xt[idx]
        # each replica's minibatch-mean gradient of ||W^T x - t||^2 / 2, exact (no autograd graph to build)
        w.grad = torch.bmm(xb.transpose(1, 2), torch.bmm(xb, w.detach()) - tt[idx]) / hp.batch_size
        opt.step()
        if k >= burn:
            traj[k - burn] = w.detach().reshape(replicas, -1).numpy() - start
    lags = np.unique(np.geomspace(1, steps // 8, 20).astype(int))
    per_replica = np.array([mean_sq_displacement(traj[:, r], lags) for r in range(replicas)]).T
    mean, stderr = per_replica.mean(1), per_replica.std(1, ddof=1) / np.sqrt(replicas)
    noise = least_squares_stationary_noise(xt.numpy(), xt.numpy() @ w_star - targets, hp)
    rho, s, s0 = noise.eigenvalues, noise.noise_variances, noise.minimiser_noise_variances
    return {
        "lr": hp.lr,
        "momentum": hp.momentum,
        "batch_size": hp.batch_size,
        "replicas": replicas,
        "measured_speed": float(mean[0]),
        "measured_speed_stderr": float(stderr[0]),
        "predicted_speed": float(stationary_speed(rho, s, hp, model="discrete")),
        "predicted_speed_minimiser_noise": float(stationary_speed(rho, s0, hp, model="discrete")),
        "lags": lags.tolist(),
        "measured_displacement": mean.tolist(),
        "measured_displacement_stderr": stderr.tolist(),
        "predicted_displacement": global_displacement(rho, s, hp, lags).tolist(),
        "predicted_displacement_minimiser_noise": global_displacement(rho, s0, hp, lags).tolist(),
    }


def mean_sq_displacement(path: np.ndarray, lags: np.ndarray) -> np.ndarray:
    """``mean_k ||x_{k+l} - x_k||^2`` of one path ``(T, m)`` for each lag ``l`` (integers in ``1..T-1``).

    ``|x_{k+l}|^2 + |x_k|^2 - 2 x_{k+l} . x_k`` summed over ``k``, the cross term for all lags at once by
    FFT (zero-padded autocorrelation), in float64.

    >>> x = np.random.default_rng(0).standard_normal((50, 3))
    >>> direct = [np.mean(np.sum((x[l:] - x[:-l]) ** 2, axis=1)) for l in (1, 7, 49)]
    >>> bool(np.allclose(mean_sq_displacement(x, np.array([1, 7, 49])), direct, rtol=1e-12))
    True
    """
    x = np.asarray(path, np.float64)
    t = x.shape[0]
    lags = np.asarray(lags, int)
    require(bool(np.all((lags >= 1) & (lags < t))), "lags", lags, f"integers in 1..{t - 1}")
    spec = np.fft.rfft(x, n=2 * t, axis=0)
    cross = np.fft.irfft(np.sum(np.abs(spec) ** 2, axis=1), n=2 * t)[lags]
    sq = np.concatenate([[0.0], np.cumsum(np.sum(x**2, axis=1))])
    # sum_{k<T-l} |x_{k+l}|^2 = sq[T] - sq[l];  sum_{k<T-l} |x_k|^2 = sq[T-l]
    return (sq[t] - sq[lags] + sq[t - lags] - 2 * cross) / (t - lags)


def ou_experiment(seed: int = 0, grid_points: int = 40, replicas: int = 20000, relax_time: float = 20.0,
                  dt: float = 0.5) -> dict:
    """002 Fig. 3: a 2-D OU process with symmetric anisotropic drift and non-commuting diffusion.

    The stationary covariance is measured on ``replicas`` independent paths started at the mean and run
    for ``relax_time`` (20 time units: the covariance relaxes at rate 2 x the slowest drift rate 1, so the
    start is forgotten to ``e^-40``) with the exact OU transition (no discretisation bias at any ``dt``);
    each entry gets its standard error over replicas. The figure's trajectory is one more exact path.
    ``euler_maruyama_covariance`` is, for reference, the exact stationary covariance of the
    Euler-Maruyama chain at the former ``dt = 2e-3`` (its bias is ``O(dt ||A||)``: +0.16% here).
    """
    from scipy.linalg import solve_discrete_lyapunov

    from sgd_dynamics.simulate import simulate_ou_process
    from sgd_dynamics.theory import OrnsteinUhlenbeck

    v = np.array([[-1.0, 1.0], [1.0, 1.0]]) / np.sqrt(2)
    drift = v @ np.diag([4.0, 1.0]) @ v.T  # eigenvectors (-1,1), (1,1): rates 4, 1
    diffusion = np.diag([1.0, 0.05])  # anisotropic, not aligned with the drift
    kappa = 1.0
    ou = OrnsteinUhlenbeck(drift, diffusion, inverse_temperature=kappa)
    rate = 2 / kappa * diffusion
    seeds = np.random.SeedSequence(seed).spawn(2)
    ends = simulate_ou_process(drift, rate, dt=dt, n_steps=round(relax_time / dt), replicas=replicas,
                               seed=seeds[0], start="mean", method="exact",
                               record_every=round(relax_time / dt)).state[-1]
    measured_cov, cov_stderr = sample_covariance(ends)
    path = simulate_ou_process(drift, rate, dt=0.02, n_steps=4000, seed=seeds[1], start="mean",
                               method="exact").state[:, 0]
    em_dt = 2e-3
    euler = solve_discrete_lyapunov(np.eye(2) - drift * em_dt, rate * em_dt)
    extent = 3.5 * np.sqrt(np.max(np.diag(ou.stationary_covariance())))
    g = np.linspace(-extent, extent, grid_points)
    gx, gy = np.meshgrid(g, g)
    pts = np.stack([gx, gy], -1)
    original = 0.5 * np.einsum("...i,ij,...j->...", pts, drift, pts)
    modified = ou.modified_potential(pts)
    current = ou.probability_current(pts)
    return {
        "grid_x": gx,
        "grid_y": gy,
        "original": original,
        "modified": modified,
        "current_x": current[..., 0],
        "current_y": current[..., 1],
        "trajectory": path[400:],
        "replicas": replicas,
        "measured_covariance": measured_cov,
        "measured_covariance_stderr": cov_stderr,
        "theory_covariance": ou.stationary_covariance(),
        "euler_maruyama_covariance": euler,
        "detailed_balance_violation": ou.detailed_balance_violation(),
    }


def sample_covariance(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unbiased covariance of independent ``samples`` ``(R, k)`` and the standard error of each entry.

    The standard error is that of the mean of the centred products ``(x_i - xbar_i)(x_j - xbar_j)``
    over the ``R`` samples (from the samples alone: no Gaussian assumption).

    >>> cov, se = sample_covariance(np.random.default_rng(0).standard_normal((40000, 2)))
    >>> bool(np.all(np.abs(cov - np.eye(2)) < 4 * se)), bool(abs(se[0, 0] - np.sqrt(2 / 40000)) < 1e-3)
    (True, True)
    """
    x = np.asarray(samples, np.float64)
    r = x.shape[0]
    require(x.ndim == 2 and r >= 3, "samples.shape", x.shape, "(R, k) with R >= 3")
    c = x - x.mean(0)
    products = c[:, :, None] * c[:, None, :]
    return products.sum(0) / (r - 1), products.std(0, ddof=1) / np.sqrt(r) * r / (r - 1)


def architecture_experiment(
    dataset: Dataset,
    architectures: tuple[str, ...],
    loss_fn,
    hyper: Hyperparams,
    pretrain_epochs: int,
    pretrain_lr: float,
    steps: int,
    seed: int = 0,
    progress=None,
) -> dict:
    """002 Fig. 1: resumed-training displacement of several architectures (each pretrained briefly)."""
    from sgd_dynamics.estimation import fit_power_law
    from sgd_dynamics.measure import TrajectoryTracker

    x = torch.as_tensor(dataset.x_train)
    y = torch.as_tensor(dataset.y_train)
    n = len(x)
    out: dict = {"curves": {}, "c": {}}
    for name in architectures:
        model = build_model(name, dataset.input_shape, dataset.num_classes, seed)
        opt = make_optimizer(model, hyper)
        anneal = pretrain_epochs * (n // hyper.batch_size)

        def lr_at(k: int, anneal=anneal) -> float:
            return hyper.lr + 0.5 * (pretrain_lr - hyper.lr) * (
                1 + np.cos(np.pi * min(k, anneal) / max(anneal, 1))
            )

        train(
            model,
            opt,
            x,
            y,
            loss_fn,
            anneal + steps // 2,
            minibatch_indices(n, hyper.batch_size, "without_replacement", seed),
            lr_at=lr_at,
        )
        for g in opt.param_groups:
            g["lr"] = hyper.lr
        tracker = TrajectoryTracker(model, opt)
        train(
            model,
            opt,
            x,
            y,
            loss_fn,
            steps,
            minibatch_indices(n, hyper.batch_size, hyper.sampler, seed + 1),
            on_step=lambda k, loss, tracker=tracker: tracker.record(loss=loss),
        )
        h = tracker.history
        t = np.arange(1, steps + 1)
        fit = fit_power_law(
            t,
            h["global_sq_displacement"],
            window=(steps / 3, steps),
            n_bootstrap=200,
            block_length=max(1, steps // 40),
        )
        out["curves"][name] = {
            "steps": t,
            "local": h["local_sq_displacement"],
            "global": h["global_sq_displacement"],
            "fit": fit.predict(t),
            "c": np.asarray(fit.exponent),
        }
        out["c"][name] = [fit.exponent, *fit.exponent_interval]
        if progress is not None:
            progress.update(1)
    return out
