"""Benchmark of sgd_dynamics.measure against the real peers (issue 15 goals 1, 2, 4 and 5), in one run.

MLP 40-256-256-10 on MNIST-1D (``peers.py``), medians of interleaved repeats, ratio = peer time / project time
(> 1: the project is faster). Peers from the ``bench`` extra: PyHessian 0.1, curvlinops-for-pytorch (its
Hessian operator through scipy's ``eigsh``), hessian-eigenthings, cockpit-for-pytorch.

1. Hessian-vector products, one vector and per vector of a block (float64, 512 examples).
2. Top-k eigenpairs, k = 10 and 20, largest magnitude, at equal accuracy: every result is scored by its
   largest relative eigenvalue error against a tight reference (``eigsh`` at tol 1e-12 on curvlinops'
   operator, an HVP independent of the project's); goal lines are printed only for contenders within
   1e-6, except PyHessian, whose power iteration does not get there in minutes: its default (tol 1e-3,
   ~1e-2 error) is timed, so its ratio is a lower bound of the ratio at equal accuracy.
3. Hutchinson trace with PyHessian's stopping rule (tol 1e-3): the project runs the same estimator with the
   same number of Rademacher probes (equal variance).
4. The tracker against the plain training step (SGD momentum 0.9, batch 128, float32) at k = 30 and 100,
   and Cockpit's cheapest quantities (Loss, Distance, UpdateSize, GradNorm: no BackPACK extension), at 1
   and 2 threads.
5. ``gradient_noise`` (``tr Sigma`` and ``q^T Sigma q`` along 10 directions, by the linear-layer identity)
   against the per-example autograd loop that defines it: equal to 1e-12 relative, then the time ratio.

Run: ``python benchmarks/bench_measure.py`` (about 6 minutes on one loaded core), ``--quick`` (about 1.5).
"""

from __future__ import annotations

import argparse
import copy
import importlib.metadata
import time

import numpy as np
import scipy.sparse.linalg as spla
import torch
from peers import (
    LOSS,
    cockpit,
    default_dtype,
    goal_line,
    interleaved,
    mlp,
    mnist1d,
    note_line,
    peer,
    trained_float64_mlp,
)
from threadpoolctl import threadpool_limits
from torch import nn

from sgd_dynamics.measure import (
    HessianOperator,
    TrajectoryTracker,
    gradient_noise,
    hessian_eigenpairs,
    hessian_trace,
)

ACCURACY = 1e-6   # largest relative eigenvalue error for "equal accuracy"


