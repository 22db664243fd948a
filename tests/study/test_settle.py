"""The settle loop: monitored values against dense computations, the window logic against known series."""

import json
import re

import numpy as np
import pytest
import torch
from torch import nn

from sgd_dynamics.experiments.settle import SERIES, monitor_subset, monitored_values, settle_until_certified
from sgd_dynamics.experiments.study import StudyConfig, run_study
from sgd_dynamics.report.study import write_study_report


def _tiny():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    x = torch.randn(40, 3, dtype=torch.float64)
    y = torch.randint(2, (40,))
    return model, nn.functional.cross_entropy, x, y


def test_monitored_values_match_dense_hessian_and_per_example_loop():
    model, loss_fn, x, y = _tiny()
    got = monitored_values(model, loss_fn, x, y, seed=0)
    params = list(model.parameters())
    flat = torch.cat([p.detach().reshape(-1) for p in params])
    shapes = [p.shape for p in params]

    def loss_of(v, xs, ys):
        i = 0
        chunks = []
        for s in shapes:
            n = int(np.prod(s))
            chunks.append(v[i:i + n].reshape(s))
            i += n
        h = torch.tanh(xs @ chunks[0].T + chunks[1])
        out = h @ chunks[2].T + chunks[3]
        return loss_fn(out, ys)

    dense = torch.autograd.functional.hessian(lambda v: loss_of(v, x, y), flat)
    grads = torch.stack([torch.autograd.functional.jacobian(lambda v, i=i: loss_of(v, x[i:i + 1], y[i:i + 1]),
                                                            flat) for i in range(len(x))])
    centred = grads - grads.mean(0)
    assert got["loss"] == pytest.approx(float(loss_of(flat, x, y)), rel=1e-10)
    assert got["theta_sq_norm"] == pytest.approx(float(flat @ flat), rel=1e-10)
    assert got["trace_sigma"] == pytest.approx(float(centred.square().sum() / len(x)), rel=1e-6)
    # k = 1 at tolerance 1e-2: the residual bound |rho - rho_1| <= tol * |rho_1| (Lanczos converges faster)
    assert got["top_eigenvalue"] == pytest.approx(float(torch.linalg.eigvalsh(dense)[-1]), rel=1e-2)
    assert set(got) == set(SERIES)


def test_monitor_subset_is_fixed_and_seeded():
    x, y = torch.arange(100.0)[:, None], torch.arange(100)
    a, b = monitor_subset(x, y, 10, seed=3), monitor_subset(x, y, 10, seed=3)
    assert torch.equal(a[0], b[0]) and len(a[0]) == 10 and torch.equal(a[0][:, 0].long(), a[1])
    assert monitor_subset(x, y, 500, seed=3)[0] is x


def test_flat_series_certified_after_two_windows_and_steps_add_up():
    rng = np.random.default_rng(0)
    trained = []
    record = settle_until_certified(trained.append,
                                    lambda: dict.fromkeys(SERIES, 1 + 0.001 * rng.standard_normal()),
                                    window_steps=25, observations=10, max_windows=5)
    assert record.stationary and record.window.max() == 1
    assert sum(trained) == 2 * 25 and record.step[-1] == 50 and len(record.step) == 20
    assert all(len(v) == 20 for v in record.series.values())


def test_decaying_series_is_not_certified_and_stops_at_the_cap():
    t = iter(range(10**6))
    # exp(-k/30) falls 28% per window of 10 observations: far above the 2% relevance threshold
    record = settle_until_certified(lambda n: None, lambda: dict.fromkeys(SERIES, 1 + np.exp(-next(t) / 30)),
                    window_steps=10, observations=10, max_windows=3)
    assert not record.stationary and record.window.max() == 2
    assert {c["name"] for c in record.certificate["criteria"] if not c["holds"]} >= {"loss: trend"}


def test_quick_study_stores_the_certificate_series_and_replica_split(tmp_path):
    config = StudyConfig.quick()
    run_study(config, tmp_path, progress=False, log=lambda s: None)
    summary = json.loads((tmp_path / "summary.json").read_text())
    cert = summary["stationarity"]
    assert isinstance(cert["stationary"], bool) and len(cert["criteria"]) == 2 * len(SERIES)
    assert {"name", "value", "threshold", "holds"} == set(cert["criteria"][0])
    stored = json.loads(next((tmp_path / "pretrain").glob("settle_*.json")).read_text())
    assert stored == cert
    if not cert["stationary"]:
        speed = [r for r in summary["rows"] if r["quantity"].startswith("speed")]
        assert speed and all(r["verdict"] == "not_stationary" for r in speed)
    d = summary["displacement"]
    assert set(d) == {"lr", "momentum", "batch_size", "sampler", "replicas", "step", "total", "drift",
                      "diffusion", "diffusion_stderr", "predicted_total", "predicted_drift",
                      "predicted_diffusion"}
    assert d["replicas"] == config.replicas and d["step"][0] == 1 and d["step"][-1] <= config.steps
    assert all(len(d[key]) == len(d["step"]) for key in ("total", "drift", "diffusion", "diffusion_stderr",
                                                          "predicted_total", "predicted_drift"))
    # law of total variance: the unbiased split adds up exactly
    np.testing.assert_allclose(np.add(d["drift"], d["diffusion"]), d["total"], rtol=1e-9)
    judged = [r for r in summary["rows"] if r["quantity"].startswith("diffusion part")
              and "full spectrum" in r["quantity"]]
    assert [r["tolerance"] for r in judged] == [0.5]           # steps = 60: only k = 10 is inside the run
    expected = "not_stationary" if not cert["stationary"] else None
    assert expected is None or judged[0]["verdict"] == expected
    page = write_study_report(tmp_path).read_text()
    headings = re.findall(r"<h2[^>]*>([^<]*)</h2>", page)
    assert headings[:2] == ["Summary: predicted vs measured", "Stationarity of theta*"], headings
    assert headings.index("Drift and diffusion of the default point (replicas)") < headings.index(
        "Hessian spectrum and gradient noise at theta*")
    assert ("NOT certified stationary" in page) == (not cert["stationary"])
