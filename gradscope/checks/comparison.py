"""The comparison of a report with a baseline: one `MetricCheck` per baseline metric, one `CheckResult`.

Per metric, with the rule of :mod:`gradscope.checks.rules` (``numpy.isclose`` semantics, the baseline b
the reference): ``delta = observed - b`` fails when it is beyond ``atol + rtol * |b|`` in the rule's
direction, or when the observed value is outside ``min``/``max``; categorical metrics must be equal.
Differences of environment (gradscope, JAX, precision, backend, platform) become warnings.
"""

from __future__ import annotations

import dataclasses
import math
import types
from collections.abc import Mapping
from typing import Any

from gradscope._json import clean
from gradscope.checks._errors import EXIT_NONFINITE, EXIT_PASS, EXIT_REGRESSION
from gradscope.checks.io import _as_baseline, _as_report, _number, _precision, report_metrics
from gradscope.checks.rules import (
    DEFAULT_RULES,
    Rule,
    _apply_overrides,
    _default_rule,
    _validate_overrides,
    metric_kind,
)

CHECK_SCHEMA = "gradscope.check/1"


@dataclasses.dataclass(frozen=True)
class MetricCheck:
    """One row of a check: a metric, its baseline and observed values and the verdict."""

    name: str
    kind: str
    baseline: Any
    observed: Any
    delta: float | None
    tolerance: float | None  # allowed |delta| = atol + rtol * |baseline|
    atol: float | None
    rtol: float | None
    direction: str
    min: float | None
    max: float | None
    passed: bool
    status: str  # "pass" | "fail" | "nonfinite" | "missing" | "skipped"
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _json_value(getattr(self, f.name)) for f in dataclasses.fields(self)}


@dataclasses.dataclass(frozen=True)
class CheckResult:
    """The outcome of :func:`compare`: one row per baseline metric, plus warnings (environment
    differences, new metrics). Immutable; ``exit_code`` is 0 pass, 1 regression, 3 non-finite."""

    rows: tuple[MetricCheck, ...]
    warnings: tuple[str, ...] = ()
    report_path: str | None = None
    baseline_path: str | None = None
    environment: Mapping[str, Any] = dataclasses.field(default_factory=lambda: types.MappingProxyType({}))

    @property
    def failures(self) -> tuple[MetricCheck, ...]:
        return tuple(r for r in self.rows if not r.passed)

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def status(self) -> str:
        if any(r.status == "nonfinite" for r in self.rows):
            return "nonfinite"
        return "pass" if self.passed else "regression"

    @property
    def exit_code(self) -> int:
        return {"pass": EXIT_PASS, "regression": EXIT_REGRESSION, "nonfinite": EXIT_NONFINITE}[self.status]

    def summary_line(self) -> str:
        n = len(self.rows)
        if self.passed:
            return f"gradscope check: PASS, {n} metric{'s' * (n != 1)} within tolerance"
        nonfinite = sum(r.status == "nonfinite" for r in self.rows)
        what = f"{len(self.failures)} of {n} metrics failed"
        return f"gradscope check: FAIL, {what}" + (f" ({nonfinite} non-finite)" if nonfinite else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": CHECK_SCHEMA,
            "status": self.status,
            "exit_code": self.exit_code,
            "passed": self.passed,
            "report": self.report_path,
            "baseline": self.baseline_path,
            "counts": {
                "metrics": len(self.rows),
                "failed": len(self.failures),
                "skipped": sum(r.status == "skipped" for r in self.rows),
            },
            "metrics": [r.to_dict() for r in self.rows],
            "warnings": list(self.warnings),
            "environment": _json_value(dict(self.environment)),
        }


_json_value = clean  # the one sanitiser (gradscope._json)


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.6g}"
    if isinstance(value, str):
        return repr(value)
    return str(value)


def _check_metric(name: str, kind: str, base: Any, obs: Any, rule: Rule, missing: bool) -> MetricCheck:
    def row(passed: bool, status: str, message: str, delta=None, tolerance=None) -> MetricCheck:
        numeric = kind != "category"
        return MetricCheck(
            name,
            kind,
            base,
            None if missing else obs,
            delta,
            tolerance,
            rule.atol if numeric else None,
            rule.rtol if numeric else None,
            rule.direction,
            rule.min,
            rule.max,
            passed,
            status,
            message,
        )

    if rule.skip:
        return row(True, "skipped", "skipped by configuration")
    if missing:
        return row(
            False,
            "missing",
            f"{name} is missing from the report (baseline {_fmt(base)}); the analysis or metric was renamed or removed",
        )
    if kind == "category" or isinstance(base, (str, bool)) or isinstance(obs, (str, bool)):
        if obs == base:
            return row(True, "pass", f"unchanged ({_fmt(obs)})")
        return row(False, "fail", f"{name} changed from {_fmt(base)} to {_fmt(obs)}; it must stay equal")
    base, obs = float(base), float(obs)
    if not math.isfinite(base):
        if math.isnan(base) and math.isnan(obs):
            return row(True, "pass", "not computed in the baseline nor in the report")
        return row(
            False,
            "fail",
            f"the baseline value of {name} is {_fmt(base)}, which cannot be compared; regenerate the baseline",
        )
    if not math.isfinite(obs):
        return row(
            False,
            "nonfinite",
            f"{name} is {_fmt(obs)} in the report (baseline {_fmt(base)}): the analysis "
            "produced a non-finite value or did not compute it (e.g. lyapunov=False)",
        )
    delta = obs - base
    tol = rule.atol + rule.rtol * abs(base)
    rel = f", {100 * delta / abs(base):+.1f}%" if base != 0 else ""
    change = f"{name} changed from {_fmt(base)} to {_fmt(obs)} (delta {delta:+.6g}{rel})"
    problems = []
    if rule.direction == "both" and abs(delta) > tol:
        problems.append(f"beyond the tolerance +/-{tol:.6g} (atol={_fmt(rule.atol)}, rtol={_fmt(rule.rtol)})")
    elif rule.direction == "increase_is_bad" and delta > tol:
        problems.append(
            f"a rise beyond the tolerance {tol:.6g} (atol={_fmt(rule.atol)}, rtol={_fmt(rule.rtol)}; increase_is_bad)"
        )
    elif rule.direction == "decrease_is_bad" and -delta > tol:
        problems.append(
            f"a fall beyond the tolerance {tol:.6g} (atol={_fmt(rule.atol)}, rtol={_fmt(rule.rtol)}; decrease_is_bad)"
        )
    if rule.max is not None and obs > rule.max:
        problems.append(f"above the limit max={_fmt(rule.max)}")
    if rule.min is not None and obs < rule.min:
        problems.append(f"below the limit min={_fmt(rule.min)}")
    if problems:
        return row(False, "fail", f"{change}: {'; '.join(problems)}", delta, tol)
    return row(True, "pass", f"within tolerance (delta {delta:+.6g}, allowed {tol:.6g}, {rule.direction})", delta, tol)


