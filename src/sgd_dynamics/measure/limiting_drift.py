"""Autodiff pieces of the limiting drift along a valley (003 eqs. 6-7) for a user-supplied loss.

The third-derivative contraction ``d^2(grad L)[S] = grad_w Tr(H(w) S)`` is computed as the gradient of
``sum_k s_k q_k^T H(w) q_k`` over the eigenpairs ``(s_k, q_k)`` of the symmetric ``S`` (forward-over-reverse
Hessian-vector products, then one more reverse pass), so the full third-derivative tensor is never formed.
Where forward-mode AD fails on the loss (``nn.functional.mse_loss`` against captured targets raises
"ZeroTensors are immutable", pytorch/pytorch#123996; ``huber_loss`` has no forward-AD formula) the same
quantity is taken by three reverse passes with ``torch.autograd.grad`` (exact as well), with a warning.
The drift itself is assembled by :func:`sgd_dynamics.theory.limiting_drift.limiting_drift` (eq. 6, ERRATA
003.5
and 003.7); :func:`label_noise_drift_autodiff` is Corollary 3.5 (eq. 7) with ``grad Tr H`` by autodiff.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray

from sgd_dynamics.theory import limiting_drift as theory

Loss = Callable[[torch.Tensor], torch.Tensor]


def _point(w: ArrayLike | torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(w, dtype=np.float64) if not isinstance(w, torch.Tensor) else w)
    if t.ndim != 1:
        raise ValueError(f"w must be a flat parameter vector; got shape {tuple(t.shape)}")
    return t.detach().to(torch.float64)


def hessian(loss: Loss, w: ArrayLike | torch.Tensor) -> NDArray[np.float64]:
    """Dense ``grad^2 L(w)`` in float64 (for the small models where eq. 6 is evaluated exactly)."""
    return torch.autograd.functional.hessian(loss, _point(w)).numpy()


def third_derivative_contraction(
    loss: Loss, w: ArrayLike | torch.Tensor, s: ArrayLike
) -> NDArray[np.float64]:
    """``d^2(grad L)[S]_k = sum_ij d^3 L / dw_k dw_i dw_j S_ij = d/dw_k Tr(H(w) S)`` for symmetric ``S``."""
    w0 = _point(w)
    sm = np.asarray(s, dtype=np.float64)
    if sm.shape != (w0.numel(), w0.numel()):
        raise ValueError(f"s has shape {sm.shape}; expected ({w0.numel()}, {w0.numel()})")
    vals, vecs = np.linalg.eigh((sm + sm.T) / 2)
    keep = np.abs(vals) > 1e-14 * max(1.0, float(np.abs(vals).max(initial=0.0)))
    if not keep.any():
        return np.zeros(w0.numel())
    q = torch.as_tensor(vecs[:, keep].T.copy())
    sv = torch.as_tensor(vals[keep])

    def trace_hs(x: torch.Tensor) -> torch.Tensor:
        grad = torch.func.grad(loss)
        hvp = torch.func.vmap(lambda v: torch.func.jvp(grad, (x,), (v,))[1])(q)  # rows H q_k
        return torch.sum(sv * torch.sum(q * hvp, dim=1))

    try:
        return torch.func.grad(trace_hs)(w0).detach().numpy()
    except (RuntimeError, NotImplementedError) as error:     # torch's errors for missing forward AD
        first = (str(error).splitlines() or [""])[0][:160]
        warnings.warn(f"forward-over-reverse failed on this loss ({type(error).__name__}: {first}); "
                      "taking grad Tr(H S) by three reverse passes instead", stacklevel=2)
    return _trace_hs_gradient_reverse(loss, w0, q, sv)


def _trace_hs_gradient_reverse(loss: Loss, w0: torch.Tensor, q: torch.Tensor, sv: torch.Tensor
                               ) -> NDArray[np.float64]:
    """``grad_w sum_k s_k q_k^T H(w) q_k`` with ``torch.autograd.grad`` only (three reverse passes)."""
    x = w0.clone().requires_grad_(True)
    with torch.enable_grad():
        (g,) = torch.autograd.grad(loss(x), x, create_graph=True)
        total = torch.zeros((), dtype=x.dtype)
        for qk, sk in zip(q, sv, strict=True):
            if not g.requires_grad:          # the loss is linear: H = 0
                break
            (hq,) = torch.autograd.grad(g, x, grad_outputs=qk, create_graph=True, allow_unused=True)
            if hq is not None:
                total = total + sk * (qk @ hq)
        if not total.requires_grad:          # H does not depend on w: no third derivative
            return np.zeros(w0.numel())
        (out,) = torch.autograd.grad(total, x, allow_unused=True)
    return np.zeros(w0.numel()) if out is None else out.detach().numpy()


def limiting_drift_autodiff(
    loss: Loss,
    w: ArrayLike | torch.Tensor,
    noise_covariance: ArrayLike,
    lr: float,
    momentum: float,
    label_noise: float = 1.0,
) -> NDArray[np.float64]:
    """003 eq. 6 per SGD step at a valley point ``w``, with ``H`` and the contraction by autodiff."""
    w0 = _point(w)
    return theory.limiting_drift(
        hessian(loss, w0),
        noise_covariance,
        lambda s: third_derivative_contraction(loss, w0, s),
        lr,
        momentum,
        label_noise,
    )


def trace_hessian_gradient(loss: Loss, w: ArrayLike | torch.Tensor) -> NDArray[np.float64]:
    """``grad_w Tr grad^2 L(w)`` by differentiating the dense autodiff Hessian's trace."""
    w0 = _point(w)
    return torch.func.grad(lambda x: torch.trace(torch.func.hessian(loss)(x)))(w0).detach().numpy()


def label_noise_drift_autodiff(
    loss: Loss, w: ArrayLike | torch.Tensor, c: float, lr: float, momentum: float, label_noise: float
) -> NDArray[np.float64]:
    """Corollary 3.5 (003 eq. 7) per step: ``-(eps^2 eta^2 / (4 (1 - beta)^2)) P_L grad Tr(c H)``."""
    w0 = _point(w)
    frame = theory.valley_frame(hessian(loss, w0))
    return theory.label_noise_drift(
        trace_hessian_gradient(loss, w0), frame.tangent_projector, c, lr, momentum, label_noise
    )
