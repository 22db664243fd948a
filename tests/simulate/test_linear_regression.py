"""Linear-regression SGD with real minibatches vs the exact discrete theory fed with the measured noise."""

import numpy as np
import scipy.linalg as sl
import torch

from sgd_dynamics.hyper import Hyperparams
from sgd_dynamics.simulate import simulate_linear_regression_sgd, teacher_regression

N, D, S, ETA, BETA, WD = 128, 4, 8, 0.02, 0.9, 0.01
DATA = teacher_regression(N, D, 1.0, seed=0, spectrum=[2.0, 1.0, 0.5, 0.2])


def hyper(sampler="with_replacement", **kw):
    base = dict(lr=ETA, momentum=BETA, batch_size=S, weight_decay=WD, dataset_size=N, sampler=sampler)
    return Hyperparams(**{**base, **kw})


def reference_minimum_and_noise(X, y, wd):
    """Ridge by an augmented least-squares solve; Sigma from per-example gradients one by one."""
    n, d = X.shape
    aug_x = np.vstack([X / np.sqrt(n), np.sqrt(wd) * np.eye(d)])
    aug_y = np.concatenate([y / np.sqrt(n), np.zeros(d)])
    mu = np.linalg.lstsq(aug_x, aug_y, rcond=None)[0]
    grads = np.array([-(y[i] - X[i] @ mu) * X[i] for i in range(n)])
    return mu, np.cov(grads.T, bias=True)


def exact_second_moments(X, sigma, hp, multiplicative=True):
    """Stationary Cov of (theta - mu, v): P = M P M^T + W(Sigma_eff), full d-dim discrete Lyapunov.

    With i.i.d. sampling the minibatch noise is exactly Cov_i[g_i(theta)] / S; averaged over the stationary
    theta = mu + delta it is Sigma + (1/N) sum_i (x_i^T P_xx x_i) x_i x_i^T - H P_xx H (linear-regression
    noise is multiplicative), so the fixed point is iterated to convergence.
    """
    n, d = X.shape
    h = X.T @ X / n
    eta, beta = hp.lr, hp.momentum
    hw = h + hp.weight_decay * np.eye(d)
    m = np.block([[np.eye(d) - eta * hw, eta * beta * np.eye(d)], [-hw, beta * np.eye(d)]])

    def solve(sig):
        return sl.solve_discrete_lyapunov(m, np.kron([[eta**2, eta], [eta, 1.0]], sig / hp.batch_size))

    p = solve(sigma)
    for _ in range(60 if multiplicative else 0):
        pxx = p[:d, :d]
        extra = np.einsum("n,ni,nj->ij", np.einsum("ni,ij,nj->n", X, pxx, X), X, X) / n - h @ pxx @ h
        p = solve(sigma + extra)
    return p


def test_reported_minimum_and_noise_covariance():
    run = simulate_linear_regression_sgd(DATA.X, DATA.y, hyper=hyper(), steps=1, replicas=1, seed=0)
    mu, sigma = reference_minimum_and_noise(DATA.X, DATA.y, WD)
    np.testing.assert_allclose(run.minimum, mu, rtol=1e-10)
    np.testing.assert_allclose(run.noise_covariance, sigma, rtol=1e-10, atol=1e-14)
    q = run.hessian_eigenvectors
    np.testing.assert_allclose(q @ np.diag(run.hessian_eigenvalues) @ q.T, DATA.X.T @ DATA.X / N, atol=1e-12)
    np.testing.assert_allclose(run.noise_variances, [qi @ sigma @ qi for qi in q.T], rtol=1e-10)


