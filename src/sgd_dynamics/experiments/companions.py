"""Companion experiments of the study, where the theory is exact or the ground truth is known.

* :func:`linear_regression_experiment` - linear regression with MSE on one-hot labels (002 Fig. 2): the
  projected position and velocity on the top Hessian eigenvector against eq. 9's mean (continuous, ERRATA
  002.2 time units) and the exact discrete mean, for two momenta; and the exact discrete stationary speed
  and displacement against the measured ones. The loss is ``mean_n ||W x_n + b - onehot(y_n)||^2 / 2``, so
  the Hessian is ``I_c (x) E[x~ x~^T]`` with ``x~ = (x, 1)``, computed exactly.
* :func:`ou_experiment` - a 2-D anisotropic OU process (002 Fig. 3, appendix I.4) with a symmetric drift and
  a diffusion that does not commute with it: original loss, modified loss ``Psi`` (ERRATA 002.4) and the
  stationary probability current, and the measured covariance of a long Euler-Maruyama path against the
  Lyapunov solution.
* :func:`architecture_experiment` - 002 Fig. 1: local and global displacement of resumed training for
  several built-in architectures, with the fitted exponent ``c``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from sgd_dynamics.experiments.datasets import Dataset
from sgd_dynamics.experiments.models import build_model
from sgd_dynamics.experiments.training import make_optimizer, minibatch_indices, mse_onehot, train
from sgd_dynamics.hyper import Hyperparams

__all__ = ["architecture_experiment", "linear_regression_experiment", "ou_experiment", "r_squared"]


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
) -> dict:
    """Fig. 2 on ``dataset`` (inputs flattened), float64, with ``lr = lr_scale / rho_1``.

    Starts at ``theta* + displacement * q_1`` (``theta*`` the least-squares minimiser), far from the minimum
    compared with the stationary spread, so the mean dominates the noise.
    """
    from sgd_dynamics.theory import global_displacement, mean_trajectory, stationary_speed

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
    # exact discrete stationary speed and displacement vs a long run started at the minimum
    beta = momenta[0]
    lr = 8 * lr_scale / rho1
    hp = Hyperparams(lr=lr, momentum=beta, batch_size=64, dataset_size=n)
    xt_t = torch.as_tensor(xt.numpy())
    resid_star = xt_t.numpy() @ w_star - targets
    # per-example gradient of ||W^T x~ - t||^2/2 w.r.t. W is x~ r^T: Sigma = E[(x~ r^T)(x~ r^T)] - g g^T
    g_i = np.einsum("ni,nc->nic", xt.numpy(), resid_star).reshape(n, -1)
    sigma = g_i.T @ g_i / n - np.outer(g_i.mean(0), g_i.mean(0))
    hess = np.kron(second, np.eye(c))  # flat order (i, c) of W^T
    rho_all, q_all = np.linalg.eigh(hess)
    s_all = np.einsum("ij,ik,kj->j", q_all, sigma, q_all)
    model = nn.Linear(d, c).double()
    with torch.no_grad():
        model.weight.copy_(torch.as_tensor(w_star[:-1].T))
        model.bias.copy_(torch.as_tensor(w_star[-1]))
    opt = make_optimizer(model, hp)
    flat = []

    def record(k: int, loss: float) -> None:
        flat.append(torch.cat([model.weight.T.reshape(-1), model.bias]).detach().numpy().copy())

    train(
        model,
        opt,
        x,
        y,
        mse_onehot,
        stationary_steps,
        minibatch_indices(n, 64, "with_replacement", seed + 1),
        on_step=record,
    )
    traj = np.array(flat)
    # parameters ordered (W^T flattened: input-major, class-minor) then the bias: same as the (d+1, c) layout
    burn = stationary_steps // 4
    local = np.sum(np.diff(traj[burn:], axis=0) ** 2, axis=1)
    lags = np.unique(np.geomspace(1, stationary_steps // 8, 20).astype(int))
    meas_disp = np.array(
        [np.mean(np.sum((traj[burn + lag :] - traj[burn:-lag]) ** 2, axis=1)) for lag in lags]
    )
    rho_all = np.maximum(rho_all, 0.0)
    out["stationary"] = {
        "lr": lr,
        "momentum": beta,
        "batch_size": 64,
        "measured_speed": float(local.mean()),
        "predicted_speed": float(stationary_speed(rho_all, s_all, hp, model="discrete")),
        "lags": lags.tolist(),
        "measured_displacement": meas_disp.tolist(),
        "predicted_displacement": global_displacement(rho_all, s_all, hp, lags).tolist(),
    }
    return out


def ou_experiment(steps: int = 40000, dt: float = 2e-3, seed: int = 0, grid_points: int = 40) -> dict:
    """002 Fig. 3: a 2-D OU process with symmetric anisotropic drift and non-commuting diffusion."""
    from sgd_dynamics.theory import OrnsteinUhlenbeck

    v = np.array([[-1.0, 1.0], [1.0, 1.0]]) / np.sqrt(2)
    drift = v @ np.diag([4.0, 1.0]) @ v.T  # eigenvectors (-1,1), (1,1): rates 4, 1
    diffusion = np.diag([1.0, 0.05])  # anisotropic, not aligned with the drift
    kappa = 1.0
    ou = OrnsteinUhlenbeck(drift, diffusion, inverse_temperature=kappa)
    rng = np.random.default_rng(seed)
    chol = np.linalg.cholesky(2 / kappa * diffusion * dt)
    path = np.empty((steps, 2))
    x = np.zeros(2)
    for i in range(steps):  # Euler-Maruyama, dt << 1/4
        x = x - drift @ x * dt + chol @ rng.standard_normal(2)
        path[i] = x
    burn = steps // 10
    measured_cov = np.cov(path[burn:].T)
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
        "trajectory": path[burn::10],
        "measured_covariance": measured_cov,
        "theory_covariance": ou.stationary_covariance(),
        "detailed_balance_violation": ou.detailed_balance_violation(),
    }


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
