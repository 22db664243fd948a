"""The run directory: round trip, commit interval, resume, refusals, repair, and SIGKILL crash tests."""

from __future__ import annotations

import io
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from sgd_dynamics.store import (
    LAYOUT_VERSION,
    CorruptRunError,
    IncompatibleRunError,
    RunCompleteError,
    RunExistsError,
    RunStore,
    RunStoreError,
    load_run,
)

CONFIG = {"lr": 0.1, "momentum": 0.9, "model": {"width": 16, "depth": 2}}


def _open(path: Path, **kwargs) -> RunStore:
    kwargs.setdefault("flush_every_seconds", math.inf)
    return RunStore.open(path, CONFIG, **kwargs)


# ----------------------------------------------------------------------------------------------- round trip

def test_round_trip_readable_with_plain_h5py(tmp_path):
    rng = np.random.default_rng(0)
    rows = [(k, rng.standard_normal((3, 2)), rng.integers(0, 9, size=4)) for k in range(25)]
    store = _open(tmp_path / "run", flush_every_steps=4)
    for k, position, counts in rows:
        store.append(step=k, loss=float(k) ** 0.5, position=position, counts=counts)
    store.append(snapshot=np.arange(5.0))   # a sparse stream with its own length
    store.finish()

    progress = json.loads((tmp_path / "run" / "progress.json").read_text())
    assert progress["complete"] is True
    assert progress["lengths"] == {"step": 25, "loss": 25, "position": 25, "counts": 25, "snapshot": 1}
    with h5py.File(tmp_path / "run" / "arrays.h5", "r") as f:
        assert f.attrs["layout_version"] == LAYOUT_VERSION
        assert json.loads(f.attrs["config"]) == CONFIG
        assert f["position"].maxshape == (None, 3, 2)
        assert f["position"].chunks[1:] == (3, 2)
        np.testing.assert_array_equal(f["position"][:], np.stack([r[1] for r in rows]))
        np.testing.assert_array_equal(f["counts"][:], np.stack([r[2] for r in rows]))
        np.testing.assert_array_equal(f["loss"][:], np.arange(25.0) ** 0.5)
        assert f["step"].dtype.kind == "i"
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["config"] == CONFIG
    assert run["environment"]["versions"]["numpy"] == np.__version__
    assert run["environment"]["versions"]["h5py"] == h5py.__version__
    assert run["environment"]["python"] == sys.version.split()[0]

    record = load_run(tmp_path / "run")
    assert record.complete and record.config == CONFIG
    np.testing.assert_array_equal(record.arrays["snapshot"], np.arange(5.0)[None])


def test_commit_interval_and_buffered_rows(tmp_path):
    store = _open(tmp_path / "run", flush_every_steps=3)
    for k in range(5):
        store.append(x=float(k))
    assert store.committed_lengths == {"x": 3}
    assert store.lengths == {"x": 5}
    assert json.loads((tmp_path / "run" / "progress.json").read_text())["lengths"] == {"x": 3}
    np.testing.assert_array_equal(store.read("x"), np.arange(5.0))   # read flushes
    assert store.committed_lengths == {"x": 5}
    store.close()


def test_append_validates_rows_and_keeps_the_store_consistent(tmp_path):
    store = _open(tmp_path / "run")
    store.append(a=np.zeros(3), b=1.0)
    with pytest.raises(ValueError, match=r"a row has shape \(4,\): expected \(3,\)"):
        store.append(b=2.0, a=np.zeros(4))
    assert store.lengths == {"a": 1, "b": 1}   # the valid b of the rejected call was not appended
    with pytest.raises(ValueError, match="name 'bad-name' is invalid"):
        store.append(**{"bad-name": 1.0})
    with pytest.raises(ValueError, match="dtype <U3"):
        store.append(c="abc")
    with pytest.raises(ValueError, match="state of type int is invalid"):
        store.checkpoint(3)
    store.close()
    with pytest.raises(RunStoreError, match="is closed"):
        store.append(b=3.0)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"flush_every_steps": 0}, "flush_every_steps=0 is invalid"),
    ({"flush_every_seconds": -1.0}, "flush_every_seconds=-1.0 is invalid"),
    ({"resume": True, "overwrite": True}, "resume=True and overwrite=True are invalid"),
    ({"compression": "lzf"}, "compression='lzf' is invalid"),
])
def test_invalid_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        RunStore.open(tmp_path / "run", CONFIG, **kwargs)


