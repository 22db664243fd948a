"""Label-noise SGD with heavy-ball momentum (003 eq. 1): UV models and matrix sensing, many replicas.

Update (003 eq. 1, full batch, fresh label noise every step)::

    pi_{k+1} = beta pi_k - grad L_k(w_k),        w_{k+1} = w_k + eta pi_{k+1},

where ``L_k`` is the training loss with labels ``y_a + eps xi_{a,k}``, ``xi ~ N(0, 1)`` i.i.d.

Models (parameters ``(U, V)`` with a leading replica axis ``R``):

- :class:`TwoLayerUV`: ``f(x) = U phi(V x) / sqrt(n)``, ``U in R^(m x n)``, ``V in R^(n x d)``, loss
  ``(1 / 2P) sum_a |f(x_a) - y_a|^2`` (003 eq. 122, Def. 3.6); ``phi`` linear, tanh or ReLU. ``d = m =
  1`` is the
  vector UV model (003 eq. 11, App. A.1), whose valley ``u . v = 0`` is reached by
  :func:`project_to_uv_valley`
  (ERRATA 003.9: start on the valley).
- :class:`MatrixSensing`: ``L = (1 / (d P)) sum_i (Tr(A_i U V) - y_i)^2`` with ``y_i = Tr(A_i X*)``
  (003 eq. 12, App. A.2; the noise enters as ``y_i + eps xi_i``); :class:`MatrixSensingEnsemble`: several
  independent draws of ``(A_i, X*)``, one per replica, in one batched array.

Tracked per replica: ``|U|^2 + |V|^2``, the exact trace of the Hessian of the noiseless loss
(Gauss-Newton part,
003 eqs. 123 and 127, plus the residual term, which vanishes for the bilinear models), the noiseless loss
and the
test error ``||U V - X*||_F^2 / d`` (003 eq. 13; ``X* = 0`` for the UV models with zero labels).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray

Activation = Literal["linear", "tanh", "relu"]
ACTIVATIONS: tuple[str, ...] = ("linear", "tanh", "relu")
Params = tuple[NDArray[np.float64], NDArray[np.float64]]


class LabelNoiseModel(Protocol):
    """What the simulator needs from a model: the gradient under given label noise and tracked quantities."""

    @property
    def dataset_size(self) -> int: ...  # noqa: D102

    def gradient(self, params: Params, label_shift: NDArray[np.float64]) -> Params: ...  # noqa: D102

    def label_shape(self) -> tuple[int, ...]: ...  # noqa: D102

    def loss(self, params: Params) -> NDArray[np.float64]: ...  # noqa: D102

    def trace_hessian(self, params: Params) -> NDArray[np.float64]: ...  # noqa: D102

    def test_error(self, params: Params) -> NDArray[np.float64]: ...  # noqa: D102


def _phi(
    pre: NDArray[np.float64], activation: str
) -> tuple[NDArray[np.float64], NDArray[np.float64] | None, NDArray[np.float64] | None]:
    """``phi``, ``phi'`` and ``phi''`` (``None`` where identically 1 or 0)."""
    if activation == "linear":
        return pre, None, None
    if activation == "tanh":
        t = np.tanh(pre)
        d1 = 1 - t * t
        return t, d1, -2 * t * d1
    return np.maximum(pre, 0.0), (pre > 0).astype(np.float64), None


