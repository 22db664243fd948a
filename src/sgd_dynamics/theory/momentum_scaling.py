"""Relaxation to a valley, drift along it, and the optimal momentum ``1 - beta = C eta^(2/3)`` (003).

Heavy-ball SGD with label noise in the notation of 003 eq. 1 (``pi`` the auxiliary variable)::

    pi_{k+1} = beta pi_k - grad L(w_k) + eps sigma(w_k) xi_k,        w_{k+1} = w_k + eta pi_{k+1}.

Linearised at a point of the zero-loss valley (003 eq. 133) the noiseless map is ``(pi, w) -> J (pi, w)``
with ``J = [[beta, -H], [eta beta, 1 - eta H]]``. Per Hessian eigenpair ``(lambda, q)`` its eigenvalues are
003 eq. 8, ``kappa_pm = (A +- sqrt(A^2 - 4 beta)) / 2`` with ``A = 1 + beta - eta lambda``, and its
eigenvectors are ``(mu_pm q, q)`` with ``mu_pm = (kappa_pm - 1 + eta lambda) / (beta eta)`` (ERRATA 003.2;
the printed ``mu_pm`` and the factor 2 in the zero-mode partner are wrong). Zero modes have ``lambda = 0``
(ERRATA 003.1): ``kappa_+ = 1`` with ``(0, q)`` and ``kappa_- = beta`` with ``(-(1 - beta)/(beta eta) q, q)``.
``kappa_pm`` are complex iff ``(1 - sqrt(beta))^2 < eta lambda < (1 + sqrt(beta))^2`` and the mode is stable
iff ``0 < eta lambda < 2 (1 + beta)`` (ERRATA 003.3).

With the double scaling ``beta = 1 - C eta^gamma`` (003 eq. 2) the relaxation rates ``1/tau_1`` scale as
the table after eq. 8 and the drift along the valley as ``1/tau_2 ~ eta^(2 - 2 gamma)`` (Corollary 3.5,
eq. 7);
the two meet at ``gamma = 2/3``. For the vector UV model (003 eqs. 9-10), with ``tau_1 = 2 / (1 - beta)``
(the envelope ``sqrt(beta)^k`` of the transverse modes) and
``tau_2 = 2 n P (1 - beta)^2 / (eps^2 mu_2 eta^2)`` (eq. 9 with ``C eta^gamma = 1 - beta``; ERRATA 003.7 for
the exact prefactor ``eta / (1 - beta)``), matching gives ``C = (eps^2 mu_2 / (P n))^(1/3)``. For matrix
sensing (003 eqs. 127-131, re-derived, ERRATA 003.6) ``C^3 = 4 eps^2 <a^2> / (d P)``, i.e.
``C = 0.159 P^(-1/3)`` for ``eps^2 = 0.1``, ``d = 100``, ``<a^2> = 1``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from sgd_dynamics.hyper import Hyperparams

#: The momentum exponent at which relaxation and drift timescales meet (003 Sec. 3.3).
OPTIMAL_EXPONENT: float = 2.0 / 3.0

Regime = Literal["real", "critical", "complex"]


def _validated(lr: float, momentum: float) -> tuple[float, float]:
    hp = Hyperparams(lr=lr, momentum=momentum)
    return float(hp.lr), float(hp.momentum)


def _curvatures(eigenvalues: ArrayLike) -> NDArray[np.float64]:
    lam = np.atleast_1d(np.asarray(eigenvalues, dtype=np.float64))
    if lam.ndim != 1 or not np.all(np.isfinite(lam)):
        raise ValueError(
            f"eigenvalues={lam!r} is invalid: expected a finite 1-D array of Hessian eigenvalues"
        )
    return lam


def momentum_jacobian(hessian: ArrayLike, lr: float, momentum: float) -> NDArray[np.float64]:
    """Jacobian ``J = [[beta, -H], [eta beta, 1 - eta H]]`` of 003 eq. 1 at a valley point (eq. 133).

    Acts on the stacked state ``(pi, w)`` of shape ``(2 D,)``.

    >>> momentum_jacobian([[2.0]], lr=0.1, momentum=0.5)
    array([[ 0.5 , -2.  ],
           [ 0.05,  0.8 ]])
    """
    eta, beta = _validated(lr, momentum)
    h = np.asarray(hessian, dtype=np.float64)
    if h.ndim != 2 or h.shape[0] != h.shape[1]:
        raise ValueError(f"hessian must be a square matrix; got shape {h.shape}")
    eye = np.eye(h.shape[0])
    return np.block([[beta * eye, -h], [eta * beta * eye, eye - eta * h]])


@dataclass(frozen=True)
class JacobianModes:
    """Eigen-decomposition of ``J`` per Hessian eigenvalue ``lambda_i`` (ERRATA 003.2).

    The eigenvector of ``kappa_plus[i]`` is ``(mu_plus[i] q_i, q_i)``; likewise for minus.
    At the critical point ``A^2 = 4 beta`` the two coincide and ``J`` is defective there.
    """

    kappa_plus: NDArray[np.complex128]
    kappa_minus: NDArray[np.complex128]
    mu_plus: NDArray[np.complex128]
    mu_minus: NDArray[np.complex128]


def jacobian_modes(eigenvalues: ArrayLike, lr: float, momentum: float) -> JacobianModes:
    """``kappa_pm`` (003 eq. 8) and the eigenvector coefficients ``mu_pm`` (corrected, ERRATA 003.2).

    >>> m = jacobian_modes([0.0, 2.0], lr=0.1, momentum=0.5)
    >>> m.kappa_plus.round(6).tolist()  # lambda = 0: zero mode; lambda = 2: complex, |kappa| = sqrt(beta)
    [(1+0j), (0.65+0.278388j)]
    >>> round(float(abs(m.kappa_minus[1])) ** 2, 12), float(m.kappa_minus[0].real)
    (0.5, 0.5)
    >>> float(m.mu_minus[0].real)  # -(1 - beta) / (beta eta), no factor 2
    -10.0
    """
    eta, beta = _validated(lr, momentum)
    if beta <= 0:
        raise ValueError(
            f"momentum={momentum!r} is invalid: expected 0 < momentum < 1 (mu_pm divides by beta)"
        )
    lam = _curvatures(eigenvalues)
    a = 1 + beta - eta * lam
    root = np.sqrt((a * a - 4 * beta).astype(np.complex128))
    kp, km = (a + root) / 2, (a - root) / 2
    return JacobianModes(kp, km, (kp - 1 + eta * lam) / (beta * eta), (km - 1 + eta * lam) / (beta * eta))


def spectral_regime(eigenvalues: ArrayLike, lr: float, momentum: float) -> NDArray[np.str_]:
    """``"complex"`` iff ``(1 - sqrt(beta))^2 < eta lambda < (1 + sqrt(beta))^2`` (ERRATA 003.3), else real.

    ``"critical"`` marks the two boundaries, where ``kappa_+ = kappa_-`` and ``J`` is not diagonalisable.

    >>> spectral_regime([0.0, 0.5, 100.0], lr=0.1, momentum=0.81).tolist()
    ['real', 'complex', 'real']
    """
    eta, beta = _validated(lr, momentum)
    x = eta * _curvatures(eigenvalues)
    lo, hi = (1 - math.sqrt(beta)) ** 2, (1 + math.sqrt(beta)) ** 2
    out = np.where((x > lo) & (x < hi), "complex", "real")
    return np.where(
        np.isclose(x, lo, rtol=1e-12, atol=0) | np.isclose(x, hi, rtol=1e-12, atol=0), "critical", out
    )


def is_stable(eigenvalues: ArrayLike, lr: float, momentum: float) -> NDArray[np.bool_]:
    """Transverse mode stability ``0 < eta lambda < 2 (1 + beta)`` (ERRATA 003.3); zero modes are marginal."""
    eta, beta = _validated(lr, momentum)
    x = eta * _curvatures(eigenvalues)
    return (x > 0) & (x < 2 * (1 + beta))


def decay_rates(
    eigenvalues: ArrayLike, lr: float, momentum: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per-step decay rates ``-log |kappa_pm|`` of both modes of each ``lambda`` (0 for ``kappa_+ = 1``).

    In the complex regime both equal ``-log sqrt(beta)``; a negative rate means an unstable mode.
    """
    m = jacobian_modes(eigenvalues, lr, momentum)
    with np.errstate(divide="ignore"):
        return -np.log(np.abs(m.kappa_plus)), -np.log(np.abs(m.kappa_minus))