def test_config_must_be_json(tmp_path):
    with pytest.raises(ValueError, match="config is invalid"):
        RunStore.open(tmp_path / "run", {"f": object()})
    with pytest.raises(ValueError, match="config is invalid"):
        RunStore.open(tmp_path / "run", {"x": math.nan})


# ----------------------------------------------------------------------------------------------- resume

def test_resume_without_state_keeps_committed_rows(tmp_path):
    store = _open(tmp_path / "run", flush_every_steps=4)
    for k in range(10):
        store.append(x=k)
    store._closed = True   # simulate a crash: buffered rows 8, 9 are never flushed
    store._release_lock(store._lock)
    again = _open(tmp_path / "run", resume=True, flush_every_steps=4)
    assert again.resumed and again.state is None
    assert again.lengths == {"x": 8}
    again.append(x=100)
    np.testing.assert_array_equal(again.read("x"), [*range(8), 100])
    again.close()


def test_resume_truncates_to_the_checkpoint(tmp_path):
    store = _open(tmp_path / "run", flush_every_steps=2)
    for k in range(6):
        store.append(x=k)
    store.checkpoint(b"state at 6")
    for k in range(6, 11):
        store.append(x=k, late=k)   # "late" first appears after the checkpoint
    store.close()   # flushed: 11 rows committed, but the state belongs to 6
    again = _open(tmp_path / "run", resume=True)
    assert again.state == b"state at 6"
    assert again.lengths == {"x": 6}
    np.testing.assert_array_equal(again.read("x"), np.arange(6))
    with h5py.File(tmp_path / "run" / "arrays.h5", "r") as f:
        assert "late" not in f and f["x"].shape == (6,)
    with h5py.File(tmp_path / "run" / "arrays.mirror.h5", "r") as f:
        assert "late" not in f and f["x"].shape == (6,)
    again.close()


def test_state_from_path_and_torch_save(tmp_path):
    torch = pytest.importorskip("torch")
    state = {"weight": torch.arange(6.0).reshape(2, 3), "step": 7}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    blob = tmp_path / "blob.pt"
    blob.write_bytes(buffer.getvalue())
    store = _open(tmp_path / "run")
    store.append(x=1.0)
    store.checkpoint(blob)
    store.checkpoint(buffer.getvalue())   # the second checkpoint replaces the first file
    assert len(list((tmp_path / "run" / "state").iterdir())) == 1
    store.close()
    again = _open(tmp_path / "run", resume=True)
    loaded = torch.load(again.state_path, weights_only=True)
    assert torch.equal(loaded["weight"], state["weight"]) and loaded["step"] == 7
    again.close()


def test_second_writer_is_refused(tmp_path):
    store = _open(tmp_path / "run")
    with pytest.raises(RunStoreError, match="is open in another RunStore"):
        _open(tmp_path / "run", resume=True)
    store.close()
    _open(tmp_path / "run", resume=True).close()   # released on close


# ----------------------------------------------------------------------------------------------- refusals

def test_complete_run_is_never_overwritten_silently(tmp_path):
    store = _open(tmp_path / "run")
    store.append(x=1.0)
    store.finish()
    with pytest.raises(RunCompleteError, match=r"directory .*run holds a complete run; pass overwrite=True"):
        _open(tmp_path / "run")
    read_only = _open(tmp_path / "run", resume=True)
    assert read_only.complete
    with pytest.raises(RunCompleteError, match="read-only"):
        read_only.append(x=2.0)
    read_only.close()
    np.testing.assert_array_equal(load_run(tmp_path / "run").arrays["x"], [1.0])
    fresh = _open(tmp_path / "run", overwrite=True)
    assert fresh.lengths == {} and not fresh.complete
    fresh.close()


def test_unfinished_run_needs_resume_or_overwrite(tmp_path):
    _open(tmp_path / "run").close()
    with pytest.raises(RunExistsError, match="unfinished run.*pass resume=True"):
        _open(tmp_path / "run")


def test_config_mismatch_is_incompatible(tmp_path):
    _open(tmp_path / "run").close()
    other = {**CONFIG, "model": {"width": 32, "depth": 2}}
    with pytest.raises(IncompatibleRunError, match=r"run.* another config: model.width: stored 16, given 32"):
        RunStore.open(tmp_path / "run", other, resume=True)


