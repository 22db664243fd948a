"""Exact Hessian-vector products of one batch's loss: forward-over-reverse and reverse-over-reverse.

For the loss ``L_b(theta)`` of one batch (002 sec. 2; the Hessian of appendix I.1) and rows ``t_j`` of a
block ``T``, both functions return the rows ``H_b t_j`` in the flat order of a parameter group:

- :func:`forward_over_reverse`: ``jvp(grad L_b)(theta; t)`` with ``torch.func``, a block at once through
  ``vmap`` (the primal forward and backward pass is shared by the block). The floating-point tensors of
  the batch that reach the loss are passed through ``jvp`` with materialised zero tangents
  (:meth:`~sgd_dynamics.measure.objective.Objective.loss_operands`): left without a tangent they become
  immutable symbolic zeros, which ``mse_loss``'s forward-AD formula writes into (pytorch/pytorch#123996).
- :func:`reverse_over_reverse`: the double backward ``grad_theta <grad L_b(theta), t>`` with
  ``torch.autograd.grad(..., create_graph=True)``, one backward pass per vector over a shared graph. It
  needs no forward-mode AD, so it covers operations without forward-AD formulas (``huber_loss_backward``),
  closures that differentiate with ``torch.autograd`` inside, and modules ``torch.func`` cannot transform.

Both are exact (they differ by rounding only); the forward-over-reverse block is faster.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from sgd_dynamics.measure.flat_params import ParameterLayout
from sgd_dynamics.measure.objective import Objective


def forward_over_reverse(objective: Objective, params: dict[str, Tensor], constants: dict[str, Tensor],
                         layout: ParameterLayout, batch: Any, rows: Tensor, *,
                         vectorize: bool = True) -> Tensor:
    """Rows ``H_b t_j`` for the rows ``t_j`` of ``rows`` ``(b, m)``.

    ``params`` are the group's tensors (differentiated), ``constants`` the other parameters (held fixed).
    """
    operands, rebuild = objective.loss_operands(batch)
    zeros = [torch.zeros_like(t) for t in operands]

    def loss(p: dict[str, Tensor], ops: list[Tensor]) -> Tensor:
        return objective.loss({**constants, **p}, rebuild(ops))

    grad = torch.func.grad(loss)

    def hvp(t: Tensor) -> Tensor:
        _, ht = torch.func.jvp(grad, (params, operands), (layout.unflatten(t), zeros))
        return layout.flatten(ht)

    if vectorize and rows.shape[0] > 1:
        return torch.func.vmap(hvp)(rows)
    return torch.stack([hvp(t) for t in rows])


def reverse_over_reverse(objective: Objective, params: dict[str, Tensor], constants: dict[str, Tensor],
                         layout: ParameterLayout, batch: Any, rows: Tensor) -> Tensor:
    """Rows ``H_b t_j`` by double backward; same arguments as :func:`forward_over_reverse`."""
    leaves = [params[name].detach().requires_grad_(True) for name in layout.names]
    out = torch.zeros_like(rows)
    with torch.enable_grad():
        loss = objective.loss({**constants, **dict(zip(layout.names, leaves, strict=True))}, batch)
        if not loss.requires_grad:      # the loss does not depend on the group: H_b = 0
            return out
        grads = torch.autograd.grad(loss, leaves, create_graph=True, allow_unused=True)
        # Gradient entries without a graph are constant in theta: their rows of H_b are zero.
        live = [i for i, g in enumerate(grads) if g is not None and g.requires_grad]
        if not live:
            return out
        for j, t in enumerate(rows):
            parts = layout.unflatten(t)
            products = torch.autograd.grad([grads[i] for i in live], leaves,
                                           grad_outputs=[parts[layout.names[i]] for i in live],
                                           retain_graph=True, allow_unused=True)
            out[j] = layout.flatten({name: torch.zeros_like(leaf) if hv is None else hv
                                     for name, leaf, hv in zip(layout.names, leaves, products, strict=True)})
    return out
