"""The CLI's persistent compilation cache (gradscope._cache): where it lives, that it is used, that it can be
turned off, that a corrupt entry is only a miss, and that a cached run gives the same report."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gradscope import _cache

ANALYSE = ["analyse", "--cell", "rnn-tanh", "--hidden", "4", "--length", "20", "--batch", "2", "--seed", "0", "--quiet"]


def test_cache_dir_follows_the_environment(tmp_path):
    assert _cache.cache_dir({"GRADSCOPE_CACHE_DIR": str(tmp_path)}) == tmp_path
    for off in ("off", "OFF", "none", "0", ""):
        assert _cache.cache_dir({"GRADSCOPE_CACHE_DIR": off}) is None
    xdg = _cache.cache_dir({"XDG_CACHE_HOME": str(tmp_path)})
    assert xdg is not None and xdg.parent == tmp_path / "gradscope" and xdg.name.startswith("jax-")


def test_an_unwritable_folder_leaves_the_cache_off(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert _cache.enable(blocker / "cache") is None
    assert _cache.enable(None) is None


def _gradscope(args, cache, tmp_path, *, out, env_cache=None):
    """Run the CLI in a subprocess with the cache at ``cache`` (``env_cache``: GRADSCOPE_CACHE_DIR's value
    instead, e.g. "off"); HOME and XDG_CACHE_HOME point into ``tmp_path``, so a default cache would show there."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMPILATION") and "PERSISTENT" not in k}
    env.update(
        GRADSCOPE_CACHE_DIR=str(cache) if env_cache is None else env_cache,
        JAX_PLATFORMS="cpu",
        HOME=str(tmp_path / "home"),
        XDG_CACHE_HOME=str(tmp_path / "xdg"),
    )
    env.pop("JAX_DISABLE_MOST_OPTIMIZATIONS", None)
    res = subprocess.run(
        [sys.executable, "-m", "gradscope", *args, "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    return res


def _strip_volatile(doc):
    """report.json without what changes from run to run: times, dates, paths."""
    volatile = {"created", "seconds", "timings", "wall_seconds", "elapsed_s", "time_s", "out"}
    if isinstance(doc, dict):
        return {k: _strip_volatile(v) for k, v in doc.items() if k not in volatile}
    if isinstance(doc, list):
        return [_strip_volatile(v) for v in doc]
    return doc


def _report(folder: Path) -> str:
    # compared as canonical JSON text: NaN == NaN there, and a difference shows as a readable diff
    return json.dumps(_strip_volatile(json.loads((folder / "report.json").read_text())), indent=1, sort_keys=True)


@pytest.mark.slow
def test_cache_is_used_survives_corruption_and_gives_the_same_report(tmp_path):
    cache = tmp_path / "cache"
    _gradscope(ANALYSE, cache, tmp_path, out=tmp_path / "cold")
    entries = sorted(p for p in cache.iterdir() if p.name.endswith("-cache"))
    assert entries, "the first run wrote no compiled programs to the cache"
    programs = sorted((cache / "programs").glob("*.jaxexport"))
    assert programs, "the first run stored no traced stage programs (gradscope.engine._exported)"
    entries += programs
    _gradscope(ANALYSE, cache, tmp_path, out=tmp_path / "warm")
    assert _report(tmp_path / "warm") == _report(tmp_path / "cold")

    for i, entry in enumerate(entries):  # a truncated or overwritten entry is a miss, not an error
        data = entry.read_bytes()
        entry.write_bytes(data[: len(data) // 2] if i % 2 else b"not a compiled program" + data[64:])
    res = _gradscope(ANALYSE, cache, tmp_path, out=tmp_path / "corrupt")
    assert "Traceback" not in res.stderr and "persistent compilation cache" not in res.stderr
    assert _report(tmp_path / "corrupt") == _report(tmp_path / "cold")

    uncached = tmp_path / "never"
    _gradscope(["--no-cache", *ANALYSE], uncached, tmp_path, out=tmp_path / "nocache")
    assert not uncached.exists() or not any(uncached.iterdir())
    assert _report(tmp_path / "nocache") == _report(tmp_path / "cold")

    # GRADSCOPE_CACHE_DIR=off: no cache anywhere, not even in the default folder
    _gradscope(ANALYSE, uncached, tmp_path, out=tmp_path / "off", env_cache="off")
    assert not uncached.exists() or not any(uncached.iterdir())
    assert not (tmp_path / "xdg" / "gradscope").exists() and not (tmp_path / "home" / ".cache").exists()
    assert _report(tmp_path / "off") == _report(tmp_path / "cold")


COMPARE = ["compare", "--cells", "rnn-tanh,lstm:forget_bias=1,gru", "--hidden", "4", "--length", "20", "--batch", "2"]


@pytest.mark.slow
def test_compare_cached_and_uncached_reports_are_identical(tmp_path):
    """`gradscope compare` with an empty cache (compiles, writes entries), a warm one (reads them) and none:
    the same report.json apart from times, and the same PNGs."""
    cache = tmp_path / "cache"
    _gradscope([*COMPARE, "--quiet"], cache, tmp_path, out=tmp_path / "cold")
    written = {p.name: p.stat().st_mtime_ns for p in cache.iterdir() if p.name.endswith("-cache")}
    assert written
    _gradscope([*COMPARE, "--quiet"], cache, tmp_path, out=tmp_path / "warm")
    reread = {p.name: p.stat().st_mtime_ns for p in cache.iterdir() if p.name.endswith("-cache")}
    assert reread.keys() == written.keys(), "the warm run compiled programs the cold run had cached"
    stored = sorted(p.name for p in (cache / "programs").glob("*.jaxexport"))
    assert stored, "the cold run stored no traced stage programs"
    _gradscope(["--no-cache", *COMPARE, "--quiet"], tmp_path / "never", tmp_path, out=tmp_path / "none")
    cold = _report(tmp_path / "cold")
    assert _report(tmp_path / "warm") == cold and _report(tmp_path / "none") == cold
    figures = sorted(p.name for p in (tmp_path / "cold" / "figures").iterdir())
    for run in ("warm", "none"):
        assert sorted(p.name for p in (tmp_path / run / "figures").iterdir()) == figures
    assert sorted(p.name for p in (cache / "programs").glob("*.jaxexport")) == stored, "the warm run traced anew"


def test_check_and_help_do_not_import_jax(tmp_path):
    """The cache is configured through the environment before JAX is imported: `check` stays JAX-free."""
    code = (
        "import sys; from typer.testing import CliRunner; from gradscope.cli import app; "
        "r = CliRunner().invoke(app, ['check', '--help']); assert r.exit_code == 0, r.output; "
        "print('jax' in sys.modules)"
    )
    env = dict(os.environ, GRADSCOPE_CACHE_DIR=str(tmp_path / "c"))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
