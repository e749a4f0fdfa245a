"""From analyses to a report folder: analyse with progress, refuse non-finite results, write, summarise.

Shared by ``analyse``, ``compare``, ``sweep`` and ``merge``. The library (JAX) is imported inside the
functions, so importing this module stays cheap.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gradscope._errors import NonFiniteError
from gradscope.cli._output import info, json_ready, print_json, progress, stderr_console

if TYPE_CHECKING:
    from rich.table import Table

    from gradscope.analysis import Analysis
    from gradscope.experiments.sweep import Config
    from gradscope.report.drawing import FigurePool


def non_finite(summary: dict) -> str | None:
    """Why a RAW ``Analysis.summary`` (floats, before ``to_dict``) is not usable, or None.

    NaN or +inf anywhere is an error; −inf log-norms are legitimate (an exactly zero product, e.g. every
    relu unit switched off), and so is a lag profile that ends in −inf. A state that overflowed is a
    result, not an error: the analysis says "exploding" with its ``overflow_step``.
    """
    if summary.get("overflow_step") is not None:
        return None
    v = summary.get("log10_norm_max_lag")
    if not isinstance(v, (int, float)) or math.isnan(v) or v == math.inf:
        return f"log10_norm_max_lag={v}"
    lam = summary.get("lyapunov_max")
    if isinstance(lam, float) and (math.isnan(lam) or lam == math.inf):
        return f"lyapunov_max={lam}"
    if summary.get("finite") is False and v != -math.inf:
        return "the lag profile holds NaN or inf"
    return None


def check_finite(named_summaries: list[tuple[str, dict]]) -> None:
    """Raise `NonFiniteError` (one line, exit 2) naming the analyses whose raw summaries hold NaN/inf."""
    bad = [(n, why) for n, s in named_summaries if (why := non_finite(s))]
    if bad:
        listed = "; ".join(f"{n}: {w}" for n, w in bad[:4]) + (f"; and {len(bad) - 4} more" if len(bad) > 4 else "")
        raise NonFiniteError(
            f"non-finite results ({listed}); the states overflowed or became NaN: try --float64, a "
            "smaller --gain or a shorter --length. No report was written"
        )


def record(analysis: Analysis) -> dict:
    """An `Analysis` as strict-JSON data (NaN/inf → null), the form reports hold."""
    return json.loads(json.dumps(json_ready(analysis.to_dict()), allow_nan=False))


def analyse_all(
    configs: Sequence[Config], *, quiet: bool, what: str, model: Any = None, pool: FigurePool | None = None
) -> list[dict]:
    """Analyse each configuration with a progress bar (one step each); raise on non-finite results. A
    ``pool`` starts drawing each analysis's figures while the next is computed."""
    from gradscope.experiments import sweep
    from gradscope.experiments.plan import plan_config, plan_model_config

    for cfg in configs:  # impossible sizes fail here, in seconds, before the first analysis starts
        if model is None:
            plan_config(cfg)
        else:
            plan_model_config(model, cfg)
    records = []
    with progress(len(configs), what, quiet) as advance:
        for cfg in configs:
            advance(f"analysing {cfg.name}", 0)  # names the stage now being computed
            if model is None:
                a = sweep.analyse_config(cfg)
            else:
                a = sweep.analyse_model(model, cfg, sweep.config_keys(cfg.seed)[1])
            check_finite([(cfg.name, a.summary)])
            records.append(record(a))
            if pool is not None:
                pool.submit(records[-1])
            advance(cfg.name)
    return records


