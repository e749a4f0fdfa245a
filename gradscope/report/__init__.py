"""Reports: ``report.json`` (versioned schema, the source of truth), PNG figures, one self-contained
``report.html`` and a ``summary.md`` for CI — the presentation layer; it never differentiates.

    import gradscope as gs
    from gradscope.report import build_report, write_report
    a = gs.analyse(cell, xs, name="lstm", triangle=True)
    write_report("out", build_report([a], command="analyse", config={"cell": "lstm"}))
    gs.report.write([a], "out")          # the same in one call (gradscope.report.notebook.write)

``gradscope.report.figures`` holds the matplotlib figure functions (also for notebooks).
JAX is imported only by `build_report` (to record the environment). Names are loaded lazily (PEP 562):
matplotlib is imported where a figure is drawn (in `gradscope compare`/`analyse`, by the figure workers of
`gradscope.report.drawing`), not to build, check or render a report.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gradscope._lazy import lazy_getattr

if TYPE_CHECKING:
    from gradscope.report import figures
    from gradscope.report.catalogue import FigureSpec, figure_specs
    from gradscope.report.document import (
        SCHEMA,
        ReportError,
        ReportExistsError,
        ReportFormatError,
        build_report,
        clean,
        load_report,
        load_schema,
        validate_report,
    )
    from gradscope.report.folder import render_report, write_report
    from gradscope.report.html import render_html
    from gradscope.report.markdown import render_markdown
    from gradscope.report.notebook import write

_LAZY: dict[str, str | tuple[str, str | None]] = {
    "figures": ("gradscope.report.figures", None),
    "FigureSpec": "gradscope.report.catalogue",
    "figure_specs": "gradscope.report.catalogue",
    **{
        name: "gradscope.report.document"
        for name in (
            "SCHEMA",
            "ReportError",
            "ReportExistsError",
            "ReportFormatError",
            "build_report",
            "clean",
            "load_report",
            "load_schema",
            "validate_report",
        )
    },
    "render_report": "gradscope.report.folder",
    "write_report": "gradscope.report.folder",
    "render_html": "gradscope.report.html",
    "render_markdown": "gradscope.report.markdown",
    "write": "gradscope.report.notebook",
}

__all__ = [
    "SCHEMA",
    "FigureSpec",
    "ReportError",
    "ReportExistsError",
    "ReportFormatError",
    "build_report",
    "clean",
    "figure_specs",
    "figures",
    "load_report",
    "load_schema",
    "render_html",
    "render_markdown",
    "render_report",
    "validate_report",
    "write",
    "write_report",
]


__getattr__ = lazy_getattr("gradscope.report", _LAZY, globals())
