"""Theory of SGD's limiting dynamics: pure NumPy/SciPy, float64, no torch.

Continuous model (002, corrected by ERRATA 002.1-002.4 and 002.6) and the exact discrete-time recursion
(ERRATA 002.5), also under random reshuffling (ERRATA 002.3's sampler without replacement).
"""

# Predictions a user asks for: instantaneous speed, global displacement, anomalous-diffusion exponent
from sgd_dynamics.theory.diffusion import (  # isort: skip
    stationary_speed,
    stationary_speed_from_trace,
    global_displacement,
    global_displacement_from_start,
    local_exponent,
    stationary_moments,
    mean_trajectory,
    modified_loss_curvature,
)
# Exact discrete-time theory of SGD with momentum on a quadratic loss (beyond the SDE; ERRATA 002.5)
from sgd_dynamics.theory.discrete import (  # isort: skip
    transition_matrix,
    noise_matrix,
    discrete_stationary_moments,
    discrete_displacement_per_mode,
    displacement_from_start_per_mode,
    displacement_parts_from_start_per_mode,
    discrete_mean_trajectory,
    discrete_covariance_over_time,
    discrete_root_pair,
)
# Stationary minibatch noise of least squares, multiplicative part included (exact, with replacement)
from sgd_dynamics.theory.least_squares_noise import (  # isort: skip
    LeastSquaresNoise,
    least_squares_stationary_noise,
    pair_position_factors,
)
# Drift and diffusion parts of the displacement of training resumed from a settled ``theta*``
from sgd_dynamics.theory.displacement_parts import (  # isort: skip
    DisplacementParts,
    displacement_decomposition,
)
# Escape over barriers: exact 1-D mean first-passage time, Kramers and Eyring–Kramers times, Arrhenius fits
from sgd_dynamics.theory.escape import (  # isort: skip
    SmoothPotential,
    QuadratureNotConverged,
    reflecting_cutoff,
    path_barrier,
    log_mean_first_passage_time,
    mean_first_passage_time,
    MFPTResponse,
    mfpt_linear_response,
    locate_well_and_barrier,
    kramers_time,
    KramersNotApplicable,
    KramersPath,
    critical_points_1d,
    kramers_path_time,
    CriticalPoint,
    find_minimum,
    find_saddle,
    eyring_kramers_time,
    ArrheniusFit,
    fit_arrhenius,
)
# One-dimensional Fokker–Planck operator: finite-volume discretisation, spectral gap, density over time
from sgd_dynamics.theory.fokker_planck import (  # isort: skip
    FokkerPlanck1D,
    fokker_planck_operator,
)
# Stationary law of a 2-D diffusion with position-dependent diagonal noise, by finite volumes
from sgd_dynamics.theory.fokker_planck_2d import (  # isort: skip
    StationaryLaw2D,
    stationary_law_2d,
)
# Closed-form lag sums of a 2x2 linear recursion, stable in every damping regime
from sgd_dynamics.theory.lag_sums import (  # isort: skip
    RootPair,
    divided_power,
    displacement_lag_sum,
    sin_cos_of_multiple,
    complex_expm1,
)
# Limiting drift along a valley of minima for heavy-ball SGD (003 eq. 6, Def. 3.3, App. F)
from sgd_dynamics.theory.limiting_drift import (  # isort: skip
    ValleyFrame,
    valley_frame,
    apply_momentum_lyapunov,
    solve_momentum_lyapunov,
    label_noise_drift,
    ValleyOUMoments,
    valley_ou_moments,
)
# Convergence to a minimum: gradient flow (Thm 1), SGD's neighbourhood and step bound (Thm 9), Key idea 5
from sgd_dynamics.theory.local_stability import (  # isort: skip
    quadratic_gradient_flow,
    gradient_flow,
    gradient_flow_bound,
    SGDNeighbourhood,
    sgd_neighbourhood,
    least_squares_moment_operator,
    second_moment_growth,
    critical_step_size,
    gibbs_certificate_error,
    gibbs_variance,
)
# Hopping on a lattice of wells and the chapter's claimed phase transition at T_c = dL / log d (Thm 10)
from sgd_dynamics.theory.many_wells import (  # isort: skip
    lattice_potential,
    lattice_gradient,
    hop_rate,
    kramers_hop_rate,
    total_hop_rate,
    claimed_critical_temperature,
    stationary_loss_moments,
)
# Metastable dynamics between basins as a Markov jump process: rate matrix, stationary law, slowest rate
from sgd_dynamics.theory.metastability import (  # isort: skip
    RateMatrix,
    rate_matrix,
    eyring_kramers_rate_matrix,
    laplace_occupation,
    exact_rate_matrix_1d,
)
# Total variation to stationarity over time against spectral mixing bounds (Thm 7)
from sgd_dynamics.theory.mixing import (  # isort: skip
    total_variation_over_time,
    chi_square_divergence,
    spectral_mixing_bound,
    spectral_mixing_time,
    chapter_mixing_time,
    mixing_time,
    gaussian_start,
    gaussian_total_variation,
    ou_total_variation,
)
# Per-mode stationary second moments of the phase-space state ``(x, v)``, shared by both models
from sgd_dynamics.theory.moments import (  # isort: skip
    StationaryMoments,
)
# Relaxation to a valley, drift along it, and the optimal momentum ``1 - beta = C eta^(2/3)`` (003)
from sgd_dynamics.theory.momentum_scaling import (  # isort: skip
    momentum_jacobian,
    JacobianModes,
    jacobian_modes,
    spectral_regime,
    is_stable,
    decay_rates,
    relaxation_time,
    relaxation_rate_exponents,
    drift_rate_exponent,
    timescale_exponent,
    momentum_from_constant,
    envelope_relaxation_time,
    uv_drift_time,
    uv_optimal_constant,
    matrix_sensing_optimal_constant,
)
# Gradient-noise models: the per-example covariance ``Sigma`` seen along the Hessian eigenbasis
from sgd_dynamics.theory.noise import (  # isort: skip
    per_mode_noise,
)
# Geometry of gradient noise against curvature, and the stationary covariance it produces
from sgd_dynamics.theory.noise_geometry import (  # isort: skip
    NoiseGeometry,
    alignment,
    top_eigenspace_overlap,
    stationary_covariance_continuous,
    stationary_covariance_discrete,
    stationary_variance_per_direction,
)
# The general multivariate Ornstein–Uhlenbeck process and its Fokker–Planck structure
from sgd_dynamics.theory.ou import (  # isort: skip
    OrnsteinUhlenbeck,
)
# The continuous model of SGD with momentum on a quadratic: an Ornstein–Uhlenbeck process in phase space
from sgd_dynamics.theory.phase_space import (  # isort: skip
    drift_matrix,
    diffusion_matrix,
    sgd_ornstein_uhlenbeck,
    sde_stationary_moments,
    velocity_autocorrelation,
    eq19_sampled_sum_per_mode,
    sde_mean_trajectory,
    modified_loss,
    probability_current,
    expected_excess_loss,
    expected_kinetic_energy,
    sde_root_pair,
)
# Safe math-expression potentials ``U(x)`` or ``U(x, y)`` with exact symbolic derivatives
from sgd_dynamics.theory.potential import (  # isort: skip
    Potential,
    parse_potential,
)
# Exact discrete theory of SGD with momentum under random reshuffling (epoch shuffling; issue 11 §4)
from sgd_dynamics.theory.reshuffling import (  # isort: skip
    RESHUFFLED_STARTS,
    EpochSchedule,
    periodic_stationary_covariance,
    reshuffled_speed_per_step,
    reshuffled_stationary_speed,
    reshuffled_displacement_from_start,
)
# Time-dependent second moments of the phase-space SDE, evaluated stably in every damping regime
from sgd_dynamics.theory.sde_transient import (  # isort: skip
    position_response_integral,
    sde_displacement_per_mode,
    step_rates,
    propagator_coefficients,
    propagator,
    sde_covariance_over_time,
)
# Summaries of a measured spectrum for the theory: the top-k modes plus one "bulk" mode, and AR(2) spectra
from sgd_dynamics.theory.spectrum_summary import (  # isort: skip
    ar2_mean_frequency,
    bulk_spectrum,
    spectrum_with_measure,
)
# Sums over consecutive steps of a per-mode 2x2 linear recursion, composed exactly in few products
from sgd_dynamics.theory.step_sums import (  # isort: skip
    StepBlock,
    one_step,
    compose,
    block_power,
    blocks_at,
    consecutive_blocks,
    consecutive_chunks,
    stationary_sum,
)
# Predictions of the limiting-dynamics study from a network's measured top-k spectrum (002 sections 7-8)
from sgd_dynamics.theory.study_prediction import (  # isort: skip
    discrete_speed,
    displacement_curve,
    gibbs_spread_ratio,
    modified_loss_planes,
)
# The temperature convention of this package: from SGD's ``(eta, S, beta, Sigma)`` to a diffusion and ``T``
from sgd_dynamics.theory.temperature import (  # isort: skip
    effective_temperature,
    SGDDiffusion,
    sgd_diffusion,
    discrete_stationary_variance,
    continuous_stationary_variance,
)

