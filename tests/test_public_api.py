"""The public surface is a contract: every name of ``gradscope.__all__`` and every CLI command, listed here.

A name or command that disappears (or appears without being listed) fails this test, so a change to the
public API is always a deliberate edit of this file and a CHANGELOG line.
"""

import pytest
from typer.testing import CliRunner

import gradscope as gs
from gradscope.cli import app

PUBLIC = {
    # models
    "cells",
    "norms",
    "Stack",
    "Bidirectional",
    "Network",
    "Readout",
    "stack",
    "bidirectional",
    "MLP",
    "make_mlp",
    "mlp_inputs",
    "collect_statistics",
    # rollout and engine
    "rollout",
    "Trajectory",
    "step_jacobians",
    "lag_profile",
    "triangle",
    "singular_values",
    "step_singular_values",
    "lyapunov_spectrum",
    "path_split",
    "gate_statistics",
    "attribution",
    "probe_lag_profile",
    "parameter_sensitivity",
    "ParameterSensitivity",
    "engine",
    # analysis, experiments, io, checks, testing
    "analyse",
    "Analysis",
    "train",
    "TrainResult",
    "TrainingDiverged",
    "tasks",
    "inputs",
    "io",
    "checks",
    "report",
    "watch",
    "testing",
    # errors and version
    "GradscopeError",
    "ConfigError",
    "ShapeError",
    "NonFiniteError",
    "UnknownNameError",
    "__version__",
}

COMMANDS = [
    "cells",
    "analyse",
    "compare",
    "sweep",
    "merge",
    "report",
    "inspect",
    "check",
    "baseline",
    "train",
    "reproduce",
    "history",
]


def test_all_is_exactly_the_listed_public_names():
    assert set(gs.__all__) == PUBLIC, {"unlisted": set(gs.__all__) - PUBLIC, "missing": PUBLIC - set(gs.__all__)}


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_every_public_name_resolves_and_is_documented(name):
    obj = getattr(gs, name)
    if name != "__version__":
        assert (getattr(obj, "__doc__", None) or "").strip(), f"gs.{name} has no docstring"


# that exactly these commands are registered, in this order, is tests/test_cli.py's
# test_one_registration_style_in_a_fixed_order


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    res = CliRunner().invoke(app, [command, "--help"])
    assert res.exit_code == 0, res.output
    assert "Usage" in res.output


@pytest.mark.parametrize("package", ["gradscope.io", "gradscope.analysis"])
def test_lazy_subpackages_list_and_resolve_every_name(package):
    """`gradscope.io` and `gradscope.analysis` load their names on first use (PEP 562): the lazy table and
    ``__all__`` agree, and every name resolves (a misspelt table entry would raise here)."""
    import importlib

    mod = importlib.import_module(package)
    assert set(mod.__all__) == set(mod._LAZY)
    for name in mod.__all__:
        assert getattr(mod, name) is not None, name


def test_reading_a_weight_file_imports_no_jax(tmp_path):
    """`gradscope.io.read_arrays` (what `inspect` reads a file with) needs NumPy alone."""
    import subprocess
    import sys

    import numpy as np

    np.savez(tmp_path / "w.npz", weight_hh_l0=np.zeros((3, 3), np.float32))
    code = "import sys; from gradscope.io import read_arrays; read_arrays(sys.argv[1]); print('jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "w.npz")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
