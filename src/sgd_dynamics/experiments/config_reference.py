"""The configuration reference, ``docs/config.md``: every key of every study, generated from the schema.

``python -m sgd_dynamics.experiments.config_reference > docs/config.md`` regenerates it; a test checks the
file is up to date. The tables come from the field metadata that also validates the configurations
(:mod:`sgd_dynamics.config_schema`), so the documentation and the checks cannot drift apart.
"""

from __future__ import annotations

from sgd_dynamics.config_schema import schema_markdown
from sgd_dynamics.experiments.basins import BasinsConfig
from sgd_dynamics.experiments.momentum_study import MomentumConfig
from sgd_dynamics.experiments.study_config import StudyConfig

__all__ = ["config_markdown"]

_INTRO = """# Configuration reference

Generated from the configuration schema (`python -m sgd_dynamics.experiments.config_reference >
docs/config.md`); do not edit by hand. Every key has a default; a key that is not listed is an error that
names it and its close matches, and a value of the wrong type or outside its range is an error naming the
key, the value and what is valid. Lists are TOML arrays (`lrs = [0.01, 0.02]`, never a bare number),
tables are TOML tables.

Entry points. `dataset`, `model` and `loss` accept a built-in name or `"module:function"` (also
`"package.module:function"`). The module is imported from the current directory first, then from
`PYTHONPATH` and the installed packages. The function must have the signature

- model: `build(input_shape, num_classes, **options) -> torch.nn.Module` (`model_options` are the
  `options`; an option the builder does not accept is an error listing the ones it does);
- dataset: `load()` or `load(seed)`, returning a `Dataset`, a mapping with `x_train, y_train, x_test,
  y_test` (and optionally `num_classes`), or that 4-tuple;
- loss: `loss(outputs, targets) -> scalar tensor`, or a factory `make_loss() -> loss`.

Run directory. Every study writes one directory: `config.json` (the study's kind and this
configuration), `environment.json`, `timings.json`, `summary.json` (its verdicts), `report.html` and
`figures/`, and its data as HDF5 files. A second process on the same directory is refused; a directory
holding another configuration is refused unless `--force`, which keeps the old one as
`RUN_DIR.old-<timestamp>`.
"""


def config_markdown() -> str:
    """The Markdown text of ``docs/config.md``."""
    parts = [
        _INTRO,
        schema_markdown(StudyConfig, "`sgd-dynamics study CONFIG.toml` (limiting dynamics)",
                        "Top-level keys of the TOML file (or of its `[study]` table)."),
        schema_markdown(MomentumConfig, "`sgd-dynamics momentum report` (momentum scaling)",
                        "The configuration `run_momentum(MomentumConfig(...), run_dir)` takes; the CLI runs "
                        "the defaults or `MomentumConfig.quick()` (`--quick`)."),
        schema_markdown(BasinsConfig, "`sgd-dynamics basins` (escape and basin selection)",
                        "The configuration `run_basins(BasinsConfig(...), run_dir)` takes; the CLI runs "
                        "the defaults or `BasinsConfig.quick()` (`--quick`), with `--seed`."),
    ]
    return "\n".join(parts)


if __name__ == "__main__":  # pragma: no cover
    print(config_markdown(), end="")
