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