# ---------------------------------------------------------------------------------------------- HVPs
def hvp_costs(model: nn.Module, data: list, rounds: int) -> None:
    pyhessian, curvlinops = peer("pyhessian"), peer("curvlinops")
    params = list(model.parameters())
    m = sum(p.numel() for p in params)
    v = torch.randn(m, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with default_dtype(torch.float64):
        ph = pyhessian.hessian(copy.deepcopy(model), LOSS, data=data[0], cuda=False)
    shapes = [p.shape for p in ph.params]

    def pyhessian_one():   # PyHessian's single-batch product: its kept gradient graph
        parts = [t.view(s) for t, s in zip(torch.split(v[:, 0], [s.numel() for s in shapes]), shapes,
                                                strict=True)]
        return torch.autograd.grad(ph.gradsH, ph.params, grad_outputs=parts, retain_graph=True)

    cl = curvlinops.HessianLinearOperator(model, nn.CrossEntropyLoss(), params, data,
                                          check_deterministic=False)
    ours = HessianOperator(model, LOSS, data)
    fwd = HessianOperator(model, LOSS, data, hvp="forward-over-reverse")
    contenders = {"PyHessian": pyhessian_one, "curvlinops": lambda: cl @ v[:, 0],
                  "project": lambda: ours.matmat(v[:, 0]),
                  "curvlinops block 16": lambda: cl @ v,
                  "project block 16": lambda: ours.matmat(v),
                  "project fwd-over-rev block 16": lambda: fwd.matmat(v)}
    for f in contenders.values():
        f()   # warm-up (and the project's kept graph)
    t, _ = interleaved(contenders, rounds)
    per = {name: t[name] / (16 if "block" in name else 1) for name in t}
    print(f"\nHessian-vector products, float64, {len(data[0][1])} examples, m={m} "
          f"(ms per vector, median of {rounds} interleaved rounds)")
    print("  " + "  ".join(f"{name}: {ms * 1e3:.1f}" for name, ms in per.items()))
    print(f"  ratio one vector: PyHessian/project {per['PyHessian'] / per['project']:.2f}x, "
          f"curvlinops/project {per['curvlinops'] / per['project']:.2f}x")


# ---------------------------------------------------------------------------------------------- eigenpairs
def eigenpairs(model: nn.Module, data: list, k: int, rounds: int, reference: np.ndarray) -> None:
    pyhessian, curvlinops, eigenthings = peer("pyhessian"), peer("curvlinops"), peer("hessian_eigenthings")
    ref = reference[np.argsort(-np.abs(reference))][:k]

    def error(values) -> float:
        values = np.asarray(values, dtype=np.float64)
        return float(np.max(np.abs(values[np.argsort(-np.abs(values))] - ref) / np.abs(ref)))

    def run_pyhessian():
        with default_dtype(torch.float64):   # its vectors come from torch.randn
            h = pyhessian.hessian(copy.deepcopy(model), LOSS, data=data[0], cuda=False)
            return h.eigenvalues(maxIter=100, tol=1e-3, top_n=k)[0]

    products, project_name = {}, "project (eigenvalue_tol 1e-6)"

    def run_curvlinops():
        op = curvlinops.HessianLinearOperator(model, nn.CrossEntropyLoss(), list(model.parameters()), data,
                                              check_deterministic=False).to_scipy()

        def matvec(v):   # counted, to print the HVPs each side spent
            products["curvlinops"] += 1
            return op @ v

        counted = spla.LinearOperator(op.shape, matvec=matvec, dtype=np.float64)
        # A seeded start vector (the project's): ARPACK's own is drawn anew per call.
        v0 = np.random.default_rng(0).standard_normal(op.shape[0])
        products["curvlinops"] = 0
        return spla.eigsh(counted, k=k, which="LM", tol=1e-3, v0=v0)[0]

    def run_eigenthings():   # one Lanczos run, fully reorthogonalised, 3k steps (2k misses 1e-6)
        op = eigenthings.HessianOperator(model, data, eigenthings.supervised_loss(LOSS))
        return eigenthings.lanczos(op, k=k, max_iter=3 * k, which="LM", seed=0,
                                   reorthogonalize=True).eigenvalues

    def run_project():
        # Asked for the accuracy the goal is scored at: it stops when every eigenvalue's error bound
        # min(r, r^2 / gap) is within 1e-6 relative (its residuals are then about 1e-4).
        res = hessian_eigenpairs(model, LOSS, data, k=k, which="LM", eigenvalue_tol=ACCURACY)
        products["project"] = res.hvp_count
        return res.eigenvalues

    contenders = {"PyHessian (tol 1e-3)": run_pyhessian, "curvlinops + eigsh (tol 1e-3)": run_curvlinops,
                  "hessian-eigenthings lanczos": run_eigenthings, project_name: run_project}
    t, results = interleaved(contenders, rounds)
    project = t[project_name]
    print(f"\nTop-{k} Hessian eigenpairs (largest magnitude, float64, {len(data[0][1])} examples, median of "
          f"{rounds} interleaved rounds; error = max relative eigenvalue error vs eigsh tol 1e-12)")
    for name, seconds in t.items():
        print(f"  {name:<30s} {seconds:7.2f} s  error {error(results[name]):.1e}  "
              f"ratio {seconds / project:.2f}x")
    print(f"  HVPs: curvlinops + eigsh {products['curvlinops']}, project {products['project']}")
    ok = error(results[project_name]) <= ACCURACY
    for name, goal, label in (("PyHessian (tol 1e-3)", 3.0, "PyHessian (its default tol: a lower bound)"),
                              ("curvlinops + eigsh (tol 1e-3)", 1.5, "curvlinops + eigsh")):
        peer_ok = error(results[name]) <= ACCURACY or name.startswith("PyHessian")
        if ok and peer_ok:
            print(goal_line(2, f"top-{k} eigenpairs vs {label}", goal, t[name] / project))
        else:
            print(note_line(2, f"top-{k} vs {label}: accuracy not equal (project error "
                            f"{error(results[project_name]):.1e}, peer {error(results[name]):.1e}): "
                            "no ratio"))


# ---------------------------------------------------------------------------------------------- trace
def trace(model: nn.Module, data: list, rounds: int) -> None:
    pyhessian = peer("pyhessian")
    with default_dtype(torch.float64):
        probes = len(pyhessian.hessian(copy.deepcopy(model), LOSS, data=data[0], cuda=False).trace())

    def run_pyhessian():
        with default_dtype(torch.float64):
            return float(np.mean(pyhessian.hessian(copy.deepcopy(model), LOSS, data=data[0],
                                                   cuda=False).trace()))

    def run_project():
        return hessian_trace(model, LOSS, data, num_matvecs=probes, method="hutchinson").estimate

    t, results = interleaved({"PyHessian": run_pyhessian, "project": run_project}, rounds)
    print(f"\nHutchinson trace, {probes} Rademacher probes (PyHessian's tol 1e-3 stopping point), median of "
          f"{rounds} rounds: PyHessian {t['PyHessian']:.2f} s ({results['PyHessian']:.1f}), project "
          f"{t['project']:.2f} s ({results['project']:.1f})")
    ratio = t["PyHessian"] / t["project"]
    print(f"  Hutchinson trace PyHessian / project: {ratio:.2f}x ({'faster' if ratio >= 1 else 'slower'})")


# ---------------------------------------------------------------------------------------------- peers
def real_peers() -> None:
    """Goal 1: the comparisons import the peer packages themselves (``peer`` exits if one is missing)."""
    names = {"pyhessian": "PyHessian", "curvlinops": "curvlinops-for-pytorch",
             "hessian_eigenthings": "hessian-eigenthings", "torchsde": "torchsde"}
    for module in names:
        peer(module)
    cockpit()
    dists = [*names.values(), "cockpit-for-pytorch"]
    versions = ", ".join(f"{d} {importlib.metadata.version(d)}" for d in dists)
    print(note_line(1, f"real peers imported: {versions} (met)"))


# ---------------------------------------------------------------------------------------------- noise
def noise_cost(model: nn.Module, data: list, rounds: int, k: int = 10) -> None:
    """Goal 5: ``gradient_noise`` (linear-layer identity) against a per-example autograd loop, float64."""
    x, y = data[0]
    params = list(model.parameters())
    m = sum(p.numel() for p in params)
    q = torch.linalg.qr(torch.randn(m, k, dtype=torch.float64, generator=torch.Generator().manual_seed(2)))[0]

    def per_example_loop():   # the definition: Sigma = (1/N) sum_n (g_n - g)(g_n - g)^T
        g = torch.stack([torch.cat([t.reshape(-1) for t in torch.autograd.grad(
            LOSS(model(x[i:i + 1]), y[i:i + 1]), params)]) for i in range(len(y))])
        c = g - g.mean(0)
        return float(c.square().sum()) / len(y), ((c @ q).square().sum(0) / len(y)).numpy()

    def project():
        noise = gradient_noise(model, LOSS, data, q)
        return noise.trace, noise.mode_noise

    t, results = interleaved({"per-example loop": per_example_loop, "project": project}, rounds)
    (tr_ref, s_ref), (tr, s) = results["per-example loop"], results["project"]
    error = max(abs(tr - tr_ref) / tr_ref, float(np.max(np.abs(s - s_ref) / np.abs(s_ref))))
    ratio = t["per-example loop"] / t["project"]
    print(f"\nGradient noise, tr Sigma and {k} q^T Sigma q, float64, {len(y)} examples, median of {rounds} "
          f"rounds: "
          f"per-example loop {t['per-example loop']:.2f} s, project {t['project'] * 1e3:.1f} ms; "
          f"largest relative difference {error:.1e}")
    if error <= 1e-12:
        print(goal_line(5, "gradient_noise vs the per-example loop (equal to 1e-12)", 1.0, ratio))
    else:
        print(note_line(5, f"gradient_noise differs from the per-example loop by {error:.1e} > 1e-12: "
                        "no ratio (NOT met)"))


# ---------------------------------------------------------------------------------------------- tracker
def tracker_overhead(x: torch.Tensor, y: torch.Tensor, rounds: int, steps: int = 127) -> None:
    """Per-step time of the tracked loops / the plain loop, medians over interleaved ``steps``-step blocks.

    A timed block is one tracker block: ``B - 1 = 127`` steps at the default ``block_size`` of 128 rows, so
    each holds exactly one flush (its product) and reading ``history`` at its end flushes nothing. The
    order of the contenders alternates between rounds (no fixed position after the Cockpit's backward).
    """
    cp = cockpit()
    from cockpit import quantities
    from cockpit.utils.schedules import linear

    batch = 128
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, len(x), (rounds * steps + steps, batch), generator=g)
    batches = [(x[i], y[i]) for i in idx]
    m = sum(p.numel() for p in mlp().parameters())
    runs = {}
    for name in ("plain", "tracker k=30", "tracker k=100", "Cockpit cheapest"):
        model = mlp()
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
        tracker = cockpit_ = None
        if name.startswith("tracker"):
            k = int(name.split("=")[1])
            q, _ = torch.linalg.qr(torch.randn(m, k, generator=g))
            tracker = TrajectoryTracker(model, opt, q.T.contiguous())
        elif name.startswith("Cockpit"):
            every = linear(1)
            cockpit_ = cp.Cockpit(model.parameters(), quantities=[
                quantities.Loss(every), quantities.Distance(every), quantities.UpdateSize(every),
                quantities.GradNorm(every)])
        runs[name] = (model, opt, tracker, cockpit_, [])
    counter = {name: 0 for name in runs}

    def train(name, block):
        model, opt, tracker, cockpit_, _ = runs[name]
        for xb, yb in block:
            opt.zero_grad(set_to_none=True)
            loss = LOSS(model(xb), yb)
            if cockpit_ is None:
                loss.backward()
            else:
                step = counter[name]   # Cockpit counts from 0 (Distance caches the start there)
                counter[name] += 1
                with cockpit_(step, info={"batch_size": batch, "optimizer": opt, "loss": loss}):
                    loss.backward(create_graph=cockpit_.create_graph(step))
            opt.step()
            value = loss.item()
            if tracker is not None:
                tracker.record(loss=value)
        if tracker is not None:
            tracker.history   # noqa: B018 - include the final flush of the block in the timing

    for name in runs:
        train(name, batches[:steps])    # warm-up
    times = {name: [] for name in runs}
    for r in range(1, rounds + 1):
        block = batches[r * steps:(r + 1) * steps]
        order = list(runs) if r % 2 else list(runs)[::-1]
        t, _ = interleaved({name: lambda name=name, block=block: train(name, block)
                            for name in order}, 1)
        for name in runs:
            times[name].append(t[name] / steps)
    med = {name: float(np.median(v)) for name, v in times.items()}
    plain = med["plain"]
    print(f"  threads={torch.get_num_threads()} ({steps}-step blocks): plain step {plain * 1e3:.3f} ms; "
          + "; ".join(
        f"{name} {med[name] / plain:.3f}x the plain loop" for name in runs if name != "plain"))
    for k, goal in ((30, 1.10), (100, 1.25)):
        # Each round's tracked block over the plain block of the same round (paired: the machine's drift
        # between rounds cancels), the median of the rounds and a bootstrap interval of that median.
        paired = np.asarray(times[f"tracker k={k}"]) / np.asarray(times["plain"])
        low, high = median_interval(paired)
        threads = torch.get_num_threads()
        print(goal_line(4, f"tracker k={k}, {threads} thread{'s' * (threads > 1)}, / the plain loop", goal,
                        float(np.median(paired)), at_most=True, digits=3)
              + f"; 95% interval [{low:.3f}, {high:.3f}] over {paired.size} paired blocks"
              + f"; Cockpit cheapest / tracker k={k}: {med['Cockpit cheapest'] / med[f'tracker k={k}']:.2f}x")