def test_full_batch_without_replacement_is_torch_heavy_ball():
    """S = N without replacement is deterministic full-batch momentum GD: compare with torch.optim.SGD."""
    hp = Hyperparams(lr=0.05, momentum=0.8, batch_size=N, weight_decay=0.1, dataset_size=N,
                     sampler="without_replacement")
    theta0 = np.array([1.0, -2.0, 0.5, 0.0])
    run = simulate_linear_regression_sgd(DATA.X, DATA.y, hyper=hp, steps=25, replicas=2, seed=0,
                                         start=(theta0, np.zeros(D)))
    w = torch.tensor(theta0, requires_grad=True)
    opt = torch.optim.SGD([w], lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay)
    X, y = torch.tensor(DATA.X), torch.tensor(DATA.y)
    for _ in range(25):
        opt.zero_grad()
        (0.5 * ((y - X @ w) ** 2).mean()).backward()
        opt.step()
    got = run.minimum + run.hessian_eigenvectors @ run.trajectory.position[-1, 0]
    np.testing.assert_allclose(got, w.detach().numpy(), rtol=1e-10)
    buf = opt.state[w]["momentum_buffer"].numpy()
    np.testing.assert_allclose(run.hessian_eigenvectors @ run.trajectory.velocity[-1, 1], -buf, rtol=1e-10)


def test_with_replacement_matches_exact_theory(assert_mc_mean):
    hp = hyper()
    run = simulate_linear_regression_sgd(DATA.X, DATA.y, hyper=hp, steps=400, replicas=4000, seed=3,
                                         start="stationary")
    _, sigma = reference_minimum_and_noise(DATA.X, DATA.y, WD)
    q = run.hessian_eigenvectors
    p = exact_second_moments(DATA.X, sigma, hp)
    p_gauss = exact_second_moments(DATA.X, sigma, hp, multiplicative=False)
    rot = sl.block_diag(q, q)
    p_eig = rot.T @ p @ rot
    speed = ETA**2 * np.trace(p[D:, D:])
    local = run.trajectory.local_sq_displacement()
    gauss_speed = ETA**2 * np.trace(p_gauss[D:, D:])
    print(f"LR with replacement: speed {local[-1].mean():.4e} vs exact {speed:.4e}; the multiplicative-noise "
          f"term adds {speed / gauss_speed - 1:+.1%} to the Gaussian-noise prediction")
    for k in (-1, -200):
        assert_mc_mean(local[k], speed, what=f"speed at record {k}")
        x = run.trajectory.position[k]
        for i in range(D):
            assert_mc_mean(x[:, i] ** 2, p_eig[i, i], what=f"Var x mode {i}")
    # E||theta_{k+t} - theta_k||^2 at lag t = 50: 2 tr(P_xx - (M^t P)_xx)
    hw = DATA.X.T @ DATA.X / N + WD * np.eye(D)
    m = np.block([[np.eye(D) - ETA * hw, ETA * BETA * np.eye(D)], [-hw, BETA * np.eye(D)]])
    lagged = np.linalg.matrix_power(m, 50) @ p
    d = run.trajectory.position[-1] - run.trajectory.position[-51]
    assert_mc_mean(np.sum(d**2, axis=1), 2 * np.trace(p[:D, :D] - lagged[:D, :D]), what="E||Delta_50||^2")


def test_without_replacement_lowers_the_speed_at_high_momentum():
    """ERRATA 002.3: epoch shuffling anti-correlates the noise within an epoch; measured, not predicted."""
    speeds = {}
    for sampler in ("with_replacement", "without_replacement"):
        run = simulate_linear_regression_sgd(DATA.X, DATA.y, hyper=hyper(sampler), steps=400, replicas=2000,
                                             seed=4, start="stationary")
        # average over the last 4 epochs (N/S = 16 steps each) per replica: independent across replicas
        local = run.trajectory.local_sq_displacement()[-64:].mean(axis=0)
        speeds[sampler] = (local.mean(), local.std(ddof=1) / np.sqrt(local.size))
    (w, se_w), (wo, se_wo) = speeds["with_replacement"], speeds["without_replacement"]
    ratio = wo / w
    se_ratio = ratio * np.hypot(se_w / w, se_wo / wo)
    print(f"LR speed without/with replacement at beta={BETA}, N/S={N // S}: {ratio:.3f} +- {se_ratio:.3f}")
    assert ratio < 1 - 5 * se_ratio