def test_layout_version_mismatch_is_incompatible(tmp_path):
    _open(tmp_path / "run").close()
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    (tmp_path / "run" / "run.json").write_text(json.dumps({**run, "layout_version": 99}))
    with pytest.raises(IncompatibleRunError, match=r"run.json has layout_version 99, this sgd_dyn"):
        _open(tmp_path / "run", resume=True)


@pytest.mark.parametrize(("damage", "match"), [
    (lambda d: (d / "progress.json").unlink(), "corrupt: the progress marker progress.json is missing"),
    (lambda d: (d / "run.json").write_text("{not json"), "corrupt: run.json is unreadable"),
    (lambda d: [(d / n).write_bytes(b"\0" * 64) for n in ("arrays.h5", "arrays.mirror.h5")],
     "corrupt: arrays.h5 is unreadable .* arrays.mirror.h5 is unreadable"),
    (lambda d: [(d / n).unlink() for n in ("arrays.h5", "arrays.mirror.h5")],
     "corrupt: arrays.h5 is missing and arrays.mirror.h5 is missing"),
])
def test_corrupt_directory_names_path_and_problem(tmp_path, damage, match):
    store = _open(tmp_path / "run")
    store.append(x=1.0)
    store.close()
    damage(tmp_path / "run")
    with pytest.raises(CorruptRunError, match=match) as info:
        _open(tmp_path / "run", resume=True)
    assert str(tmp_path / "run") in str(info.value)
    _open(tmp_path / "run", overwrite=True).close()   # overwrite replaces even a corrupt run


def test_foreign_directory_and_file_are_refused(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "notes.txt").write_text("mine")
    with pytest.raises(CorruptRunError, match="data is not a run directory"):
        _open(tmp_path / "data", overwrite=True)
    assert (tmp_path / "data" / "notes.txt").read_text() == "mine"
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunStoreError, match="is a file, not a directory"):
        _open(tmp_path / "file")


@pytest.mark.parametrize("damaged", ["arrays.h5", "arrays.mirror.h5"])
def test_damaged_hdf5_file_is_rebuilt_from_the_other(tmp_path, damaged):
    x = np.random.default_rng(1).standard_normal((12, 3))
    store = _open(tmp_path / "run", flush_every_steps=5)
    for row in x:
        store.append(x=row)
    store.close()
    target = tmp_path / "run" / damaged
    raw = bytearray(target.read_bytes())
    raw[:512] = bytes(512)   # wipe the superblock
    target.write_bytes(bytes(raw))
    again = _open(tmp_path / "run", resume=True)
    np.testing.assert_array_equal(again.read("x"), x)
    assert again._progress["sessions"][-1]["repaired"].startswith("unreadable")
    again.close()
    for name in ("arrays.h5", "arrays.mirror.h5"):
        with h5py.File(tmp_path / "run" / name, "r") as f:
            np.testing.assert_array_equal(f["x"][:], x)


def test_tensorboard_unavailable_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ImportError, match=r"tensorboard=True needs torch and the `tensorboard` package"):
        RunStore.open(tmp_path / "run", CONFIG, tensorboard=True)
    assert not (tmp_path / "run").exists()   # failed before creating anything


# ----------------------------------------------------------------------------------------------- crashes

