"""The continuous model of SGD with momentum on a quadratic: an Ornstein–Uhlenbeck process in phase space.

002 eqs. 7–8 with the corrected noise coefficient (ERRATA 002.1) and time ``t = eta * k`` (ERRATA 002.2).
Per Hessian eigenmode (curvature ``h = rho + lambda``, per-example noise variance ``s``)::

    d(x, v) = -A (x, v) dt + sqrt(2 / kappa) D^(1/2) dW,
    A = [[0, -1], [omega^2, 2 gamma]],   D = [[0, 0], [0, 2 gamma s]],   kappa = S (1 - beta^2),

with ``gamma = (1 - beta) / (eta (1 + beta))`` and ``omega^2 = 2 h / (eta (1 + beta))``.

* Stationary law (eq. 11): ``Var v = s / (S (1 - beta^2))``, ``Cov(x, v) = 0``, ``Var x = Var v / omega^2``.
* Mean (eq. 9): a damped harmonic oscillator per mode, all three regimes, stable at critical damping and
  for ``omega -> 0``.
* Modified loss (eqs. 13–16, decomposition of ERRATA 002.4): ``U = B^-1 = diag(omega^2 / s, 1 / s)`` so
  ``Psi(x, v) = sum_i (omega_i^2 x_i^2 + v_i^2) / (2 s_i)``; with ``s = sigma^2 rho`` this is eq. 15
  (``Psi_theta ~ (rho + lambda) / (rho eta (1 + beta))``) and eq. 16 (``Psi_v ~ v^T H^-1 v``).
* Stationary current (eq. 17): ``J = (v, -omega^2 x) p_ss``, from ``Q = A B - D = [[0, -s], [s, 0]]``.
* Instantaneous speed (eq. 18, valid for any constant ``Sigma``: ERRATA 002.3):
  ``E||delta||^2 = eta^2 tr(Sigma) / (S (1 - beta^2))``.
* Global displacement of the SDE itself (ERRATA 002.6): ``E||Delta_t||^2 = 2 (P_xx - [exp(-A t) P]_xx)`` per
  mode, which saturates at ``2 Var x`` (:mod:`sde_transient`, stable in every regime and for ``h = 0``).
  Eq. 19 as written, with lags ``eta |i - j|`` (ERRATA 002.2), ``eta^2 sum_{i,j=1}^t E[v(eta i) . v(eta j)]``,
  samples the SDE's velocity correlation at integer lags; that sum does not cancel the linear term and grows
  forever (ERRATA 002.6). It is kept, summed in closed form, as :func:`eq19_sampled_sum_per_mode`.
* Covariance from a fixed start, ``int_0^t exp(-A s) (2 D / kappa) exp(-A^T s) ds``, by doubling
  (:func:`sde_transient.sde_covariance_over_time`; Van Loan's block exponential lost all digits by ~30 steps).
* Equipartition (002 G.3): ``E[h x^2 / 2] = E[m v^2 / 2] = eta s / (4 S (1 - beta))`` per mode.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from sgd_dynamics.hyper import Hyperparams
from sgd_dynamics.theory.lag_sums import RootPair, _log_sinhc, complex_expm1, displacement_lag_sum
from sgd_dynamics.theory.moments import StationaryMoments
from sgd_dynamics.theory.ou import OrnsteinUhlenbeck
from sgd_dynamics.theory.sde_transient import propagator_coefficients, step_rates


def drift_matrix(eigenvalues: NDArray[np.float64], hyper: Hyperparams) -> NDArray[np.float64]:
    """Per-mode drift ``A`` of eq. 8, shape ``(modes, 2, 2)``, per unit continuous time."""
    w2 = hyper.natural_frequency(eigenvalues) ** 2
    a = np.zeros(w2.shape + (2, 2))
    a[..., 0, 1] = -1.0
    a[..., 1, 0] = w2
    a[..., 1, 1] = 2 * hyper.damping_rate
    return a


def diffusion_matrix(noise_variances: NDArray[np.float64], hyper: Hyperparams) -> NDArray[np.float64]:
    """Per-mode diffusion ``D`` of eq. 8, shape ``(modes, 2, 2)``.

    The noise covariance rate is ``2 D / kappa``.
    """
    s = np.asarray(noise_variances, dtype=np.float64)
    d = np.zeros(s.shape + (2, 2))
    d[..., 1, 1] = 2 * hyper.damping_rate * s
    return d


def sgd_ornstein_uhlenbeck(hessian: NDArray[np.float64], noise_covariance: NDArray[np.float64],
                           hyper: Hyperparams,
                           minimum: NDArray[np.float64] | None = None) -> OrnsteinUhlenbeck:
    """The full phase-space OU process of eq. 7 for a small dense Hessian and per-example noise covariance.

    State ``(theta, v)`` of dimension ``2 d``; ``Sigma`` need not commute with ``H``.
    """
    hmat = np.asarray(hessian, dtype=np.float64)
    sig = np.asarray(noise_covariance, dtype=np.float64)
    if hmat.ndim != 2 or hmat.shape[0] != hmat.shape[1]:
        raise ValueError(f"hessian must be a square matrix; got shape {hmat.shape}")
    if sig.shape != hmat.shape:
        raise ValueError(f"noise_covariance must have the Hessian's shape {hmat.shape}; got {sig.shape}")
    d = hmat.shape[0]
    eta, beta = hyper.lr, hyper.momentum
    eye = np.eye(d)
    drift = np.block([[np.zeros((d, d)), -eye],
                      [2 / (eta * (1 + beta)) * (hmat + hyper.weight_decay * eye),
                       2 * hyper.damping_rate * eye]])
    diffusion = np.zeros((2 * d, 2 * d))
    diffusion[d:, d:] = 2 * hyper.damping_rate * sig
    mean = np.zeros(2 * d) if minimum is None else np.concatenate([np.asarray(minimum, float), np.zeros(d)])
    return OrnsteinUhlenbeck(drift=drift, diffusion=diffusion, inverse_temperature=hyper.inverse_temperature,
                             mean=mean)


def sde_stationary_moments(eigenvalues: NDArray[np.float64], noise_variances: NDArray[np.float64],
                       hyper: Hyperparams) -> StationaryMoments:
    """Stationary ``kappa^-1 B`` per mode (eq. 11); ``Var x = inf`` for ``h = 0``."""
    var_v = np.asarray(noise_variances, dtype=np.float64) / hyper.inverse_temperature
    w2 = hyper.natural_frequency(eigenvalues) ** 2
    with np.errstate(divide="ignore", over="ignore"):  # Var x beyond float range is inf, as for h = 0
        var_x = np.where(w2 > 0, var_v / np.where(w2 > 0, w2, 1.0), np.inf)
    return StationaryMoments(position_variance=var_x, cross_covariance=np.zeros_like(var_v),
                             velocity_variance=var_v)


def velocity_autocorrelation(eigenvalues: NDArray[np.float64], hyper: Hyperparams,
                             lag_steps: NDArray[np.float64]) -> NDArray[np.float64]:
    """Normalised stationary ``E[v(t + eta l) v(t)] / E[v^2]`` at lag ``eta * l`` (the ``C_l`` of eq. 19).

    ``exp(-gamma tau) (cosh(Omega tau) - gamma sinh(Omega tau) / Omega)``, ``Omega^2 = gamma^2 - omega^2``.
    Shape ``(len(lag_steps), modes)``.
    """
    g, w2 = step_rates(eigenvalues, hyper)
    lag = np.asarray(lag_steps, dtype=np.float64)[:, None]
    e1, e2 = propagator_coefficients(g, w2, lag)
    return e1 - g * e2


def eq19_sampled_sum_per_mode(eigenvalues: NDArray[np.float64], noise_variances: NDArray[np.float64],
                                 hyper: Hyperparams, steps: NDArray[np.int64], *, summed: bool = False
                                 ) -> NDArray[np.float64]:
    """002 eq. 19 as a sampled lag sum: ``eta^2 sum_{i,j=1}^t E[v(eta i) v(eta j)]`` per mode.

    Shape ``(len(steps), modes)``, or ``(len(steps),)`` summed over modes. The SDE's velocity correlation
    sampled at integer lags does not sum to zero, so this grows linearly forever even for a confined mode
    (ERRATA 002.6); it is kept, labelled, for comparison with the paper. The SDE's own displacement is
    :func:`sde_transient.sde_displacement_per_mode`.
    """
    g, w2 = step_rates(eigenvalues, hyper)
    c0 = np.asarray(noise_variances, dtype=np.float64) / hyper.inverse_temperature
    c1 = c0 * velocity_autocorrelation(eigenvalues, hyper, np.array([1.0]))[0]
    # c1 - r2 c0 = -c0 e^{-g} sinhc(a) (g - a) for real roots, with g - a = w2 / (g + a)
    a = np.sqrt(np.maximum((g - np.sqrt(w2)) * (g + np.sqrt(w2)), 0.0))
    c1_minus_r2_c0 = -c0 * np.exp(-g + _log_sinhc(a)) * w2 / (g + a)
    roots = sde_root_pair(eigenvalues, hyper)
    return hyper.lr**2 * displacement_lag_sum(roots, c0, c1, steps, c1_minus_r2_c0, summed=summed)


def sde_mean_trajectory(eigenvalues: NDArray[np.float64], hyper: Hyperparams, steps: NDArray[np.float64],
                    position0: NDArray[np.float64], velocity0: NDArray[np.float64]
                    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Eq. 9: ``E[x], E[v]`` at ``t = eta * k`` for each ``k`` in ``steps`` (rows) and mode (columns).

    ``exp(-A t) = exp(-gamma t) [cosh(Omega t) I - sinh(Omega t) / Omega (A - gamma I)]``.
    """
    g, w2 = step_rates(eigenvalues, hyper)
    k = np.asarray(steps, dtype=np.float64)[:, None]
    x0, v0 = np.broadcast_arrays(np.asarray(position0, float), np.asarray(velocity0, float))
    e1, e2 = propagator_coefficients(g, w2, k)
    eta = hyper.lr
    x = e1 * x0 + e2 * (g * x0 + eta * v0)
    v = e1 * v0 - e2 * (w2 * x0 / eta + g * v0)
    return x, v


