"""Every tutorial notebook at the settings a user runs it with (no ``GRADSCOPE_FAST``): each claim's final
``assert`` must hold there too, not only in the fast mode of tests/test_notebooks.py. Minutes per notebook
on 2 cores, so neither the default nor the slow tier runs it: ``python -m pytest -m full -n 2`` (README names it)."""

from __future__ import annotations

import os
import pathlib

import pytest

NOTEBOOKS = pathlib.Path(__file__).resolve().parent.parent / "notebooks"
SOURCES = sorted(NOTEBOOKS.glob("[0-9][0-9]-*.py"))


@pytest.mark.full
@pytest.mark.parametrize("py", SOURCES, ids=[p.stem for p in SOURCES])
def test_notebook_holds_at_full_settings(py, monkeypatch):
    jupytext = pytest.importorskip("jupytext")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    monkeypatch.delenv("GRADSCOPE_FAST", raising=False)
    # as a user runs it: XLA's full optimisations (tests/conftest.py turns them off for the compile-bound suite)
    monkeypatch.delenv("JAX_DISABLE_MOST_OPTIMIZATIONS", raising=False)
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    root = str(NOTEBOOKS.parent)  # the kernel imports this checkout's gradscope, installed or not
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    nb = jupytext.read(py)
    client = nbclient.NotebookClient(
        nb, timeout=3600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    client.execute()  # raises CellExecutionError on any failing cell, the final asserts included
