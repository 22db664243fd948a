"""Theory of SGD's limiting dynamics: pure NumPy/SciPy, float64, no torch.

Continuous model (002, corrected by ERRATA 002.1-002.4 and 002.6) and the exact discrete-time recursion
(ERRATA 002.5), also under random reshuffling (ERRATA 002.3's sampler without replacement).
"""

from sgd_dynamics.theory.diffusion import (
    global_displacement,
    global_displacement_from_start,
    local_exponent,
    mean_trajectory,
    modified_loss_curvature,
    stationary_moments,
    stationary_speed,
    stationary_speed_from_trace,
)
from sgd_dynamics.theory.displacement_parts import DisplacementParts, displacement_decomposition
from sgd_dynamics.theory.moments import StationaryMoments
from sgd_dynamics.theory.noise import per_mode_noise
from sgd_dynamics.theory.ou import OrnsteinUhlenbeck
from sgd_dynamics.theory.phase_space import (
    modified_loss,
    probability_current,
    sgd_ornstein_uhlenbeck,
    velocity_autocorrelation,
)
from sgd_dynamics.theory.reshuffling import (
    RESHUFFLED_STARTS,
    EpochSchedule,
    periodic_stationary_covariance,
    reshuffled_displacement_from_start,
    reshuffled_speed_per_step,
    reshuffled_stationary_speed,
)

__all__ = [
    # predictions
    "stationary_speed",
    "stationary_speed_from_trace",
    "global_displacement",
    "global_displacement_from_start",
    "displacement_decomposition",
    "DisplacementParts",
    "local_exponent",
    "mean_trajectory",
    "stationary_moments",
    "StationaryMoments",
    # modified loss and currents
    "modified_loss_curvature",
    "modified_loss",
    "probability_current",
    "velocity_autocorrelation",
    # general OU
    "OrnsteinUhlenbeck",
    "sgd_ornstein_uhlenbeck",
    # noise
    "per_mode_noise",
    # random reshuffling (epoch shuffling, minibatches without replacement): exact discrete theory
    "EpochSchedule",
    "RESHUFFLED_STARTS",
    "periodic_stationary_covariance",
    "reshuffled_speed_per_step",
    "reshuffled_stationary_speed",
    "reshuffled_displacement_from_start",
]

# Study-level assembly from a measured top-k spectrum (appended: issue 13)
from sgd_dynamics.theory.spectrum_summary import ar2_mean_frequency, bulk_spectrum  # noqa: E402
from sgd_dynamics.theory.study_prediction import (  # noqa: E402
    discrete_speed,
    displacement_curve,
    gibbs_spread_ratio,
    modified_loss_planes,
)

__all__ += [
    "ar2_mean_frequency",
    "bulk_spectrum",
    "discrete_speed",
    "displacement_curve",
    "gibbs_spread_ratio",
    "modified_loss_planes",
]