def relaxation_time(eigenvalues: ArrayLike, lr: float, momentum: float) -> float:
    """``tau_1`` in steps: the slowest decay among all modes except the exact zero modes ``kappa_+ = 1``.

    >>> round(relaxation_time([0.0, 1.0], lr=0.01, momentum=0.9), 4)  # complex regime: -1/log sqrt(beta)
    18.9824
    """
    lam = _curvatures(eigenvalues)
    plus, minus = decay_rates(lam, lr, momentum)
    rates = np.concatenate([plus[lam != 0], minus])
    if np.any(rates <= 0):
        raise ValueError(
            f"eigenvalues={lam.tolist()!r} include an unstable mode for lr={lr}, "
            f"momentum={momentum}: expected 0 <= lr * lambda < 2 (1 + momentum)"
        )
    return float(1.0 / rates.min())


def relaxation_rate_exponents(gamma: float) -> dict[str, tuple[float, ...]]:
    """Exponents ``a`` of ``1/tau_1 ~ eta^a`` under ``beta = 1 - C eta^gamma`` (table after 003 eq. 8).

    >>> relaxation_rate_exponents(0.3)
    {'longitudinal': (0.3,), 'transverse': (0.7, 0.3)}
    >>> relaxation_rate_exponents(0.8)
    {'longitudinal': (0.8,), 'transverse': (0.8, 0.8)}
    """
    if not (0 < gamma < 1):
        raise ValueError(f"gamma={gamma!r} is invalid: expected 0 < gamma < 1")
    if gamma < 0.5:
        return {"longitudinal": (gamma,), "transverse": (round(1 - gamma, 12), gamma)}
    return {"longitudinal": (gamma,), "transverse": (gamma, gamma)}


