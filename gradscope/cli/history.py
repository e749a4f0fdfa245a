"""``gradscope history``: a report of gradient flow over a watched training run.

gradscope history runs/lstm                # reads runs/lstm/gradscope.jsonl → runs/lstm/history-report/
gradscope history runs/lstm --out hist --force
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from gradscope.cli._output import info, print_json, stderr_console
from gradscope.cli._params import Force, JsonReport, Silent

#: the report folder's name inside LOGDIR when --out is not given
DEFAULT_OUT = "history-report"


def history(
    logdir: Path = typer.Argument(..., help="The logdir of a gradscope.watch.Watcher (holding gradscope.jsonl)."),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help=f"Report folder to write [default: LOGDIR/{DEFAULT_OUT}] (refused if non-empty)."
    ),
    force: Force = False,
    json_out: JsonReport = False,
    quiet: Silent = False,
) -> None:
    """Report how gradient flow changed over a watched training run: horizon, norm at the longest lag and
    largest Lyapunov exponent against the step (per layer for stacks) and a lag × step heat-map.

    Reads LOGDIR/gradscope.jsonl, written by `gradscope.watch.Watcher` at every watched step; nothing is
    recomputed. The figures are those of `gradscope train`.

    Example: `gradscope history runs/lstm --out lstm-history`
    """
    from gradscope.cli._options import check_out_dir
    from gradscope.report.history import read_history

    t0 = time.perf_counter()
    hist = read_history(logdir)  # one-line errors (exit 2) for a missing, empty or foreign log
    target = Path(out) if out is not None else hist.path.parent / DEFAULT_OUT
    check_out_dir(target, force)
    for note in hist.notes:
        info(f"note: {note}", quiet)
    from gradscope.report.history import history_report
    from gradscope.report.training import write_training_report

    report = history_report(hist, config={"logdir": str(logdir), "out": str(target)})
    write_training_report(target, report, force=force)
    if json_out:
        print_json(report)
    if not quiet and not json_out:
        from rich.table import Table

        t = Table(title=f"gradient flow over training ({hist.path})", title_justify="left")
        for col in ("model", "steps", "horizon (first → last)", "log10 norm (first → last)", "last verdict"):
            t.add_column(col)
        for run in report["training"]["runs"]:
            first, last = run["snapshots"][0], run["snapshots"][-1]
            t.add_row(
                run["name"],
                f"{first['step']} … {last['step']} ({len(run['snapshots'])} logged)",
                f"{first.get('horizon')} → {last.get('horizon')}",
                f"{_f(first.get('log10_norm_max_lag'))} → {_f(last.get('log10_norm_max_lag'))}",
                str(last.get("verdict")),
            )
        stderr_console().print(t)
    info(f"wrote {target}/ (report.json, report.html, summary.md, figures/) in {time.perf_counter() - t0:.0f} s", quiet)


def _f(v) -> str:
    return "—" if v is None else f"{v:.2f}"


COMMANDS = (history,)