@dataclass(frozen=True)
class TwoLayerUV:
    """``f(x) = U phi(V x) / sqrt(n)`` with mean-squared loss (003 Def. 3.6, eq. 122).

    >>> model = TwoLayerUV.vector(np.array([1.0, -1.0]), width=3)
    >>> u, v = np.ones((1, 1, 3)), np.zeros((1, 3, 1))
    >>> model.trace_hessian((u, v)).tolist()  # mu_2 (|u|^2 + |v|^2) / n
    [1.0]
    """

    inputs: NDArray[np.float64]
    targets: NDArray[np.float64]
    width: int
    activation: Activation = "linear"

    def __post_init__(self) -> None:
        x, y = np.asarray(self.inputs, dtype=np.float64), np.asarray(self.targets, dtype=np.float64)
        if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0] or x.shape[0] < 1:
            raise ValueError(f"inputs {x.shape} and targets {y.shape} must be (P, d) and (P, m) with P >= 1")
        if not (isinstance(self.width, (int, np.integer)) and self.width >= 1):
            raise ValueError(f"width={self.width!r} is invalid: expected an integer >= 1")
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"activation={self.activation!r} is invalid: expected one of {', '.join(ACTIVATIONS)}"
            )
        object.__setattr__(self, "inputs", x)
        object.__setattr__(self, "targets", y)

    @classmethod
    def vector(cls, inputs: ArrayLike, width: int, activation: Activation = "linear") -> TwoLayerUV:
        """The vector UV model (``d = m = 1``) with zero labels (003 App. A.1)."""
        x = np.asarray(inputs, dtype=np.float64).reshape(-1, 1)
        return cls(x, np.zeros_like(x), width, activation)

    @property
    def dataset_size(self) -> int:
        """``P``."""
        return int(self.inputs.shape[0])

    @property
    def input_variance(self) -> float:
        """``mu_2 = Tr Sigma`` with ``Sigma = (1/P) sum_a x_a x_a^T``."""
        return float(np.mean(np.sum(self.inputs**2, axis=1)))

    def label_shape(self) -> tuple[int, ...]:
        """Shape of one draw of label noise: ``(m, P)``."""
        return self.targets.T.shape

    def _forward(self, params: Params):
        # Layout (R, n, P): batched matmuls are much cheaper than einsum for these tiny shapes.
        u, v = params
        pre = v @ self.inputs.T
        h, d1, d2 = _phi(pre, self.activation)
        f = (u @ h) / math.sqrt(self.width)  # (R, m, P)
        return pre, h, d1, d2, f

    def gradient(self, params: Params, label_shift: NDArray[np.float64]) -> Params:
        """Gradient of ``(1/2P) sum_a |f(x_a) - y_a - shift_a|^2``; ``label_shift`` is ``(R, m, P)``."""
        u, _ = params
        _, h, d1, _, f = self._forward(params)
        r = (f - self.targets.T - label_shift) * (1.0 / (self.dataset_size * math.sqrt(self.width)))
        grad_u = r @ np.swapaxes(h, 1, 2)
        back = np.swapaxes(u, 1, 2) @ r
        if d1 is not None:
            back = back * d1
        return grad_u, back @ self.inputs

    def loss(self, params: Params) -> NDArray[np.float64]:
        """Noiseless training loss per replica."""
        f = self._forward(params)[-1]
        return 0.5 * np.mean(np.sum((f - self.targets.T) ** 2, axis=1), axis=1)

    def trace_hessian(self, params: Params) -> NDArray[np.float64]:
        """Exact ``Tr grad^2 L`` per replica: Gauss-Newton part (003 eq. 123) plus the residual term."""
        u, _ = params
        pre, h, d1, d2, f = self._forward(params)
        m = u.shape[1]
        x2 = np.sum(self.inputs**2, axis=1)  # |x_a|^2
        # |df/dU|^2 = m |h|^2 / n; |df_j/dV|^2 summed over j = sum_k (sum_j U_jk^2) phi'_k^2 |x|^2 / n.
        gn_u = m * np.sum(h**2, axis=1)  # (R, P)
        col = np.sum(u**2, axis=1)  # (R, n)
        dd = np.ones_like(pre) if d1 is None else d1**2
        gn_v = np.einsum("rn,rnp->rp", col, dd) * x2
        trace = (gn_u + gn_v) / self.width
        if d2 is not None:
            resid = f - self.targets.T  # (R, m, P)
            curv = np.einsum("rmp,rmn,rnp->rp", resid, u, d2) * x2 / math.sqrt(self.width)
            trace = trace + curv
        return np.mean(trace, axis=1)

    def test_error(self, params: Params) -> NDArray[np.float64]:
        """``||U V / sqrt(n)||_F^2 / d``: the teacher is ``X* = 0`` for zero labels (linear models)."""
        u, v = params
        prod = np.einsum("rmn,rnd->rmd", u, v) / math.sqrt(self.width)
        return np.sum(prod**2, axis=(1, 2)) / self.inputs.shape[1]


