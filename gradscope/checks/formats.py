"""Output formats of a gradient-flow check: text, JSON, JUnit XML, GitHub annotations, Markdown.

JUnit has one testcase per metric and a failure message that carries both values; GitHub annotations
are ``::error``/``::warning`` workflow commands with their data and properties escaped; the Markdown
table fits a step summary (GitHub caps those at 1 MiB). The formats are registered by name
(`gradscope._registry.Registry`): ``render(result, "junit")``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from xml.etree import ElementTree as ET

from gradscope._registry import Registry
from gradscope.checks._errors import UnknownFormatError
from gradscope.checks.comparison import CheckResult, MetricCheck, _fmt
from gradscope.checks.io import _now

REGENERATE_HINT = (
    "if the change is intended, regenerate the baseline with: "
    "gradscope baseline REPORT --output BASELINE --update, and commit it"
)


def _sorted_rows(result: CheckResult) -> list[MetricCheck]:
    return [r for r in result.rows if not r.passed] + [r for r in result.rows if r.passed]


def format_text(result: CheckResult) -> str:
    """Plain text: a summary line, then one line per metric (failures first), then warnings."""
    lines = [result.summary_line()]
    if result.report_path or result.baseline_path:
        lines.append(f"  report: {result.report_path}   baseline: {result.baseline_path}")
    width = max((len(r.name) for r in result.rows), default=0)
    for r in _sorted_rows(result):
        mark = {"pass": "ok", "skipped": "skip"}.get(r.status, "FAIL")
        lines.append(f"  {mark:<4}  {r.name:<{width}}  {_fmt(r.baseline):>10} -> {_fmt(r.observed):<10}  {r.message}")
    lines += [f"warning: {w}" for w in result.warnings]
    if not result.passed:
        lines.append(f"hint: {REGENERATE_HINT}")
    return "\n".join(lines) + "\n"


def format_json(result: CheckResult) -> str:
    """One JSON document (schema ``gradscope.check/1``); non-finite numbers become null."""
    return json.dumps(result.to_dict(), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def format_junit(result: CheckResult) -> str:
    """JUnit XML: one testsuite, one testcase per metric; a failure message carries both values."""
    failures = sum(r.status in ("fail", "missing") for r in result.rows)
    errors = sum(r.status == "nonfinite" for r in result.rows)
    skipped = sum(r.status == "skipped" for r in result.rows)
    counts = {"tests": str(len(result.rows)), "failures": str(failures), "errors": str(errors)}
    root = ET.Element("testsuites", {"name": "gradscope", **counts})
    suite = ET.SubElement(
        root,
        "testsuite",
        {"name": "gradscope check", "skipped": str(skipped), "time": "0", "timestamp": _now(), **counts},
    )
    props = ET.SubElement(suite, "properties")
    for key, value in (("report", result.report_path), ("baseline", result.baseline_path)):
        if value:
            ET.SubElement(props, "property", name=key, value=str(value))
    for r in result.rows:
        analysis = r.name.rsplit("/", 1)[0] if "/" in r.name else "report"
        case = ET.SubElement(suite, "testcase", classname=f"gradscope.{analysis}", name=r.name, time="0")
        detail = (
            f"baseline: {_fmt(r.baseline)}\nobserved: {_fmt(r.observed)}\ndelta: {_fmt(r.delta)}\n"
            f"tolerance: {_fmt(r.tolerance)} (atol={_fmt(r.atol)}, rtol={_fmt(r.rtol)})\n"
            f"direction: {r.direction}\nmin: {_fmt(r.min)}  max: {_fmt(r.max)}\n"
        )
        if r.status in ("fail", "missing"):
            ET.SubElement(case, "failure", message=r.message, type=r.status).text = detail
        elif r.status == "nonfinite":
            ET.SubElement(case, "error", message=r.message, type="nonfinite").text = detail
        elif r.status == "skipped":
            ET.SubElement(case, "skipped", message=r.message)
    if result.warnings:
        ET.SubElement(suite, "system-err").text = "\n".join(result.warnings)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _gh_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _gh_property(text: str) -> str:
    return _gh_data(text).replace(":", "%3A").replace(",", "%2C")


def format_github(result: CheckResult) -> str:
    """GitHub Actions workflow commands: ``::error`` per failed metric, ``::warning`` per warning, then
    the summary line. (The CLI also appends the Markdown table to ``$GITHUB_STEP_SUMMARY``.)"""
    where = f"file={_gh_property(result.baseline_path)}," if result.baseline_path else ""
    lines = [
        f"::error {where}title={_gh_property('gradscope ' + r.name)}::{_gh_data(r.message)}" for r in result.failures
    ]
    lines += [f"::warning title=gradscope::{_gh_data(w)}" for w in result.warnings]
    lines.append(result.summary_line())
    if not result.passed:
        lines.append(f"hint: {REGENERATE_HINT}")
    return "\n".join(lines) + "\n"


def _md_cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def format_markdown(result: CheckResult, *, max_bytes: int = 900_000) -> str:
    """A Markdown table for a CI step summary (GitHub caps these at 1 MiB, so rows are cut at ``max_bytes``)."""
    icon = "✅" if result.passed else "❌"
    lines = [
        f"### {icon} {result.summary_line()}",
        "",
        "| | metric | baseline | observed | delta | allowed | direction | note |",
        "|---|---|---:|---:|---:|---:|---|---|",
    ]
    size = sum(len(x.encode()) + 1 for x in lines)
    rows = _sorted_rows(result)
    for i, r in enumerate(rows):
        mark = {"pass": "✅", "skipped": "⏭️"}.get(r.status, "❌")
        limits = " ".join(f"{k}={_fmt(v)}" for k, v in (("min", r.min), ("max", r.max)) if v is not None)
        line = (
            f"| {mark} | `{_md_cell(r.name)}` | {_md_cell(_fmt(r.baseline))} | {_md_cell(_fmt(r.observed))} | "
            f"{_md_cell(_fmt(r.delta) if r.delta is not None else '')} | "
            f"{_md_cell(_fmt(r.tolerance) if r.tolerance is not None else '')} | "
            f"{r.direction.replace('_', ' ')} {limits} | {_md_cell('' if r.passed else r.message)} |"
        )
        if size + len(line.encode()) + 1 > max_bytes:
            lines.append(f"| | … {len(rows) - i} more rows left out (size limit) | | | | | | |")
            break
        lines.append(line)
        size += len(line.encode()) + 1
    if result.warnings:
        lines += [""] + [f"> ⚠️ {_md_cell(w)}" for w in result.warnings]
    return "\n".join(lines) + "\n"


_FORMATTERS: Registry[Callable[[CheckResult], str]] = Registry(
    "format", unknown="format={name!r} is not allowed; {hint}use one of {known}", error=UnknownFormatError
)
for _name, _format in (
    ("text", format_text),
    ("json", format_json),
    ("junit", format_junit),
    ("github", format_github),
    ("markdown", format_markdown),
):
    _FORMATTERS.register(_name, _format)

#: the output formats, in the order the CLI lists them
FORMATS: tuple[str, ...] = _FORMATTERS.names()


def render(result: CheckResult, fmt: str = "text") -> str:
    """The result in one of ``FORMATS``; an unknown format raises `UnknownFormatError` (exit code 2)."""
    return _FORMATTERS.get(fmt)(result)
