"""Named studies: plain functions of a configuration, on top of theory, simulators and measurements.

Built-in datasets and models live beside them (``datasets``, ``models``).

The main one is the limiting-dynamics study of issue 5 (:mod:`sgd_dynamics.experiments.study`):
``run_study(StudyConfig.demo(), "runs/demo")`` pretrains, measures at ``theta*``, sweeps, analyses and
stores everything the report (:mod:`sgd_dynamics.report.study`) needs.
"""

from sgd_dynamics.experiments.study import StudyConfig, load_config, run_study

__all__ = ["StudyConfig", "load_config", "run_study"]
