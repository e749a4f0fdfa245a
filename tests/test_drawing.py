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


def _drawable_elsewhere(report) -> int:
    """The figures a worker can draw: every per-analysis figure and the comparison figure."""
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
        # every per-analysis figure, and the comparison figure handed out by `pngs`, came from a worker
        assert pool.delivered == _drawable_elsewhere(report) > 4
        assert figure_specs(report)[0].source is not None  # lag_profiles.png
    assert list(got) == [s.filename for s in figure_specs(report)]  # the report's order
    assert got == expected


@pytest.mark.slow  # each redraws the report's figures in-process (seconds); CI's slow tier runs it
def test_a_changed_record_is_redrawn_not_taken_from_the_pool(expected):
    """The pool drew the first analysis's figures from numbers the report no longer holds: those are drawn
    again from the report's numbers (handed to the workers again by `pngs`); the unchanged analysis's
    figures are taken from what the pool drew first."""
    report = full_report()
    with drawing.FigurePool(1) as pool:
        for a in report["analyses"]:
            pool.submit(a)
        changed = report["analyses"][0]
        changed["lyapunov"]["exponents"] = [x - 0.5 for x in changed["lyapunov"]["exponents"]]
        got = drawing.pngs(report, pool=pool)
        assert pool.delivered == _drawable_elsewhere(report)
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
        assert pool.workers == 2  # one analysis (~4 figures and the lag profiles): one worker per CPU
    with drawing.figure_pool(7) as pool:
        assert pool.workers == 2  # the default compare: one per CPU
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    assert drawing.pool_workers(1) == 2  # at least two figures a worker
    assert drawing.pool_workers(7) == 8  # at most 8


def test_png_bytes_do_not_depend_on_what_was_drawn_before(expected):
    """The renderers, text boxes and mathtext kept from figure to figure (`gradscope.report._render`) hold
    measurements, never pixels: drawn in the opposite order, every PNG is the same."""
    report = full_report()
    assert {s.filename: s.png() for s in reversed(figure_specs(report))} == expected


def test_grid_layout_is_constrained_layout():
    """Where `grid_layout` lays a figure out (every figure of the report but the colour-bar ones), the axes are
    where constrained layout puts them, and each axes' measured box is matplotlib's tight bounding box."""
    import io

    from gradscope.report import _render

    laid_out = 0
    for spec in figure_specs(full_report()):
        ref = spec.make()
        ref.savefig(io.BytesIO(), format="png", dpi=100)  # constrained layout, run by savefig
        fig = spec.make()
        fig.set_dpi(100)
        renderer = _render._canvas(fig).get_renderer()
        for ax in fig.axes:
            extra = _render._outside(ax.get_default_bbox_extra_artists(), ax)
            want = ax.get_tightbbox(renderer, for_layout_only=True, bbox_extra_artists=extra)
            assert _render.layout_bbox(ax, renderer).extents == pytest.approx(want.extents, abs=1e-6)
        if _render.grid_layout(fig, renderer):
            laid_out += 1
            for a, b in zip(ref.axes, fig.axes, strict=True):
                assert b.get_position().extents == pytest.approx(a.get_position().extents, abs=1e-9), spec.filename
    assert laid_out >= 6


def test_pngs_show_what_savefig_draws(expected):
    """Drawn once with the layout computed here, each PNG is ``Figure.savefig``'s up to sub-pixel rounding
    (an edge that lands on half a pixel may fall on the other side): same size, < 1 % of pixels differing."""
    import io

    import numpy as np
    from PIL import Image

    for spec in figure_specs(full_report()):
        buf = io.BytesIO()
        spec.make().savefig(buf, format="png", dpi=100)
        want = np.asarray(Image.open(buf).convert("RGBA"), np.int16)
        got = np.asarray(Image.open(io.BytesIO(expected[spec.filename])).convert("RGBA"), np.int16)
        assert got.shape == want.shape, spec.filename
        assert (np.abs(got - want).sum(-1) > 0).mean() < 0.01, spec.filename


def _children(pid: int) -> list[int]:
    """The live children of ``pid`` (Linux /proc)."""
    try:
        text = open(f"/proc/{pid}/task/{pid}/children").read()
    except OSError:
        return []
    return [int(c) for c in text.split()]


def _alive(pid: int) -> bool:
    try:
        state = [ln for ln in open(f"/proc/{pid}/status").read().splitlines() if ln.startswith("State:")][0]
    except (OSError, IndexError):
        return False
    return "Z" not in state.split()[1]  # a zombie has exited


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="reads /proc (Linux)")
def test_forked_workers_share_the_jobs(expected):
    """On a platform that forks, a pool of two is one server process that forks the second worker after its
    warm-up; both take jobs (each claimed job file carries the claiming worker's pid), and the PNGs are the
    in-process ones."""
    report = full_report()
    with drawing.FigurePool(2) as pool:
        assert len(pool._procs) == 1
        for a in report["analyses"]:
            pool.submit(a)
        got = drawing.pngs(report, pool=pool)
        assert pool.delivered == _drawable_elsewhere(report)
        claimers = {p.name.rsplit(".", 1)[1] for p in pool._dir.glob("job-*.pickle.*")}
        assert len(claimers) == 2 and str(pool._procs[0].pid) in claimers
    assert got == expected


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="reads /proc (Linux)")
def test_a_killed_server_leaves_no_forked_worker_behind():
    import time

    with drawing.FigurePool(2) as pool:
        server = pool._procs[0].pid
        deadline = time.monotonic() + 60
        while not _children(server) and time.monotonic() < deadline:  # the fork follows the warm-up
            time.sleep(0.05)
        (child,) = _children(server)
        os.kill(server, signal.SIGKILL)  # the server alone, not its group
        pool._procs[0].wait()
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not _alive(child)  # it saw its server go and stopped


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="reads /proc (Linux)")
def test_a_killed_command_leaves_no_pool_behind():
    """The command that started a pool is killed (no clean-up runs): its server and the server's forked worker
    see it go and stop, instead of waiting for jobs forever."""
    import subprocess
    import sys
    import time

    code = (
        "import time; from gradscope.report import drawing\n"
        "pool = drawing.FigurePool(2).__enter__()\n"
        "print(pool._procs[0].pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    command = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert command.stdout is not None
    server = int(command.stdout.readline())
    deadline = time.monotonic() + 60
    while not _children(server) and time.monotonic() < deadline:  # the fork follows the warm-up
        time.sleep(0.05)
    (child,) = _children(server)
    command.kill()
    command.wait()
    while (_alive(server) or _alive(child)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _alive(server) and not _alive(child)
