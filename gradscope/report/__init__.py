"""Reports: ``report.json`` (versioned schema, the source of truth), PNG figures, one self-contained
``report.html`` and a ``summary.md`` for CI — the presentation layer; it never differentiates.

    import gradscope as gs
    from gradscope.report import build_report, write_report
    a = gs.analyse(cell, xs, name="lstm", triangle=True)
    write_report("out", build_report([a], command="analyse", config={"cell": "lstm"}))
    gs.report.write([a], "out")          # the same in one call (gradscope.report.notebook.write)

``gradscope.report.figures`` holds the matplotlib figure functions (also for notebooks).
JAX is imported only by `build_report` (to record the environment).
"""

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
