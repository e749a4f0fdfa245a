"""An analysis in a Python session: its notebook display, its figures by name, and a report folder in one call.

    a = gs.analyse(cell, xs)
    a                               # in Jupyter: verdict, summary table and the lag profile (Analysis._repr_html_)
    fig = a.plot("lyapunov")        # a matplotlib Figure: "lag", "spectra", "lyapunov", "paths" or "gates"
    gs.report.write([a, b], "out")  # report.json, report.html, summary.md, figures/

`gradscope.analysis.Analysis` delegates ``_repr_html_`` and ``plot`` here (lazy import: the analysis layer
does not import the report layer). Everything works on ``Analysis.to_dict()``; nothing differentiates.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Mapping
from html import escape
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from gradscope._errors import ConfigError, UnknownNameError
from gradscope.report import figures as F

#: plot kind → (figure function of `gradscope.report.figures`, section it needs, the analyse option that
#: computes that section)
PLOTS: dict[str, tuple[Callable[[Any], Figure], str, str]] = {
    "lag": (lambda d: F.lag_profiles([d]), "lag_profile", "analyse(...) always computes it"),
    "spectra": (F.singular_values, "spectra", "analyse(..., spectra=True, mode='exact')"),
    "lyapunov": (F.lyapunov, "lyapunov", "analyse(..., lyapunov=True)"),
    "paths": (F.paths, "paths", "analyse(..., paths=True, mode='exact') on an LSTM/GRU-type cell"),
    "gates": (F.gates, "gates", "analyse(..., gates=True)"),
}

# scoped to the display's own <div>: a notebook page keeps its styles
_STYLE = """<style>
.gradscope-analysis table { border-collapse: collapse; font-size: 0.9em; margin: 6px 0; }
.gradscope-analysis th, .gradscope-analysis td { border: 1px solid #d9dde5; padding: 3px 8px; text-align: left; }
.gradscope-analysis td.num { text-align: right; font-variant-numeric: tabular-nums; }
.gradscope-analysis div.unit { color: #5b6475; font-weight: normal; font-size: 0.85em; }
.gradscope-analysis .verdict { padding: 1px 8px; border-radius: 10px; font-weight: 600; }
.gradscope-analysis .vanishing { color: #8a1c1c; background: #fde8e8; }
.gradscope-analysis .exploding { color: #7a4a00; background: #fff1d6; }
.gradscope-analysis .stable { color: #155d2b; background: #e3f5e8; }
.gradscope-analysis .inconclusive { color: #3d3d3d; background: #ececec; }
.gradscope-analysis img { max-width: 100%; height: auto; }
</style>"""


def _record(analysis) -> dict:
    """An `Analysis` (or its ``to_dict()``) as the JSON-ready dict the figures read."""
    from gradscope._json import clean

    if isinstance(analysis, Mapping):
        return clean(analysis)
    if callable(getattr(analysis, "to_dict", None)):
        return clean(analysis.to_dict())
    raise ConfigError(f"analysis={type(analysis).__name__} is not allowed: expected a gradscope Analysis")


def plot(analysis, kind: str = "lag") -> Figure:
    """The ``kind`` figure of an analysis: ``"lag"`` (log10 ‖∂S_T/∂S_k‖₂ against the lag, with the
    classical bound), ``"spectra"`` (singular values along the lag and of the one-step Jacobians),
    ``"lyapunov"`` (the spectrum and its convergence), ``"paths"`` (highway against remainder) or
    ``"gates"`` (gate saturation). Raises `ConfigError` naming the analyse option when the analysis
    lacks the section."""
    if not isinstance(kind, str) or kind not in PLOTS:
        raise UnknownNameError(f"kind={kind!r} is not a plot kind: use one of {', '.join(PLOTS)}")
    fn, section, option = PLOTS[kind]
    d = _record(analysis)
    if not d.get(section):
        raise ConfigError(
            f"analysis {d.get('name', '?')!r} has no {section!r} section, which plot(kind={kind!r}) needs: "
            f"compute it with {option}"
        )
    return fn(d)


def _png(fig: Figure, dpi: int = 80) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def analysis_html(analysis) -> str:
    """HTML of one analysis for a notebook: its name and verdict with the reason, the summary table of the
    report page, the lag-profile figure as an inline base64 PNG, and its findings' messages."""
    from gradscope.report.html import _summary_table

    d = _record(analysis)
    s = d.get("summary") or {}
    verdict = str(s.get("verdict", "?"))
    parts = [
        f'<div class="gradscope-analysis">{_STYLE}',
        f"<h4>gradscope analysis <code>{escape(str(d.get('name', '')))}</code>: "
        f'<span class="verdict {escape(verdict)}">{escape(verdict)}</span></h4>',
    ]
    if s.get("verdict_reason"):
        parts.append(f"<p>{escape(str(s['verdict_reason']))}</p>")
    parts.append(_summary_table([d]))
    if d.get("lag_profile"):
        parts.append(f'<img alt="gradient norm against lag" src="data:image/png;base64,{_png(plot(d, "lag"))}">')
    found = d.get("findings") or []
    if found:
        items = "".join(
            f"<li><code>{escape(str(f.get('id', '')))}</code> ({escape(str(f.get('severity', '')))}): "
            f"{escape(str(f.get('message', '')))}</li>"
            for f in found
        )
        parts.append(f"<p>Findings:</p><ul>{items}</ul>")
    parts.append("</div>")
    return "\n".join(parts)


def write(analyses, out, *, force: bool = False, config: Mapping | None = None, dpi: int = 100) -> Path:
    """Write the report folder of one `Analysis` or a list of them (or their ``to_dict()``) into ``out``:
    ``report.json`` (schema ``gradscope.report/1``), ``report.html`` (self-contained), ``summary.md`` and
    ``figures/``; returns its path.

    One analysis is recorded as an ``analyse`` report, several as a ``compare`` report (their lag profiles
    on one axis); ``config`` is stored as the report's configuration. The folder is replaced atomically;
    a non-empty ``out`` without ``force=True`` raises `gradscope.report.ReportExistsError`. Analysis names
    must be unique (``gs.analyse(..., name=...)``).

        import gradscope as gs
        gs.report.write([gs.analyse(lstm, xs, name="lstm"), gs.analyse(gru, xs, name="gru")], "report")
    """
    from gradscope.report.document import build_report
    from gradscope.report.folder import write_report

    items = [analyses] if isinstance(analyses, Mapping) or hasattr(analyses, "to_dict") else analyses
    if isinstance(items, (str, bytes)) or not hasattr(items, "__iter__"):
        raise ConfigError(
            f"analyses={type(analyses).__name__} is not allowed: give an Analysis or a list of them (gs.analyse)"
        )
    records = [_record(a) for a in items]
    command = "analyse" if len(records) == 1 else "compare"
    report = build_report(records, command=command, config=config)
    return write_report(out, report, force=force, dpi=dpi)
