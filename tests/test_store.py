"""The run directory: typed config round trip, lock, refusals and --force, summary.json, records, arrays."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest

from sgd_dynamics.config_schema import setting, validate
from sgd_dynamics.store import (
    LAYOUT_VERSION,
    RunDirectory,
    RunLockedError,
    load_record,
    read_arrays,
    read_config,
    read_kind,
    save_record,
    write_arrays,
    write_summary,
)
from sgd_dynamics.verdicts import Row

CONFIG = {"lr": 0.1, "momentum": 0.9, "model": {"width": 16, "depth": 2}}


@dataclass(frozen=True)
class Inner:
    width: int = setting(16, "hidden width", minimum=1)


@dataclass(frozen=True)
class Config:
    lr: float = setting(0.1, "learning rate", minimum=0, exclusive_minimum=True)
    lrs: tuple[float, ...] = setting((0.1, 0.2), "swept")
    inner: Inner = setting(help="a nested table", default_factory=Inner)

    def __post_init__(self) -> None:
        validate(self)


# ---------------------------------------------------------------------------------------------- run directory

def test_open_writes_kind_config_environment_and_reloads_the_typed_config(tmp_path):
    config = Config(lr=0.05, lrs=(0.01, 0.02), inner=Inner(8))
    with RunDirectory.open(tmp_path / "run", "study", config) as run:
        with run.stage("work"):
            pass
    stored = json.loads((tmp_path / "run" / "config.json").read_text())
    assert stored["layout_version"] == LAYOUT_VERSION and stored["kind"] == "study"
    assert stored["config"] == {"lr": 0.05, "lrs": [0.01, 0.02], "inner": {"width": 8}}
    assert read_kind(tmp_path / "run") == "study"
    again = read_config(tmp_path / "run", Config)
    assert again == config and isinstance(again.lrs, tuple) and isinstance(again.inner, Inner)
    env = json.loads((tmp_path / "run" / "environment.json").read_text())
    assert env["versions"]["numpy"] == np.__version__ and env["python"] == sys.version.split()[0]
    assert set(json.loads((tmp_path / "run" / "timings.json").read_text())) == {"work"}


def test_same_config_continues_and_a_changed_one_is_refused_then_kept_aside_with_force(tmp_path):
    path = tmp_path / "run"
    with RunDirectory.open(path, "study", Config()) as run:
        write_arrays(run.path / "result.h5", {"x": np.arange(3)})
    with RunDirectory.open(path, "study", Config()):   # the same run: continued, nothing lost
        pass
    assert (path / "result.h5").exists()
    with pytest.raises(ValueError, match=r"holds a run with a different configuration \('lr' \(stored 0.1, "
                       r"given 0.2\)\): rerun with --force .* or choose another --out"):
        RunDirectory.open(path, "study", Config(lr=0.2))
    with RunDirectory.open(path, "study", Config(lr=0.2), force=True) as run:
        aside = run.moved_aside
    assert aside is not None and aside.name.startswith("run.old-")
    np.testing.assert_array_equal(read_arrays(aside / "result.h5")["x"], np.arange(3))   # old results kept
    assert read_config(aside, Config) == Config() and read_config(path, Config) == Config(lr=0.2)
    assert not (path / "result.h5").exists()


def test_a_failed_start_leaves_nothing_that_blocks_a_rerun(tmp_path):
    path = tmp_path / "run"
    RunDirectory.open(path, "study", Config(lr=0.3)).close()   # created, then the run failed: no results
    with RunDirectory.open(path, "study", Config(lr=0.4)):    # a fixed config reuses it without --force
        pass
    assert read_config(path, Config) == Config(lr=0.4)


def test_another_kind_or_an_older_layout_is_refused_with_the_way_on(tmp_path):
    path = tmp_path / "run"
    with RunDirectory.open(path, "momentum", Config()) as run:
        (run.path / "results").mkdir()
    with pytest.raises(ValueError, match="holds a momentum run, not a study run: rerun with --force"):
        RunDirectory.open(path, "study", Config())
    old = tmp_path / "old"
    (old / "points").mkdir(parents=True)
    (old / "config.json").write_text(json.dumps({"lr": 0.1}))
    with pytest.raises(ValueError, match="holds files that are not a run of this version: rerun with --for"):
        RunDirectory.open(old, "study", Config())
    with pytest.raises(ValueError, match="RUN_DIR=.* was written by an older sgd-dynamics"):
        read_kind(old)
    with pytest.raises(ValueError, match="RUN_DIR=.* is not a run directory"):
        read_kind(tmp_path / "missing")


_HOLDER = textwrap.dedent("""
    import sys, time
    from sgd_dynamics.store import RunDirectory
    from sgd_dynamics.config_schema import setting
    run = RunDirectory.open(sys.argv[1], "study", {config})
    print("ready", flush=True)
    time.sleep(60)