def median_interval(values: np.ndarray, resamples: int = 4000, seed: int = 0) -> tuple[float, float]:
    """A 95% percentile-bootstrap interval of the median of ``values``."""
    rng = np.random.default_rng(seed)
    medians = np.median(rng.choice(values, size=(resamples, values.size)), axis=1)
    return float(np.percentile(medians, 2.5)), float(np.percentile(medians, 97.5))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, k = 10 only (a smoke run)")
    args = parser.parse_args()
    rounds = 1 if args.quick else 3
    t0 = time.perf_counter()
    real_peers()
    x, y = mnist1d()
    # One thread: on a small shared CPU, multi-threaded timings of millisecond kernels are noise. BLAS too.
    torch.set_num_threads(1)
    with threadpool_limits(1):
        model = trained_float64_mlp(x, y)
        data = [(x[:512].double(), y[:512])]
        hvp_costs(model, data, rounds=3 if args.quick else 9)
        ks = (10,) if args.quick else (10, 20)
        curvlinops = peer("curvlinops")
        op = curvlinops.HessianLinearOperator(model, nn.CrossEntropyLoss(), list(model.parameters()), data,
                                              check_deterministic=False).to_scipy()
        reference = spla.eigsh(op, k=max(ks) + 5, which="LM", tol=1e-12)[0]
        for k in ks:
            eigenpairs(model, data, k, rounds, reference)
        trace(model, data, rounds)
        noise_cost(model, data, rounds)
    print(f"\nTracker overhead (MLP 40-256-256-10, m={sum(p.numel() for p in mlp().parameters())}, float32, "
          "batch 128, SGD momentum 0.9, every step, medians of interleaved 127-step blocks:"
          " one tracker block each)")
    for threads in (1, 2):
        torch.set_num_threads(threads)
        with threadpool_limits(threads):
            tracker_overhead(x, y, rounds=5 if args.quick else 15)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
