"""Suite-wide settings: one BLAS/torch thread per pytest-xdist worker, so two workers share 2 cores fairly."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

try:
    import torch
except ImportError:  # pragma: no cover - torch is a declared dependency
    torch = None

if torch is not None:
    torch.set_num_threads(1)

# The suite is the landing gate, so property tests draw the same examples on every run (a failure found once
# is found again, never by chance on CI); `HYPOTHESIS_PROFILE=explore make test` searches fresh examples.
from hypothesis import settings as _hypothesis_settings  # noqa: E402

_hypothesis_settings.register_profile("gate", derandomize=True, print_blob=True)
_hypothesis_settings.register_profile("explore", derandomize=False, max_examples=400, print_blob=True)
_hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "gate"))
