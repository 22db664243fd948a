"""Discrete SGD with momentum on a quadratic with fixed per-example offsets and real epoch reshuffling.

The model of :mod:`sgd_dynamics.theory.reshuffling`, simulated: per-example gradients
``g_i(x) = h x - u_i`` in the Hessian eigenbasis (``h = rho + lambda`` per mode, offsets ``u_i`` with
``sum_i u_i = 0``), so the minibatch noise ``xi_b = (1/S_b) sum_{i in b} u_i`` comes from the examples
themselves, not from a Gaussian. Each replica draws its own random permutation of the ``N`` examples per
epoch and walks it in batches of ``S`` in order: the last batch is smaller when ``S`` does not divide ``N``
(``DataLoader(shuffle=True)``, ``drop_last=False``), or the last ``N mod S`` examples are unused
(``drop_last=True``, the study's sampler ``experiments.training.minibatch_indices``). The update is the
PyTorch recursion of hyper.py, ``v_{k+1} = beta v_k - g_b(x_k)``, ``x_{k+1} = x_k + eta v_{k+1}``.
Step 0 is an epoch boundary.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from numpy.typing import ArrayLike, NDArray

from sgd_dynamics._validation import require
from sgd_dynamics.hyper import Hyperparams
from sgd_dynamics.simulate.quadratic import Start, initial_state, positive_count, recorded_steps
from sgd_dynamics.simulate.trajectory import Trajectory

RESHUFFLED_SIM_STARTS: tuple[str, ...] = ("zero",)


def reshuffled_batches(rng: np.random.Generator, dataset_size: int, batch_size: int, replicas: int,
                       drop_last: bool = False) -> Iterator[NDArray[np.int64]]:
    """Endless ``(replicas, S_b)`` index arrays, one per step: a fresh permutation per epoch and replica.

    >>> rng = np.random.default_rng(0)
    >>> [b.shape for _, b in zip(range(3), reshuffled_batches(rng, 5, 2, replicas=4))]
    [(4, 2), (4, 2), (4, 1)]
    """
    order = np.tile(np.arange(dataset_size), (replicas, 1))
    stop = dataset_size - dataset_size % batch_size if drop_last else dataset_size
    while True:
        perm = rng.permuted(order, axis=1)
        for lo in range(0, stop, batch_size):
            yield perm[:, lo:lo + batch_size]


def validated_offsets(offsets: ArrayLike, modes: int, dataset_size: int) -> NDArray[np.float64]:
    """Check per-example offsets ``u`` of shape ``(N, modes)``: finite, ``N = dataset_size``, centred."""
    u = np.asarray(offsets, dtype=np.float64)
    require(u.ndim == 2 and u.shape[1] == modes, "offsets.shape", u.shape,
            f"(N, {modes}): one row per example, one column per eigenvalue")
    require(u.shape[0] == dataset_size, "offsets.shape[0]", u.shape[0],
            f"hyper.dataset_size={dataset_size} (one row per training example)")
    require(bool(np.all(np.isfinite(u))), "offsets", "non-finite values", "finite values")
    scale = float(np.sqrt(np.mean(u**2))) if u.size else 0.0
    mean = np.abs(u.mean(axis=0))
    require(bool(np.all(mean <= 1e-10 * max(scale, np.finfo(float).tiny))), "offsets.mean(axis=0)",
            mean.round(12).tolist()[:4],
            "0 (offsets around the mean gradient: subtract offsets.mean(axis=0))")
    return u


def simulate_reshuffled_quadratic_sgd(eigenvalues: ArrayLike, offsets: ArrayLike, *, hyper: Hyperparams,
                                      steps: int, replicas: int = 1, seed: int | np.random.SeedSequence,
                                      start: Start = "zero", drop_last: bool = False, burn_in_epochs: int = 0,
                                      record_every: int = 1) -> Trajectory:
    """Simulate reshuffled SGD with momentum on ``L = 1/2 sum_i rho_i x_i^2`` with per-example offsets.

    Parameters
    ----------
    eigenvalues
        Hessian eigenvalues ``rho`` (``(m,)``); curvature ``rho + hyper.weight_decay``.
    offsets
        ``u`` of shape ``(N, m)``, per-example gradient offsets in the eigenbasis, centred
        (``sum_i u_i = 0``); ``Sigma = u^T u / N``.
    hyper
        learning rate, momentum, batch size ``S``, weight decay; ``sampler="without_replacement"`` and
        ``dataset_size = N``.
    steps, replicas, seed, record_every
        as in :func:`~sgd_dynamics.simulate.simulate_quadratic_sgd`.
    start
        ``"zero"`` or ``(position0, velocity0)`` arrays of shape ``(m,)`` or ``(R, m)``.
    drop_last
        ``False``: a last smaller batch (``DataLoader``'s default); ``True``: ``N mod S`` examples unused.
    burn_in_epochs
        whole epochs run (unrecorded) before step 0, which is then still an epoch boundary.

    >>> hp = Hyperparams(lr=0.1, momentum=0.9, batch_size=2, dataset_size=4, sampler="without_replacement")
    >>> u = np.array([[1.0], [-1.0], [2.0], [-2.0]])
    >>> tr = simulate_reshuffled_quadratic_sgd([1.0], u, hyper=hp, steps=4, replicas=3, seed=0)
    >>> tr.position.shape
    (5, 3, 1)
    """
    require(isinstance(hyper, Hyperparams), "hyper", hyper, "a sgd_dynamics.Hyperparams")
    require(hyper.sampler == "without_replacement", "sampler", hyper.sampler,
            "'without_replacement' (this simulator reshuffles; see simulate_quadratic_sgd otherwise)")
    require(isinstance(drop_last, (bool, np.bool_)), "drop_last", drop_last, "True or False")
    require(isinstance(burn_in_epochs, (int, np.integer)) and not isinstance(burn_in_epochs, bool)
            and burn_in_epochs >= 0, "burn_in_epochs", burn_in_epochs, "an integer >= 0")
    rho = hyper.check_stable(eigenvalues)
    n = int(hyper.dataset_size)
    u = validated_offsets(offsets, rho.size, n)
    steps = positive_count(steps, "steps")
    replicas = positive_count(replicas, "replicas")
    record_every = positive_count(record_every, "record_every")
    if isinstance(start, str):
        # no exact sampler of the cyclostationary law (it is not Gaussian): burn in instead
        require(start in RESHUFFLED_SIM_STARTS, "start", start,
                f"one of {', '.join(RESHUFFLED_SIM_STARTS)} or a (position0, velocity0) pair of arrays "
                "(use burn_in_epochs to reach the cyclostationary law)")
    rng = np.random.default_rng(seed)
    x, v = initial_state(start, rho.size, replicas, None, rng)
    batches = reshuffled_batches(rng, n, hyper.batch_size, replicas, drop_last)
    per_epoch = n // hyper.batch_size if drop_last else -(-n // hyper.batch_size)
    h, eta, beta = rho + hyper.weight_decay, hyper.lr, hyper.momentum
    for _ in range(burn_in_epochs * per_epoch):
        _sgd_step(x, v, u[next(batches)].mean(axis=1), h, eta, beta)
    rec = recorded_steps(steps, record_every)
    position = np.empty((rec.size, replicas, rho.size))
    velocity = np.empty_like(position)
    position[0], velocity[0] = x, v
    j = 1
    for k in range(1, steps + 1):
        _sgd_step(x, v, u[next(batches)].mean(axis=1), h, eta, beta)
        if k % record_every == 0:
            position[j], velocity[j] = x, v
            j += 1
    return Trajectory(position=position, velocity=velocity, steps=rec, hyper=hyper)


def _sgd_step(x: NDArray[np.float64], v: NDArray[np.float64], xi: NDArray[np.float64], h: NDArray[np.float64],
              eta: float, beta: float) -> None:
    # minibatch gradient h x - xi; in place on (replicas, modes)
    v *= beta
    v -= h * x
    v += xi
    x += eta * v
