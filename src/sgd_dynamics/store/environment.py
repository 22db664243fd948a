"""The environment of a run: Python, platform, package versions, threads and git commits; no network."""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np

__all__ = ["collect_environment"]


def _git(directory: Path) -> dict | None:
    try:
        commit = subprocess.run(["git", "-C", str(directory), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=5, check=False)
        if commit.returncode != 0:
            return None
        status = subprocess.run(
            ["git", "-C", str(directory), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def collect_environment() -> dict:
    """Python, platform, package versions and git commits; no network, and torch is not imported.

    ``git`` holds the commit of the working directory and of the ``sgd_dynamics`` source tree (``None``
    outside a git checkout, or before its first commit).
    """
    torch = sys.modules.get("torch")
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "argv": list(sys.argv),
        "versions": {
            "sgd_dynamics": _version("sgd-dynamics"),
            "matplotlib": _version("matplotlib"),
            "mnist1d": _version("mnist1d"),
            "numpy": np.__version__,
            "scipy": _version("scipy"),
            "h5py": h5py.__version__,
            "hdf5": h5py.version.hdf5_version,
            "torch": getattr(torch, "__version__", None) or _version("torch"),
        },
        "torch_threads": torch.get_num_threads() if torch is not None else None,
        "git": {"cwd": _git(Path.cwd()), "sgd_dynamics": _git(Path(__file__).resolve().parent)},
    }
