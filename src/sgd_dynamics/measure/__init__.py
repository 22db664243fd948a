"""Measurements on real PyTorch networks (issue 4).

Trajectory tracking during SGD training, Hessian-vector products with extreme eigenpairs and the trace,
per-example gradient-noise statistics,
fits of measured curves (power laws, decays, spectra, hinges) and 2-D loss-surface slices. Every quantity uses
the flat parameter order of ``torch.nn.utils.parameters_to_vector(...)`` of its parameter group: by default
the trainable parameters (all of ``model.parameters()`` when none is frozen), or the group given as
``parameters=`` (see :mod:`~sgd_dynamics.measure.flat_params`). Losses are ``loss_fn(outputs, targets)`` or
closures ``closure_loss(fn)`` for ``fn(model, batch)`` (see :mod:`~sgd_dynamics.measure.objective`).
"""

from sgd_dynamics.measure.fits import (
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
from sgd_dynamics.measure.flat_params import ParameterLayout, selected_parameters
from sgd_dynamics.measure.gradient_noise import (
    GradientNoise,
    NoiseCurvatureFit,
    NoiseEigenpairs,
    fit_noise_to_curvature,
    gradient_noise,
    noise_eigenpairs,
    per_example_gradients,
)
from sgd_dynamics.measure.hessian import (
    HessianEigenpairs,
    HessianOperator,
    TraceEstimate,
    hessian_eigenpairs,
    hessian_trace,
    top_eigenpairs,
    trace_estimate,
)
from sgd_dynamics.measure.landscape import LossSurface, loss_surface
from sgd_dynamics.measure.noise_geometry import (
    NetworkNoiseGeometry,
    network_noise_geometry,
    stationary_variances,
    truncated_alignment,
)
from sgd_dynamics.measure.objective import ClosureLoss, closure_loss
from sgd_dynamics.measure.tracker import LinearSchedule, LogSchedule, TrajectoryTracker

__all__ = [
    # trajectory
    "TrajectoryTracker",
    "LinearSchedule",
    "LogSchedule",
    # Hessian
    "HessianOperator",
    "HessianEigenpairs",
    "hessian_eigenpairs",
    "top_eigenpairs",
    "TraceEstimate",
    "hessian_trace",
    "trace_estimate",
    # gradient noise
    "GradientNoise",
    "gradient_noise",
    "per_example_gradients",
    "NoiseCurvatureFit",
    "fit_noise_to_curvature",
    "NoiseEigenpairs",
    "noise_eigenpairs",
    # noise geometry (Sigma against H)
    "NetworkNoiseGeometry",
    "network_noise_geometry",
    "truncated_alignment",
    "stationary_variances",
    # fits of measured curves
    "PowerLawFit",
    "fit_power_law",
    "LocalSlope",
    "local_slope",
    "ExponentialDecayFit",
    "fit_exponential_decay",
    "OscillationSpectrum",
    "oscillation_spectrum",
    "HingeFit",
    "fit_hinge",
    # loss landscape
    "LossSurface",
    "loss_surface",
    # losses and parameter groups
    "ClosureLoss",
    "closure_loss",
    "selected_parameters",
    # plumbing
    "ParameterLayout",
]
