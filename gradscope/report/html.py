"""``report.html``: one self-contained page that opens offline and can be kept as a CI artifact: inline
CSS, figures as interactive Plotly charts (plotly.js inlined once, `gradscope.report.interactive`) or as
base64 PNGs (figures without an interactive version, or every figure when ``plotly`` is not installed), no
external URL.

Layout: title, environment line, a table of contents (every section and figure has an ``id``), the
Diagnosis (per analysis the verdict in one sentence with its evidence, the findings and what to try:
`gradscope.report.diagnosis`), the summary tables with verdicts, the findings, then each figure with a
caption saying what it shows and how to read it, then the run's configuration.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from html import escape

from gradscope.report import interactive
from gradscope.report.catalogue import FigureSpec, figure_specs, slug
from gradscope.report.diagnosis import diagnoses
from gradscope.report.markdown import (
    METRICS,
    environment_line,
    evidence_text,
    findings_of,
    fmt,
    metric_keys,
    model_label,
    precision_label,
)

_CSS = """
:root { --fg: #1d2330; --muted: #5b6475; --line: #d9dde5; --bg: #ffffff; --head: #f3f5f9;
        --vanishing: #8a1c1c; --vanishing-bg: #fde8e8; --exploding: #7a4a00; --exploding-bg: #fff1d6;
        --stable: #155d2b; --stable-bg: #e3f5e8; --inconclusive: #3d3d3d; --inconclusive-bg: #ececec; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg);
       font: 15px/1.5 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; }
