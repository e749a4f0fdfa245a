"""The report's PNGs, drawn in worker interpreters: all at once when the folder is written (`pngs`), or each
analysis's figures while the next analysis is computed (`FigurePool`).

Matplotlib draws with the GIL held (about 0.2 s a figure on one CPU core, `gradscope.report._render`), so only
processes draw figures in parallel. The workers start from a fresh interpreter (not ``multiprocessing``, which
would copy JAX's threads with fork, or re-run the caller's unguarded ``__main__`` with spawn); a pool's server
warms matplotlib up once and forks the other workers from that thread-free state (`serve`). They draw from the
same JSON-ready records with the same functions, so a PNG is byte for byte the one drawn in-process. A figure
a worker did not deliver (no interpreter to start, a worker that failed or was killed) is drawn in-process,
where an error is raised as usual.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from gradscope._atomic import write_bytes  # a reader never sees half a PNG
from gradscope._cpus import usable_cpus
from gradscope._json import clean, dumps
from gradscope.report._plot import new_figure
from gradscope.report.catalogue import FigureSpec, analysis_figure, analysis_figures, figure_specs, to_png

#: figures per worker process below which drawing them in parallel does not pay for starting the workers
FIGURES_PER_WORKER = 4
#: how long a worker may take: this many seconds plus `SECONDS_PER_FIGURE` per figure asked of it (a figure
#: takes ~0.2 s on one core); a worker past it is killed and its figures are drawn in-process (never a hang)
WORKER_GRACE = 60.0
SECONDS_PER_FIGURE = 10.0
#: per-analysis figures of a typical analysis (lag profile aside: spectra, Lyapunov, gates, paths), for sizing pools
FIGURES_PER_ANALYSIS = 3
#: what a batch worker runs: ``python -c WORKER REPORT_PICKLE OUT_DIR DPI INDEX COUNT``
WORKER = "import sys; from gradscope.report.drawing import draw_share; draw_share(*sys.argv[1:])"
#: what a pool server runs: ``python -c SERVER JOB_DIR WORKERS CALLER_PID`` (`serve`)
SERVER = "import sys; from gradscope.report.drawing import serve; serve(sys.argv[1], *map(int, sys.argv[2:]))"
#: how often an idle pool worker looks for a job file (seconds)
POLL = 0.01


def figure_workers(n_figures: int) -> int:
    """How many worker processes draw ``n_figures`` PNGs: one per CPU this process may use, at most 8, and
    only while each gets `FIGURES_PER_WORKER` figures; 1 means drawing them here, one after the other."""
    return max(1, min(usable_cpus(), 8, n_figures // FIGURES_PER_WORKER))


def digests(items: Iterable[tuple[str, Mapping]], dpi: int) -> list[str]:
    """The name of each PNG ``(kind, record)`` by what it is drawn from: the figure ``kind``, the resolution and
    the strict-JSON text of its record (key order included: it orders legends). Each distinct record is
    serialised once (a record's figures share it; an analysis record takes ~20 ms to write out)."""
    hashes: dict[int, str] = {}
    out = []
    for kind, record in items:
        h = hashes.get(id(record))
        if h is None:
            text = dumps(record, ensure_ascii=False)  # dumps cleans it (once)
            h = hashes[id(record)] = hashlib.sha256(text.encode()).hexdigest()
        out.append(hashlib.sha256(f"{kind}\0{dpi}\0{h}".encode()).hexdigest()[:32])
    return out


def _wait(proc: subprocess.Popen, figures: int) -> None:
    """Wait for a worker to finish ``figures`` figures, or kill it once it has taken longer than that allows."""
    try:
        proc.wait(timeout=WORKER_GRACE + SECONDS_PER_FIGURE * figures)
    except subprocess.TimeoutExpired:
        _kill(proc)


def _kill(proc: subprocess.Popen) -> None:
    """Kill a pool server and the workers it forked (its process group), and reap it."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (AttributeError, OSError):  # no process groups (Windows), or the group is gone
            proc.kill()
    proc.wait()


def draw_share(report_pickle: str, out_dir: str, dpi: str, index: str, count: str) -> None:
    """A batch worker: draw figures ``index, index + count, ...`` of the pickled report into ``out_dir``."""
    report = pickle.loads(Path(report_pickle).read_bytes())
    for spec in figure_specs(report)[int(index) :: int(count)]:
        write_bytes(Path(out_dir) / spec.filename, spec.png(dpi=int(dpi)))


def serve(job_dir: str, workers: int = 1, caller: int | None = None) -> None:
    """A pool server: warm up (`_warm_up`), then fork ``workers − 1`` copies of itself (where the platform
    forks), and let each draw the figures of the job files in ``job_dir`` (`_work`) until the caller marks the
    list complete (the ``done`` file), or until ``caller`` (the pid of the command that started it; by default
    its parent) is no longer its parent.

    The copies share the warmed-up matplotlib (fonts, mathtext, the Agg renderer) instead of paying for an
    interpreter, the imports and the warm-up each (~1 s of CPU a worker on the 2-core CPU). Forking is safe
    here: this process has no threads (JAX is not imported). It runs at a lower priority (nice 10): the
    analyses it overlaps with are the caller's critical path."""
    with contextlib.suppress(OSError, AttributeError):
        os.nice(10)
    caller = os.getppid() if caller is None else int(caller)  # if the command dies, the pool stops too
    _warm_up()
    parent = os.getpid()
    children = []
    for _ in range(max(0, int(workers) - 1) if hasattr(os, "fork") else 0):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the forked copy (coverage does not follow it)
            code = 0
            try:
                _work(Path(job_dir), parent)
            except BaseException:  # noqa: BLE001 - whatever it did not deliver, the caller draws
                code = 1
            os._exit(code)  # never the server's cleanup or atexit handlers
        children.append(pid)
    finished = _work(Path(job_dir), caller)
    for pid in children:
        if not finished:  # the command has gone: no one will mark the list complete
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


def _work(job_dir: Path, parent: int) -> bool:
    """Claim job files (``job-N.pickle``, a pickled ``(kind, record, digest, dpi)``) one at a time by renaming
    them (atomic: exactly one worker gets each), draw each figure (`analysis_figure`) into
    ``job_dir/<digest>.png`` (`digests`: the caller's name for it). Return once the ``done`` file exists and
    no job is left, or when ``parent`` has gone (the server, for a forked copy; the command, for the server):
    a killed pool or command leaves no process behind (returns False then, True when the list was complete). A
    figure that fails here is skipped: the caller draws it again, where its error is raised."""
    me = os.getpid()
    while True:
        if os.getppid() != parent:
            return False
        done = (job_dir / "done").exists()  # read before listing: a job listed after it is the last batch
        jobs = sorted(job_dir.glob("job-*.pickle"), key=lambda p: int(p.stem[4:]))
        claimed = None
        for job in jobs:
            mine = job.with_name(f"{job.name}.{me}")
            try:
                job.rename(mine)
            except OSError:  # another worker took it first
                continue
            claimed = mine
            break
        if claimed is None:
            if done:
                return True
            time.sleep(POLL)
            continue
        try:
            kind, record, name, dpi = pickle.loads(claimed.read_bytes())
            write_bytes(job_dir / f"{name}.png", to_png(analysis_figure(kind)(record), dpi), sync=False)
        except Exception:  # noqa: BLE001, S112 - drawn (and its error raised) in the caller's process instead
            continue


def _warm_up() -> None:
    """Draw a throwaway figure (matplotlib imported, fonts, mathtext and the Agg renderer loaded) while the caller
    is still computing: a worker's first real figure then costs what the others do (0.3 s instead of 0.8 s on
    the 2-core CPU)."""
    fig = new_figure(figsize=(3, 2), layout="constrained")
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], label=r"$\sigma_1$")
    ax.set_xlabel("lag (steps)")
    ax.set_title("warm-up")
    ax.legend()
    to_png(fig, 40)