def drift_rate_exponent(gamma: float) -> float:
    """Exponent of ``1/tau_2 ~ eta^(2 - 2 gamma)`` (003 eq. 7 with ``1 - beta = C eta^gamma``)."""
    if not (0 < gamma < 1):
        raise ValueError(f"gamma={gamma!r} is invalid: expected 0 < gamma < 1")
    return 2 - 2 * gamma


def timescale_exponent(gamma: float) -> float:
    """Predicted exponent ``alpha`` of the training time ``T ~ eta^-alpha``: ``max(2 - 2 gamma, gamma)``.

    The paper's claim; above ``2/3`` simulations measure about 0.6-0.7 instead (ERRATA 003.8).
    """
    return max(drift_rate_exponent(gamma), gamma)


def momentum_from_constant(lr: float, constant: float, exponent: float = OPTIMAL_EXPONENT) -> float:
    """``beta = 1 - C eta^gamma`` (003 eq. 2); raises unless ``0 <= beta < 1``.

    >>> round(momentum_from_constant(1e-3, 0.2), 6)
    0.998
    """
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr={lr!r} is invalid: expected a finite learning rate > 0")
    if not (math.isfinite(constant) and constant > 0):
        raise ValueError(f"constant={constant!r} is invalid: expected a finite C > 0")
    beta = 1 - constant * lr**exponent
    if not (0 <= beta < 1):
        raise ValueError(
            f"constant={constant!r} is invalid with lr={lr!r}: 1 - C lr^{exponent:.4g} = {beta:.4g}, "
            f"expected C <= lr^-{exponent:.4g} = {lr**-exponent:.4g}"
        )
    return beta


