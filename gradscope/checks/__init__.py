"""CI regression checks on gradient flow: compare a saved report with a committed baseline.

A *report* (``report.json``, schema ``gradscope.report/1``) holds one or more analyses, each with a
``summary`` of scalar metrics, addressed as ``"<analysis name>/<summary key>"`` (``"lstm-fb1/horizon"``).
A *baseline* (schema ``gradscope.baseline/1``) records their values once, with a rule per metric, and
:func:`compare` checks a new report against it::

    baseline = checks.make_baseline("run/report.json")
    checks.save_baseline(baseline, "baselines/lstm.json")
    result = checks.compare("run/report.json", "baselines/lstm.json")
    print(checks.render(result, "markdown")); raise SystemExit(result.exit_code)

The package, one module per concept:

* :mod:`~gradscope.checks.rules` — tolerance rules (``atol``/``rtol`` with ``numpy.isclose`` semantics,
  a direction, ``min``/``max`` limits), the defaults by metric kind, overrides and TOML config;
* :mod:`~gradscope.checks.io` — reading and validating reports and baselines, building a baseline and
  writing it atomically;
* :mod:`~gradscope.checks.comparison` — :func:`compare`, :class:`MetricCheck`, :class:`CheckResult`;
* :mod:`~gradscope.checks.formats` — text, JSON, JUnit XML, GitHub annotations and Markdown output.

It works on saved JSON only and never imports JAX (CI checks start in well under a second). Exit codes:
0 pass, 1 regression, 2 usage/input error, 3 non-finite value, 4 baseline missing; baselines change only
when asked; files are written atomically.
"""

from __future__ import annotations

# names the module had before it became a package, kept so that old imports still work
from gradscope._atomic import write_text  # noqa: F401
from gradscope._errors import GradscopeError, NonFiniteError  # noqa: F401
from gradscope._json import clean  # noqa: F401
from gradscope.checks._errors import (
    EXIT_BASELINE_MISSING,
    EXIT_NONFINITE,
    EXIT_PASS,
    EXIT_REGRESSION,
    EXIT_USAGE,
    BaselineMissingError,
    CheckInputError,
    ReportNonFiniteError,
    UnknownFormatError,
)
from gradscope.checks.comparison import CHECK_SCHEMA, CheckResult, MetricCheck, compare
from gradscope.checks.formats import (
    FORMATS,
    REGENERATE_HINT,
    format_github,
    format_json,
    format_junit,
    format_markdown,
    format_text,
    render,
)
from gradscope.checks.io import (
    ANALYSIS_SCHEMA,
    BASELINE_SCHEMA,
    REPORT_SCHEMA,
    load_baseline,
    load_report,
    make_baseline,
    report_metrics,
    save_baseline,
    write_text_atomic,
)
from gradscope.checks.rules import DEFAULT_RULES, DIRECTIONS, Rule, load_config, metric_kind

__all__ = [
    "REPORT_SCHEMA",
    "BASELINE_SCHEMA",
    "CHECK_SCHEMA",
    "DIRECTIONS",
    "FORMATS",
    "DEFAULT_RULES",
    "CheckInputError",
    "BaselineMissingError",
    "ReportNonFiniteError",
    "Rule",
    "MetricCheck",
    "CheckResult",
    "load_report",
    "load_baseline",
    "load_config",
    "report_metrics",
    "metric_kind",
    "make_baseline",
    "save_baseline",
    "compare",
    "render",
    "write_text_atomic",
    "format_text",
    "format_json",
    "format_junit",
    "format_github",
    "format_markdown",
    "ANALYSIS_SCHEMA",
    "REGENERATE_HINT",
    "UnknownFormatError",
    "EXIT_PASS",
    "EXIT_REGRESSION",
    "EXIT_USAGE",
    "EXIT_NONFINITE",
    "EXIT_BASELINE_MISSING",
]
