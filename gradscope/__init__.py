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


# XLA's CPU runtime runs independent operations concurrently on its thread pool, and jaxlib's batched
# LAPACK kernels (QR, SVD) wait on work of their own. On small machines the two can wedge: with jaxlib 0.10
# on 2 cores, `gs.lag_profile` of an LSTM with a batch of 128 never returned (gdb: every thread asleep,
# two of them inside jaxlib's LAPACK kernels). Turning the concurrency scheduler off removes the hang and cost
# nothing measurable here (lag profile, n = 64, T = 200, B = 4: 0.311 vs 0.307 s, identical numbers).
# It must be set before JAX creates its CPU backend, and only on jaxlib versions known to have the flag
# (XLA aborts on unknown flags). The user's own XLA_FLAGS setting of it wins.
_SCHEDULER_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler=false"


def _avoid_cpu_lapack_hang() -> None:
    import os
    from importlib import metadata

    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_enable_concurrency_optimized_scheduler" in flags:
        return
    try:
        jaxlib_version = metadata.version("jaxlib")
    except metadata.PackageNotFoundError:
        return
    if jaxlib_version.startswith("0.10."):
        os.environ["XLA_FLAGS"] = f"{flags} {_SCHEDULER_FLAG}".strip()


_avoid_cpu_lapack_hang()