def write(
    out: Path,
    analyses: list[dict],
    *,
    command: str,
    config: dict,
    force: bool,
    quiet: bool = True,
    pool: FigurePool | None = None,
) -> dict:
    """Build the report (gradscope.report) and write its folder atomically; returns the report dict.

    The PNGs are drawn by worker processes (`gradscope.report.drawing`: those ``pool`` drew while the
    analyses ran, the rest now); a spinner names the stage unless ``quiet``."""
    from gradscope import report as rep
    from gradscope.cli._output import stage

    report = rep.build_report(analyses, command=command, config=config)
    with stage(f"writing {out}/: report.json, figures, summary.md, report.html", quiet):
        if command == "sweep":
            from gradscope.experiments.sweep import write_sweep_report

            write_sweep_report(out, report, force=force)
        else:
            rep.write_report(out, report, force=force, workers=None, pool=pool)  # PNGs drawn in parallel processes
    return report


def _fmt(v, spec: str) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return format(v, spec)
    return str(v)


_VERDICT_STYLE = {"vanishing": "red", "exploding": "magenta", "stable": "green", "inconclusive": "yellow"}


def summary_table(analyses: list[dict], title: str) -> Table:
    """The rich table people read after a run: verdict, norm, decay, horizon and λ_max per analysis."""
    from rich.table import Table

    t = Table(
        title=title,
        title_justify="left",
        caption="norm: log10 ‖∂S_T/∂S_0‖₂; decay: its slope per step; horizon: largest lag with log10 "
        "norm ≥ threshold; λ_max: largest Lyapunov exponent (nats/step)",
        caption_justify="left",
    )
    t.add_column("analysis", no_wrap=True)
    t.add_column("verdict", no_wrap=True)
    t.add_column("norm", justify="right", no_wrap=True)
    t.add_column("decay", justify="right", no_wrap=True)
    t.add_column("horizon", justify="right", no_wrap=True)
    t.add_column("λ_max", justify="right", no_wrap=True)
    for a in analyses:
        s = a.get("summary", {})
        v = s.get("verdict", "?")
        t.add_row(
            a.get("name", "?"),
            f"[{_VERDICT_STYLE.get(v, 'white')}]{v}[/]",
            _fmt(s.get("log10_norm_max_lag"), ".2f"),
            _fmt(s.get("decay_per_step"), ".4f"),
            f"{_fmt(s.get('horizon'), 'd')} / {a.get('length', '?')}",
            _fmt(s.get("lyapunov_max"), ".4f"),
        )
    return t


def finish(out: Path, report: dict, *, json_out: bool, quiet: bool, title: str, seconds: float) -> None:
    """After writing: the JSON on stdout (--json), else the summary table on stderr; then where it went."""
    if json_out:
        print_json(report)
    if not quiet and not json_out:
        stderr_console().print(summary_table(report["analyses"], title))
        print_findings(report["analyses"])
    info(f"wrote {out}/ (report.json, report.html, summary.md) in {seconds:.0f} s", quiet)


def print_findings(analyses: list[dict], limit: int = 30) -> None:
    """The findings of the analyses as a table on stderr (id, severity, message, suggestion; the first ``limit``
    rows, the rest counted), or one line saying that no rule fired."""
    from rich.markup import escape
    from rich.table import Table

    rows = [(a.get("name", "?"), f) for a in analyses for f in a.get("findings") or []]
    if not rows:
        info("findings: none (no rule of gradscope.analysis.findings fired)")
        return
    t = Table(title="findings", title_justify="left", caption="evidence and references: report.json, report.html")
    for col in ("analysis", "finding", "severity", "what was found", "suggestion"):
        t.add_column(col, no_wrap=col in ("analysis", "finding", "severity"))
    colour = {"error": "red", "warning": "yellow", "info": "cyan"}
    for name, f in rows[:limit]:
        sev = str(f.get("severity", "?"))
        text = [escape(str(x)) for x in (name, f.get("id", "?"), f.get("message", ""), f.get("suggestion", ""))]
        t.add_row(text[0], text[1], f"[{colour.get(sev, 'white')}]{escape(sev)}[/]", text[2], text[3])
    stderr_console().print(t)
    if len(rows) > limit:
        info(f"... and {len(rows) - limit} more findings in report.json")
