"""sgd-dynamics: measure, simulate and predict the limiting dynamics of SGD with momentum.

Layers (lower never imports higher; ARCHITECTURE.md): ``hyper`` < ``theory`` < ``estimation`` <
``simulate`` / ``measure`` < ``store`` < ``experiments`` < ``report`` < ``cli``. ``theory`` and
``estimation`` are NumPy/SciPy only.

:func:`open_run` (``sgd_dynamics.store.run_dataset``) opens a study's run directory as an ``xarray.Dataset``;
it is imported on first use, so ``import sgd_dynamics`` stays light.
"""

from typing import Any

from sgd_dynamics.hyper import Hyperparams, UnstableModeError

__version__ = "0.1.0"

__all__ = ["Hyperparams", "UnstableModeError", "__version__", "open_run"]


def __getattr__(name: str) -> Any:
    if name == "open_run":   # lazy: it reads HDF5 (h5py) and needs the optional xarray
        from sgd_dynamics.store.run_dataset import open_run

        return open_run
    raise AttributeError(f"module 'sgd_dynamics' has no attribute {name!r}")
