"""Fits of measured curves, re-exported from :mod:`sgd_dynamics.estimation` where they now live.

The estimators are NumPy/SciPy only and sit below both ``simulate/`` and ``measure/``; this module keeps
``from sgd_dynamics.measure.fits import fit_power_law`` and ``from sgd_dynamics.measure import ...``
working.
"""

from sgd_dynamics.estimation import (
    ExponentialDecayFit,
    HingeFit,
    LocalSlope,
    OscillationSpectrum,
    PowerLawFit,
    fit_exponential_decay,
    fit_hinge,
    fit_power_law,
    local_slope,
    oscillation_spectrum,
)

__all__ = [
    "ExponentialDecayFit",
    "HingeFit",
    "LocalSlope",
    "OscillationSpectrum",
    "PowerLawFit",
    "fit_exponential_decay",
    "fit_hinge",
    "fit_power_law",
    "local_slope",
    "oscillation_spectrum",
]