__all__ = [
    # diffusion
    "stationary_speed", "stationary_speed_from_trace", "global_displacement",
    "global_displacement_from_start", "local_exponent", "stationary_moments", "mean_trajectory",
    "modified_loss_curvature",
    # discrete
    "transition_matrix", "noise_matrix", "discrete_stationary_moments", "discrete_displacement_per_mode",
    "displacement_from_start_per_mode", "displacement_parts_from_start_per_mode",
    "discrete_mean_trajectory", "discrete_covariance_over_time", "discrete_root_pair",
    # least_squares_noise
    "LeastSquaresNoise", "least_squares_stationary_noise", "pair_position_factors",
    # displacement_parts
    "DisplacementParts", "displacement_decomposition",
    # escape
    "SmoothPotential", "QuadratureNotConverged", "reflecting_cutoff", "path_barrier",
    "log_mean_first_passage_time", "mean_first_passage_time", "MFPTResponse", "mfpt_linear_response",
    "locate_well_and_barrier", "kramers_time", "KramersNotApplicable", "KramersPath", "critical_points_1d",
    "kramers_path_time", "CriticalPoint", "find_minimum", "find_saddle", "eyring_kramers_time",
    "ArrheniusFit", "fit_arrhenius",
    # fokker_planck
    "FokkerPlanck1D", "fokker_planck_operator",
    # fokker_planck_2d
    "StationaryLaw2D", "stationary_law_2d",
    # lag_sums
    "RootPair", "divided_power", "displacement_lag_sum", "sin_cos_of_multiple", "complex_expm1",
    # limiting_drift
    "ValleyFrame", "valley_frame", "apply_momentum_lyapunov", "solve_momentum_lyapunov",
    "label_noise_drift", "ValleyOUMoments", "valley_ou_moments",
    # local_stability
    "quadratic_gradient_flow", "gradient_flow", "gradient_flow_bound", "SGDNeighbourhood",
    "sgd_neighbourhood",
    "least_squares_moment_operator", "second_moment_growth", "critical_step_size", "gibbs_certificate_error",
    "gibbs_variance",
    # many_wells
    "lattice_potential", "lattice_gradient", "hop_rate", "kramers_hop_rate", "total_hop_rate",
    "claimed_critical_temperature", "stationary_loss_moments",
    # metastability
    "RateMatrix", "rate_matrix", "eyring_kramers_rate_matrix", "laplace_occupation", "exact_rate_matrix_1d",
    # mixing
    "total_variation_over_time", "chi_square_divergence", "spectral_mixing_bound", "spectral_mixing_time",
    "chapter_mixing_time", "mixing_time", "gaussian_start", "gaussian_total_variation", "ou_total_variation",
    # moments
    "StationaryMoments",
    # momentum_scaling
    "momentum_jacobian", "JacobianModes", "jacobian_modes", "spectral_regime", "is_stable", "decay_rates",
    "relaxation_time", "relaxation_rate_exponents", "drift_rate_exponent", "timescale_exponent",
    "momentum_from_constant", "envelope_relaxation_time", "uv_drift_time", "uv_optimal_constant",
    "matrix_sensing_optimal_constant",
    # noise
    "per_mode_noise",
    # noise_geometry
    "NoiseGeometry", "alignment", "top_eigenspace_overlap", "stationary_covariance_continuous",
    "stationary_covariance_discrete", "stationary_variance_per_direction",
    # ou
    "OrnsteinUhlenbeck",
    # phase_space
    "drift_matrix", "diffusion_matrix", "sgd_ornstein_uhlenbeck", "sde_stationary_moments",
    "velocity_autocorrelation", "eq19_sampled_sum_per_mode", "sde_mean_trajectory", "modified_loss",
    "probability_current", "expected_excess_loss", "expected_kinetic_energy", "sde_root_pair",
    # potential
    "Potential", "parse_potential",
    # reshuffling
    "RESHUFFLED_STARTS", "EpochSchedule", "periodic_stationary_covariance", "reshuffled_speed_per_step",
    "reshuffled_stationary_speed", "reshuffled_displacement_from_start",
    # sde_transient
    "position_response_integral", "sde_displacement_per_mode", "step_rates", "propagator_coefficients",
    "propagator", "sde_covariance_over_time",
    # spectrum_summary
    "ar2_mean_frequency", "bulk_spectrum", "spectrum_with_measure",
    # step_sums
    "StepBlock", "one_step", "compose", "block_power", "blocks_at", "consecutive_blocks",
    "consecutive_chunks", "stationary_sum",
    # study_prediction
    "discrete_speed", "displacement_curve", "gibbs_spread_ratio", "modified_loss_planes",
    # temperature
    "effective_temperature", "SGDDiffusion", "sgd_diffusion", "discrete_stationary_variance",
    "continuous_stationary_variance",
]