main { max-width: 1100px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 1.7em; margin: 0 0 4px; }
h2 { font-size: 1.25em; margin: 32px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 1.05em; margin: 0 0 8px; }
p.env { color: var(--muted); margin: 0 0 4px; font-size: 0.92em; }
p.lead { margin: 12px 0; }
table { border-collapse: collapse; width: 100%; font-size: 0.9em; margin: 8px 0 4px; }
th, td { border: 1px solid var(--line); padding: 5px 8px; text-align: left; vertical-align: top; }
th { background: var(--head); font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.text { min-width: 16em; }
code { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 0.95em; }
.scroll { overflow-x: auto; }
.verdict { display: inline-block; padding: 1px 8px; border-radius: 10px; font-weight: 600; font-size: 0.9em; }
.vanishing { color: var(--vanishing); background: var(--vanishing-bg); }
.exploding { color: var(--exploding); background: var(--exploding-bg); }
.stable { color: var(--stable); background: var(--stable-bg); }
.inconclusive { color: var(--inconclusive); background: var(--inconclusive-bg); }
.verdicts td, .verdicts th { width: 25%; }
.warning { color: var(--exploding); background: var(--exploding-bg); }
.error { color: var(--vanishing); background: var(--vanishing-bg); }
.info { color: var(--muted); background: var(--head); }
table.findings td { font-size: 0.95em; }
table.side th { white-space: nowrap; }
table.side td { min-width: 7em; }
div.unit { color: var(--muted); font-weight: normal; font-size: 0.85em; white-space: normal; max-width: 26em; }
figure { margin: 18px 0 28px; padding: 14px; border: 1px solid var(--line); border-radius: 6px; }
figure img { display: block; max-width: 100%; height: auto; margin: 0 auto; }
figcaption { color: var(--fg); margin-top: 10px; font-size: 0.93em; }
details { margin-top: 24px; }
pre { background: var(--head); padding: 10px; overflow-x: auto; font-size: 0.85em; }
footer { color: var(--muted); font-size: 0.85em; margin-top: 32px; }
nav.toc { background: var(--head); border: 1px solid var(--line); border-radius: 6px; padding: 8px 16px;
          margin: 14px 0; font-size: 0.92em; }
nav.toc ol { margin: 4px 0; padding-left: 22px; } nav.toc li { margin: 2px 0; }
div.diag { border: 1px solid var(--line); border-left: 5px solid var(--line); border-radius: 6px;
           padding: 8px 14px; margin: 10px 0; }
div.diag.vanishing { border-left-color: var(--vanishing); background: none; color: var(--fg); }
div.diag.exploding { border-left-color: var(--exploding); background: none; color: var(--fg); }
div.diag.stable { border-left-color: var(--stable); background: none; color: var(--fg); }
div.diag.inconclusive { border-left-color: var(--inconclusive); background: none; color: var(--fg); }
div.diag p { margin: 4px 0; } div.diag ul { margin: 4px 0; padding-left: 20px; }
div.diag .label { color: var(--muted); }
div.gs-plot { width: 100%; min-height: 430px; }
p.note { color: var(--muted); font-size: 0.9em; }
"""

_VERDICT_TEXT = {
    "vanishing": "Vanishing",
    "exploding": "Exploding",
    "stable": "Keeps its gradient (stable)",
    "inconclusive": "Inconclusive (see the Diagnosis)",
}


def _verdict(v) -> str:
    v = str(v)
    cls = v if v in _VERDICT_TEXT else ""
    return f'<span class="verdict {cls}">{escape(v)}</span>'


def _setup_rows(a: Mapping) -> list[tuple[str, str]]:
    batch = a.get("batch")
    return [
        ("model", escape(model_label(a))),
        ("length × batch", escape(f"{fmt(a.get('length'))} × {batch if batch is not None else 1}")),
        ("method", escape(str(a.get("method", "?")))),
        ("precision", escape(precision_label(a))),
    ]


def _value_cell(value) -> str:
    """A number right-aligned on one line; a text (a verdict's reason) wraps like prose, so one long
    reason cannot push the other analyses' columns off the page."""
    if isinstance(value, str):
        return f'<td class="text">{escape(value)}</td>'
    return f'<td class="num">{escape(fmt(value))}</td>'


def _summary_table(items) -> str:
    """Side by side (metrics as rows, one column per analysis) for up to 8 analyses, else one row
    per analysis. Metric names are the summary keys (`gradscope check` addresses them so)."""
    keys = [k for k in metric_keys(items) if k not in ("verdict", "verdict_reason")]  # the reason: in the Diagnosis
    if len(items) <= 8:
        head = "".join(f"<th><code>{escape(str(a.get('name', '')))}</code></th>" for a in items)
        rows = [
            "<tr><th>verdict</th>"
            + "".join(f"<td>{_verdict(a.get('summary', {}).get('verdict', '?'))}</td>" for a in items)
            + "</tr>"
        ]
        setups = [_setup_rows(a) for a in items]
        for i, (label, _) in enumerate(setups[0]):
            rows.append(f"<tr><th>{escape(label)}</th>" + "".join(f"<td>{s[i][1]}</td>" for s in setups) + "</tr>")
        for k in keys:
            unit = METRICS.get(k, "")
            rows.append(
                f'<tr><th><code>{escape(k)}</code><div class="unit">{escape(unit)}</div></th>'
                + "".join(_value_cell(a.get("summary", {}).get(k)) for a in items)
                + "</tr>"
            )
        return (
            f'<div class="scroll"><table class="summary side"><thead><tr><th>metric</th>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div>"
        )
    head = "".join(f'<th title="{escape(METRICS.get(k, k))}"><code>{escape(k)}</code></th>' for k in keys)
    rows = []
    for a in items:
        s = a.get("summary", {})
        cells = "".join(_value_cell(s.get(k)) for k in keys)
        setup = "".join(f"<td>{v}</td>" for _, v in _setup_rows(a))
        rows.append(
            f"<tr><td><code>{escape(str(a.get('name', '')))}</code></td>"
            f"<td>{_verdict(s.get('verdict', '?'))}</td>{setup}{cells}</tr>"
        )
    setup_head = "".join(f"<th>{escape(label)}</th>" for label, _ in _setup_rows(items[0]))
    return (
        '<div class="scroll"><table class="summary"><thead><tr><th>analysis</th><th>verdict</th>'
        f"{setup_head}{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def _verdict_table(items) -> str:
    """Side by side: which analyses vanish, explode or keep their gradient (the reasons are in the Diagnosis)."""
    cols = []
    for v, title in _VERDICT_TEXT.items():
        names = [a for a in items if a.get("summary", {}).get("verdict") == v]
        body = (
            "<br>".join(
                f"<code>{escape(str(a.get('name', '')))}</code> — "
                f"horizon {escape(fmt(a['summary'].get('horizon')))} steps, "
                f"{escape(fmt(a['summary'].get('decay_per_step')))} log10/step"
                for a in names
            )
            or "<em>none</em>"
        )
        cols.append((f'<span class="verdict {v}">{escape(title)}</span> ({len(names)})', body))
    head = "".join(f"<th>{h}</th>" for h, _ in cols)
    body = "".join(f"<td>{b}</td>" for _, b in cols)
    return f'<table class="verdicts"><thead><tr>{head}</tr></thead><tbody><tr>{body}</tr></tbody></table>'


def _findings_table(items) -> str:
    """The findings of every analysis (what was found, the numbers, the fix, the reference); empty for a
    report written before findings existed."""
    found = findings_of(items)
    if found is None:
        return ""
    if not found:
        return '<h2 id="findings">Findings</h2><p>None: no finding rule fired.</p>'
    rows = []
    for name, f in found:
        sev = str(f.get("severity", "?"))
        cls = sev if sev in ("info", "warning", "error") else ""
        rows.append(
            f"<tr><td><code>{escape(name)}</code></td><td><code>{escape(str(f.get('id', '?')))}</code><br>"
            f'<span class="verdict {cls}">{escape(sev)}</span></td><td>{escape(str(f.get("message", "")))}</td>'
            f"<td>{escape(evidence_text(f.get('evidence')))}</td><td>{escape(str(f.get('suggestion', '')))}</td>"
            f"<td>{escape(str(f.get('reference', '')))}</td></tr>"
        )
    head = "".join(
        f"<th>{h}</th>" for h in ("analysis", "finding", "what was found", "evidence", "suggestion", "reference")
    )
    return (
        f'<h2 id="findings">Findings ({len(found)})</h2><div class="scroll"><table class="findings"><thead>'
        f"<tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


_SEVERITIES = ("info", "warning", "error")


def _diagnosis_html(report: Mapping) -> str:
    """Per analysis: the verdict in one sentence with its evidence, per-layer / per-unit evidence, the
    findings and what to try (`gradscope.report.diagnosis`)."""
    out = ['<h2 id="diagnosis">Diagnosis</h2>']
    for d in diagnoses(report):
        v = d.verdict if d.verdict in _VERDICT_TEXT else ""
        items = [f"<li>{escape(x)}</li>" for x in d.details]
        items += [
            f'<li><span class="verdict {escape(sev if sev in _SEVERITIES else "")}">{escape(sev)}</span> '
            f"<code>{escape(i)}</code>: {escape(msg)}</li>"
            for i, sev, msg in d.findings
        ]
        items += [f"<li><strong>Try:</strong> {escape(t)}</li>" for t in d.tries]
        out.append(
            f'<div class="diag {v}" id="diagnosis-{escape(slug(d.name))}"><p><code>{escape(d.name)}</code> '
            f'<span class="label">{escape(d.label)}</span> — {_verdict(d.verdict)} '
            f"{escape(d.sentence.split(':', 1)[1].strip() if ':' in d.sentence else d.sentence)}.</p>"
            f"<ul>{''.join(items)}</ul></div>"
        )
    return "\n".join(out)


def _toc(entries: list[tuple[str, str, list[tuple[str, str]]]]) -> str:
    """The table of contents: (anchor, title, [(figure anchor, figure title)])."""
    rows = []
    for anchor, title, subs in entries:
        sub = " · ".join(f'<a href="#{escape(a)}">{escape(t)}</a>' for a, t in subs)
        rows.append(f'<li><a href="#{escape(anchor)}">{escape(title)}</a>' + (f": {sub}" if sub else "") + "</li>")
    return f'<nav class="toc" id="contents"><strong>Contents</strong><ol>{"".join(rows)}</ol></nav>'


def _anchor(spec: FigureSpec) -> str:
    return spec.filename.removesuffix(".png")


def _figure(spec: FigureSpec, png: bytes | None, use_plotly: bool) -> str:
    """The figure: its Plotly chart when it has one and Plotly is there, else the inlined PNG."""
    chart = spec.interactive() if (use_plotly and spec.interactive is not None) else None
    if chart is not None:
        body = interactive.html_figure(f"plot-{_anchor(spec)}", chart)
    else:
        data = base64.b64encode(png if png is not None else spec.png()).decode("ascii")
        body = f'<img alt="{escape(spec.title)}" src="data:image/png;base64,{data}">'
    return (
        f'<figure id="{escape(_anchor(spec))}"><h3>{escape(spec.title)}</h3>{body}'
        f"<figcaption>{escape(spec.caption)}</figcaption></figure>"
    )


def render_html(report: Mapping, images: Mapping[str, bytes] | None = None, *, interactive_figures: bool = True) -> str:
    """The HTML page of a ``gradscope.report/1`` document; ``images`` maps figure file names to PNG
    bytes already rendered (missing ones are rendered here). ``interactive_figures``: Plotly charts where
    a figure has one and the ``plotly`` package is installed (else every figure is a PNG, with a note)."""
    from gradscope.report import training

    items = list(report.get("analyses", []))
    # training figures are shown by the training section, next to its run table
    specs = [s for s in figure_specs(report) if not s.filename.startswith(training.FILE_PREFIX)]
    images = dict(images or {})
    use_plotly = bool(interactive_figures) and interactive.available()
    command = str(report.get("command", ""))
    title = f"gradscope {command} report"
    n = len(items)
    groups: list[tuple[str | None, list[FigureSpec]]] = []
    for spec in specs:
        if not groups or groups[-1][0] != spec.analysis:
            groups.append((spec.analysis, []))
        groups[-1][1].append(spec)
    sections = []
    for name, group in groups:
        heading = ("Comparison" if n > 1 else "Lag profile") if name is None else "Analysis " + name
        anchor = "comparison" if name is None else f"analysis-{slug(name)}"
        sections.append((anchor, heading, group))
    findings = _findings_table(items)
    toc = [
        (
            "diagnosis",
            "Diagnosis",
            [(f"diagnosis-{slug(str(a.get('name', '')))}", str(a.get("name", ""))) for a in items][:40],
        )
    ]
    toc.append(("summary", "Summary", []))
    if findings:
        toc.append(("findings", "Findings", []))
    toc += [(a, h, [(_anchor(s), s.title.split(": ", 1)[-1]) for s in g]) for a, h, g in sections]
    train = training.training_html(report, images)
    if train:
        toc.append(("training", "Training", []))
    toc.append(("configuration", "Run configuration", []))
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body><main>",
        f'<h1 id="top">{escape(title)}</h1>',
        f'<p class="env">{escape(environment_line(report))}</p>',
        f'<p class="env">created {escape(str(report.get("created", "?")))}; norms are log10, Lyapunov '
        "exponents nats per step; S_t is the state after step t and lag τ = T − k; — marks a value not "
        "computed or the log10 of an exactly zero norm.</p>",
    ]
    if report.get("reproduction"):
        parts.append(training.reproduction_html(report["reproduction"]))
    parts.append(_toc(toc))
    parts.append(_diagnosis_html(report))
    parts.append(f'<h2 id="summary">Summary ({n} analys{"is" if n == 1 else "es"})</h2>')
    if n > 1:
        parts.append(_verdict_table(items))
    parts.append(_summary_table(items))
    parts.append(findings)
    if not use_plotly and any(s.interactive is not None for s in specs):
        why = "switched off" if not interactive_figures else "the plotly package is not installed (pip install plotly)"
        parts.append(f'<p class="note">Figures are static PNGs: interactive figures are {why}.</p>')
    for anchor, heading, group in sections:
        parts.append(f'<h2 id="{escape(anchor)}">{escape(heading)}</h2>')
        parts += [_figure(spec, images.get(spec.filename), use_plotly) for spec in group]
    if train:
        parts.append(f'<div id="training">{train}</div>')
    cfg = json.dumps(report.get("config", {}), indent=2, sort_keys=True, default=str)
    parts += [
        f'<details id="configuration"><summary>Run configuration</summary><pre>{escape(cfg)}</pre></details>',
        f"<footer>Generated by gradscope {escape(str(report.get('gradscope_version', '')))} from report.json "
        f"(schema {escape(str(report.get('schema', '')))}), the source of truth; this page and the PNGs are "
        "re-rendered from it by <code>gradscope.report.render_report</code>.</footer>",
    ]
    if use_plotly and "gs-fig" in "".join(parts):
        parts.append(interactive.boot_script())
    parts.append("</main></body></html>")
    return "\n".join(parts)
