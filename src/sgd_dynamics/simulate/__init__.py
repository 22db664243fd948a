"""Vectorised, seeded simulators with known ground truth (issue 3).

Trajectories come in the shape the real-network tracker produces (:class:`Trajectory`).
"""

# Trajectories
from sgd_dynamics.simulate.trajectory import TRACKER_KEYS, DisplacementSummary, Trajectory

# Discrete SGD on a quadratic with Gaussian gradient noise
from sgd_dynamics.simulate.quadratic import (  # isort: skip
    GaussianQuadraticModel,
    simulate_quadratic_sgd,
    simulate_quadratic_sgd_summary,
)

# Discrete SGD on linear regression with real minibatches
from sgd_dynamics.simulate.linear_regression import (  # isort: skip
    LinearRegressionRun,
    RegressionDataset,
    gradient_noise_at_minimum,
    simulate_linear_regression_sgd,
    teacher_regression,
)

# The phase-space SDE and general OU processes
from sgd_dynamics.simulate.phase_space_sde import (  # isort: skip
    METHODS,
    LinearGaussianStep,
    OUPath,
    euler_maruyama_step,
    exact_ou_step,
    ou_transition,
    phase_space_drift,
    phase_space_ou,
    simulate_ou_process,
    simulate_phase_space_sde,
    velocity_diffusion_rate,
)

# Discrete SGD on a quadratic with fixed per-example offsets and real epoch reshuffling
from sgd_dynamics.simulate.reshuffling import (  # isort: skip
    reshuffled_batches,
    simulate_reshuffled_quadratic_sgd,
)

__all__ = [
    "TRACKER_KEYS", "DisplacementSummary", "Trajectory",
    "GaussianQuadraticModel", "simulate_quadratic_sgd", "simulate_quadratic_sgd_summary",
    "LinearRegressionRun", "RegressionDataset", "gradient_noise_at_minimum", "simulate_linear_regression_sgd",
    "teacher_regression",
    "METHODS", "LinearGaussianStep", "OUPath", "euler_maruyama_step", "exact_ou_step", "ou_transition",
    "phase_space_drift", "phase_space_ou", "simulate_ou_process", "simulate_phase_space_sde",
    "velocity_diffusion_rate",
    "reshuffled_batches", "simulate_reshuffled_quadratic_sgd",
]
