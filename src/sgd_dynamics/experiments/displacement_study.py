"""Drift and diffusion of the default point: replicas from ``theta*`` against the theory (issue 11 secs. 2-3).

Measured (:func:`measure_replicas`): ``R = replicas`` copies of SGD restart from ``theta*`` with a fresh
momentum buffer and independent with-replacement minibatch streams
(:func:`sgd_dynamics.measure.replicas.run_replicas`, log-spaced recording), and their Gram matrices split
``E||theta_k - theta*||^2`` into the drift ``||E theta_k - theta*||^2`` and the diffusion
``tr Cov(theta_k)`` with jackknife standard errors
(:func:`sgd_dynamics.estimation.replica_decomposition.replica_decomposition`). The Gram matrices are
stored (``gram``, ``(T, R, R)``) so that statistics of the parts can be resampled over replicas
(:func:`sgd_dynamics.estimation.replica_exponent.replica_exponent`).

Predicted (:func:`predict_parts`) by the exact discrete theory of the two parts from a stationary ``theta*``
with a fresh buffer (:func:`sgd_dynamics.theory.displacement_decomposition`; 002 eq. 19 in the discrete
form of ERRATA 002.5/002.6), on two spectra:

- full spectrum: the nodes and probe-mean weights of the noise-weighted Lanczos measure at ``theta*``
  (:func:`sgd_dynamics.measure.spectral_measure.noise_spectral_measure`, ``sum_j w_j f(rho_j) ~
  tr(Sigma f(H))``), the study's top-k eigenpairs deflated when they converged. Both parts are linear in the
  weights, so each probe's rule gives one estimate and the probe spread plus the truncation error of the
  Lanczos rule are its error bar (:meth:`SpectralMeasure.estimate`).
- top-k + bulk: the measured top-k ``(rho_i, s_i)`` plus one bulk mode carrying the rest of ``tr H`` and
  ``tr Sigma`` (:func:`sgd_dynamics.theory.spectrum_summary.bulk_spectrum`), as in the sweep's analysis.

A node or eigenvalue of negative curvature ``rho + weight_decay < 0`` is taken as flat (``rho = -lambda``:
free diffusion, no drift), as :func:`~sgd_dynamics.estimation.lanczos_quadrature.full_spectrum_displacement`
does; the report says how much weight such nodes carry.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from sgd_dynamics.estimation.lanczos_quadrature import SpectralMeasure
from sgd_dynamics.hyper import Hyperparams
from sgd_dynamics.theory import displacement_decomposition
from sgd_dynamics.theory.spectrum_summary import bulk_spectrum

__all__ = ["bulk_parts", "full_spectrum_parts", "measure_replicas", "predict_parts",
           "spectral_measures"]


def measure_replicas(setup: Any, theta_star: dict[str, torch.Tensor], hyper: Hyperparams, steps: int,
                     replicas: int, seed: int) -> dict[str, np.ndarray]:
    """Replicas from ``theta*``: recorded steps, total, drift, diffusion and their standard errors."""
    from sgd_dynamics.experiments.training import minibatch_indices
    from sgd_dynamics.measure.replicas import replica_seeds, run_replicas

    model = setup.build_model()
    model.load_state_dict(theta_star)
    n = len(setup.x)
    streams = [minibatch_indices(n, hyper.batch_size, "with_replacement", s)
               for s in replica_seeds(seed, replicas)]
    trajectory = run_replicas(model, setup.loss_fn, setup.x, setup.y, hyper, steps, streams, seed=seed)
    parts = trajectory.decomposition()
    return {"step": trajectory.steps, "total": parts.total, "drift": parts.drift,
            "diffusion": parts.diffusion, "total_se": parts.total_se, "drift_se": parts.drift_se,
            "diffusion_se": parts.diffusion_se,
            "replica_sq_displacement": trajectory.global_sq_displacement, "gram": trajectory.gram}


def _parts(rho: np.ndarray, weights: np.ndarray, hyper: Hyperparams, steps: np.ndarray) -> np.ndarray:
    """``[drift, diffusion]`` (2, T) of one rule, negative curvature taken as flat."""
    parts = displacement_decomposition(np.maximum(rho, -hyper.weight_decay), weights, hyper, steps)
    return np.stack([parts.drift, parts.diffusion])


def full_spectrum_parts(measure: SpectralMeasure, hyper: Hyperparams, steps: np.ndarray
                        ) -> dict[str, np.ndarray]:
    """Drift and diffusion from the noise-weighted measure, each with its error bar (module docstring)."""
    estimate = measure.estimate(lambda r, w: _parts(r, w, hyper, steps))
    return {"drift": estimate.value[0], "diffusion": estimate.value[1],
            "drift_err": estimate.stderr[0], "diffusion_err": estimate.stderr[1]}


def bulk_parts(theta: dict[str, np.ndarray], hyper: Hyperparams, steps: np.ndarray) -> dict[str, np.ndarray]:
    """Drift and diffusion of the top-k modes plus one bulk mode of multiplicity ``m - k``."""
    rho, s, mult = bulk_spectrum(np.asarray(theta["eigenvalues"], np.float64),
                                 np.asarray(theta["mode_noise"], np.float64), float(theta["hessian_trace"]),
                                 float(theta["trace_sigma"]), int(theta["num_parameters"]))
    s = s.copy()
    s[-1] *= mult          # both parts are linear in s: mult equal modes = one mode with mult times the noise
    drift, diffusion = _parts(rho, s, hyper, steps)
    return {"drift": drift, "diffusion": diffusion}


def _deflation(theta: dict[str, np.ndarray]) -> Any:
    """The study's top-k eigenpairs, re-orthonormalised in float64, for deflation; None unless converged."""
    from sgd_dynamics.measure.hessian import HessianEigenpairs

    values = np.asarray(theta["eigenvalues"], np.float64)
    q, r = np.linalg.qr(np.asarray(theta["eigenvectors"], np.float64))
    q *= np.sign(np.diag(r))            # keep each column's direction (the stored vectors are float32)
    pairs = HessianEigenpairs(values, q, np.asarray(theta["residuals"], np.float64), 0, "stored",
                              float(theta.get("eigen_tol", 1e-4)))
    return pairs if bool(np.all(pairs.converged)) else None


