"""The whole Hessian spectrum of a network, weighted by its gradient noise or not, by Lanczos quadrature.

Noise-weighted spectral measure: nodes ``rho_j`` and weights ``w_j`` with
``sum_j w_j f(rho_j) ~ tr(Sigma f(H))`` for the Hessian ``H`` of the mean loss and the per-example gradient
covariance ``Sigma = (1/N) sum_n (g_n - g)(g_n - g)^T`` (002 eq. 3, the ``1/N`` of
:mod:`~sgd_dynamics.measure.gradient_noise`). It is the Gauss (Lanczos) quadrature of
:mod:`sgd_dynamics.estimation.lanczos_quadrature` started from probes whose second moment is ``Sigma``::

    u = U^T z / sqrt(N),   U = rows g_n - g,   E[z z^T] = I_N   =>   E[u u^T] = Sigma,

and such a probe needs no per-example gradient: ``sum_n z_n g_n = grad(sum_n z_n loss_n)``, one backward pass
of a weighted sum of per-example losses, and ``U^T z = sum_n z_n g_n - (sum_n z_n) g``. The per-example loss
is the one :func:`~sgd_dynamics.measure.gradient_noise.per_example_gradients` differentiates,
``loss_fn(model(x_n[None]), y_n[None])`` (a mean loss over a batch of one), evaluated for a chunk of examples
at once with ``torch.func.vmap``; all probes, and the plain sum that gives ``g``, are pulled back through
one ``torch.func.vjp`` (``vmap`` over the cotangents), so ``P`` probes cost one sweep over the data with
``P + 1`` backward passes. Like the Hessian, it is taken in eval mode.

``z`` is Rademacher by default: the variance of ``z^T A z`` is ``2 sum_{i != j} A_ij^2`` against
``2 sum_ij A_ij^2`` for a Gaussian ``z`` (``A = U f(H) U^T / N``), which on a small tanh MLP divides the
probe spread of ``tr(Sigma g_t(H))`` by 1.1 to 5 (``"gaussian"`` remains available).

The Hessian's own eigenvalue density (ESD) is the same quadrature from Rademacher probes ``v / sqrt(m)``
(``E[v v^T] / m = I / m``), broadened by Gaussians on a grid as in PyHessian's ``density``
(Yao et al. 2020).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor, nn

from sgd_dynamics._validation import require
from sgd_dynamics.estimation.lanczos_quadrature import (
    SpectralDensity,
    SpectralMeasure,
    lanczos_quadrature,
    spectral_density,
)
from sgd_dynamics.measure.flat_params import (
    BatchSource,
    ParameterLayout,
    detached_parameters,
    evaluation_mode,
    model_output,
    reiterable,
    split_batch,
    to_device,
)
from sgd_dynamics.measure.hessian import HessianEigenpairs, HessianOperator, LossFn

ProbeDistribution = Literal["rademacher", "gaussian"]
_DISTRIBUTIONS = ("rademacher", "gaussian")


@dataclass(frozen=True)
class NoiseProbes:
    """Probes ``u_p = U^T z_p / sqrt(N)`` (columns of ``vectors``, flat order) and the ``z`` behind them."""

    vectors: NDArray[np.float64] = field(repr=False)        # (m, P)
    coefficients: NDArray[np.float64] = field(repr=False)   # z, (N, P), in the order the examples came
    num_examples: int
    backward_count: int                                     # P + 1: the probes and the mean gradient


def noise_probes(model: nn.Module, loss_fn: LossFn, batches: BatchSource, num_probes: int, *, seed: int = 0,
                 distribution: ProbeDistribution = "rademacher", chunk_size: int = 64) -> NoiseProbes:
    """``num_probes`` vectors with second moment ``Sigma``, from weighted backward passes (module docstring).

    One sweep over ``batches``; ``z`` is drawn chunk by chunk in data order from ``seed``.
    """
    require(isinstance(num_probes, (int, np.integer)) and num_probes >= 1, "num_probes", num_probes,
            "an integer >= 1")
    require(distribution in _DISTRIBUTIONS, "distribution", distribution, "'rademacher' or 'gaussian'")
    require(isinstance(chunk_size, int) and chunk_size >= 1, "chunk_size", chunk_size, "an integer >= 1")
    layout = ParameterLayout.from_module(model)
    params = detached_parameters(model)
    rng = np.random.default_rng(seed)

    def example_loss(p: dict[str, Tensor], x, y: Tensor) -> Tensor:
        xb = torch.utils._pytree.tree_map(lambda t: t.unsqueeze(0), x)
        return loss_fn(model_output(model, p, xb), y.unsqueeze(0))

    per_example_loss = torch.func.vmap(example_loss, in_dims=(None, 0, 0))
    sums = torch.zeros(num_probes + 1, layout.dim, dtype=torch.float64, device=layout.device)
    draws = []
    with evaluation_mode(model):
        for batch in reiterable(batches)():
            inputs, targets, n = split_batch(batch)
            inputs, targets = to_device(inputs, layout.device), targets.to(layout.device)
            for start in range(0, n, chunk_size):
                x = torch.utils._pytree.tree_map(lambda t, s=start: t[s:s + chunk_size], inputs)
                y = targets[start:start + chunk_size]
                z = _draw(rng, (y.shape[0], num_probes), distribution)
                draws.append(z)
                # rows: the probes' weights and, last, all ones (the sum of gradients)
                cotangents = torch.as_tensor(np.vstack([z.T, np.ones(y.shape[0])]), dtype=layout.dtype,
                                             device=layout.device)
                _, pullback = torch.func.vjp(lambda p, x=x, y=y: per_example_loss(p, x, y), params)
                grads = torch.func.vmap(pullback)(cotangents)[0]
                sums += layout.flatten(grads, batch_dims=1).double()
    require(bool(draws), "batches", "no examples", "at least one (inputs, targets) batch")
    z_all = np.concatenate(draws)
    n_total = z_all.shape[0]
    mean_gradient = sums[-1] / n_total
    z_sums = torch.as_tensor(z_all.sum(axis=0), dtype=torch.float64, device=layout.device)
    vectors = (sums[:-1] - z_sums[:, None] * mean_gradient) / np.sqrt(n_total)
    return NoiseProbes(vectors.T.cpu().numpy(), z_all, n_total, num_probes + 1)


def _draw(rng: np.random.Generator, shape: tuple[int, int], distribution: str) -> NDArray[np.float64]:
    if distribution == "gaussian":
        return rng.standard_normal(shape)
    return rng.choice([-1.0, 1.0], size=shape)


def noise_spectral_measure(model: nn.Module, loss_fn: LossFn, batches: BatchSource, *,
                           num_probes: int = 20, lanczos_steps: int = 100,
                           deflation: HessianEigenpairs | None = None, seed: int = 0,
                           distribution: ProbeDistribution = "rademacher", block_size: int = 8,
                           chunk_size: int = 64) -> SpectralMeasure:
    """The noise-weighted spectral measure of ``H``: ``measure.estimate(fn)`` estimates ``tr(Sigma f(H))``.

    ``fn(nodes, weights)`` is any quadrature linear in the weights; for the displacement use
    :func:`~sgd_dynamics.estimation.lanczos_quadrature.full_spectrum_displacement`. ``deflation``: top
    Hessian eigenpairs (:func:`~sgd_dynamics.measure.hessian.hessian_eigenpairs`, converged) handled
    exactly, so the Lanczos rules need only resolve the rest of the spectrum (``<= rho_{k+1}``); the
    long-time displacement needs about ``sqrt(eta rho_{k+1} t / (1 - beta))`` steps. Cost:
    ``num_probes * lanczos_steps`` Hessian-vector products (``block_size`` probes per pass, whose Lanczos
    bases hold ``block_size * lanczos_steps * m`` floats) and ``num_probes + 1`` backward passes.
    """
    require(isinstance(num_probes, (int, np.integer)) and num_probes >= 2, "num_probes", num_probes,
            "an integer >= 2 (the probe spread needs two)")
    pairs = None
    if deflation is not None:
        require(bool(np.all(deflation.converged)), "deflation",
                f"eigenpairs with residuals up to {float(np.max(deflation.residuals)):.3g}",
                f"converged eigenpairs (residual <= tol={deflation.tol} x max|rho|); raise maxiter or ncv")
        pairs = (deflation.eigenvalues, deflation.eigenvectors)
    probes = noise_probes(model, loss_fn, batches, num_probes, seed=seed, distribution=distribution,
                          chunk_size=chunk_size)
    operator = HessianOperator(model, loss_fn, batches, block_size=block_size).to_scipy()
    measure = lanczos_quadrature(operator.matmat, probes.vectors, lanczos_steps, deflation=pairs,
                                 block_size=block_size)
    return replace(measure, backward_count=probes.backward_count)


def hessian_spectral_density(model: nn.Module, loss_fn: LossFn, batches: BatchSource, *, num_probes: int = 10,
                             lanczos_steps: int = 100, seed: int = 0, width: float | None = None,
                             num_points: int = 1000, block_size: int = 8) -> SpectralDensity:
    """Eigenvalue density of ``H`` (normalised to 1) by stochastic Lanczos quadrature, Rademacher probes.

    Row ``p`` of ``nodes`` / ``weights`` is probe ``p``'s Gauss rule of ``v_p^T f(H) v_p / m``, so
    ``mean_p sum_j weights[p, j] nodes[p, j]^k`` estimates ``tr(H^k) / m`` (exactly per probe for
    ``k <= 2 lanczos_steps - 1``). ``width``: as in
    :func:`~sgd_dynamics.estimation.lanczos_quadrature.spectral_density`.
    """
    require(isinstance(num_probes, (int, np.integer)) and num_probes >= 2, "num_probes", num_probes,
            "an integer >= 2 (the probe spread needs two)")
    operator = HessianOperator(model, loss_fn, batches, block_size=block_size).to_scipy()
    dim = operator.shape[0]
    probes = np.random.default_rng(seed).choice([-1.0, 1.0], size=(dim, num_probes)) / np.sqrt(dim)
    measure = lanczos_quadrature(operator.matmat, probes, lanczos_steps, block_size=block_size)
    return spectral_density(measure, width=width, num_points=num_points)
