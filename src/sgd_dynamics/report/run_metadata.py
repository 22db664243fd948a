"""The metadata block of every study's page: configuration, seed, environment and timings of the run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sgd_dynamics.config_schema import to_mapping

__all__ = ["run_metadata"]


def run_metadata(run_dir: Path, config: Any) -> dict[str, Any]:
    """``{"configuration", "seed", "environment", "timings"}`` from the run directory's stored files."""
    mapping = to_mapping(config)
    meta: dict[str, Any] = {"configuration": mapping, "seed": mapping.get("seed")}
    for name in ("environment.json", "timings.json"):
        path = Path(run_dir) / name
        if path.exists():
            meta[name.removesuffix(".json")] = json.loads(path.read_text())
    return meta