def _platform_family(platform: Any) -> Any:
    """OS and CPU architecture of a ``platform.platform()`` string; kernel versions change on every CI image."""
    if not isinstance(platform, str):
        return platform
    arch = next((a for a in ("x86_64", "aarch64", "arm64", "AMD64", "ppc64le", "s390x") if a in platform), None)
    return platform.split("-", 1)[0], arch


def _environment_warnings(report: Mapping[str, Any], baseline: Mapping[str, Any]) -> list[str]:
    warnings = []
    env, benv = report.get("environment") or {}, baseline.get("environment") or {}

    def differ(what: str, old: Any, new: Any, why: str) -> None:
        if old is not None and new is not None and old != new:
            warnings.append(f"{what} differs: baseline {old!r}, report {new!r}; {why}")

    differ(
        "gradscope version",
        baseline.get("gradscope_version"),
        report.get("gradscope_version", env.get("gradscope")),
        "regenerate the baseline after reviewing the change",
    )
    bprec, rprec = baseline.get("precision") or {}, _precision(report)
    differ("precision dtype", bprec.get("dtype"), rprec.get("dtype"), "float32 and float64 results differ slightly")
    differ(
        "matmul precision",
        bprec.get("matmul"),
        rprec.get("matmul"),
        "reduced matmul precision (TF32) changes long Jacobian products",
    )
    for key, why in (
        ("jax", "numbers may shift slightly"),
        ("backend", "CPU and GPU results differ slightly"),
        ("x64", "float32 and float64 results differ slightly"),
    ):
        differ(f"environment {key}", benv.get(key), env.get(key), why)
    if _platform_family(baseline.get("platform", benv.get("platform"))) != _platform_family(env.get("platform")):
        differ(
            "platform",
            baseline.get("platform", benv.get("platform")),
            env.get("platform"),
            "numbers may shift slightly",
        )
    return warnings


def compare(report: Any, baseline: Any, overrides: Mapping[str, Any] | None = None) -> CheckResult:
    """Check every metric of ``baseline`` against ``report`` (paths or loaded dicts).

    Rule precedence per metric: kind default < the baseline entry < the baseline's ``"overrides"``
    table < ``overrides`` (e.g. from :func:`load_config`). Metrics in the report that the baseline does
    not know produce a warning, not a failure.
    """
    report, baseline = _as_report(report), _as_baseline(baseline)
    overrides = _validate_overrides(overrides, "overrides")
    file_overrides = baseline.get("overrides") or {}
    observed = report_metrics(report)
    rows = []
    for name, entry in baseline["metrics"].items():
        base = _number(entry["value"])
        kind = entry.get("kind") or metric_kind(name, base)
        if kind not in DEFAULT_RULES:
            kind = metric_kind(name, base)
        rule = _default_rule(kind).updated(entry, f"baseline metric {name!r}")
        rule = _apply_overrides(rule, name, kind, file_overrides, "baseline overrides")
        rule = _apply_overrides(rule, name, kind, overrides, "overrides")
        rows.append(_check_metric(name, kind, base, observed.get(name), rule, name not in observed))
    warnings = _environment_warnings(report, baseline)
    new = [
        n for n, v in observed.items() if n not in baseline["metrics"] and not (isinstance(v, float) and math.isnan(v))
    ]
    if new:
        shown = ", ".join(new[:5]) + (f" and {len(new) - 5} more" if len(new) > 5 else "")
        warnings.append(
            f"{len(new)} metric{'s' * (len(new) != 1)} in the report are not in the baseline and were not "
            f"checked ({shown}); add them with: gradscope baseline REPORT --output BASELINE --update"
        )
    return CheckResult(
        tuple(rows),
        tuple(warnings),
        report.get("_path"),
        baseline.get("_path"),
        types.MappingProxyType(dict(report.get("environment") or {})),
    )