""")


def test_a_second_process_on_the_same_directory_fails_fast_naming_the_holder(tmp_path):
    code = "import dataclasses\n" + _HOLDER.replace("{config}", "dataclasses.make_dataclass('C', [])()")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "run")], stdout=subprocess.PIPE,
                              text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "ready"
        t0 = time.monotonic()
        with pytest.raises(RunLockedError, match=f"--out=.* is in use by process {holder.pid} "):
            RunDirectory.open(tmp_path / "run", "study", __import__("dataclasses").make_dataclass("C", [])())
        assert time.monotonic() - t0 < 30   # fails fast rather than waiting for the holder
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    RunDirectory.open(tmp_path / "run", "study", __import__("dataclasses").make_dataclass("C", [])()).close()


# ----------------------------------------------------------------------------------------------- summary.json

def test_summary_json_has_the_six_key_rows_and_the_stationarity_block(tmp_path):
    rows = [Row("speed", 1.1, 1.0, 0.05), Row("speed ok", 1.02, 1.0, 0.05), Row("trend", 1.0, 1.0, 0.0),
            Row("info", math.nan, 2.0), Row("not stationary", 1.0, 1.0, 0.1, stationary=False)]
    write_summary(tmp_path, rows, displacement={"lr": 0.1, "replicas": []})
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["stationarity"] == {"stationary": None, "criteria": []}
    assert summary["displacement"] == {"lr": 0.1, "replicas": []}
    assert [r["verdict"] for r in summary["rows"]] == ["fails", "holds", "reported", "reported",
                                                       "not_stationary"]
    for r in summary["rows"]:
        assert list(r) == ["quantity", "predicted", "measured", "relative_error", "tolerance", "verdict"]
    first = summary["rows"][0]
    assert first["relative_error"] == pytest.approx((1.1 - 1.0) / 1.0) and first["tolerance"] == 0.05
    assert summary["rows"][2]["tolerance"] is None             # a zero tolerance cannot be judged
    assert summary["rows"][3]["predicted"] is None and summary["rows"][3]["relative_error"] is None
    # the counts separate tested rows from reported and not_stationary ones, and agree with the rows
    assert summary["counts"] == {"tested": 2, "holds": 1, "fails": 1, "reported": 2, "not_stationary": 1}


# ----------------------------------------------------------------------------------------------- records

@dataclass(frozen=True)
class _Part:
    values: np.ndarray
    interval: tuple[float, float]


@dataclass(frozen=True)
class _Result:
    parts: tuple[_Part, ...]
    by_name: dict[str, float]
    note: str | None
    ragged: tuple[np.ndarray, ...]
    potential: object


def test_a_nested_result_comes_back_as_the_same_typed_object(tmp_path):
    from sgd_dynamics.theory.potential import parse_potential

    rng = np.random.default_rng(1)
    result = _Result((_Part(rng.standard_normal(3), (0.1, 0.9)), _Part(np.arange(4), (-1.0, 1.0))),
                     {"0.3": 1.5, "0.5": math.nan}, None, (np.ones(2), np.zeros(5)),
                     parse_potential("(x**2 - 1)**2"))
    save_record(tmp_path, "result", result)
    again = load_record(tmp_path, "result", _Result)
    assert isinstance(again.parts[0], _Part) and again.parts[1].interval == (-1.0, 1.0)
    np.testing.assert_array_equal(again.parts[0].values, result.parts[0].values)
    assert again.by_name["0.3"] == 1.5 and math.isnan(again.by_name["0.5"]) and again.note is None
    assert [a.shape for a in again.ragged] == [(2,), (5,)]
    assert again.potential.expression == "(x**2 - 1)**2"
    assert float(again.potential.energy(0.0)) == 1.0          # parsed again, usable
    with h5py.File(tmp_path / "result.h5", "r") as f:         # the arrays are plain HDF5 datasets
        np.testing.assert_array_equal(f["parts/1/values"][()], np.arange(4))


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
    import sgd_dynamics.store.arrays as store

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
