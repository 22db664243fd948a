"""Every package's ``__init__`` exports its whole public surface (issue 13 step 5).

A submodule's public names are its ``__all__`` or, where it has none, the functions and classes it defines
whose names do not start with ``_``. Each must be exported by its package unless listed in ``EXCEPTIONS``
with the reason, so a new public name that is not exported fails here.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys

import pytest

PACKAGES = ("sgd_dynamics", "sgd_dynamics.theory", "sgd_dynamics.estimation", "sgd_dynamics.simulate",
            "sgd_dynamics.measure", "sgd_dynamics.store", "sgd_dynamics.integrations",
            "sgd_dynamics.experiments", "sgd_dynamics.report", "sgd_dynamics.cli")

# Subpackages whose submodules are not re-exported: the top level keeps a small face (Hyperparams,
# UnstableModeError, __version__, open_run); the CLI's subcommand modules are reached through ``main``.
NOT_AGGREGATED = {"sgd_dynamics", "sgd_dynamics.cli"}

# Submodules not re-exported: optional extras, imported on demand.
OPTIONAL_MODULES = {
    "sgd_dynamics.integrations.lightning",  # needs Lightning; the package must import without it
}

# (module, name): public names deliberately not exported by their package.
EXCEPTIONS = {
    # the name is also a submodule of the package: exporting it would shadow
    # ``from sgd_dynamics.theory import limiting_drift`` (the module), which callers use
    ("sgd_dynamics.theory.limiting_drift", "limiting_drift"),
    ("sgd_dynamics.theory.noise_geometry", "noise_geometry"),
    ("sgd_dynamics.measure.limiting_drift", "hessian"),
    ("sgd_dynamics.report.run_metadata", "run_metadata"),
    # type aliases and protocols of a call signature, not something a user calls
    ("sgd_dynamics.measure.hessian", "Loss"),
    ("sgd_dynamics.measure.hessian", "LossFn"),
    ("sgd_dynamics.measure.objective", "Objective"),
    # re-exported by another module of the same package under the same name (one object)
    ("sgd_dynamics.experiments.study", "Setup"),
    ("sgd_dynamics.experiments.study", "prepare"),
    ("sgd_dynamics.experiments.study", "StudyConfig"),
    ("sgd_dynamics.experiments.study", "load_config"),
    ("sgd_dynamics.experiments.analysis", "ar2_mean_frequency"),
    ("sgd_dynamics.experiments.analysis", "bulk_spectrum"),
    ("sgd_dynamics.report.momentum_report", "MomentumResults"),
    # the SDE's modified-loss curvature; exported as the validated diffusion.modified_loss_curvature
    ("sgd_dynamics.theory.phase_space", "modified_loss_curvature"),
}


def _submodules(package: str) -> list[str]:
    pkg = importlib.import_module(package)
    return sorted(f"{package}.{m.name}" for m in pkgutil.iter_modules(pkg.__path__)
                  if not m.name.startswith("_") and not m.ispkg)


def _public_names(module_name: str) -> list[str]:
    module = importlib.import_module(module_name)
    if hasattr(module, "__all__"):
        return list(module.__all__)
    return [name for name, obj in vars(module).items()
            if not name.startswith("_") and (inspect.isfunction(obj) or inspect.isclass(obj))
            and getattr(obj, "__module__", None) == module_name]


@pytest.mark.parametrize("package", PACKAGES)
def test_all_is_importable_and_unique(package):
    pkg = importlib.import_module(package)
    names = list(getattr(pkg, "__all__", ()))
    assert len(names) == len(set(names)), sorted({n for n in names if names.count(n) > 1})
    for name in names:
        assert getattr(pkg, name, None) is not None, f"{package}.{name}"
    ns: dict = {}
    exec(f"from {package} import *", ns)  # noqa: S102 - the star import a user would write
    assert set(names) <= set(ns)


@pytest.mark.parametrize("package", sorted(set(PACKAGES) - NOT_AGGREGATED))
def test_package_exports_every_public_name(package):
    pkg = importlib.import_module(package)
    exported = set(pkg.__all__)
    missing = []
    for module_name in _submodules(package):
        if module_name in OPTIONAL_MODULES:
            continue
        module = importlib.import_module(module_name)
        for name in _public_names(module_name):
            if (module_name, name) in EXCEPTIONS:
                continue
            if name not in exported or getattr(pkg, name) is not getattr(module, name):
                missing.append(f"{module_name}.{name}")
    assert not missing, missing


def test_exceptions_are_current():
    # an exception for a name that is gone (or now exported) is stale
    for module_name, name in EXCEPTIONS:
        module = importlib.import_module(module_name)
        assert hasattr(module, name), (module_name, name)
        assert name in _public_names(module_name), (module_name, name)


def test_top_level_face_and_layers():
    import sgd_dynamics

    assert set(sgd_dynamics.__all__) == {"Hyperparams", "UnstableModeError", "__version__", "open_run"}
    assert sgd_dynamics.open_run is sgd_dynamics.store.open_run   # issue 14's contract, loaded lazily
    layers = ("hyper", "theory", "estimation", "simulate", "measure", "store", "experiments", "report", "cli")
    doc = sgd_dynamics.__doc__
    positions = [doc.index(f"``{layer}``") for layer in layers]
    assert positions == sorted(positions)


@pytest.mark.parametrize("package", ["sgd_dynamics.theory", "sgd_dynamics.estimation",
                                     "sgd_dynamics.integrations"])
def test_imports_without_torch_or_lightning(package):
    # a fresh interpreter: this process has torch loaded already
    code = (f"import sys, {package}; heavy = [m for m in ('torch', 'lightning', 'pytorch_lightning') "
            f"if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    heavy = set(eval(out))  # noqa: S307 - our own printed list
    assert heavy <= ({"torch"} if package == "sgd_dynamics.integrations" else set()), heavy


def test_experiments_import_is_lazy():
    code = ("import sys, sgd_dynamics.experiments as e; before = 'torch' in sys.modules; "
            "from sgd_dynamics.experiments import run_study; print(before, callable(run_study))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True"]
