"""Sweep points on other processes: ``local:N`` and a real Dask ``LocalCluster`` give the sequential bits.

The sweep is the tiny study's (2 lrs x 2 momenta, 60 steps per point) resumed from the initialisation
with random orthonormal directions: what a point computes does not depend on where ``theta*`` came from.
"""

import dataclasses
import logging
import os
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from sgd_dynamics.experiments.executors import ExecutorSpec, open_executor, parse_executor
from sgd_dynamics.experiments.study import StudyConfig, prepare, run_sweep, sweep_executor
from sgd_dynamics.experiments.sweep import run_point
from sgd_dynamics.store import read_arrays

CONFIG = dataclasses.replace(StudyConfig.quick(), lrs=(0.005, 0.01), momenta=(0.0, 0.9))


@pytest.fixture(scope="module")
def inputs():
    torch.set_num_threads(1)   # the workers' thread count: matmul reductions then agree bit for bit
    setup = prepare(CONFIG)
    theta_star = {k: v.detach().clone() for k, v in setup.build_model().state_dict().items()}
    m = sum(v.numel() for v in theta_star.values())
    directions = np.linalg.qr(np.random.default_rng(0).standard_normal((m, 3)))[0].astype(np.float32)
    return setup, theta_star, directions


@pytest.fixture(scope="module")
def sequential(tmp_path_factory, inputs):
    dirs = run_sweep(CONFIG, *inputs, tmp_path_factory.mktemp("sequential"), progress=False)
    return {d.name: read_arrays(d / "result.h5") for d in dirs}


def _assert_same_bits(dirs, sequential):
    assert sorted(d.name for d in dirs) == sorted(sequential) and len(dirs) == 4
    for d in dirs:
        got = read_arrays(d / "result.h5")
        assert got.keys() == sequential[d.name].keys()
        for name, array in got.items():
            assert array.dtype == sequential[d.name][name].dtype
            np.testing.assert_array_equal(array, sequential[d.name][name], err_msg=f"{d.name}: {name}")


@pytest.fixture
def cluster():
    import dask
    import distributed

    # no retries: a killed worker fails its point, so the test sees the rerun resume it
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), distributed.LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None,
            silence_logs=logging.CRITICAL) as local:
        yield local


@pytest.mark.slow
def test_dask_cluster_survives_a_killed_worker_and_gives_the_sequential_bits(tmp_path, inputs, sequential,
                                                                             cluster, monkeypatch):
    import distributed

    monkeypatch.chdir(tmp_path)   # the workers started elsewhere: a relative run directory must still work

    setup, theta_star, directions = inputs
    factory = setup.build_model
    user_setup = dataclasses.replace(setup, build_model=lambda: factory())   # a user's lambda: cloudpickled
    marker, victim = tmp_path / "killed-once", "lr0.01_m0.9"

    def dies_once(point, ctx, directory):   # a crash in the middle of writing the point
        if directory.name.startswith(victim) and not marker.exists():
            marker.touch()
            directory.mkdir(parents=True)
            (directory / "point.json").write_text('{"lr": ')
            (directory / "result.tmp.h5").write_bytes(b"partial")
            os._exit(1)
        return run_point(point, ctx, directory)

    class KillingExecutor(distributed.client.ClientExecutor):
        def submit(self, fn, *args, **kwargs):
            return super().submit(dies_once, *args, **kwargs)

    out = Path("run")
    with distributed.Client(cluster) as client:
        with pytest.raises(distributed.scheduler.KilledWorker):
            run_sweep(CONFIG, user_setup, theta_star, directions, out, KillingExecutor(client),
                      progress=False)
    finished = {d.parent.name: d.stat().st_mtime_ns for d in (out / "points").glob("*/result.h5")}
    assert len(finished) == 3 and not any(name.startswith(victim) for name in finished)
    address = cluster.scheduler_address.replace("tcp://", "dask://")   # the --executor form
    with open_executor(address) as executor:
        dirs = run_sweep(CONFIG, user_setup, theta_star, directions, out, executor, progress=False)
    assert {d.parent.name: d.stat().st_mtime_ns for d in (out / "points").glob("*/result.h5")
            if d.parent.name in finished} == finished   # finished points were not recomputed
    _assert_same_bits(dirs, sequential)


@pytest.mark.slow
def test_local_processes_give_the_sequential_bits(tmp_path, inputs, sequential):
    # the study's own path: config.sweep_workers one-thread processes (the demo's sweep, issue 15 goal 7)
    with sweep_executor(dataclasses.replace(CONFIG, sweep_workers=2), None) as executor:
        assert isinstance(executor, ProcessPoolExecutor) and executor._max_workers == 2
        dirs = run_sweep(CONFIG, *inputs, tmp_path, executor, progress=False)
    _assert_same_bits(dirs, sequential)


def test_sweep_executor_prefers_the_callers_executor_and_defaults_to_this_process():
    mine = ThreadPoolExecutor(1)
    with sweep_executor(dataclasses.replace(CONFIG, sweep_workers=2), mine) as executor:
        assert executor is mine
    with sweep_executor(CONFIG, None) as executor:
        assert executor is None
    mine.shutdown()
    with pytest.raises(ValueError, match=r"sweep_workers=0 is invalid: expected .*>= 1"):
        dataclasses.replace(CONFIG, sweep_workers=0)


@pytest.mark.parametrize("text", ["local:0", "local", "local:two", "dask://host", "tcp://h:1",
                                  "dask://h:99999", ""])
def test_bad_executor_values_name_the_option_and_the_valid_forms(text):
    with pytest.raises(ValueError, match=r"--executor=.* is invalid: expected local:N .* dask://HOST:PORT"):
        parse_executor(text)


def test_executor_values_parse():
    assert parse_executor("local:3") == ExecutorSpec("local", workers=3)
    assert parse_executor("dask://node-1.cluster:8786") == ExecutorSpec("dask", address="tcp://node-1.cluster:8786")


def test_cli_reports_a_bad_executor_in_one_line_before_any_work(tmp_path, cli_main, capsys):
    config = tmp_path / "c.toml"
    config.write_text('dataset = "teacher"\n')
    assert cli_main(["study", str(config), "--out", str(tmp_path / "run"), "--executor", "local:0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--executor='local:0' is invalid" in err and "dask://HOST:PORT" in err
    assert not (tmp_path / "run").exists()


def test_without_distributed_the_cli_names_the_extra_in_one_line(tmp_path, monkeypatch, cli_main, capsys):
    monkeypatch.setitem(__import__("sys").modules, "distributed", None)   # what an absent package looks like
    config = tmp_path / "c.toml"
    config.write_text('dataset = "teacher"\nsteps = 10\nburn_in = 0\n')
    monkeypatch.setattr("sgd_dynamics.experiments.study.run_study", lambda *a, **k: pytest.fail("ran"))
    assert cli_main(["study", str(config), "--out", str(tmp_path / "run"), "--executor", "dask://h:1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'sgd-dynamics[distributed]'" in err
