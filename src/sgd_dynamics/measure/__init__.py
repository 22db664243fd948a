"""Measurements on real PyTorch networks (issue 4).

Trajectory tracking during SGD training, Hessian-vector products with extreme eigenpairs and the trace,
per-example gradient-noise statistics,
fits of measured curves (power laws, decays, spectra, hinges) and 2-D loss-surface slices. Every quantity uses
the flat parameter order of ``torch.nn.utils.parameters_to_vector(...)`` of its parameter group: by default
the trainable parameters (all of ``model.parameters()`` when none is frozen), or the group given as
``parameters=`` (see :mod:`~sgd_dynamics.measure.flat_params`). Losses are ``loss_fn(outputs, targets)`` or
closures ``closure_loss(fn)`` for ``fn(model, batch)`` (see :mod:`~sgd_dynamics.measure.objective`).
"""

# Sums over data shards held by the ranks of a ``torch.distributed`` process group
from sgd_dynamics.measure.data_shards import (  # isort: skip
    check_process_group,
    all_reduce_sum,
)
# Fits of measured curves, re-exported from :mod:`sgd_dynamics.estimation` where they now live
from sgd_dynamics.measure.fits import (  # isort: skip
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
# A model seen as a function of its flat parameter vector, and the data it is evaluated on
from sgd_dynamics.measure.flat_params import (  # isort: skip
    ParameterLayout,
    selected_parameters,
    detached_parameters,
    model_output,
    evaluation_mode,
    reiterable,
    to_device,
    split_batch,
)
# Gradient-noise statistics from per-example gradients: ``tr Sigma``, ``q^T Sigma q``, ``Sigma = sigma^2 H``
from sgd_dynamics.measure.gradient_noise import (  # isort: skip
    per_example_gradients,
    GradientNoise,
    gradient_noise,
    NoiseCurvatureFit,
    fit_noise_to_curvature,
    NoiseEigenpairs,
    noise_eigenpairs,
)
# Per-example gradient moments of nn.Linear layers from activations and output gradients (no gradient blocks)
from sgd_dynamics.measure.linear_gradients import (  # isort: skip
    LinearSlot,
    LinearLayers,
    ChunkMoments,
    linear_layers,
    layer_directions,
    chunk_moments,
)
# Hessian of the training loss: Hessian-vector products, extreme eigenpairs and the trace
from sgd_dynamics.measure.hessian import (  # isort: skip
    HessianOperator,
    HessianEigenpairs,
    hessian_eigenpairs,
    top_eigenpairs,
    TraceEstimate,
    hessian_trace,
    trace_estimate,
)
# Exact Hessian-vector products of one batch's loss: forward-over-reverse and reverse-over-reverse
from sgd_dynamics.measure.hvp import (  # isort: skip
    forward_over_reverse,
    reverse_over_reverse,
    GradientGraph,
)
# Loss-landscape slices: the loss on a 2-D grid of parameters around a reference point
from sgd_dynamics.measure.landscape import (  # isort: skip
    LossSurface,
    loss_surface,
)
# Autodiff pieces of the limiting drift along a valley (003 eqs. 6-7) for a user-supplied loss
from sgd_dynamics.measure.limiting_drift import (  # isort: skip
    third_derivative_contraction,
    limiting_drift_autodiff,
    trace_hessian_gradient,
    label_noise_drift_autodiff,
)
# The gradient noise as training sees it: the covariance of minibatch gradients in train mode (issue 11 §5)
from sgd_dynamics.measure.minibatch_noise import (  # isort: skip
    MinibatchNoise,
    minibatch_noise,
)
# Noise geometry of a real network at its current parameters: ``Sigma`` against ``H`` from top eigenpairs
from sgd_dynamics.measure.noise_geometry import (  # isort: skip
    NetworkNoiseGeometry,
    truncated_alignment,
    stationary_variances,
    network_noise_geometry,
)
# The loss a measurement differentiates: ``loss_fn(outputs, targets)`` or a closure ``fn(model, batch)``
from sgd_dynamics.measure.objective import (  # isort: skip
    ClosureLoss,
    closure_loss,
)
# Batched replicas of SGD from ``theta*``, each with its own minibatch stream (issue 11 section 2)
from sgd_dynamics.measure.replicas import (  # isort: skip
    ReplicaSGD,
    ReplicaState,
    ReplicaTrajectory,
    init_replicas,
    replica_seeds,
    run_replicas,
)
# Torch's global generators seeded for one block (Dropout masks, initialisation), restored after it
from sgd_dynamics.measure.seeding import (  # isort: skip
    seeded_torch_rng,
)
# The whole Hessian spectrum of a network, weighted by its gradient noise or not, by Lanczos quadrature
from sgd_dynamics.measure.spectral_measure import (  # isort: skip
    NoiseProbes,
    noise_probes,
    noise_spectral_measure,
    hessian_spectral_density,
)
# The gradient noise of a training step, by the estimator that fits the model (Dropout/BatchNorm: train mode)
from sgd_dynamics.measure.step_noise import (  # isort: skip
    NOISE_ESTIMATORS,
    StepNoise,
    resolve_noise_estimator,
    step_noise,
    stochastic_modules,
)
# Trajectory tracker: displacements and phase-space projections recorded during SGD training
from sgd_dynamics.measure.tracker import (  # isort: skip
    LinearSchedule,
    LogSchedule,
    as_schedule,
    TrajectoryTracker,
)

__all__ = [
    # data_shards
    "check_process_group", "all_reduce_sum",
    # fits
    "ExponentialDecayFit", "HingeFit", "LocalSlope", "OscillationSpectrum", "PowerLawFit",
    "fit_exponential_decay", "fit_hinge", "fit_power_law", "local_slope", "oscillation_spectrum",
    # flat_params
    "ParameterLayout", "selected_parameters", "detached_parameters", "model_output", "evaluation_mode",
    "reiterable", "to_device", "split_batch",
    # gradient_noise
    "per_example_gradients", "GradientNoise", "gradient_noise", "NoiseCurvatureFit",
    "fit_noise_to_curvature", "NoiseEigenpairs", "noise_eigenpairs",
    # linear_gradients
    "LinearSlot", "LinearLayers", "ChunkMoments", "linear_layers", "layer_directions", "chunk_moments",
    # hessian
    "HessianOperator", "HessianEigenpairs", "hessian_eigenpairs", "top_eigenpairs", "TraceEstimate",
    "hessian_trace", "trace_estimate",
    # hvp
    "forward_over_reverse", "reverse_over_reverse", "GradientGraph",
    # landscape
    "LossSurface", "loss_surface",
    # limiting_drift
    "third_derivative_contraction", "limiting_drift_autodiff", "trace_hessian_gradient",
    "label_noise_drift_autodiff",
    # minibatch_noise
    "MinibatchNoise", "minibatch_noise",
    # noise_geometry
    "NetworkNoiseGeometry", "truncated_alignment", "stationary_variances", "network_noise_geometry",
    # objective
    "ClosureLoss", "closure_loss",
    # replicas
    "ReplicaSGD", "ReplicaState", "ReplicaTrajectory", "init_replicas", "replica_seeds", "run_replicas",
    # seeding
    "seeded_torch_rng",
    # spectral_measure
    "NoiseProbes", "noise_probes", "noise_spectral_measure", "hessian_spectral_density",
    # step_noise
    "NOISE_ESTIMATORS", "StepNoise", "resolve_noise_estimator", "step_noise", "stochastic_modules",
    # tracker
    "LinearSchedule", "LogSchedule", "as_schedule", "TrajectoryTracker",
]
