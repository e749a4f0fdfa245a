"""README's quick start is the contract CI runs: keep them in sync."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _commands():
    text = (ROOT / "README.md").read_text()
    quick = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [ln.strip() for ln in quick.splitlines() if re.match(r"\s{4}pip install", ln)]


def test_quick_start_has_exactly_two_setup_commands():
    cmds = _commands()
    assert len(cmds) == 2, cmds
    assert cmds[0].endswith("gradscope compare")
    assert "pytest" in cmds[1] and ".[test]" in cmds[1]


def test_ci_runs_the_readme_test_command_verbatim():
    test_cmd = _commands()[1]
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_cmd in ci.splitlines(), f"{test_cmd!r} not a line of .ci/run"


def test_readme_lists_every_registered_cell():
    import gradscope as gs

    text = (ROOT / "README.md").read_text()
    missing = [n for n in gs.cells.names() if f"`{n}`" not in text]
    assert not missing, f"README's cell table lacks {missing}"


@pytest.mark.slow
def test_readme_python_example_runs(monkeypatch):
    """The ten-line example, shrunk (T and the batch) so that it runs in a test."""
    text = (ROOT / "README.md").read_text()
    code = text.split("## Python in ten lines", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    code = code.replace("(8, 500, 2)", "(2, 20, 2)").replace("print(a.summary)", "assert a.summary['horizon'] >= 1")
    exec(compile(code, "README.md", "exec"), {})


@pytest.mark.slow
def test_readme_your_own_cells_example_runs(capsys):
    """The "Your own cells" example (a user cell analysed end to end), shrunk so that it runs in a test;
    tests/test_protocol.py checks its Jacobians and lag profile against a closed form."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Your own cells", 1)[1].split("\n## ", 1)[0]
    code = section.split("```python", 1)[1].split("```", 1)[0].replace("(4, 200, 2)", "(2, 12, 2)")
    exec(compile(code, "README.md", "exec"), {})
    assert "'finite': True" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize("section", ["Watch your PyTorch training", "Watch your Flax/optax training"])
def test_readme_watch_examples_run(section, tmp_path, monkeypatch):
    """The two watcher sections run as written (smaller sizes, 3 steps) and leave one watched line."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    code = text.split(f"## {section}", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    code = code.replace("(16, 100, 8)", "(2, 10, 8)").replace("range(200)", "range(3)")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    (log,) = tmp_path.glob("runs/*/gradscope.jsonl")
    assert len(log.read_text().splitlines()) == 1
