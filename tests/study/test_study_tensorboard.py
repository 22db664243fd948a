"""``sgd-dynamics study --tensorboard``: event files of a real run, read back with TensorBoard's reader.

The CLI test stubs the study and the HTML report (tested elsewhere; half a minute on 2 cores): what it checks
is that the flag writes the event files after the run.
"""

import shutil

import h5py
import numpy as np
import pytest

from sgd_dynamics.report.study_tensorboard import write_study_tensorboard


def _scalars(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})   # 0: keep every event
    events.Reload()
    return {tag: (np.array([e.step for e in events.Scalars(tag)]), np.array([e.value for e in
            events.Scalars(tag)], np.float32)) for tag in events.Tags()["scalars"]}


@pytest.fixture(scope="module")
def log_dir(tiny_run):
    return write_study_tensorboard(tiny_run)


def test_event_files_hold_every_points_stored_series_as_float32(tiny_run, log_dir):
    points = sorted(p.name for p in (tiny_run / "points").iterdir())
    assert sorted(p.name for p in log_dir.iterdir()) == points and len(points) == 4
    for name in points:
        with h5py.File(tiny_run / "points" / name / "result.h5", "r") as f:
            stored = {key: f[key][()] for key in f}
        got = _scalars(log_dir / name)
        k = stored["position_projection"].shape[1]
        assert len(got) == 4 + 2 * k
        for tag, key in (("speed", "local_sq_displacement"), ("global_sq_displacement",) * 2,
                         ("loss", "loss")):
            steps, values = got[f"trajectory/{tag}"]
            np.testing.assert_array_equal(steps, stored["steps"])
            np.testing.assert_array_equal(values, stored[key].astype(np.float32), err_msg=tag)
        np.testing.assert_array_equal(got[f"trajectory/position_projection/{k - 1}"][1],
                                      stored["position_projection"][:, k - 1])
        steps, values = got["trajectory/trace_sigma"]
        np.testing.assert_array_equal(steps, stored["noise_steps"])
        np.testing.assert_array_equal(values, stored["noise_trace"].astype(np.float32))


def test_a_rerun_writes_only_missing_points_and_clears_an_interrupted_one(tiny_run, log_dir):
    names = sorted(p.name for p in log_dir.iterdir())
    before = _scalars(log_dir / names[0])
    shutil.rmtree(log_dir / names[0])
    (log_dir / f".{names[0]}.tmp").mkdir()
    (log_dir / f".{names[0]}.tmp" / "events.out.tfevents.0.partial").write_bytes(b"\x00partial")
    kept = {p: p.stat().st_mtime_ns for name in names[1:] for p in (log_dir / name).iterdir()}
    write_study_tensorboard(tiny_run)
    assert sorted(p.name for p in log_dir.iterdir()) == names
    assert {p: p.stat().st_mtime_ns for name in names[1:] for p in (log_dir / name).iterdir()} == kept
    after = _scalars(log_dir / names[0])
    assert after.keys() == before.keys()
    for tag in before:
        np.testing.assert_array_equal(after[tag][1], before[tag][1])


def test_the_study_command_writes_the_event_files_after_the_run_with_tensorboard(tmp_path, monkeypatch,
                                                                                tiny_run, cli_main):
    import sgd_dynamics.experiments.study as study
    import sgd_dynamics.report.study as report

    run = tmp_path / "run"   # the tiny run's points, as the (stubbed) study would have left them
    shutil.copytree(tiny_run / "points", run / "points")
    calls = []
    monkeypatch.setattr(study, "run_study", lambda config, out, **kw: calls.append(out))
    monkeypatch.setattr(report, "write_study_report", lambda out: out / "report.html")
    config = tmp_path / "c.toml"
    config.write_text("")
    assert cli_main(["study", str(config), "--out", str(run), "--tensorboard", "--quiet"]) == 0
    assert calls == [run] and sorted(p.name for p in (run / "tensorboard").iterdir()) == sorted(
        p.name for p in (run / "points").iterdir())
    assert cli_main(["study", str(config), "--out", str(tmp_path / "plain"), "--quiet"]) == 0
    assert not (tmp_path / "plain" / "tensorboard").exists()
