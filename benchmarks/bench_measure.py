"""Benchmark of sgd_dynamics.measure: tracker overhead, Hessian top-20 vs PyHessian-style power
iteration, block vs sequential Hessian-vector products.

MNIST-1D (generated offline by the ``mnist1d`` package), MLP 40-256-256-10. Prints ratios against baselines
measured in the same run. Run: ``.venv/bin/python benchmarks/bench_measure.py`` (about 2 minutes on one
CPU thread; ``BENCH_THREADS=n`` for more).
"""

from __future__ import annotations

import os
import time

import numpy as np
import torch
from mnist1d.data import get_dataset_args, make_dataset
from threadpoolctl import threadpool_limits
from torch import nn

from sgd_dynamics.measure import HessianOperator, TrajectoryTracker, hessian_eigenpairs

LOSS = nn.functional.cross_entropy


def mnist1d() -> tuple[torch.Tensor, torch.Tensor]:
    args = get_dataset_args()
    args.seed = 0
    data = make_dataset(args)
    return torch.as_tensor(data["x"], dtype=torch.float32), torch.as_tensor(data["y"], dtype=torch.long)


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(40, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))


# ---------------------------------------------------------------------------------------------- tracker
def tracker_overhead(x: torch.Tensor, y: torch.Tensor, k: int = 30, rounds: int = 15,
                     steps: int = 64) -> None:
    """Alternate blocks of plain and tracked steps on two identical models; median per-step time of each."""
    batch = 128
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, len(x), (rounds * steps, batch), generator=g)   # with replacement, precomputed
    batches = [(x[i], y[i]) for i in idx]
    m = sum(p.numel() for p in mlp().parameters())
    q, _ = torch.linalg.qr(torch.randn(m, k, generator=g))
    rows = q.T.contiguous()
    configs = {"plain": None, f"every step, k={k}": dict(directions=rows),
               "every step, k=0": dict(directions=None),
               f"stride 10, k={k}": dict(directions=rows, schedule=10)}
    runs = {}
    for name, cfg in configs.items():
        model = mlp()
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
        tracker = None if cfg is None else TrajectoryTracker(model, opt, **cfg)
        runs[name] = (model, opt, tracker, [])

    def train_block(model, opt, tracker, block):
        for xb, yb in block:
            opt.zero_grad(set_to_none=True)
            loss = LOSS(model(xb), yb)
            loss.backward()
            opt.step()
            value = loss.item()
            if tracker is not None:
                tracker.record(loss=value)

    for model, opt, tracker, _ in runs.values():   # warm-up
        train_block(model, opt, tracker, batches[:steps])
    for r in range(rounds):
        block = batches[r * steps:(r + 1) * steps]
        for model, opt, tracker, times in runs.values():
            t0 = time.perf_counter()
            train_block(model, opt, tracker, block)
            if tracker is not None:
                tracker.history   # noqa: B018 - include the final flush of the block in the timing
            times.append((time.perf_counter() - t0) / steps)
    plain = np.median(runs["plain"][3])
    print(f"tracker overhead (MLP 40-256-256-10, m={m}, batch {batch}, SGD momentum 0.9, "
          f"{rounds} interleaved rounds x {steps} steps, torch threads={torch.get_num_threads()})")
    print(f"  plain step: {plain * 1e3:.3f} ms (median)")
    for name, (_, _, _, times) in runs.items():
        if name != "plain":
            t = np.median(times)
            print(f"  {name:<20s}: {t * 1e3:.3f} ms/step  ratio {t / plain:.3f}  (target <= 1.10)")


