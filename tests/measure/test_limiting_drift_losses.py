"""The third-derivative contraction of 003 eq. 6 for losses forward-mode AD cannot take (MSE, Huber).

Reference: central differences of ``Tr(H(w) S)`` with the dense ``torch.autograd.functional.hessian``
(reverse-over-reverse), error ``O(h^2)`` in the step.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from sgd_dynamics.measure import limiting_drift as mld

_G = torch.Generator().manual_seed(0)
X = torch.randn(10, 3, generator=_G, dtype=torch.float64)
Y = torch.randn(10, generator=_G, dtype=torch.float64)

LOSSES = {   # targets captured by the closure, as a user writes a loss of the flat parameters
    "mse": (lambda w: F.mse_loss(torch.tanh(X @ w), Y), True),
    "huber": (lambda w: F.huber_loss(torch.tanh(X @ w), Y, delta=0.3), True),
    "bce_with_logits": (lambda w: F.binary_cross_entropy_with_logits(X @ w, (Y > 0).double()), False),
    "quartic": (lambda w: (w**4).sum() + (X @ w).square().mean(), False),
}


def _trace_hs_by_differences(loss, w: np.ndarray, s: np.ndarray, step: float = 1e-4) -> np.ndarray:
    def trace_hs(x: np.ndarray) -> float:
        return float(np.sum(torch.autograd.functional.hessian(loss, torch.as_tensor(x)).numpy() * s))

    eye = np.eye(w.size)
    return np.array([(trace_hs(w + step * e) - trace_hs(w - step * e)) / (2 * step) for e in eye])


@pytest.mark.parametrize("name", list(LOSSES))
def test_contraction_matches_central_differences(name):
    loss, falls_back = LOSSES[name]
    w = np.array([0.3, -0.2, 0.5])
    a = np.random.default_rng(1).standard_normal((3, 3))
    s = a + a.T
    if falls_back:
        with pytest.warns(UserWarning, match="forward-over-reverse failed on this loss"):
            got = mld.third_derivative_contraction(loss, w, s)
    else:
        got = mld.third_derivative_contraction(loss, w, s)
    ref = _trace_hs_by_differences(loss, w, s)
    # Truncation h^2 |d^5 L| / 6 ~ 1e-8 at h = 1e-4; rounding eps |H| / h ~ 1e-12.
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-7 * max(1.0, np.abs(ref).max()))


def test_reverse_formulation_is_taken_directly_and_exact():
    loss = LOSSES["bce_with_logits"][0]
    w0 = torch.tensor([0.3, -0.2, 0.5], dtype=torch.float64)
    q = torch.eye(3, dtype=torch.float64)
    sv = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    forward = mld.third_derivative_contraction(loss, w0, np.diag(sv.numpy()))
    np.testing.assert_allclose(mld._trace_hs_gradient_reverse(loss, w0, q, sv), forward, rtol=1e-12,
                               atol=1e-14)