def spectral_measures(setup: Any, theta_star: dict[str, torch.Tensor], theta: dict[str, np.ndarray], *,
                      probes: int, lanczos_steps: int, seed: int) -> dict[str, np.ndarray]:
    """The noise-weighted measure (nodes, weights, its Jacobi matrices) and the ESD at ``theta*``."""
    from sgd_dynamics.experiments.training import full_batches
    from sgd_dynamics.measure.spectral_measure import hessian_spectral_density, noise_spectral_measure

    model = setup.build_model()
    model.load_state_dict(theta_star)
    data = full_batches(setup.x, setup.y)
    deflation = _deflation(theta)
    measure = noise_spectral_measure(model, setup.loss_fn, data, num_probes=probes,
                                     lanczos_steps=lanczos_steps, deflation=deflation, seed=seed)
    esd = hessian_spectral_density(model, setup.loss_fn, data, num_probes=max(2, probes // 2),
                                   lanczos_steps=lanczos_steps, seed=seed + 1)
    deflated = 0 if deflation is None else deflation.eigenvalues.size
    return {"measure": measure, "deflated": np.asarray(deflated), "esd_grid": esd.grid,
            "esd_density": esd.density}


def predict_parts(measure: SpectralMeasure, theta: dict[str, np.ndarray], hyper: Hyperparams,
                  steps: np.ndarray) -> dict[str, np.ndarray]:
    """Both predictions at ``steps``: ``full_*`` (with ``*_err``) and ``bulk_*`` drift and diffusion."""
    steps = np.asarray(steps, np.int64)
    full = full_spectrum_parts(measure, hyper, steps)
    bulk = bulk_parts(theta, hyper, steps)
    return {**{f"full_{k}": v for k, v in full.items()}, **{f"bulk_{k}": v for k, v in bulk.items()}}

