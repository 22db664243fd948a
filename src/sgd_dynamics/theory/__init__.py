"""Theory of SGD's limiting dynamics: pure NumPy/SciPy, float64, no torch.

Continuous model (002, corrected by ERRATA 002.1-002.4) and the exact discrete-time recursion (ERRATA 002.5).
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
from sgd_dynamics.theory.moments import StationaryMoments
from sgd_dynamics.theory.noise import per_mode_noise
from sgd_dynamics.theory.ou import OrnsteinUhlenbeck
from sgd_dynamics.theory.phase_space import (
    modified_loss,
    probability_current,
    sgd_ornstein_uhlenbeck,
    velocity_autocorrelation,
)

__all__ = [
    # predictions
    "stationary_speed",
    "stationary_speed_from_trace",
    "global_displacement",
    "global_displacement_from_start",
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
