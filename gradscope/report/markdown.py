"""``summary.md``: a Markdown table of each analysis's summary metrics, short enough for a CI step
summary (``$GITHUB_STEP_SUMMARY``). Metric columns are the summary keys, so that a check addressed
as ``<analysis name>/<key>`` is found under the same name here."""

from __future__ import annotations

from collections.abc import Mapping

#: summary keys shown first, with their units (the rest follow in the order they appear)
METRICS = {
    "verdict": "vanishing / exploding / stable / inconclusive (from per-step rates; see docs/verdicts.md)",
    "log10_norm_lag1": "log10 ‖∂S_T/∂S_(T−1)‖₂",
    "log10_norm_max_lag": "log10 ‖∂S_T/∂S_0‖₂ (longest lag)",
    "decay_per_step": "slope of log10 norm against lag, log10 units per step (negative = vanishing)",
    "horizon": "largest lag (steps) with norm ≥ 10^horizon_threshold",
    "horizon_threshold": "threshold of the horizon, log10",
    "lyapunov_max": "largest Lyapunov exponent, nats per step",
    "highway_log10_max_lag": "log10 norm of the gated direct path at the longest lag",
    "remainder_log10_max_lag": "log10 norm of all other paths at the longest lag",
    "finite": "every lag-profile value finite (no exactly zero product)",
}


def metric_keys(analyses) -> list[str]:
    """Summary keys present in any analysis: the known ones first, then the rest."""
    seen: list[str] = []
    for a in analyses:
        for k in a.get("summary", {}):
            if k not in seen:
                seen.append(k)
    return [k for k in METRICS if k in seen] + [k for k in seen if k not in METRICS]


def fmt(v) -> str:
    """A summary value as table text: floats to 4 significant digits, None as —."""
    if v is None:  # NaN / −inf in the JSON: not computed, or log10 of an exact zero
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def model_label(a: Mapping) -> str:
    m = a.get("model") or {}
    cell = m.get("cell") or m.get("name") or "?"
    hidden = m.get("hidden_size")
    return f"{cell} ({hidden})" if hidden is not None else str(cell)


def precision_label(a: Mapping) -> str:
    p = a.get("precision") or {}
    return f"{p.get('dtype', '?')}, matmul {p.get('matmul', '?')}"


def environment_line(report: Mapping) -> str:
    e = report.get("environment") or {}
    n, procs = e.get("devices", 1), e.get("processes", 1)
    count = (f" ×{n}" if n > 1 else "") + (f", {procs} processes" if procs > 1 else "")
    return (
        f"gradscope {e.get('gradscope', '?')} · JAX {e.get('jax', '?')} on {e.get('backend', '?')} "
        f"({e.get('device', '?')}{count}) · dtype {e.get('dtype', '?')}, "
        f"matmul precision {e.get('matmul_precision', '?')}, "
        f"x64 {'on' if e.get('x64') else 'off'} · Python {e.get('python', '?')} · {e.get('platform', '?')}"
    )


#: findings listed in summary.md (a sweep can have thousands; the rest are counted, all are in report.json)
MAX_FINDINGS = 50


def evidence_text(evidence) -> str:
    """A finding's evidence as ``key = value`` pairs (numbers to 4 significant digits)."""
    if not isinstance(evidence, Mapping):
        return ""
    return ", ".join(f"{k} = {fmt(v)}" for k, v in evidence.items())


def findings_of(items) -> list[tuple[str, Mapping]] | None:
    """``(analysis name, finding)`` pairs of all analyses; None when no analysis carries a findings list
    (a report written before findings existed)."""
    if not any(isinstance(a.get("findings"), list) for a in items):
        return None
    return [(str(a.get("name", "")), f) for a in items for f in a.get("findings") or [] if isinstance(f, Mapping)]


def _findings_markdown(items) -> list[str]:
    found = findings_of(items)
    if found is None:
        return []
    lines = ["### Findings", ""]
    if not found:
        return lines + ["None: no finding rule fired.", ""]
    for name, f in found[:MAX_FINDINGS]:
        lines.append(
            f"- **{_cell(f.get('severity', '?'))}** `{_cell(name)}` · `{_cell(f.get('id', '?'))}`: "
            f"{_cell(f.get('message', ''))}. *Fix:* {_cell(f.get('suggestion', ''))}. "
            f"*Evidence:* {_cell(evidence_text(f.get('evidence')))}. *Reference:* {_cell(f.get('reference', ''))}."
        )
    if len(found) > MAX_FINDINGS:
        lines.append(f"- … and {len(found) - MAX_FINDINGS} more (all in report.json and report.html)")
    return lines + [""]


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(report: Mapping) -> str:
    """The Markdown summary of a ``gradscope.report/1`` document."""
    items = list(report.get("analyses", []))
    keys = metric_keys(items)
    lines = [
        f"## gradscope {report.get('command', '')} report",
        "",
        f"{environment_line(report)}  ",
        f"created {report.get('created', '?')}",
        "",
    ]
    counts = {
        v: [a.get("name") for a in items if a.get("summary", {}).get("verdict") == v]
        for v in ("vanishing", "exploding", "stable", "inconclusive")
    }
    verdicts = ", ".join(f"{len(n)} {v}" for v, n in counts.items() if n)
    lines += [f"**{len(items)} analys{'is' if len(items) == 1 else 'es'}**: {verdicts or 'no verdicts'}", ""]
    from gradscope.report.diagnosis import markdown as diagnosis_markdown

    lines += [_cell(x) if x.startswith("- ") or x.startswith("  - ") else x for x in diagnosis_markdown(report, 20)]
    head = ["analysis", "model", "length", "batch", "method", "precision", *keys]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join(["---"] * 4 + ["---"] * 2 + ["---:" if k != "verdict" else "---" for k in keys]) + "|")
    for a in items:
        s = a.get("summary", {})
        row = [
            f"`{_cell(a.get('name', ''))}`",
            _cell(model_label(a)),
            fmt(a.get("length")),
            fmt(a.get("batch")) if a.get("batch") is not None else "1",
            _cell(a.get("method", "?")),
            _cell(precision_label(a)),
        ]
        for k in keys:
            v = s.get(k)
            row.append(f"**{v}**" if k == "verdict" and v in ("vanishing", "exploding") else _cell(fmt(v)))
        lines.append("| " + " | ".join(row) + " |")
    reasons = [(a.get("name", ""), a.get("summary", {}).get("verdict_reason")) for a in items]
    reasons = [(n, r) for n, r in reasons if r][:50]
    if reasons:
        lines += ["", "Why each verdict:", ""] + [f"- `{_cell(n)}`: {_cell(r)}" for n, r in reasons]
    lines += [""] + _findings_markdown(items)
    lines += ["<details><summary>Metric definitions</summary>", ""]
    lines += [f"- `{k}`: {METRICS.get(k, 'see the analysis documentation')}" for k in keys]
    lines += ["- `—`: not computed, or log10 of an exactly zero norm (−∞)"]
    lines += ["", "Metrics are addressed by `gradscope check` as `<analysis>/<metric>`.", "", "</details>", ""]
    from gradscope.report import training

    rep = report.get("reproduction")
    head = [training.reproduction_markdown(rep), ""] if rep else []
    return "\n".join(head + lines) + ("\n" + training.training_markdown(report) if report.get("training") else "")