@dataclass(frozen=True)
class MatrixSensing:
    """Matrix sensing ``y_i = Tr(A_i X*)`` with ``X = U V`` (003 App. A.2, eq. 12 without noise; eq. 125).

    >>> ms = MatrixSensing.random(dimension=4, rank=1, dataset_size=6, seed=0)
    >>> eye = np.eye(4)[None]
    >>> bool(np.isclose(ms.trace_hessian((eye, eye))[0],
    ...                 2 / 4 * np.trace(ms.left_covariance + ms.right_covariance)))
    True
    """

    sensing: NDArray[np.float64]
    target: NDArray[np.float64]
    measurements: NDArray[np.float64] = field(init=False)

    def __post_init__(self) -> None:
        a, x = np.asarray(self.sensing, dtype=np.float64), np.asarray(self.target, dtype=np.float64)
        if a.ndim != 3 or a.shape[1] != a.shape[2] or x.shape != a.shape[1:]:
            raise ValueError(f"sensing {a.shape} and target {x.shape} must be (P, d, d) and (d, d)")
        object.__setattr__(self, "sensing", a)
        object.__setattr__(self, "target", x)
        object.__setattr__(self, "measurements", np.einsum("pij,ji->p", a, x))

    @classmethod
    def random(cls, dimension: int, rank: int, dataset_size: int, seed: int) -> MatrixSensing:
        """Gaussian ``A_i``, rank-``r`` ``X*`` from a truncated SVD of a Gaussian matrix (003 A.2.1)."""
        for name, val in (("dimension", dimension), ("rank", rank), ("dataset_size", dataset_size)):
            if not (isinstance(val, (int, np.integer)) and val >= 1):
                raise ValueError(f"{name}={val!r} is invalid: expected an integer >= 1")
        if rank > dimension:
            raise ValueError(f"rank={rank!r} is invalid: expected 1 <= rank <= dimension={dimension}")
        rng = np.random.default_rng(seed)
        a = rng.standard_normal((dataset_size, dimension, dimension))
        x0 = rng.standard_normal((dimension, dimension))
        uu, s, vt = np.linalg.svd(x0)
        s[rank:] = 0.0
        return cls(a, (uu * s) @ vt)

    @property
    def dataset_size(self) -> int:
        """``P``."""
        return int(self.sensing.shape[0])

    @property
    def dimension(self) -> int:
        """``d``."""
        return int(self.sensing.shape[1])

    @property
    def left_covariance(self) -> NDArray[np.float64]:
        """``(1/P) sum_i A_i A_i^T``."""
        return np.einsum("pij,pkj->ik", self.sensing, self.sensing) / self.dataset_size

    @property
    def right_covariance(self) -> NDArray[np.float64]:
        """``(1/P) sum_i A_i^T A_i``."""
        return np.einsum("pji,pjk->ik", self.sensing, self.sensing) / self.dataset_size

    def label_shape(self) -> tuple[int, ...]:
        """Shape of one draw of label noise: ``(P,)``."""
        return (self.dataset_size,)

    def _predictions(self, params: Params) -> NDArray[np.float64]:
        u, v = params
        x_t = np.swapaxes(u @ v, 1, 2).reshape(u.shape[0], -1)  # Tr(A X) = vec(A) . vec(X^T)
        return x_t @ self.sensing.reshape(self.dataset_size, -1).T

    def gradient(self, params: Params, label_shift: NDArray[np.float64]) -> Params:
        """Gradient of ``(1/(dP)) sum_i (Tr(A_i U V) - y_i - shift_i)^2``; ``label_shift``: ``(R, P)``."""
        u, v = params
        r = (
            2
            * (self._predictions(params) - self.measurements - label_shift)
            / (self.dimension * self.dataset_size)
        )
        d = self.dimension
        # d/dX of sum_i r_i Tr(A_i X) = sum_i r_i A_i^T
        g = np.swapaxes((r @ self.sensing.reshape(self.dataset_size, -1)).reshape(-1, d, d), 1, 2)
        return g @ np.swapaxes(v, 1, 2), np.swapaxes(u, 1, 2) @ g

    def loss(self, params: Params) -> NDArray[np.float64]:
        """Noiseless training loss per replica."""
        return np.mean((self._predictions(params) - self.measurements) ** 2, axis=1) / self.dimension

    def trace_hessian(self, params: Params) -> NDArray[np.float64]:
        """``Tr H = (2/d) [Tr(Sigma_R U U^T) + Tr(Sigma_L V^T V)]`` exactly (003 eq. 127 for ``X = U V``).

        ``d Tr(A U V)/dU = A^T V^T`` and ``d Tr(A U V)/dV = U^T A^T`` give the Gauss-Newton part with
        ``Sigma_L = (1/P) sum A A^T``, ``Sigma_R = (1/P) sum A^T A``; the residual term has zero trace because
        ``Tr(A U V)`` is bilinear in ``(U, V)``.
        """
        u, v = params
        left, right = self.left_covariance, self.right_covariance
        tu = np.einsum("ij,rik,rjk->r", right, u, u)
        tv = np.einsum("ij,rki,rkj->r", left, v, v)
        return 2.0 / self.dimension * (tu + tv)

    def test_error(self, params: Params) -> NDArray[np.float64]:
        """``||U V - X*||_F^2 / d`` (003 eq. 13)."""
        u, v = params
        return np.sum((u @ v - self.target) ** 2, axis=(1, 2)) / self.dimension