def modified_loss_curvature(eigenvalues: NDArray[np.float64], noise_variances: NDArray[np.float64],
                            hyper: Hyperparams) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Diagonal of ``U`` (eq. 14): ``(omega^2 / s, 1 / s)`` per mode.

    So ``Psi = sum (U_x x^2 + U_v v^2) / 2``. The stationary law is ``p_ss ~ exp(-kappa Psi)``. Requires
    ``s > 0`` in every mode.
    """
    s = np.asarray(noise_variances, dtype=np.float64)
    if np.any(s <= 0):
        i = int(np.argmin(s))
        raise ValueError(f"noise_variances[{i}]={float(s[i])!r}: the modified loss needs every s_i > 0 "
                         "(a noiseless mode has a degenerate stationary law)")
    return hyper.natural_frequency(eigenvalues) ** 2 / s, 1 / s


def modified_loss(position: NDArray[np.float64], velocity: NDArray[np.float64],
                  eigenvalues: NDArray[np.float64], noise_variances: NDArray[np.float64],
                  hyper: Hyperparams) -> NDArray[np.float64]:
    """``Psi(x, v)`` of eq. 13 at coordinates in the Hessian eigenbasis (last axis = modes)."""
    ux, uv = modified_loss_curvature(eigenvalues, noise_variances, hyper)
    return 0.5 * np.sum(ux * np.asarray(position) ** 2 + uv * np.asarray(velocity) ** 2, axis=-1)


def probability_current(position: NDArray[np.float64], velocity: NDArray[np.float64],
                        eigenvalues: NDArray[np.float64], noise_variances: NDArray[np.float64],
                        hyper: Hyperparams) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Stationary current of eq. 17, ``(J_x, J_v) = (v, -omega^2 x) p_ss(x, v)``, per mode's phase plane.

    ``p_ss`` is the normalised Gaussian marginal of each mode; arrays broadcast, last axis = modes.
    """
    mom = sde_stationary_moments(eigenvalues, noise_variances, hyper)
    x, v = np.asarray(position, float), np.asarray(velocity, float)
    p = np.exp(-x**2 / (2 * mom.position_variance) - v**2 / (2 * mom.velocity_variance)) / (
        2 * np.pi * np.sqrt(mom.position_variance * mom.velocity_variance))
    w2 = hyper.natural_frequency(eigenvalues) ** 2
    return v * p, -w2 * x * p


