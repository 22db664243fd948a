"""NumPy-only estimators shared by ``simulate/`` and ``measure/``: fits, spectra, stationarity tests.

This layer sits above ``theory/`` and below both consumers, so that neither carries its own copy of an
estimator (ARCHITECTURE.md, "Every study has one shape"). It never imports torch.
"""

from sgd_dynamics.estimation.decay import ExponentialDecayFit, fit_exponential_decay, log_linear_decay_rate
from sgd_dynamics.estimation.hinge import HingeFit, fit_hinge
from sgd_dynamics.estimation.power_law import LocalSlope, PowerLawFit, fit_power_law, local_slope
from sgd_dynamics.estimation.spectrum import OscillationSpectrum, oscillation_spectrum

__all__ = [
    # power laws (anomalous diffusion)
    "PowerLawFit",
    "fit_power_law",
    "LocalSlope",
    "local_slope",
    # decays
    "ExponentialDecayFit",
    "fit_exponential_decay",
    "log_linear_decay_rate",
    # spectra
    "OscillationSpectrum",
    "oscillation_spectrum",
    # hinge (003 eq. 14)
    "HingeFit",
    "fit_hinge",
]
