"""
Reading a run directory with h5py and xarray
============================================

Every study writes one run-directory format (:mod:`sgd_dynamics.store`; see the run-directory guide):
JSON for configurations and verdicts, HDF5 for arrays, readable without sgd-dynamics. This example runs
the limiting-dynamics study's ``quick()`` configuration (a 16-unit MLP on a teacher dataset, about 25 s)
into a temporary directory and reads it back three ways: plain ``json`` + ``h5py``, ``xarray``, and the
typed readers of :mod:`sgd_dynamics.store`.
"""

import json
import tempfile
from pathlib import Path

import h5py
import matplotlib.pyplot as plt
import xarray as xr

from sgd_dynamics.experiments import StudyConfig, run_study
from sgd_dynamics.store import read_arrays, read_kind

run_dir = Path(tempfile.mkdtemp()) / "tiny"
run_study(StudyConfig.quick(), run_dir)
print(sorted(p.name for p in run_dir.iterdir()))

# %%
# ``summary.json``: the verdict rows and their counts (``tested = holds + fails``).
summary = json.loads((run_dir / "summary.json").read_text())
print("kind:", read_kind(run_dir), "| stationary:", summary["stationarity"]["stationary"])
print("counts:", summary["counts"])
for row in summary["rows"][:3]:
    print(f"  {row['quantity']}: predicted {row['predicted']:.3g}, measured {row['measured']:.3g}, "
          f"{row['verdict']}")

# %%
# One sweep point's trajectory summaries with plain ``h5py``, and the measurements at ``theta*`` with
# ``xarray`` (the ``h5netcdf`` engine; datasets without named dimensions get phony ones).
point = next((run_dir / "points").iterdir())
with h5py.File(point / "result.h5", "r") as f:
    print("result.h5:", list(f))
    steps, global_sq = f["steps"][:], f["global_sq_displacement"][:]
theta = xr.open_dataset(run_dir / "theta_star.h5", engine="h5netcdf", phony_dims="sort")
print(theta["eigenvalues"].values, float(theta["trace_sigma"]))
theta.close()
arrays = read_arrays(run_dir / "displacement.h5")       # the same file format, as a dict of arrays

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
ax1.loglog(steps[1:], global_sq[1:])
ax1.set(xlabel="step", ylabel="||theta_k - theta*||^2", title=point.name)
for part in ("total", "drift", "diffusion"):
    ax2.loglog(arrays["step"], arrays[part], label=part)
ax2.set(xlabel="step", title="replicas: drift and diffusion")
ax2.legend()
fig.tight_layout()
