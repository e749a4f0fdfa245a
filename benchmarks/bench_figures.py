"""Time drawing the report's PNGs in-process, per figure kind, the way the report draws them (`to_png`) against
``Figure.savefig``, and profile one figure of each kind.

    python benchmarks/bench_figures.py [--report REPORT_JSON] [--repeat 3] [--profile] [--out DIR]

The report is the default ``gradscope compare`` (seven models, 26 figures) unless ``--report`` names a
``report.json``; without it the compare is run once (``python -m gradscope compare``) into a temporary folder
and its ``report.json`` read back, so the figures are drawn from the numbers the command writes. One
throwaway figure is drawn first (matplotlib imported, fonts and mathtext loaded, as a pool worker's
``_warm_up`` does), then every figure of the report ``--repeat`` times, both ways one after the other (so a
busy machine slows both alike):

* ``savefig``: ``fig.savefig(buf, format="png", dpi=100)``, how the report wrote its PNGs before
  `gradscope.report._render` (constrained layout in a draw with rendering off, then the draw for the image,
  zlib level 6, RGBA);
* ``to_png``: `gradscope.report.catalogue.to_png`, what the report does now.

Each figure's time is the minimum of its repeats, building the figure included (``FigureSpec.make``); the
clock is this process's CPU time (``--wall`` for wall-clock time), which a second busy process sharing the
core inflates less. The table gives per figure kind (the file-name suffix: ``singular_values``, ``gates``...)
the mean time both ways and the mean PNG size; the total is the sum over the figures, the time one core takes
to draw the whole report.

``--profile`` splits one figure of each kind into its stages, each timed on its own (make: the figure code;
layout: `grid_layout` or, where it declines, nothing: constrained layout then runs within the draw; draw: Agg
rendering with matplotlib's tick, text and legend work; encode: the PNG) and prints the matplotlib functions
that take most of the draw (cProfile, internal time). ``--out DIR`` writes the PNGs of both ways
(``DIR/savefig/``, ``DIR/to_png/``) to look at them.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import io
import json
import os
import platform
import pstats
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path


def _default_report(tmp: Path) -> dict:
    out = tmp / "compare"
    env = dict(os.environ, JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"))
    cmd = [sys.executable, "-m", "gradscope", "compare", "--out", str(out), "--quiet"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"gradscope compare failed ({res.returncode}):\n{res.stderr[-2000:]}")
    return json.loads((out / "report.json").read_text())


def _kind(spec) -> str:
    """The figure kind: the file name less the analysis's (or run's) part; ``lag_profiles`` for the comparison."""
    from gradscope.report.catalogue import _VIEWS, SECTIONS

    stem = spec.filename.removesuffix(".png")
    for kind in (*SECTIONS, *_VIEWS, "lags", "layers"):
        if stem.endswith("_" + kind):
            return kind
    return stem


def savefig_png(fig, dpi: int) -> bytes:
    """The PNG as ``Figure.savefig`` writes it (the report's way before `gradscope.report._render`)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def _stages(spec, dpi: int, clock) -> dict[str, float]:
    """One figure drawn as `to_png` draws it, each stage timed."""
    from gradscope.report import _render

    t0 = clock()
    fig = spec.make()
    t1 = clock()
    fig.set_dpi(dpi)
    canvas = _render._canvas(fig)
    renderer = canvas.get_renderer()
    grid = _render.grid_layout(fig, renderer)
    if grid:
        _render.pin_best_legends(fig, renderer)
    t2 = clock()
    canvas.draw()
    t3 = clock()
    _render.encode(canvas.buffer_rgba(), dpi)
    t4 = clock()
    return {"make": t1 - t0, "layout" if grid else "layout (in draw)": t2 - t1, "draw": t3 - t2, "encode": t4 - t3}


def _top(spec, dpi: int, n: int = 12) -> str:
    from gradscope.report.catalogue import to_png

    fig = spec.make()
    prof = cProfile.Profile()
    prof.enable()
    to_png(fig, dpi)
    prof.disable()
    s = io.StringIO()
    pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(n)
    lines = [ln for ln in s.getvalue().splitlines() if ln.strip() and "function calls" not in ln]
    return "\n".join("    " + ln.replace(str(Path(sys.prefix)), "") for ln in lines[2:])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--report", type=Path, help="a report.json (default: run the default gradscope compare)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dpi", type=int, default=100)
    ap.add_argument("--wall", action="store_true", help="wall-clock time instead of this process's CPU time")
    ap.add_argument("--only-new", action="store_true", help="time to_png only (not savefig)")
    ap.add_argument("--profile", action="store_true", help="time the stages of one figure of each kind")
    ap.add_argument("--top", action="store_true", help="with --profile: cProfile's top functions too")
    ap.add_argument("--out", type=Path, help="write the PNGs (both ways) into this folder")
    args = ap.parse_args(argv)

    if args.report is not None:
        report = json.loads(args.report.read_text())
    else:
        with tempfile.TemporaryDirectory(prefix="bench-figures-") as tmp:
            report = _default_report(Path(tmp))

    from gradscope.report.catalogue import figure_specs, to_png
    from gradscope.report.drawing import _warm_up

    clock = time.perf_counter if args.wall else time.process_time
    ways = {"to_png": to_png} if args.only_new else {"savefig": savefig_png, "to_png": to_png}
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    _warm_up()
    warm = time.perf_counter() - t0
    specs = figure_specs(report)
    best: dict[str, dict[str, float]] = {w: {} for w in ways}
    sizes: dict[str, dict[str, int]] = {w: {} for w in ways}
    pngs: dict[str, dict[str, bytes]] = {w: {} for w in ways}
    for _ in range(args.repeat):
        for spec in specs:
            for way, fn in ways.items():
                t = clock()
                png = fn(spec.make(), args.dpi)
                dt = clock() - t
                best[way][spec.filename] = min(best[way].get(spec.filename, float("inf")), dt)
                if pngs[way].setdefault(spec.filename, png) != png:
                    print(f"warning: {way} {spec.filename} is not deterministic", file=sys.stderr)
                sizes[way][spec.filename] = len(png)
    load1 = os.getloadavg()

    by_kind: dict[str, list] = defaultdict(list)
    for spec in specs:
        by_kind[_kind(spec)].append(spec)
    now = datetime.datetime.now().astimezone()
    print(
        f"{now:%Y-%m-%d %H:%M:%S %Z}  {platform.node()}  {os.cpu_count()} CPUs  python {platform.python_version()}"
        f"  load {load0[0]:.2f} -> {load1[0]:.2f}  dpi {args.dpi}  min of {args.repeat}"
        f"  {'wall-clock' if args.wall else 'CPU'} time"
    )
    print(f"report: {report.get('command')} of {len(report.get('analyses', []))} analyses, {len(specs)} figures")
    print(f"warm-up figure: {warm * 1e3:.0f} ms wall (imports included)")
    head = "".join(f"{w + ' ms':>12}" for w in ways) + "".join(f"{w + ' KiB':>13}" for w in ways)
    print(f"{'kind':<18}{'n':>3}{head}")
    for kind, group in by_kind.items():
        ms = "".join(f"{1e3 * sum(best[w][s.filename] for s in group) / len(group):>12.0f}" for w in ways)
        kib = "".join(f"{sum(sizes[w][s.filename] for s in group) / len(group) / 1024:>13.0f}" for w in ways)
        print(f"{kind:<18}{len(group):>3}{ms}{kib}")
    ms = "".join(f"{1e3 * sum(best[w].values()):>12.0f}" for w in ways)
    kib = "".join(f"{sum(sizes[w].values()) / 1024:>13.0f}" for w in ways)
    print(f"{'total':<18}{len(specs):>3}{ms}{kib}")

    if args.out is not None:
        for way in ways:
            (args.out / way).mkdir(parents=True, exist_ok=True)
            for name, png in pngs[way].items():
                (args.out / way / name).write_bytes(png)
        print(f"PNGs written to {args.out}/{{{','.join(ways)}}}/")

    if args.profile:
        print("\nstages of one figure of each kind as to_png draws it (ms, min of --repeat):")
        for kind, group in by_kind.items():
            runs = [_stages(group[0], args.dpi, clock) for _ in range(args.repeat)]
            stages = {k: min(r[k] for r in runs) for k in runs[0]}
            print(f"  {kind:<18}" + "  ".join(f"{k} {1e3 * v:.0f}" for k, v in stages.items()))
            if args.top:
                print(_top(group[0], args.dpi))


if __name__ == "__main__":
    main()
