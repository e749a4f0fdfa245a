"""gradscope: gradient-flow diagnostics for recurrent neural networks, on JAX.

    import gradscope as gs
    cell = gs.cells.make("lstm", 8, 64, key=jax.random.key(0), forget_bias=1.0)
    traj = gs.rollout(cell, xs)

Public names are loaded lazily (PEP 562 module ``__getattr__``): ``import gradscope`` itself does not
import JAX, so that JAX-free parts such as ``gradscope.checks`` (CI regression checks on saved JSON)
and the ``gradscope check`` command start fast. The first access to ``gs.rollout``, ``gs.cells``, ...
imports the module that defines it. To add a public name, add it to ``_LAZY`` (to the ``_from`` of
its module when there is one).
"""

from __future__ import annotations

from gradscope._lazy import lazy_getattr

__version__ = "0.1.0"


def _from(module: str, *names: str) -> dict[str, tuple[str, str | None]]:
    """Public names defined in ``module`` under the same name."""
    return {name: (module, name) for name in names}


# public name -> (module that defines it, attribute in that module; None = the module itself)
_LAZY: dict[str, tuple[str, str | None]] = {
    "cells": ("gradscope.cells", None),
    **_from("gradscope._rollout", "rollout", "Trajectory"),
    **_from("gradscope.nets", "Stack", "Bidirectional", "stack", "bidirectional"),
    **_from("gradscope.analysis", "analyse", "Analysis"),
    "engine": ("gradscope.engine", None),
    **_from(
        "gradscope.engine",
        "step_jacobians",
        "lag_profile",
        "triangle",
        "lyapunov_spectrum",
        "singular_values",
        "step_singular_values",
        "path_split",
        "gate_statistics",
        "attribution",
        "probe_lag_profile",
        "parameter_sensitivity",
        "ParameterSensitivity",
    ),
    "norms": ("gradscope.norms", None),
    **_from("gradscope.mlp", "MLP", "make_mlp", "mlp_inputs"),
    **_from("gradscope.cells.normalized", "collect_statistics"),
    "io": ("gradscope.io", None),
    "tasks": ("gradscope.experiments.tasks", None),
    "inputs": ("gradscope.experiments.inputs", None),
    **_from("gradscope.experiments.train", "train", "TrainResult", "TrainingDiverged", "Network", "Readout"),
    "checks": ("gradscope.checks", None),
    "report": ("gradscope.report", None),
    "watch": ("gradscope.watch", None),
    "testing": ("gradscope.testing", None),
    **_from("gradscope._errors", "GradscopeError", "ConfigError", "ShapeError", "UnknownNameError", "NonFiniteError"),
}

__all__ = [*_LAZY, "__version__"]


__getattr__ = lazy_getattr("gradscope", _LAZY, globals())


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


# XLA's CPU scheduler and jaxlib's batched LAPACK kernels can deadlock on small machines: the flag that
# prevents it is set before JAX creates its backend (gradscope._xla, which imports no JAX).
from gradscope import _xla  # noqa: E402

_xla.prefer_flag(_xla.SCHEDULER_FLAG)
