"""gradscope.report.drawing: PNGs drawn in worker interpreters are the in-process ones, byte for byte.

The truth is `FigureSpec.png` drawn in this process from the report itself; a pool may only ever save
time, never change a figure, lose one, or leave a process or a file behind.
"""

from __future__ import annotations

import os
import signal

import pytest

from gradscope.report import drawing
from gradscope.report.catalogue import figure_specs
from tests._report_data import full_report


def _in_process(report) -> dict[str, bytes]:
    return {s.filename: s.png() for s in figure_specs(report)}


@pytest.fixture(scope="module")
def expected() -> dict[str, bytes]:
    """The report's figures drawn here, once for the module."""
    return _in_process(full_report())


def _per_analysis(report) -> int:
    return sum(s.source is not None for s in figure_specs(report))


def test_figure_workers(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert drawing.figure_workers(26) == 2  # one per usable CPU
    assert drawing.figure_workers(7) == 1  # too few figures to pay for starting a worker
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    assert drawing.figure_workers(1000) == 8  # at most 8
    assert drawing.figure_workers(4 * 5) == 5  # at least FIGURES_PER_WORKER figures each


def test_pool_figures_are_the_in_process_ones(expected):
    report = full_report()
    with drawing.FigurePool(2) as pool:
        for a in report["analyses"]:
            pool.submit(a)
        got = drawing.pngs(report, pool=pool)
        assert pool.delivered == _per_analysis(report) > 4  # every per-analysis figure came from a worker
    assert list(got) == [s.filename for s in figure_specs(report)]  # the report's order
    assert got == expected


@pytest.mark.slow  # each redraws the report's figures in-process (seconds); CI's slow tier runs it
def test_a_changed_record_is_redrawn_not_taken_from_the_pool(expected):
    """The pool drew the first analysis's figures from numbers the report no longer holds: those are drawn
    again from the report's numbers; the unchanged analysis's figures are still taken from the pool."""
    report = full_report()
    with drawing.FigurePool(1) as pool:
        for a in report["analyses"]:
            pool.submit(a)
        changed = report["analyses"][0]
        changed["lyapunov"]["exponents"] = [x - 0.5 for x in changed["lyapunov"]["exponents"]]
        got = drawing.pngs(report, pool=pool)
        unchanged = sum(s.source is not None and s.analysis != changed["name"] for s in figure_specs(report))
        assert pool.delivered == unchanged
    redrawn = {s.filename: s.png() for s in figure_specs(report) if s.analysis in (changed["name"], None)}
    assert got == expected | redrawn
    assert got["rnn-tanh_lyapunov.png"] != expected["rnn-tanh_lyapunov.png"]  # the change shows


@pytest.mark.slow  # each redraws the report's figures in-process (seconds); CI's slow tier runs it
def test_killed_workers_lose_no_figure(expected):
    report = full_report()
    with drawing.FigurePool(2) as pool:
        for proc in pool._procs:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        for a in report["analyses"]:
            pool.submit(a)  # the pipes are broken: nothing is queued, nothing raises
        got = drawing.pngs(report, pool=pool)
        assert pool.delivered == 0
    assert got == expected


@pytest.mark.slow  # each redraws the report's figures in-process (seconds); CI's slow tier runs it
def test_a_hung_worker_is_killed_and_its_figures_drawn_here(monkeypatch, expected):
    """A worker that never finishes (stopped with SIGSTOP) costs its time limit, then it is killed and its
    figures are drawn in-process: no hang, no lost figure."""
    monkeypatch.setattr(drawing, "WORKER_GRACE", 0.5)
    monkeypatch.setattr(drawing, "SECONDS_PER_FIGURE", 0.0)
    report = full_report()
    with drawing.FigurePool(1) as pool:
        os.kill(pool._procs[0].pid, signal.SIGSTOP)
        for a in report["analyses"]:
            pool.submit(a)
        got = drawing.pngs(report, pool=pool)
        assert pool.delivered == 0 and pool._procs[0].returncode == -signal.SIGKILL
    assert got == expected


def test_the_pool_leaves_no_process_and_no_file_on_an_error():
    with pytest.raises(RuntimeError, match="analysis failed"):
        with drawing.FigurePool(2) as pool:
            procs, folder = list(pool._procs), pool._dir
            pool.submit(full_report()["analyses"][0])
            raise RuntimeError("analysis failed")
    assert procs and all(p.poll() is not None for p in procs)
    assert folder is not None and not folder.exists()


def test_pool_sizes(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    with drawing.figure_pool(1) as pool:
        assert pool is None  # one analysis: nothing to overlap
    with drawing.figure_pool(2) as pool:
        assert pool is not None and pool.workers == 1  # ~6 figures: one worker
    with drawing.figure_pool(7) as pool:
        assert pool is not None and pool.workers == 2  # the default compare: one per CPU
