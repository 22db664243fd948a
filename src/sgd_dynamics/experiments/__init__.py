"""Named studies: plain functions of a typed configuration, on top of theory, simulators and measurements.

Every study has one shape, ``config -> run_<study>(config, run_dir) -> run directory ->
write_<study>_report(run_dir)`` (the report in :mod:`sgd_dynamics.report`); each configuration has a
``quick()`` variant and every key is documented in docs/config.md:

- the limiting-dynamics study of issue 5 (:mod:`sgd_dynamics.experiments.study`): ``run_study(StudyConfig.
  demo(), "runs/demo")`` pretrains, measures at ``theta*``, sweeps, analyses and writes ``summary.json``;
- the momentum-scaling study of 003 (:mod:`sgd_dynamics.experiments.momentum_study`): ``run_momentum``;
- the escape and basin-selection study of 004 (:mod:`sgd_dynamics.experiments.basins`): ``run_basins``.

Built-in datasets and models live beside them (``datasets``, ``models``).
"""

from sgd_dynamics.experiments.basins import BasinsConfig, run_basins
from sgd_dynamics.experiments.momentum_study import MomentumConfig, run_momentum
from sgd_dynamics.experiments.study import StudyConfig, load_config, run_study

__all__ = ["BasinsConfig", "MomentumConfig", "StudyConfig", "load_config", "run_basins", "run_momentum",
           "run_study"]