# ---------------------------------------------------------------------------------------------- Hessian
def pyhessian_eigenvalues(op: HessianOperator, top_n: int, max_iter: int = 100, tol: float = 1e-3,
                          seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Faithful reimplementation of PyHessian's ``hessian.eigenvalues`` (Yao et al. 2020): power iteration
    per eigenvalue, deflated by Gram-Schmidt against the eigenvectors found so far, stopped when the
    eigenvalue changes by less than ``tol`` relative (``abs(e - e_old) / (abs(e_old) + 1e-6)``)."""
    g = torch.Generator().manual_seed(seed)
    eigenvalues, eigenvectors = [], []
    for _ in range(top_n):
        v = torch.randn(op.dim, generator=g, dtype=torch.float64)
        v /= v.norm() + 1e-6
        eigenvalue = None
        for _ in range(max_iter):
            for u in eigenvectors:                       # PyHessian's orthnormal(v, eigenvectors)
                v -= (v @ u) * u
            v /= v.norm() + 1e-6
            hv = op.matmat(v)
            tmp = float(hv @ v)
            v = hv / (hv.norm() + 1e-6)
            if eigenvalue is not None and abs(eigenvalue - tmp) / (abs(eigenvalue) + 1e-6) < tol:
                eigenvalue = tmp
                break
            eigenvalue = tmp
        eigenvalues.append(eigenvalue)
        eigenvectors.append(v)
    return np.array(eigenvalues), torch.stack(eigenvectors, 1).numpy()


def hessian_benchmark(x: torch.Tensor, y: torch.Tensor, n_examples: int = 512, k: int = 20) -> None:
    model = mlp().double()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    xd = x.double()
    g = torch.Generator().manual_seed(1)
    for _ in range(300):   # leave initialisation so the spectrum has outliers, as in training
        i = torch.randint(0, len(x), (128,), generator=g)
        opt.zero_grad()
        LOSS(model(xd[i]), y[i]).backward()
        opt.step()
    data = [(xd[:n_examples], y[:n_examples])]
    print(f"\nHessian top-{k} (same MLP in float64, {n_examples} MNIST-1D examples, after 300 SGD steps)")

    ref = hessian_eigenpairs(model, LOSS, data, k=k + 5, tol=1e-12, which="LM")
    # Largest magnitude first, the order in which power iteration finds them.
    ref_vals = ref.eigenvalues[np.argsort(-np.abs(ref.eigenvalues))][:k]
    scale = np.abs(ref_vals).max()

    def accuracy(vals, vecs, op):
        order = np.argsort(-np.abs(vals))
        vals, vecs = vals[order], vecs[:, order]
        err = np.max(np.abs(vals - ref_vals) / np.abs(ref_vals))
        res = np.linalg.norm(op.to_scipy().matmat(vecs) - vecs * vals, axis=0).max() / scale
        return err, res

    op = HessianOperator(model, LOSS, data)
    t0 = time.perf_counter()
    vals, vecs = pyhessian_eigenvalues(op, k)
    t_py, n_py = time.perf_counter() - t0, op.hvp_count
    err_py, res_py = accuracy(vals, vecs, HessianOperator(model, LOSS, data))
    print(f"  PyHessian power iteration (tol 1e-3, maxIter 100): {t_py:7.2f} s  {n_py:5d} HVPs  "
          f"max rel eigenvalue error {err_py:.1e}  max residual/|rho_1| {res_py:.1e}")
    results = {}
    for method, tol in (("lanczos", 1e-3), ("lanczos", 1e-6), ("lobpcg", 1e-3)):
        t0 = time.perf_counter()
        which = "LM" if method == "lanczos" else "LA"
        res = hessian_eigenpairs(model, LOSS, data, k=k, tol=tol, which=which, method=method)
        t = time.perf_counter() - t0
        err, resid = accuracy(res.eigenvalues, res.eigenvectors, HessianOperator(model, LOSS, data))
        results[(method, tol)] = (t, res.hvp_count)
        print(f"  {method:<8s} tol {tol:.0e}{'':26s}: {t:7.2f} s  {res.hvp_count:5d} HVPs  "
              f"max rel eigenvalue error {err:.1e}  max residual/|rho_1| {resid:.1e}  "
              f"(x{t_py / t:.1f} faster, x{n_py / res.hvp_count:.1f} fewer HVPs)")
    print("  (lanczos counts include the final block of k HVPs that measures the residuals; "
          "lobpcg uses which='LA')")


def block_vs_sequential(x: torch.Tensor, y: torch.Tensor, n_examples: int = 512,
                        n_vectors: int = 32) -> None:
    print(f"\nHVP per vector, MLP 40-256-256-10, {n_examples} examples, {n_vectors} vectors")
    for dtype in (torch.float32, torch.float64):
        model = mlp().to(dtype)
        data = [(x[:n_examples].to(dtype), y[:n_examples])]
        v = torch.randn(sum(p.numel() for p in model.parameters()), n_vectors, dtype=dtype)
        times = {}
        for name, block, vectorize in (("sequential", 1, False), ("vmap block 8", 8, True),
                                       ("vmap block 32", 32, True)):
            op = HessianOperator(model, LOSS, data, block_size=block, vectorize=vectorize)
            op.matmat(v[:, :block])   # warm-up
            best = np.inf
            for _ in range(3):
                t0 = time.perf_counter()
                op.matmat(v)
                best = min(best, time.perf_counter() - t0)
            times[name] = best / n_vectors
        base = times["sequential"]
        cells = [f"{n}: {t * 1e3:.2f} ms (x{base / t:.2f})" for n, t in times.items()]
        print(f"  {str(dtype):<14s} " + "  ".join(cells))


def main() -> None:
    # One intra-op thread by default: on a small shared CPU, thread contention with other processes makes
    # multi-threaded timings of millisecond steps meaningless. BENCH_THREADS=n overrides.
    threads = int(os.environ.get("BENCH_THREADS", "1"))
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    with threadpool_limits(threads):   # numpy/scipy BLAS too (ARPACK, LOBPCG)
        x, y = mnist1d()
        tracker_overhead(x, y)
        block_vs_sequential(x, y)
        hessian_benchmark(x, y)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