def expected_excess_loss(noise_variances: NDArray[np.float64], hyper: Hyperparams) -> float:
    """``E[L_lambda(theta)] - lambda ||mu||^2 / 2 = eta tr(Sigma) / (4 S (1 - beta))`` (002 G.3)."""
    return float(hyper.lr * np.sum(noise_variances) / (4 * hyper.batch_size * (1 - hyper.momentum)))


def expected_kinetic_energy(noise_variances: NDArray[np.float64], hyper: Hyperparams) -> float:
    """``E[m ||v||^2 / 2]`` with mass ``m = eta (1 + beta) / 2`` (002 G.3); equals the excess loss."""
    return float(hyper.mass / 2 * np.sum(noise_variances) / hyper.inverse_temperature)


def sde_root_pair(eigenvalues: NDArray[np.float64], hyper: Hyperparams) -> RootPair:
    """Roots ``exp(eta lambda_pm)`` of the one-step propagator ``exp(-A eta)``.

    See :class:`lag_sums.RootPair`.
    """
    g, w2 = step_rates(eigenvalues, hyper)
    w = np.sqrt(w2)
    overdamped = w <= g
    a_over = np.sqrt(np.maximum((g - w) * (g + w), 0.0))
    theta = np.mod(np.sqrt(np.maximum((w - g) * (w + g), 0.0)), 2 * np.pi)
    theta = np.where(theta > np.pi, 2 * np.pi - theta, theta)
    sgn = np.where(~overdamped & (theta > np.pi / 2), -1.0, 1.0)
    a_under = np.where(sgn < 0, np.pi - theta, theta)
    a = np.where(overdamped, a_over, a_under)
    # overdamped: r1 = exp(-(g - a)) with g - a = w^2 / (g + a) computed without cancellation
    e1_over = -np.expm1(-w2 / (g + a_over))
    e2_over = -np.expm1(-(g + a_over))
    rho = np.exp(-g)
    r1_under = sgn * rho * np.exp(1j * a_under)
    e1_under = np.where(sgn > 0, -complex_expm1(-g + 1j * a_under), 1 - r1_under)
    e1 = np.where(overdamped, e1_over + 0j, e1_under)
    e2 = np.where(overdamped, e2_over + 0j, np.conj(e1_under))
    return RootPair(det=np.exp(-2 * g), sgn=sgn, a=a, overdamped=overdamped, e1=e1, e2=e2)
