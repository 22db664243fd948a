"""NumPy-only estimators shared by ``simulate/`` and ``measure/``: fits, spectra, stationarity tests.

This layer sits above ``theory/`` and below both consumers, so that neither carries its own copy of an
estimator (ARCHITECTURE.md, "Every study has one shape"). It never imports torch.
"""

# Exponential decays: the timescale of ``y(t) = A exp(-t / tau) + c`` and the log-linear decay rate
from sgd_dynamics.estimation.decay import (  # isort: skip
    ExponentialDecayFit,
    fit_exponential_decay,
    log_linear_decay_rate,
)
# The hinge of 003 eq. 14: a continuous piecewise-linear fit with a profiled breakpoint
from sgd_dynamics.estimation.hinge import (  # isort: skip
    HingeFit,
    fit_hinge,
)
# Stochastic Lanczos quadrature: ``tr(Sigma f(H))`` and ``tr f(H) / m`` from matrix-vector products only
from sgd_dynamics.estimation.lanczos_quadrature import (  # isort: skip
    QuadratureEstimate,
    SpectralMeasure,
    lanczos_tridiagonal,
    lanczos_quadrature,
    full_spectrum_displacement,
    SpectralDensity,
    spectral_density,
)
# Thick-restart Lanczos for extreme eigenpairs, residuals from the Krylov relation
from sgd_dynamics.estimation.thick_restart import (  # isort: skip
    thick_restart_lanczos,
    lanczos_with_bounds,
    ritz_error_bounds,
    wanted_ritz,
)
# Power laws of anomalous diffusion: the exponent ``c`` of ``||Delta_k||^2 = a k^c`` and its running value
from sgd_dynamics.estimation.power_law import (  # isort: skip
    LocalSlope,
    PowerLawFit,
    fit_power_law,
    local_slope,
)
# Drift/diffusion split of the displacement from ``theta*`` over independent replicas (issue 11 section 2)
from sgd_dynamics.estimation.replica_decomposition import (  # isort: skip
    ReplicaDecomposition,
    replica_decomposition,
    replica_gram,
)
# The exponent of the diffusion part over replicas, with a bootstrap over replicas (issue 11 section 6)
from sgd_dynamics.estimation.replica_exponent import (  # isort: skip
    ReplicaExponent,
    log_log_slope,
    replica_exponent,
)
# Input checks and resampling shared by the estimators: paired 1-D data, bootstrap settings and intervals
from sgd_dynamics.estimation.resampling import (  # isort: skip
    Summary,
    paired_1d,
    check_bootstrap,
    percentile_interval,
    block_resample,
)
# Oscillation spectra of projected trajectories (002 sec. 8, fig. 6, appendix H; ERRATA 002.2)
from sgd_dynamics.estimation.spectrum import (  # isort: skip
    OscillationSpectrum,
    oscillation_spectrum,
)
# Stationarity certificate: has a monitored series stopped trending? (issue 11 section 1)
from sgd_dynamics.estimation.stationarity import (  # isort: skip
    Criterion,
    SettleResult,
    StationarityCertificate,
    StationarityMonitor,
    WindowTrend,
    settle_until_stationary,
    split_into_windows,
    stationarity_certificate,
    window_trend,
)

__all__ = [
    # decay
    "ExponentialDecayFit", "fit_exponential_decay", "log_linear_decay_rate",
    # hinge
    "HingeFit", "fit_hinge",
    # lanczos_quadrature
    "QuadratureEstimate", "SpectralMeasure", "lanczos_tridiagonal", "lanczos_quadrature",
    "full_spectrum_displacement", "SpectralDensity", "spectral_density",
    # thick_restart
    "thick_restart_lanczos", "lanczos_with_bounds", "ritz_error_bounds", "wanted_ritz",
    # power_law
    "LocalSlope", "PowerLawFit", "fit_power_law", "local_slope",
    # replica_decomposition
    "ReplicaDecomposition", "replica_decomposition", "replica_gram",
    # replica_exponent
    "ReplicaExponent", "log_log_slope", "replica_exponent",
    # resampling
    "Summary", "paired_1d", "check_bootstrap", "percentile_interval", "block_resample",
    # spectrum
    "OscillationSpectrum", "oscillation_spectrum",
    # stationarity
    "Criterion", "SettleResult", "StationarityCertificate", "StationarityMonitor", "WindowTrend",
    "settle_until_stationary", "split_into_windows", "stationarity_certificate", "window_trend",
]
