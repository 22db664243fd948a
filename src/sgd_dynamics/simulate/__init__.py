"""Vectorised, seeded simulators with known ground truth (issue 3).

Trajectories come in the shape the real-network tracker produces (:class:`Trajectory`).
"""

# Compiled first-passage times of a 1-D overdamped diffusion, for escapes that take billions of steps
from sgd_dynamics.simulate.first_passage import (  # isort: skip
    BIAS_FRACTION,
    DEFAULT_MAX_STEPS,
    TimeStep,
    brownian_bridge_hitting_time,
    choose_time_step,
    escape_time_step,
    euler_bias,
    first_passage_times_1d,
    modelled_bias,
)
# Label-noise SGD with heavy-ball momentum (003 eq. 1): UV models and matrix sensing, many replicas
from sgd_dynamics.simulate.label_noise import (  # isort: skip
    LabelNoiseModel,
    TwoLayerUV,
    MatrixSensing,
    MatrixSensingEnsemble,
    LabelNoiseState,
    LabelNoiseTrajectory,
    label_noise_step,
    simulate_label_noise,
    project_to_uv_valley,
    descend_to_valley,
)
# Langevin samplers on potentials, first-passage times and annealing schedules
from sgd_dynamics.simulate.langevin import (  # isort: skip
    annealing_schedule,
    euler_maruyama,
    MALAResult,
    mala,
    baoab,
    FirstPassage,
    first_passage_times,
    torch_gradient,
)
# SGD with momentum on linear regression with real minibatches (the setting of 002 Figs. 2-3)
from sgd_dynamics.simulate.linear_regression import (  # isort: skip
    RegressionDataset,
    teacher_regression,
    LinearRegressionRun,
    gradient_noise_at_minimum,
    simulate_linear_regression_sgd,
)
# Sampling distribution of one SGD mode's FFT frequency, by simulating its exact AR(2) recursion
from sgd_dynamics.simulate.mode_spectrum import (  # isort: skip
    FrequencySpread,
    ar2_frequency_spread,
    ar2_paths,
)
# Blocks of standard normal draws, compiled: NumPy's numbers and generator state, about 2x sooner
from sgd_dynamics.simulate.normal_draws import (  # isort: skip
    COMPILED_MIN_DRAWS,
    fill_standard_normal,
)
# The phase-space SDE of SGD with momentum (002 eqs. 6-8, corrected by ERRATA 002.1/002.2), and OU samplers
from sgd_dynamics.simulate.phase_space_sde import (  # isort: skip
    METHODS,
    ou_transition,
    LinearGaussianStep,
    exact_ou_step,
    euler_maruyama_step,
    phase_space_drift,
    velocity_diffusion_rate,
    phase_space_ou,
    OUPath,
    simulate_ou_process,
    simulate_phase_space_sde,
)
# Discrete SGD with heavy-ball momentum on a quadratic with Gaussian gradient noise: the exact model
from sgd_dynamics.simulate.quadratic import (  # isort: skip
    positive_count,
    noise_variances_array,
    covariance_root,
    GaussianQuadraticModel,
    initial_state,
    recorded_steps,
    simulate_quadratic_sgd,
    simulate_quadratic_sgd_summary,
)
# Discrete SGD with momentum on a quadratic with fixed per-example offsets and real epoch reshuffling
from sgd_dynamics.simulate.reshuffling import (  # isort: skip
    reshuffled_batches,
    validated_offsets,
    simulate_reshuffled_quadratic_sgd,
)
# Time-scales measured on simulated trajectories: autocorrelation decay and basin-to-basin rate matrices
from sgd_dynamics.simulate.timescales import (  # isort: skip
    Autocorrelation,
    autocorrelation,
    Estimate,
    fit_decay_rate,
    integrated_autocorrelation_time,
    core_labels,
    CoreTransitionCounts,
    count_core_transitions,
    MeasuredRateMatrix,
    estimate_rate_matrix,
)
# Simulated trajectories in the shape the real-network tracker produces
from sgd_dynamics.simulate.trajectory import (  # isort: skip
    TRACKER_KEYS,
    Trajectory,
    DisplacementSummary,
)

__all__ = [
    # first_passage
    "BIAS_FRACTION", "DEFAULT_MAX_STEPS", "TimeStep", "brownian_bridge_hitting_time", "choose_time_step",
    "escape_time_step", "euler_bias", "first_passage_times_1d", "modelled_bias",
    # label_noise
    "LabelNoiseModel", "TwoLayerUV", "MatrixSensing", "MatrixSensingEnsemble", "LabelNoiseState",
    "LabelNoiseTrajectory",
    "label_noise_step", "simulate_label_noise", "project_to_uv_valley", "descend_to_valley",
    # langevin
    "annealing_schedule", "euler_maruyama", "MALAResult", "mala", "baoab", "FirstPassage",
    "first_passage_times", "torch_gradient",
    # linear_regression
    "RegressionDataset", "teacher_regression", "LinearRegressionRun", "gradient_noise_at_minimum",
    "simulate_linear_regression_sgd",
    # mode_spectrum
    "FrequencySpread", "ar2_frequency_spread", "ar2_paths",
    # normal_draws
    "COMPILED_MIN_DRAWS", "fill_standard_normal",
    # phase_space_sde
    "METHODS",
    "ou_transition", "LinearGaussianStep", "exact_ou_step", "euler_maruyama_step", "phase_space_drift",
    "velocity_diffusion_rate", "phase_space_ou", "OUPath", "simulate_ou_process",
    "simulate_phase_space_sde",
    # quadratic
    "positive_count", "noise_variances_array", "covariance_root", "GaussianQuadraticModel", "initial_state",
    "recorded_steps", "simulate_quadratic_sgd", "simulate_quadratic_sgd_summary",
    # reshuffling
    "reshuffled_batches", "validated_offsets", "simulate_reshuffled_quadratic_sgd",
    # timescales
    "Autocorrelation", "autocorrelation", "Estimate", "fit_decay_rate", "integrated_autocorrelation_time",
    "core_labels", "CoreTransitionCounts", "count_core_transitions", "MeasuredRateMatrix",
    "estimate_rate_matrix",
    # trajectory
    "TRACKER_KEYS", "Trajectory", "DisplacementSummary",
]