class FigurePool:
    """Worker processes that draw each analysis's figures as soon as it is done (`submit`), while the
    caller computes the next (one job file a figure, taken by the first free worker); `pngs` then takes a
    pre-drawn PNG only where the report's record, the figure kind and the resolution are the submitted ones
    (`digests`), and draws the rest.

    Use it as a context manager: leaving it stops the workers and removes their files, also on an error.
    """

    def __init__(self, workers: int, *, dpi: int = 100) -> None:
        self.workers, self.dpi = max(0, int(workers)), int(dpi)
        #: the server processes (`serve`): one that forks the other workers, or one per worker where the
        #: platform does not fork; each leads its own process group (killed whole)
        self._procs: list[subprocess.Popen] = []
        self._figures = 0  # figures handed out
        self._submitted: set[str] = set()
        self._jobs = itertools.count()
        self._dir: Path | None = None
        #: how many PNGs of the last `pngs` came from the workers (the rest were drawn in-process)
        self.delivered = 0

    def __enter__(self) -> FigurePool:
        if self.workers:
            self._dir = Path(tempfile.mkdtemp(prefix="gradscope-figures-"))
            forks = hasattr(os, "fork")
            servers, each = (1, self.workers) if forks else (self.workers, 1)
            try:
                for _ in range(servers):
                    self._procs.append(
                        subprocess.Popen(
                            [sys.executable, "-c", SERVER, str(self._dir), str(each), str(os.getpid())],
                            stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                            start_new_session=forks,  # its forked workers share its group: killed together
                        )
                    )
            except OSError:  # no interpreter to start (a frozen app, a sandbox): everything is drawn in-process
                pass
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self._procs:
            _kill(proc)
        self._procs = []
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)

    def submit(self, analysis: Mapping) -> None:
        """Start drawing the per-analysis figures of ``analysis`` (an ``Analysis.to_dict()`` record): they go
        to the first worker free to take them; what no worker delivers is left to `pngs`."""
        a = clean(analysis)
        self._send([(kind, a) for kind in analysis_figures(a)])

    def _send(self, items: list[tuple[str, Mapping]]) -> None:
        """Hand the figures ``(kind, record)`` to the workers, one job file each (written whole: a worker
        never reads half of one), and remember their digests."""
        if not self._procs or self._dir is None or not items:
            return
        names = digests(items, self.dpi)
        for (kind, record), name in zip(items, names, strict=True):
            job = self._dir / f"job-{next(self._jobs)}.pickle"
            try:  # one figure a job: the last analysis's figures are shared out, not left to one worker
                write_bytes(
                    job, pickle.dumps((kind, record, name, self.dpi), protocol=pickle.HIGHEST_PROTOCOL), sync=False
                )
            except OSError:  # a full or vanished temp folder: drawn in-process
                return
            self._figures += 1
            self._submitted.add(name)

    def _drain(self) -> dict[str, bytes]:
        """Mark the job list complete, wait for the workers and read every PNG they delivered, by digest."""
        if self._dir is None:
            return {}
        with contextlib.suppress(OSError):
            (self._dir / "done").touch()
        share = -(-self._figures // max(1, self.workers))
        for proc in self._procs:
            _wait(proc, share)
        return {p.stem: p.read_bytes() for p in self._dir.glob("*.png")}

    def pngs(self, report: Mapping) -> dict[str, bytes]:
        """Every figure of ``report`` as PNG bytes, by file name (`pngs`), pre-drawn ones included."""
        specs = figure_specs(report)
        sources = {s.filename: s.source for s in specs if s.source is not None}
        names = dict(zip(sources, digests(sources.values(), self.dpi), strict=True))
        # the figures not handed out yet that a worker can draw (the comparison figure) join the backlog
        self._send([src for f, src in sources.items() if names[f] not in self._submitted])
        pending = [s for s in specs if s.filename in names and names[s.filename] in self._submitted]
        taken = {s.filename for s in pending}
        # what no worker can draw (sweep heat-maps, training curves) is drawn here while they finish
        images = _draw([s for s in specs if s.filename not in taken], self.dpi)
        drawn = self._drain()
        self.delivered = 0
        for spec in pending:
            png = drawn.get(names[spec.filename])
            self.delivered += png is not None
            images[spec.filename] = png if png is not None else spec.png(dpi=self.dpi)
        return {spec.filename: images[spec.filename] for spec in specs}


def _draw(specs: list[FigureSpec], dpi: int) -> dict[str, bytes]:
    """``specs`` as PNG bytes by file name, drawn here."""
    return {s.filename: s.png(dpi=dpi) for s in specs}


def _batch(report: Mapping, dpi: int, workers: int | None) -> dict[str, bytes]:
    """Every figure of ``report`` as PNG bytes by file name, drawn by ``workers`` batch processes (1: here;
    None: `figure_workers`): worker i draws figures i, i + workers, ..."""
    specs = figure_specs(report)
    workers = min(figure_workers(len(specs)) if workers is None else workers, len(specs))
    images: dict[str, bytes] = {}
    if workers > 1:
        with tempfile.TemporaryDirectory(prefix="gradscope-figures-") as tmp:
            data = Path(tmp) / "report.pickle"
            data.write_bytes(pickle.dumps(dict(report), protocol=pickle.HIGHEST_PROTOCOL))
            try:
                procs = [
                    subprocess.Popen(
                        [sys.executable, "-c", WORKER, str(data), tmp, str(dpi), str(i), str(workers)],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                    for i in range(workers)
                ]
            except OSError:  # no interpreter to start (a frozen app, a sandbox)
                procs = []
            for proc in procs:
                _wait(proc, -(-len(specs) // workers))  # a failed or killed worker's missing files are drawn below
            for s in specs:
                png = Path(tmp) / s.filename
                if png.is_file():
                    images[s.filename] = png.read_bytes()
    return {s.filename: images.get(s.filename) or s.png(dpi=dpi) for s in specs}


def pngs(report: Mapping, dpi: int = 100, workers: int | None = 1, pool: FigurePool | None = None) -> dict[str, bytes]:
    """Every figure of ``report`` as PNG bytes, by file name, in the report's order: drawn by ``workers``
    batch processes (1: here; None: `figure_workers`), or taken from ``pool`` where it drew them already."""
    if pool is not None and pool.dpi == dpi:
        return pool.pngs(report)
    return _batch(report, dpi, workers)


def pool_workers(analyses: int) -> int:
    """How many workers a `FigurePool` starts for a report of ``analyses`` analyses (about
    `FIGURES_PER_ANALYSIS` figures each, and the comparison figure): one per CPU this process may use, at most 8,
    and at least two figures each. Unlike `figure_workers` at the end of a command, a pool starts while the
    first analysis is computed, so its workers are ready (matplotlib imported) when the figures are."""
    return max(1, min(usable_cpus(), 8, (FIGURES_PER_ANALYSIS * analyses + 1) // 2))


@contextlib.contextmanager
def figure_pool(analyses: int, dpi: int = 100) -> Iterator[FigurePool]:
    """A `FigurePool` for a report of ``analyses`` analyses computed one after the other (`pool_workers`)."""
    with FigurePool(pool_workers(analyses), dpi=dpi) as pool:
        yield pool
