"""The report's PNGs, drawn in worker interpreters: all at once when the folder is written (`pngs`), or each
analysis's figures while the next analysis is computed (`FigurePool`).

Matplotlib draws with the GIL held (about 0.2 s a figure on one CPU core, `gradscope.report._render`), so only
processes draw figures in parallel. Each worker is a fresh interpreter (not ``multiprocessing``, which would
copy JAX's threads with fork, or re-run the caller's unguarded ``__main__`` with spawn) that draws from the
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
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO

from gradscope._atomic import write_bytes  # a reader never sees half a PNG
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
#: what a pool worker runs: ``python -c SERVER OUT_DIR``, then one job file path per line on stdin
SERVER = "import sys; from gradscope.report.drawing import serve; serve(sys.argv[1])"


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


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
        proc.kill()
        proc.wait()


def draw_share(report_pickle: str, out_dir: str, dpi: str, index: str, count: str) -> None:
    """A batch worker: draw figures ``index, index + count, ...`` of the pickled report into ``out_dir``."""
    report = pickle.loads(Path(report_pickle).read_bytes())
    for spec in figure_specs(report)[int(index) :: int(count)]:
        write_bytes(Path(out_dir) / spec.filename, spec.png(dpi=int(dpi)))


def serve(out_dir: str) -> None:
    """A pool worker: for each job file named on stdin (a pickled ``([(kind, record), ...], dpi)``), draw those
    figures (`analysis_figure`) into ``out_dir/<digest>.png``; stop at the end of stdin.

    It runs at a lower priority (nice 10): the analyses it overlaps with are the caller's critical path."""
    with contextlib.suppress(OSError, AttributeError):
        os.nice(10)
    _warm_up()
    for line in sys.stdin:
        items, dpi = pickle.loads(Path(line.strip()).read_bytes())
        for (kind, record), name in zip(items, digests(items, dpi), strict=True):
            png = to_png(analysis_figure(kind)(record), dpi)
            write_bytes(Path(out_dir) / f"{name}.png", png)


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
    """Worker interpreters that draw each analysis's figures as soon as it is done (`submit`), while the
    caller computes the next; `pngs` then takes a pre-drawn PNG only where the report's record, the figure
    kind and the resolution are the submitted ones (`digests`), and draws the rest.

    Use it as a context manager: leaving it stops the workers and removes their files, also on an error.
    """

    def __init__(self, workers: int, *, dpi: int = 100) -> None:
        self.workers, self.dpi = max(0, int(workers)), int(dpi)
        self._procs: list[subprocess.Popen] = []
        self._load: list[int] = []
        self._submitted: set[str] = set()
        self._jobs = itertools.count()
        self._dir: Path | None = None
        #: how many PNGs of the last `pngs` came from the workers (the rest were drawn in-process)
        self.delivered = 0

    def __enter__(self) -> FigurePool:
        if self.workers:
            self._dir = Path(tempfile.mkdtemp(prefix="gradscope-figures-"))
            try:
                for _ in range(self.workers):
                    self._procs.append(
                        subprocess.Popen(
                            [sys.executable, "-c", SERVER, str(self._dir)],
                            stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                            text=True,
                        )
                    )
            except OSError:  # no interpreter to start (a frozen app, a sandbox): everything is drawn in-process
                pass
            self._load = [0] * len(self._procs)
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
        self._procs = []
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)

    def submit(self, analysis: Mapping) -> None:
        """Start drawing the per-analysis figures of ``analysis`` (an ``Analysis.to_dict()`` record), each in
        the least-loaded worker; a worker that cannot take one leaves it to `pngs`."""
        a = clean(analysis)
        self._send([(kind, a) for kind in analysis_figures(a)])

    def _send(self, items: list[tuple[str, Mapping]]) -> None:
        """Hand the figures ``(kind, record)`` to the workers, one by one to the least loaded (one job file a
        worker), and remember their digests."""
        if not self._procs or self._dir is None or not items:
            return
        shares: dict[int, list[tuple[str, Mapping]]] = {}
        for item in items:
            i = min(range(len(self._procs)), key=lambda w: self._load[w] + len(shares.get(w, ())))
            shares.setdefault(i, []).append(item)
        for i, share in shares.items():
            job = self._dir / f"job-{next(self._jobs)}.pickle"
            job.write_bytes(pickle.dumps((share, self.dpi), protocol=pickle.HIGHEST_PROTOCOL))
            stdin: IO[str] | None = self._procs[i].stdin
            try:
                assert stdin is not None
                stdin.write(f"{job}\n")
                stdin.flush()
            except (OSError, ValueError):  # the worker has gone: its figures are drawn in-process
                continue
            self._load[i] += len(share)
            self._submitted.update(digests(share, self.dpi))

    def _drain(self) -> dict[str, bytes]:
        """Close the job lists, wait for the workers and read every PNG they delivered, by digest."""
        for proc in self._procs:
            with contextlib.suppress(OSError, ValueError):
                if proc.stdin is not None:
                    proc.stdin.close()
        for proc, figures in zip(self._procs, self._load, strict=True):
            _wait(proc, figures)
        if self._dir is None:
            return {}
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
