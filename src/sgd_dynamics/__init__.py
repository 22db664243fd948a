"""sgd-dynamics: measure, simulate and predict the limiting dynamics of SGD with momentum.

Layers (lower never imports higher; ARCHITECTURE.md): ``hyper`` < ``theory`` < ``estimation`` <
``simulate`` / ``measure`` < ``store`` < ``experiments`` < ``report`` < ``cli``. ``theory`` and
``estimation`` are NumPy/SciPy only.
"""

from sgd_dynamics.hyper import Hyperparams, UnstableModeError

__version__ = "0.1.0"

__all__ = ["Hyperparams", "UnstableModeError", "__version__"]