TRAINING = textwrap.dedent('''
    """Heavy-ball SGD on a noisy quadratic, logging into a RunStore; resumable from its state blob."""
    import math, os, pickle, signal, sys, time
    import numpy as np
    from sgd_dynamics.store import RunStore

    path, n_steps, mode, kill_at = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    config = {"dim": 6, "lr": 0.05, "momentum": 0.9, "noise": 0.3, "n_steps": n_steps, "seed": 7}
    hessian = np.diag(np.linspace(0.2, 3.0, config["dim"]))
    armed = False
    if mode in ("kill_in_primary", "kill_in_mirror"):
        import h5py
        target = "arrays.h5" if mode == "kill_in_primary" else "arrays.mirror.h5"
        original = h5py.Dataset.__setitem__
        def write_then_die(self, key, value):   # SIGKILL with the HDF5 file open, rows half-written
            original(self, key, value)
            if armed and self.file.filename.endswith(target):
                self.file.flush()   # one dataset's new rows reach the disk, the others' do not
                os.kill(os.getpid(), signal.SIGKILL)
        h5py.Dataset.__setitem__ = write_then_die

    store = RunStore.open(path, config, resume=True, flush_every_steps=7, flush_every_seconds=math.inf)
    rng = np.random.default_rng(config["seed"])
    theta, buffer, start = np.ones(config["dim"]), np.zeros(config["dim"]), 0
    if store.state is not None:
        saved = pickle.loads(store.state)
        rng.bit_generator.state = saved["rng"]
        theta, buffer, start = saved["theta"], saved["buffer"], saved["step"]
    assert store.lengths.get("step", 0) == start, (store.lengths, start)
    for k in range(start, n_steps):
        noise = config["noise"] * rng.standard_normal(config["dim"])
        buffer = config["momentum"] * buffer + hessian @ theta + noise
        theta = theta - config["lr"] * buffer
        store.append(step=k, theta=theta, noise=noise, loss=0.5 * theta @ hessian @ theta)
        if k % 25 == 24:
            store.checkpoint(pickle.dumps({"rng": rng.bit_generator.state, "theta": theta,
                                           "buffer": buffer, "step": k + 1}))
        armed = k >= kill_at
        if mode == "kill_between_flushes" and k == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        if mode == "slow":
            time.sleep(0.0005)
            if k == n_steps - 2:
                time.sleep(60)   # the parent kills it by now at the latest
    store.finish()
''')

N_STEPS = 200


def _train(script: Path, run: Path, mode: str = "plain", kill_at: int = -1) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(script), str(run), str(N_STEPS), mode, str(kill_at)],
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def training(tmp_path_factory):
    base = tmp_path_factory.mktemp("crash")
    script = base / "train.py"
    script.write_text(TRAINING)
    done = _train(script, base / "reference")
    assert done.returncode == 0, done.stderr
    return script, load_run(base / "reference")


def _assert_same_run(run: Path, reference) -> None:
    record = load_run(run)
    assert record.complete
    assert set(record.arrays) == set(reference.arrays) == {"step", "theta", "noise", "loss"}
    for name, array in reference.arrays.items():
        assert np.array_equal(record.arrays[name], array), name
    np.testing.assert_array_equal(record.arrays["step"], np.arange(N_STEPS))


@pytest.mark.parametrize(("mode", "kill_at"), [("kill_between_flushes", 163), ("kill_in_primary", 90),
                                               ("kill_in_mirror", 126)])