@dataclass(frozen=True)
class MatrixSensingEnsemble:
    """``K`` independent matrix-sensing problems (003 eq. 12); replica ``n`` solves instance ``n mod K``.

    A sweep whose replicas are drawn from different ``(A_i, X*)`` measures the behaviour of the random problem
    at ``(d, r, P)`` (what 003 eq. 131 predicts), not of one draw; the replicas of every hyperparameter block
    share the instances, so blocks are compared on the same problems. Each quantity equals
    :class:`MatrixSensing`'s on that replica's instance.

    >>> ens = MatrixSensingEnsemble.random(instances=2, dimension=4, rank=1, dataset_size=6, seed=0)
    >>> u = np.random.default_rng(1).standard_normal((4, 4, 4))   # replicas 0, 2 on instance 0; 1, 3 on 1
    >>> bool(np.isclose(ens.loss((u, u))[3], ens.instances[1].loss((u[3:], u[3:]))[0]))
    True
    """

    instances: tuple[MatrixSensing, ...]
    # stacked over instances, computed once: vec(A_i) (K, P, d^2), y (K, P), X* and Sigma_L, Sigma_R (K, d, d)
    sensing: NDArray[np.float64] = field(init=False, repr=False)
    measurements: NDArray[np.float64] = field(init=False, repr=False)
    target: NDArray[np.float64] = field(init=False, repr=False)
    left_covariance: NDArray[np.float64] = field(init=False, repr=False)
    right_covariance: NDArray[np.float64] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        shapes = {m.sensing.shape for m in self.instances}
        if not self.instances or len(shapes) != 1:
            raise ValueError(f"instances must be >= 1 problems of one shape (P, d, d); got shapes {shapes}")
        stacked = {"sensing": [m.sensing.reshape(m.dataset_size, -1) for m in self.instances],
                   "measurements": [m.measurements for m in self.instances],
                   "target": [m.target for m in self.instances],
                   "left_covariance": [m.left_covariance for m in self.instances],
                   "right_covariance": [m.right_covariance for m in self.instances]}
        for name, values in stacked.items():
            object.__setattr__(self, name, np.stack(values))

    @classmethod
    def random(cls, instances: int, dimension: int, rank: int, dataset_size: int,
               seed: int) -> MatrixSensingEnsemble:
        """``instances`` draws of :meth:`MatrixSensing.random`, seeded from one ``SeedSequence(seed)``."""
        if not (isinstance(instances, (int, np.integer)) and instances >= 1):
            raise ValueError(f"instances={instances!r} is invalid: expected an integer >= 1")
        seeds = np.random.SeedSequence(seed).generate_state(instances)
        return cls(tuple(MatrixSensing.random(dimension, rank, dataset_size, int(s)) for s in seeds))

    @property
    def dataset_size(self) -> int:
        """``P``."""
        return self.instances[0].dataset_size

    @property
    def dimension(self) -> int:
        """``d``."""
        return self.instances[0].dimension

    def label_shape(self) -> tuple[int, ...]:
        """Shape of one draw of label noise: ``(P,)``."""
        return (self.dataset_size,)

    def _by_instance(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        """``(N, F) -> (K, N/K, F)``: replica ``n`` to row ``n // K`` of instance ``n mod K``."""
        k = len(self.instances)
        if x.shape[0] % k:
            raise ValueError(f"replicas={x.shape[0]} is invalid: expected a multiple of instances={k}")
        return np.swapaxes(x.reshape(-1, k, x.shape[-1]), 0, 1)

    def _per_replica(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.swapaxes(x, 0, 1).reshape(-1, x.shape[-1])

    def _instance_of(self, replicas: int) -> NDArray[np.int64]:
        return np.arange(replicas) % len(self.instances)

    def _residuals(self, params: Params) -> NDArray[np.float64]:
        u, v = params
        x_t = np.swapaxes(u @ v, 1, 2).reshape(u.shape[0], -1)  # Tr(A X) = vec(A) . vec(X^T)
        pred = self._per_replica(self._by_instance(x_t) @ np.swapaxes(self.sensing, 1, 2))
        return pred - self.measurements[self._instance_of(u.shape[0])]

    def gradient(self, params: Params, label_shift: NDArray[np.float64]) -> Params:
        """Gradient of ``(1/(dP)) sum_i (Tr(A_i U V) - y_i - shift_i)^2`` per replica's instance."""
        u, v = params
        d = self.dimension
        r = 2 * (self._residuals(params) - label_shift) / (d * self.dataset_size)
        g = self._per_replica(self._by_instance(r) @ self.sensing).reshape(-1, d, d)
        g = np.swapaxes(g, 1, 2)
        return g @ np.swapaxes(v, 1, 2), np.swapaxes(u, 1, 2) @ g

    def loss(self, params: Params) -> NDArray[np.float64]:
        """Noiseless training loss per replica."""
        return np.mean(self._residuals(params) ** 2, axis=1) / self.dimension

    def trace_hessian(self, params: Params) -> NDArray[np.float64]:
        """``Tr H`` of each replica's instance (003 eq. 127, see :meth:`MatrixSensing.trace_hessian`)."""
        u, v = params
        k = self._instance_of(u.shape[0])
        tu = np.einsum("rij,rik,rjk->r", self.right_covariance[k], u, u)
        tv = np.einsum("rij,rki,rkj->r", self.left_covariance[k], v, v)
        return 2.0 / self.dimension * (tu + tv)

    def test_error(self, params: Params) -> NDArray[np.float64]:
        """``||U V - X*||_F^2 / d`` against each replica's own target (003 eq. 13)."""
        u, v = params
        return np.sum((u @ v - self.target[self._instance_of(u.shape[0])]) ** 2, axis=(1, 2)) / self.dimension


@dataclass(frozen=True)
class LabelNoiseState:
    """Weights ``(U, V)``, momentum buffers ``pi`` and the step counter; leading axis = replicas."""

    params: Params
    momentum_buffer: Params
    step: int = 0

    @classmethod
    def at_rest(cls, params: Params) -> LabelNoiseState:
        """Start with ``pi = 0`` (003 Sec. 1.1)."""
        u, v = (np.array(p, dtype=np.float64) for p in params)
        if u.shape[0] != v.shape[0]:
            raise ValueError(f"params must share the replica axis; got {u.shape} and {v.shape}")
        return cls((u, v), (np.zeros_like(u), np.zeros_like(v)), 0)


@dataclass(frozen=True)
class LabelNoiseTrajectory:
    """Quantities recorded every ``record_every`` steps, arrays of shape ``(records, replicas)``."""

    steps: NDArray[np.int64]
    squared_norm: NDArray[np.float64]
    trace_hessian: NDArray[np.float64]
    loss: NDArray[np.float64]
    test_error: NDArray[np.float64]
    final: LabelNoiseState


def _per_replica(x: ArrayLike, replicas: int, name: str, valid: str, ok) -> NDArray[np.float64]:
    a = np.broadcast_to(np.asarray(x, dtype=np.float64), (replicas,)).copy()
    if not np.all(ok(a)):
        raise ValueError(f"{name}={np.asarray(x)!r} is invalid: expected {valid}")
    return a


def label_noise_step(
    model: LabelNoiseModel,
    state: LabelNoiseState,
    lr: NDArray[np.float64],
    momentum: NDArray[np.float64],
    label_shift: NDArray[np.float64],
) -> LabelNoiseState:
    """One step of 003 eq. 1 with labels ``y + label_shift``.

    ``label_shift`` is ``eps xi`` with shape ``(R, *model.label_shape())``.

    ``lr`` and ``momentum`` have shape ``(R, 1, 1)`` (one value per replica).
    """
    u, v = state.params
    gu, gv = model.gradient(state.params, label_shift)
    pu = momentum * state.momentum_buffer[0] - gu
    pv = momentum * state.momentum_buffer[1] - gv
    return LabelNoiseState((u + lr * pu, v + lr * pv), (pu, pv), state.step + 1)


def simulate_label_noise(
    model: LabelNoiseModel,
    state: LabelNoiseState,
    lr: ArrayLike,
    momentum: ArrayLike,
    label_noise: ArrayLike,
    steps: int,
    record_every: int = 1,
    seed: int | np.random.Generator = 0,
) -> LabelNoiseTrajectory:
    """Run ``steps`` steps of label-noise SGD with momentum from ``state``; record every ``record_every``.

    Hyperparameters are scalars or one value per replica, so a grid of ``(eta, beta)`` runs in one array.
    The initial state is recorded first; a run continues from ``trajectory.final``.
    """
    replicas = state.params[0].shape[0]
    eta = _per_replica(lr, replicas, "lr", "finite values > 0", lambda a: np.isfinite(a) & (a > 0))
    beta = _per_replica(momentum, replicas, "momentum", "values in [0, 1)", lambda a: (a >= 0) & (a < 1))
    eps = _per_replica(
        label_noise, replicas, "label_noise", "finite values >= 0", lambda a: np.isfinite(a) & (a >= 0)
    )
    if not (isinstance(steps, (int, np.integer)) and steps >= 0):
        raise ValueError(f"steps={steps!r} is invalid: expected an integer >= 0")
    if not (isinstance(record_every, (int, np.integer)) and record_every >= 1):
        raise ValueError(f"record_every={record_every!r} is invalid: expected an integer >= 1")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    rec_steps, norms, traces, losses, tests = [], [], [], [], []

    def record(s: LabelNoiseState) -> None:
        u, v = s.params
        rec_steps.append(s.step)
        norms.append(np.sum(u**2, axis=(1, 2)) + np.sum(v**2, axis=(1, 2)))
        traces.append(model.trace_hessian(s.params))
        losses.append(model.loss(s.params))
        tests.append(model.test_error(s.params))

    record(state)
    shape = model.label_shape()
    scale = eps.reshape((replicas,) + (1,) * len(shape))
    eta3, beta3 = eta.reshape(replicas, 1, 1), beta.reshape(replicas, 1, 1)
    block = max(1, min(steps, 2**16 // max(1, replicas * math.prod(shape))))  # draw noise in blocks
    for k0 in range(0, steps, block):
        noise = rng.standard_normal((min(block, steps - k0), replicas, *shape)) * scale
        for k, shift in enumerate(noise, start=k0 + 1):
            state = label_noise_step(model, state, eta3, beta3, shift)
            if k % record_every == 0:
                record(state)
    return LabelNoiseTrajectory(
        np.asarray(rec_steps),
        np.asarray(norms),
        np.asarray(traces),
        np.asarray(losses),
        np.asarray(tests),
        state,
    )


def project_to_uv_valley(u: ArrayLike, v: ArrayLike) -> Params:
    """Nearest-in-``v`` point of the vector UV valley: ``v <- v - (u . v / |u|^2) u`` so that ``u . v = 0``.

    Shapes ``(R, 1, n)`` and ``(R, n, 1)`` (ERRATA 003.9: start on the zero-loss manifold).
    """
    u, v = np.asarray(u, dtype=np.float64), np.asarray(v, dtype=np.float64)
    uf, vf = u[:, 0, :], v[:, :, 0]
    coef = np.sum(uf * vf, axis=1, keepdims=True) / np.sum(uf * uf, axis=1, keepdims=True)
    return u.copy(), (vf - coef * uf)[:, :, None]


def descend_to_valley(model: LabelNoiseModel, params: Params, lr: float, steps: int) -> Params:
    """Noiseless gradient descent (no momentum) for ``steps`` steps: phase 1 of 003 Fig. 2a."""
    state = LabelNoiseState.at_rest(params)
    r = params[0].shape[0]
    eta = _per_replica(lr, r, "lr", "finite values > 0", lambda a: np.isfinite(a) & (a > 0)).reshape(r, 1, 1)
    zero = np.zeros((r, *model.label_shape()))
    for _ in range(steps):
        state = label_noise_step(model, state, eta, np.zeros((r, 1, 1)), zero)
    return state.params
