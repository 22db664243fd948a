"""``sgd_dynamics.open_run``: a real run directory as an xarray Dataset, values equal to the HDF5 files."""

import json

import h5py
import matplotlib
import numpy as np
import pytest

import sgd_dynamics

matplotlib.use("Agg")


def _h5(path):
    with h5py.File(path, "r") as f:
        return {name: f[name][()] for name in f}


@pytest.fixture(scope="module")
def ds(tiny_run):
    return sgd_dynamics.open_run(tiny_run)


def test_sweep_arrays_equal_each_points_hdf5_file_exactly(tiny_run, ds):
    dirs = sorted((tiny_run / "points").iterdir())
    assert ds.sizes["point"] == len(dirs) == 4
    for directory in dirs:
        point = json.loads((directory / "point.json").read_text())
        stored = _h5(directory / "result.h5")
        one = ds.sel(lr=point["lr"], momentum=point["momentum"], batch_size=point["batch_size"],
                     sampler=point["sampler"])
        assert str(one.name.values) == directory.name
        assert ds.sel(name=directory.name).identical(one)
        assert one.global_sq_displacement.dims == ("step",)
        at = one.sel(step=stored["steps"])
        for name in ("global_sq_displacement", "local_sq_displacement", "loss", "position_projection",
                     "velocity_projection", "noise_trace", "noise_modes"):
            np.testing.assert_array_equal(at[name].values, stored[name], err_msg=name)
        np.testing.assert_array_equal(one.noise_step.values, stored["noise_steps"])
        assert float(one.weight_decay) == point["weight_decay"] and int(one.seed) == point["seed"]


def test_theta_star_and_replica_arrays_equal_their_hdf5_files(tiny_run, ds):
    theta = _h5(tiny_run / "theta_star.h5")
    np.testing.assert_array_equal(ds.eigenvalue.values, theta["eigenvalues"])
    np.testing.assert_array_equal(ds.theta_star_eigenvectors.transpose("parameter", "mode").values,
                                  theta["eigenvectors"])
    assert float(ds.theta_star_trace_sigma) == float(theta["trace_sigma"])
    np.testing.assert_array_equal(ds.theta_star_loss.sel(split="test").values, theta["loss"][1])
    parts = _h5(tiny_run / "displacement.h5")
    replicas = ds.replica_sq_displacement.sel(step=parts["step"]).transpose("step", "replica")
    np.testing.assert_array_equal(replicas.values, parts["replica_sq_displacement"])
    np.testing.assert_array_equal(ds.displacement_drift.sel(step=parts["step"]).values, parts["drift"])
    off = np.setdiff1d(ds.step.values, parts["step"])   # steps where only the sweep recorded
    assert off.size and np.isnan(ds.replica_sq_displacement.sel(step=off).values).all()


def test_selection_by_any_hyperparameters_and_plotting(ds):
    at = ds.sel(lr=0.01)
    assert at.sizes["point"] == 2 and set(at.momentum.values) == {0.0, 0.9}
    at.global_sq_displacement.plot()   # the one-liner: 2-D (point, step) plots
    one = ds.sel(lr=0.01, momentum=0.9)
    assert one.global_sq_displacement.dims == ("step",)
    one.global_sq_displacement.plot()
    masked = ds.where(ds.lr == 0.01, drop=True)
    np.testing.assert_array_equal(masked.global_sq_displacement.values, at.global_sq_displacement.values)
    assert ds.sel(momentum=[0.0, 0.9], lr=0.005).sizes["point"] == 2
    with pytest.raises(KeyError, match="no sweep point"):
        ds.sel(lr=0.3)


def test_saves_as_netcdf_and_refuses_a_directory_that_is_not_a_run(tmp_path, ds):
    path = tmp_path / "run.nc"
    ds.to_netcdf(path, engine="h5netcdf")
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["global_sq_displacement"][()], ds.global_sq_displacement.values)
    with pytest.raises(ValueError, match="run_dir=.* is invalid"):
        sgd_dynamics.open_run(tmp_path)


def test_without_xarray_the_error_names_the_extra(monkeypatch, tiny_run):
    monkeypatch.setitem(__import__("sys").modules, "xarray", None)   # what an absent package looks like
    with pytest.raises(ImportError, match=r"pip install 'sgd-dynamics\[xarray\]'"):
        sgd_dynamics.open_run(tiny_run)
