"""Tracking and measurements under DistributedDataParallel: 2 CPU processes (gloo) against one process.

References: the single-process tracker on the same global batches; for the sharded ``gradient_noise``,
per-example gradients by ``torch.autograd.grad`` one example at a time and ``numpy.cov(bias=True)`` of
the union; for the sharded Hessian, the dense ``torch.autograd.functional.hessian`` of the union's mean
loss and ``numpy.linalg.eigvalsh``.
"""

from __future__ import annotations

import socket
import time

import ddp_worker
import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch import nn
from training_setup import make_batches, make_directions, make_net

from sgd_dynamics.measure import TrajectoryTracker

pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="torch.distributed with gloo is not available")
LOSS = nn.functional.cross_entropy
WORLD = 2


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(out_dir, timeout_s: float = 120.0) -> None:
    context = torch.multiprocessing.spawn(ddp_worker.run, args=(WORLD, _free_port(), str(out_dir)),
                                          nprocs=WORLD, join=False)
    deadline = time.monotonic() + timeout_s
    try:
        while not context.join(timeout=1.0):      # raises if a rank failed
            if time.monotonic() > deadline:
                pytest.fail(f"the {WORLD} DDP processes did not finish within {timeout_s} s")
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()
                process.join(5)


def _single_process_history():
    net = make_net()
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    tracker = TrajectoryTracker(net, opt, make_directions(sum(p.numel() for p in net.parameters())))
    for _ in range(ddp_worker.STEPS_EPOCHS):
        for x, y in make_batches():
            opt.zero_grad()
            loss = LOSS(net(x), y)
            loss.backward()
            opt.step()
            tracker.record(loss.detach())
    return tracker.history, torch.nn.utils.parameters_to_vector(net.parameters()).detach().numpy()


def _union():
    batches = make_batches()
    return torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])


def _dense_references(net: nn.Module):
    x, y = _union()
    params = list(net.parameters())
    rows = []
    for i in range(len(y)):
        grads = torch.autograd.grad(LOSS(net(x[i:i + 1]), y[i:i + 1]), params)
        rows.append(torch.cat([g.reshape(-1) for g in grads]))
    gradients = torch.stack(rows).numpy()
    sigma = np.cov(gradients.T, bias=True)        # population covariance, 1/N

    names = [n for n, _ in net.named_parameters()]
    shapes = [p.shape for p in params]
    sizes = [p.numel() for p in params]

    def mean_loss(theta):
        parts = torch.split(theta, sizes)
        named = {n: t.reshape(s) for n, t, s in zip(names, parts, shapes, strict=True)}
        return LOSS(torch.func.functional_call(net, named, (x,)), y)

    theta = torch.nn.utils.parameters_to_vector(params).detach()
    hessian = torch.autograd.functional.hessian(mean_loss, theta).numpy()
    return gradients, sigma, hessian


def test_ddp_tracking_and_sharded_measurements_equal_one_process(tmp_path):
    _spawn(tmp_path)
    ranks = [dict(np.load(tmp_path / f"rank{r}.npz")) for r in range(WORLD)]
    expected, theta = _single_process_history()
    for r, result in enumerate(ranks):
        np.testing.assert_allclose(result["theta"], theta, rtol=1e-12, atol=1e-14)
        for key, value in expected.items():
            np.testing.assert_allclose(result[f"history_{key}"], value, rtol=1e-12, atol=1e-14,
                                       err_msg=f"rank {r}: {key}")
    # The default tracker records on rank 0 only; the others count the steps.
    assert ranks[0]["rank0_rows"] == len(expected["step"]) and ranks[1]["rank0_rows"] == 0
    assert ranks[1]["rank0_steps"] == len(expected["step"])

    net = make_net()
    with torch.no_grad():
        torch.nn.utils.vector_to_parameters(torch.from_numpy(theta), net.parameters())
    gradients, sigma, hessian = _dense_references(net)
    q = make_directions(sum(p.numel() for p in net.parameters())).numpy()
    for result in ranks:
        assert int(result["num_examples"]) == len(gradients)
        np.testing.assert_allclose(result["trace"], np.trace(sigma), rtol=1e-12)
        np.testing.assert_allclose(result["mode_noise"], np.einsum("im,mn,in->i", q, sigma, q), rtol=1e-11)
        np.testing.assert_allclose(result["mean_gradient"], gradients.mean(0), rtol=1e-11, atol=1e-15)
        np.testing.assert_allclose(result["hv"], hessian @ ddp_worker.probe_block(len(theta)).numpy(),
                                   rtol=1e-11, atol=1e-13)
        np.testing.assert_allclose(result["eigenvalues"], np.linalg.eigvalsh(hessian)[::-1][:3], rtol=1e-10)
    # Every rank sees the same operator, so the solver takes the same path everywhere.
    np.testing.assert_array_equal(ranks[0]["eigenvalues"], ranks[1]["eigenvalues"])


def test_process_group_without_torch_distributed_is_refused():
    from sgd_dynamics.measure import gradient_noise, hessian_eigenpairs

    net, batches = make_net(), make_batches()[:2]
    if dist.is_initialized():
        pytest.skip("a default process group exists in this process")
    with pytest.raises(ValueError, match="process_group=.* is invalid: expected None"):
        gradient_noise(net, LOSS, batches, process_group="WORLD")
    with pytest.raises(ValueError, match="process_group=.* is invalid: expected None"):
        hessian_eigenpairs(net, LOSS, batches, k=2, process_group="WORLD")
