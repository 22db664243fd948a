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
  :class:`GradientGraph` keeps the gradient's graph, so that repeated products on the same batch cost one
  backward pass each (the forward and first backward pass are shared by all of them).

Both are exact (they differ by rounding only). Fresh per product, the forward-over-reverse block is
faster; on a kept graph one vector at a time is about as fast as the block and needs less memory.
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


class GradientGraph:
    """The gradient of one batch's loss with its autograd graph kept, for repeated double backwards.

    Building it costs one forward and one backward pass (``create_graph=True``); each product
    :meth:`rows` is then one backward pass through the gradient's graph, so an operator that multiplies
    one batch many times (Lanczos) pays the forward and first backward pass once instead of per vector.
    Memory: the batch's activations and the gradient's graph, for as long as the object lives.
    """

    def __init__(self, objective: Objective, params: dict[str, Tensor], constants: dict[str, Tensor],
                 layout: ParameterLayout, batch: Any) -> None:
        self.layout = layout
        self.leaves = [params[name].detach().requires_grad_(True) for name in layout.names]
        self.grads: list[Tensor] = []
        self.live: list[int] = []
        with torch.enable_grad():
            loss = objective.loss({**constants, **dict(zip(layout.names, self.leaves, strict=True))}, batch)
            if not loss.requires_grad:      # the loss does not depend on the group: H_b = 0
                return
            self.grads = list(torch.autograd.grad(loss, self.leaves, create_graph=True, allow_unused=True))
        # Gradient entries without a graph are constant in theta: their rows of H_b are zero.
        self.live = [i for i, g in enumerate(self.grads) if g is not None and g.requires_grad]

    def rows(self, rows: Tensor) -> Tensor:
        """Rows ``H_b t_j`` for the rows ``t_j`` of ``rows`` ``(b, m)``."""
        if not self.live:
            return torch.zeros_like(rows)
        out = torch.empty_like(rows)
        names, live = self.layout.names, self.live
        for j, t in enumerate(rows):
            parts = self.layout.unflatten(t)
            products = torch.autograd.grad([self.grads[i] for i in live], self.leaves,
                                           grad_outputs=[parts[names[i]] for i in live],
                                           retain_graph=True, allow_unused=True)
            # Written in place into the output row: a Lanczos step spends one product per call.
            self.layout.flatten({name: torch.zeros_like(leaf) if hv is None else hv
                                 for name, leaf, hv in zip(names, self.leaves, products, strict=True)},
                                out=out[j])
        return out


def reverse_over_reverse(objective: Objective, params: dict[str, Tensor], constants: dict[str, Tensor],
                         layout: ParameterLayout, batch: Any, rows: Tensor) -> Tensor:
    """Rows ``H_b t_j`` by double backward; same arguments as :func:`forward_over_reverse`."""
    return GradientGraph(objective, params, constants, layout, batch).rows(rows)
