"""Hopping on a landscape with exponentially many wells, and the chapter's "phase transition" at ``T_c``.

Chapter 004, Theorem 10 claims that with ``d`` directions to hop in and barriers ``dL`` the total hop rate is
``Gamma ~ d exp(-dL / T)``, that it crosses 1 at ``T_c = dL / log d``, and that there the dynamics changes
phase (frozen, power-law loss decay below; exploring, exponential decay above; ``Var L`` diverging at
``T_c``).

The checkable model: ``U(x) = dL sum_{i=1}^d sin^2(pi x_i)`` (minima on the integer lattice, ``3^d`` of them
in a box of side 3, each with ``2 d`` neighbours behind barriers ``dL``) under
``dx = -grad U dt + sqrt(2 T) dW``. The coordinates are independent, so each hops to a neighbouring minimum
(milestone: reaching ``n +- 1`` from ``n``) at the exact rate ``k(T) = 1 / tau(T)`` with, by the symmetry of
the well (reflecting at its centre),

    tau(T) = (1/T) int_0^1 e^{U(y)/T} int_0^y e^{-U(z)/T} dz dy,         U(y) = dL sin^2(pi y),

and the total rate is ``Gamma = d k(T)``, smooth (analytic) in ``T``:
``log Gamma = log d + log k_0(T) - dL/T`` with Kramers'
``k_0 -> 2 pi dL`` (two barriers, ``omega_min omega_saddle / 2 pi = pi dL`` each) as ``T -> 0``.
``Gamma(T_c) = k_0(T_c)``, not 1: the crossing of 1 is a statement about the time unit, and no quantity of
this model (rate, its derivative, ``Var L``) is singular there.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray
from scipy import integrate

from sgd_dynamics._validation import positive, require

Array = NDArray[np.float64]


def lattice_potential(x: Array, barrier: float) -> Array:
    """``U(x) = dL sum_i sin^2(pi x_i)`` over the last axis."""
    return barrier * np.sum(np.sin(np.pi * np.asarray(x)) ** 2, axis=-1)


def lattice_gradient(x: Array, barrier: float) -> Array:
    """``grad U = dL pi sin(2 pi x)`` per coordinate."""
    return barrier * np.pi * np.sin(2 * np.pi * np.asarray(x))


def hop_rate(barrier: float, temperature: float) -> float:
    """Exact rate ``1 / tau`` at which one coordinate reaches a neighbouring minimum (quadrature)."""
    dL, T = positive(barrier, "barrier"), positive(temperature, "temperature")
    require(dL / T < 300, "temperature", temperature, f"dL / T < 300 (got {dL / T:.4g}): e^(dL/T) overflows")

    def inner(y: float) -> float:
        return integrate.quad(lambda z: math.exp(-dL * math.sin(math.pi * z) ** 2 / T), 0.0, y,
                              epsabs=0, epsrel=1e-12)[0]

    def outer(y: float) -> float:
        return math.exp(dL * math.sin(math.pi * y) ** 2 / T) * inner(y)

    tau = integrate.quad(outer, 0.0, 1.0, points=[0.5], epsabs=0, epsrel=1e-10, limit=200)[0] / T
    return 1.0 / tau


def kramers_hop_rate(barrier: float, temperature: float) -> float:
    """Kramers' ``2 pi dL e^{-dL / T}`` (both neighbours), the ``T -> 0`` limit of :func:`hop_rate`."""
    return 2 * math.pi * barrier * math.exp(-barrier / positive(temperature, "temperature"))


def total_hop_rate(barrier: float, temperature: float, dimension: int) -> float:
    """``Gamma = d k(T)``: hops per unit time of the whole parameter vector."""
    require(isinstance(dimension, (int, np.integer)) and dimension >= 1, "dimension", dimension,
            "an integer >= 1")
    return dimension * hop_rate(barrier, temperature)


def claimed_critical_temperature(barrier: float, dimension: int) -> float:
    """Theorem 10's ``T_c = dL / log d``."""
    require(isinstance(dimension, (int, np.integer)) and dimension >= 2, "dimension", dimension,
            "an integer >= 2")
    return positive(barrier, "barrier") / math.log(dimension)


def stationary_loss_moments(barrier: float, temperature: float, dimension: int) -> tuple[float, float]:
    """``(E_pi L, Var_pi L)`` under Gibbs: ``d`` times one coordinate's (quadrature), smooth in ``T``."""
    dL, T = positive(barrier, "barrier"), positive(temperature, "temperature")

    def moment(k: int) -> float:
        return integrate.quad(lambda y: (dL * math.sin(math.pi * y) ** 2) ** k
                              * math.exp(-dL * math.sin(math.pi * y) ** 2 / T), 0.0, 1.0, epsrel=1e-12)[0]

    z, m1, m2 = moment(0), moment(1), moment(2)
    return dimension * m1 / z, dimension * (m2 / z - (m1 / z) ** 2)