def test_sigkill_then_restart_gives_the_uninterrupted_arrays(training, tmp_path, mode, kill_at):
    script, reference = training
    killed = _train(script, tmp_path / "run", mode, kill_at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    progress = json.loads((tmp_path / "run" / "progress.json").read_text())
    assert not progress["complete"]
    # a crash loses at most one flush interval (7 rows)
    assert progress["lengths"]["step"] >= kill_at + 1 - 7
    resumed = _train(script, tmp_path / "run")
    assert resumed.returncode == 0, resumed.stderr
    _assert_same_run(tmp_path / "run", reference)


def test_sigkill_from_outside_at_an_arbitrary_moment(training, tmp_path):
    script, reference = training
    child = subprocess.Popen([sys.executable, str(script), str(tmp_path / "run"), str(N_STEPS), "slow", "-1"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    progress = tmp_path / "run" / "progress.json"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and child.poll() is None:
        if progress.exists() and json.loads(progress.read_text())["lengths"].get("step", 0) >= 40:
            break
        time.sleep(0.005)
    os.kill(child.pid, signal.SIGKILL)
    _, err = child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL, err
    assert not json.loads(progress.read_text())["complete"]
    resumed = _train(script, tmp_path / "run")
    assert resumed.returncode == 0, resumed.stderr
    _assert_same_run(tmp_path / "run", reference)


# ----------------------------------------------------------------------------------------------- array files

def _assert_exact(read: dict, written: dict) -> None:
    assert read.keys() == written.keys()
    for name, value in written.items():
        value = np.asarray(value)
        value = value.astype(value.dtype.newbyteorder("="))   # arrays come back in native byte order
        assert read[name].dtype == value.dtype, name
        assert read[name].shape == value.shape, name
        if value.dtype.kind in "US":
            assert read[name].tolist() == value.tolist(), name
        else:
            assert read[name].tobytes() == value.tobytes(), name   # bit-exact, NaN payloads and -0.0 included


def _mixed_arrays() -> dict:
    rng = np.random.default_rng(3)
    return {
        "float64": rng.standard_normal((4, 3)),
        "float32": rng.standard_normal(5).astype(np.float32),
        "float16": np.array([np.nan, -0.0, np.inf], np.float16),
        "int8": np.array([-128, 0, 127], np.int8),
        "int64": np.arange(6, dtype=np.int64).reshape(2, 3, 1),
        "uint16": np.array([0, 65535], np.uint16),
        "complex128": np.array([1 + 2j, -3j]),
        "bool": np.array([[True, False], [False, True]]),
        "scalar_float": np.asarray(2.5),
        "scalar_int": np.asarray(7),
        "scalar_bool": np.asarray(False),
        "empty": np.zeros(0),
        "empty_rows": np.zeros((0, 3), np.float32),
        "text": np.array(["speed", "é😀", ""]),
        "text_scalar": np.asarray("with_replacement"),
        "text_empty": np.zeros(0, "<U4"),
        "bytes": np.array([b"a\x00b", b"c"]),
        "fit/q1/freq": np.linspace(0.0, 0.5, 4),
        "fit/q1/amplitude": np.ones(4, np.float32),
        "fit/qk/freq": np.zeros(0),
        "fit/c": np.asarray(0.75),
    }


def test_arrays_round_trip_exactly(tmp_path):
    from sgd_dynamics.store import read_arrays, write_arrays

    arrays = _mixed_arrays()
    assert write_arrays(tmp_path / "a.h5", arrays) == tmp_path / "a.h5"
    read = read_arrays(tmp_path / "a.h5")
    _assert_exact(read, arrays)
    assert list(read) == list(arrays)   # the order written (the group's names are written together here)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.h5"]   # no temporary file left behind
    # python scalars and lists are stored as numpy.asarray makes them
    write_arrays(tmp_path / "b.h5", {"x": 1.5, "n": [1, 2]})
    _assert_exact(read_arrays(tmp_path / "b.h5"), {"x": np.asarray(1.5), "n": np.asarray([1, 2])})


def test_numeric_arrays_round_trip_for_any_dtype_and_shape(tmp_path_factory):
    import hypothesis.extra.numpy as hnp
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from sgd_dynamics.store import read_arrays, write_arrays

    directory = tmp_path_factory.mktemp("hypothesis")
    dtypes = hnp.boolean_dtypes() | hnp.integer_dtypes() | hnp.unsigned_integer_dtypes() \
        | hnp.floating_dtypes() | hnp.complex_number_dtypes()
    arrays = hnp.arrays(dtypes, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(arrays, min_size=1, max_size=4))
    def check(values):
        written = {f"group/a{i}" if i % 2 else f"a{i}": v for i, v in enumerate(values)}
        write_arrays(directory / "h.h5", written)
        _assert_exact(read_arrays(directory / "h.h5"), written)

    check()


def test_array_file_is_readable_with_plain_h5py(tmp_path):
    from sgd_dynamics.store import write_arrays

    arrays = _mixed_arrays()
    write_arrays(tmp_path / "a.h5", arrays, attrs={"config": json.dumps(CONFIG), "version": 2})
    with h5py.File(tmp_path / "a.h5", "r") as f:
        assert json.loads(f.attrs["config"]) == CONFIG and f.attrs["version"] == 2
        assert isinstance(f["fit"], h5py.Group) and isinstance(f["fit/q1"], h5py.Group)
        assert sorted(f["fit"].keys()) == ["c", "q1", "qk"]
        np.testing.assert_array_equal(f["fit"]["q1"]["freq"][()], arrays["fit/q1/freq"])
        np.testing.assert_array_equal(f["float64"][()], arrays["float64"])
        assert f["scalar_float"].shape == () and f["scalar_float"][()] == 2.5
        assert f["empty_rows"].shape == (0, 3) and f["empty_rows"].dtype == np.float32
        assert f["bool"].dtype == np.bool_
        assert f["text"].asstr()[()].tolist() == ["speed", "é😀", ""]
        assert f["text_scalar"].asstr()[()] == "with_replacement"
        assert f["bytes"][()].tolist() == [b"a\x00b", b"c"]
        assert f["float64"].compression is None


def test_leftover_temporary_file_is_overwritten(tmp_path):
    from sgd_dynamics.store import read_arrays, write_arrays

    (tmp_path / "result.tmp.h5").write_bytes(b"half of an interrupted write")
    write_arrays(tmp_path / "result.h5", {"x": np.arange(3)})
    _assert_exact(read_arrays(tmp_path / "result.h5"), {"x": np.arange(3)})
    assert not (tmp_path / "result.tmp.h5").exists()


def test_existing_file_is_replaced_only_by_a_complete_one(tmp_path, monkeypatch):
    import sgd_dynamics.store as store

    old = {"x": np.arange(3)}
    store.write_arrays(tmp_path / "r.h5", old)
    new = {"x": np.arange(4.0), "y": np.ones(2), "z": np.zeros(1)}
    seen = {}
    move = os.replace

    def replace(source, target):   # at the moment of the move: the new file is complete, the old intact
        seen["source"] = store.read_arrays(source)
        seen["target"] = store.read_arrays(target)
        move(source, target)

    monkeypatch.setattr(store.os, "replace", replace)
    store.write_arrays(tmp_path / "r.h5", new)
    _assert_exact(seen["source"], new)
    _assert_exact(seen["target"], old)
    _assert_exact(store.read_arrays(tmp_path / "r.h5"), new)

    # a failure half-way through writing leaves the old file and no temporary file
    calls = []
    create = h5py.Group.create_dataset

    def failing_create(self, name, *args, **kwargs):
        calls.append(name)
        if len(calls) == 2:
            raise OSError("disk full")
        return create(self, name, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", failing_create)
    with pytest.raises(OSError, match="disk full"):
        store.write_arrays(tmp_path / "r.h5", {"a": np.ones(3), "b": np.ones(3), "c": np.ones(3)})
    monkeypatch.undo()
    _assert_exact(store.read_arrays(tmp_path / "r.h5"), new)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.h5"]


def test_sigkill_while_writing_arrays_keeps_the_previous_file(tmp_path):
    from sgd_dynamics.store import read_arrays, write_arrays

    write_arrays(tmp_path / "r.h5", {"x": np.arange(3)})
    script = textwrap.dedent(f"""
        import os, signal
        import h5py, numpy as np
        from sgd_dynamics.store import write_arrays
        create = h5py.Group.create_dataset
        def create_then_die(self, name, *args, **kwargs):
            if name == "b":
                os.kill(os.getpid(), signal.SIGKILL)
            return create(self, name, *args, **kwargs)
        h5py.Group.create_dataset = create_then_die
        write_arrays({str(tmp_path / "r.h5")!r}, {{"a": np.ones(1000), "b": np.ones(1000)}})
    """)
    killed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert (tmp_path / "r.tmp.h5").exists()   # the interrupted write's leftover
    _assert_exact(read_arrays(tmp_path / "r.h5"), {"x": np.arange(3)})
    write_arrays(tmp_path / "r.h5", {"y": np.arange(2)})
    _assert_exact(read_arrays(tmp_path / "r.h5"), {"y": np.arange(2)})
    assert not (tmp_path / "r.tmp.h5").exists()


@pytest.mark.parametrize(("arrays", "match"), [
    ({"": np.ones(1)}, "array name '' .* is invalid: expected a non-empty string"),
    ({"a//b": np.ones(1)}, "array name 'a//b' .* is invalid"),
    ({"/a": np.ones(1)}, "array name '/a' .* is invalid"),
    ({"a/": np.ones(1)}, "array name 'a/' .* is invalid"),
    ({"a/./b": np.ones(1)}, "array name 'a/./b' .* is invalid"),
    ({"a": np.ones(1), "a/b": np.ones(1)}, "array names 'a' and 'a/b' .* clash"),
    ({"o": np.array([{}, 1], dtype=object)}, "array 'o' .* has dtype object: expected booleans"),
    ({"t": np.array(["2020-01-01"], "datetime64[D]")}, "array 't' .* has dtype datetime64"),
    ({"s": np.array(["a\x00b"])}, "array 's' .* holds a string with a NUL character"),
])
def test_write_arrays_refuses_what_hdf5_cannot_hold(tmp_path, arrays, match):
    from sgd_dynamics.store import write_arrays

    with pytest.raises(ValueError, match=match):
        write_arrays(tmp_path / "r.h5", arrays)
    assert list(tmp_path.iterdir()) == []


def test_read_arrays_of_a_missing_file(tmp_path):
    from sgd_dynamics.store import read_arrays

    with pytest.raises(FileNotFoundError, match="array file .*missing.h5 does not exist"):
        read_arrays(tmp_path / "missing.h5")