def envelope_relaxation_time(lr: float, momentum: float) -> float:
    """Leading-order ``tau_1 = 2 / (1 - beta)`` steps: the ``sqrt(beta)^k`` envelope of the transverse modes.

    This is ``1/tau_1 = (C/2) eta^gamma`` of 003 Sec. 3.4, valid in the complex regime (``gamma > 1/2``).
    """
    _, beta = _validated(lr, momentum)
    return 2.0 / (1.0 - beta)


def uv_drift_time(
    lr: float, momentum: float, width: int, dataset_size: int, label_noise: float, input_variance: float
) -> float:
    """``tau_2 = 2 n P (1 - beta)^2 / (eps^2 mu_2 eta^2)`` steps for the vector UV model (003 eq. 9).

    ``Y = (u, v)`` decays as ``exp(-k / tau_2)``, so ``|u|^2 + |v|^2`` decays at rate ``2 / tau_2``.
    """
    eta, beta = _validated(lr, momentum)
    _check_uv(width, dataset_size, label_noise, input_variance)
    return 2 * width * dataset_size * (1 - beta) ** 2 / (label_noise**2 * input_variance * eta**2)


def uv_optimal_constant(width: int, dataset_size: int, label_noise: float, input_variance: float) -> float:
    """``C = (eps^2 mu_2 / (P n))^(1/3)`` (003 eq. 10) from ``tau_1 = tau_2`` at ``gamma = 2/3``.

    >>> round(uv_optimal_constant(width=10, dataset_size=5, label_noise=0.5, input_variance=1.0), 4)
    0.171
    """
    _check_uv(width, dataset_size, label_noise, input_variance)
    return (label_noise**2 * input_variance / (dataset_size * width)) ** (1 / 3)


def matrix_sensing_optimal_constant(
    label_noise: float, dimension: int, dataset_size: int, entry_variance: float = 1.0
) -> float:
    """``C = (4 eps^2 <a^2> / (d P))^(1/3)`` for matrix sensing (003 eq. 131 corrected, ERRATA 003.6).

    From eq. 7 with ``Sigma = (2 / (d P)) H`` the drift is ``-(eps^2 eta^2 / (4 (1 - beta)^2)) (8 / (d^2
    P)) S Y``;
    with ``S``'s top eigenvalue ``~ d <a^2>`` and ``1/tau_1 = (C/2) eta^gamma`` this gives ``C^3``.

    >>> round(matrix_sensing_optimal_constant(0.1 ** 0.5, 100, 1) , 3)  # coefficient of P^(-1/3)
    0.159
    """
    if not (math.isfinite(label_noise) and label_noise > 0):
        raise ValueError(f"label_noise={label_noise!r} is invalid: expected a finite eps > 0")
    if not (isinstance(dimension, (int, np.integer)) and dimension >= 1):
        raise ValueError(f"dimension={dimension!r} is invalid: expected an integer >= 1")
    if not (isinstance(dataset_size, (int, np.integer)) and dataset_size >= 1):
        raise ValueError(f"dataset_size={dataset_size!r} is invalid: expected an integer >= 1")
    if not (math.isfinite(entry_variance) and entry_variance > 0):
        raise ValueError(f"entry_variance={entry_variance!r} is invalid: expected a finite <a^2> > 0")
    return (4 * label_noise**2 * entry_variance / (dimension * dataset_size)) ** (1 / 3)


def _check_uv(width: int, dataset_size: int, label_noise: float, input_variance: float) -> None:
    if not (isinstance(width, (int, np.integer)) and width >= 1):
        raise ValueError(f"width={width!r} is invalid: expected an integer >= 1")
    if not (isinstance(dataset_size, (int, np.integer)) and dataset_size >= 1):
        raise ValueError(f"dataset_size={dataset_size!r} is invalid: expected an integer >= 1")
    if not (math.isfinite(label_noise) and label_noise > 0):
        raise ValueError(f"label_noise={label_noise!r} is invalid: expected a finite eps > 0")
    if not (math.isfinite(input_variance) and input_variance > 0):
        raise ValueError(f"input_variance={input_variance!r} is invalid: expected a finite mu_2 > 0")
