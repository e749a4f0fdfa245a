"""CI regression checks on gradient flow: compare a saved report with a committed baseline.

A *report* (``report.json``, schema ``gradscope.report/1``) holds one or more analyses, each with a
``summary`` of scalar metrics. A metric is addressed as ``"<analysis name>/<summary key>"``, e.g.
``"lstm-fb1/horizon"``. A *baseline* (schema ``gradscope.baseline/1``) records the values of those
metrics once, together with a rule per metric, and :func:`compare` checks a new report against it.

A rule is ``atol``/``rtol`` with ``numpy.isclose`` semantics (the baseline b is the reference)::

    allowed |observed - b|  =  atol + rtol * |b|

plus a ``direction``: ``"both"`` fails on a change either way beyond the tolerance,
``"increase_is_bad"`` only on a rise, ``"decrease_is_bad"`` only on a fall (the spirit of
github-action-benchmark's bigger/smaller-is-better), plus optional absolute limits ``min``/``max``
that hold whatever the baseline (e.g. ``max = 0`` on the largest Lyapunov exponent: the network
must not become chaotic). Categorical metrics (``verdict``) must be equal.

Defaults per metric kind (see ``DEFAULT_RULES``): log10 norms get a tolerance in log10 units
(norms span tens of decades, so tolerances on raw norms would be meaningless); ``horizon`` a
relative tolerance, decreases are bad; ``lyapunov_max`` an absolute tolerance in nats/step,
increases are bad; ``verdict`` must be equal. Rules in the baseline file, then overrides
(``compare(..., overrides=...)``, a TOML file, or an ``"overrides"`` table inside the baseline)
refine them.

This module works on saved JSON only and must not import JAX (CI checks should start in well under
a second); it imports nothing from gradscope but ``_errors``. Conventions follow
``reference/ecosystem.md`` §2: exit codes 0 pass, 1 regression, 2 usage/input error, 3 non-finite
value, 4 baseline missing; baselines change only when asked; files are written atomically.
"""

from __future__ import annotations

import dataclasses
import datetime
import fnmatch
import json
import math
import os
import tomllib
import types
from pathlib import Path
from typing import Any, Mapping

from gradscope._atomic import write_text
from gradscope._errors import GradscopeError, NonFiniteError
from gradscope._json import clean

__all__ = [
    "REPORT_SCHEMA", "BASELINE_SCHEMA", "CHECK_SCHEMA", "DIRECTIONS", "FORMATS", "DEFAULT_RULES",
    "CheckInputError", "BaselineMissingError", "ReportNonFiniteError",
    "Rule", "MetricCheck", "CheckResult",
    "load_report", "load_baseline", "load_config", "report_metrics", "metric_kind",
    "make_baseline", "save_baseline", "compare", "render", "write_text_atomic",
    "format_text", "format_json", "format_junit", "format_github", "format_markdown",
]

REPORT_SCHEMA = "gradscope.report/1"
ANALYSIS_SCHEMA = "gradscope.analysis/1"
BASELINE_SCHEMA = "gradscope.baseline/1"
CHECK_SCHEMA = "gradscope.check/1"
DIRECTIONS = ("both", "increase_is_bad", "decrease_is_bad")
FORMATS = ("text", "json", "junit", "github", "markdown")
EXIT_PASS, EXIT_REGRESSION, EXIT_USAGE, EXIT_NONFINITE, EXIT_BASELINE_MISSING = 0, 1, 2, 3, 4
REGENERATE_HINT = ("if the change is intended, regenerate the baseline with: "
                   "gradscope baseline REPORT -o BASELINE --update, and commit it")

# Metric kinds and their default rules. Calibrated on an LSTM (hidden 16, forget bias 1, T = 100,
# batch 4, float32): eight random seeds (weights and inputs) all stay within these of each other's
# baseline, while forget bias -3, or a tanh RNN's gain raised from 0.9 to 1.5, fail. Platform
# differences (float32 CPU vs GPU, ~1e-3, ecosystem.md §2.5) are far below them.
DEFAULT_RULES: Mapping[str, Mapping[str, Any]] = types.MappingProxyType({
    # log10 norms, in decades. A log10 norm at lag L is ~L x (log10 growth per step), so besides
    # 0.5 decade (a factor ~3) allow 10 % of the value: a 10 % change of the per-step rate.
    "log10": types.MappingProxyType({"atol": 0.5, "rtol": 0.1, "direction": "both"}),
    # slope of the log10 norm against lag, decades per step
    "decay": types.MappingProxyType({"atol": 0.01, "rtol": 0.1, "direction": "both"}),
    # a lag in steps: 10 % plus one step (it is an integer); only a shorter horizon is a regression
    "horizon": types.MappingProxyType({"atol": 1.0, "rtol": 0.1, "direction": "decrease_is_bad"}),
    # nats per step; only a rise (towards chaos / exploding gradients) is a regression
    "lyapunov": types.MappingProxyType({"atol": 0.05, "rtol": 0.1, "direction": "increase_is_bad"}),
    # a setting of the analysis (horizon_threshold): results are comparable only if it is unchanged
    "parameter": types.MappingProxyType({"atol": 0.0, "rtol": 1e-9, "direction": "both"}),
    # anything else numeric
    "number": types.MappingProxyType({"atol": 0.0, "rtol": 0.05, "direction": "both"}),
    # strings and booleans (verdict, finite): must be equal
    "category": types.MappingProxyType({"direction": "both"}),
})

_RULE_KEYS = ("atol", "rtol", "direction", "min", "max", "skip")
_OVERRIDE_SECTIONS = ("defaults", "kinds", "metrics")
# summary entries that are settings rather than results
_PARAMETER_KEYS = ("horizon_threshold", "threshold")
# documented "NaN if not computed" metrics: a baseline simply leaves them out
_MAY_BE_NAN = ("lyapunov",)


class CheckInputError(GradscopeError, ValueError):
    """A report, baseline or config file cannot be used as given (exit code 2)."""

    exit_code = EXIT_USAGE


class BaselineMissingError(GradscopeError, FileNotFoundError):
    """The baseline file does not exist (exit code 4)."""

    exit_code = EXIT_BASELINE_MISSING

    def __str__(self) -> str:  # OSError would format its args as a tuple
        return str(self.args[0]) if self.args else ""


class ReportNonFiniteError(NonFiniteError):
    """A report holds NaN or infinity where a finite number is required (exit code 3)."""

    exit_code = EXIT_NONFINITE


# --------------------------------------------------------------------------------------------
# rules


@dataclasses.dataclass(frozen=True)
class Rule:
    """How one metric is compared: isclose tolerances, direction, absolute limits."""

    atol: float = 0.0
    rtol: float = 0.0
    direction: str = "both"
    min: float | None = None
    max: float | None = None
    skip: bool = False

    def updated(self, fields: Mapping[str, Any], where: str) -> "Rule":
        return dataclasses.replace(self, **_validate_rule(fields, where))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"atol": self.atol, "rtol": self.rtol, "direction": self.direction}
        for key in ("min", "max"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.skip:
            out["skip"] = True
        return out


def _validate_rule(fields: Mapping[str, Any], where: str) -> dict[str, Any]:
    if not isinstance(fields, Mapping):
        raise CheckInputError(f"{where} must be a table of {', '.join(_RULE_KEYS)}; got {fields!r}")
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if key in ("value", "kind"):  # baseline entries carry these next to their rule
            continue
        if key not in _RULE_KEYS:
            raise CheckInputError(f"{where}: unknown key {key!r}; allowed keys: {', '.join(_RULE_KEYS)}")
        if key == "direction":
            if value not in DIRECTIONS:
                raise CheckInputError(f"{where}: direction={value!r} is not allowed; use one of {', '.join(DIRECTIONS)}")
            out[key] = value
        elif key == "skip":
            if not isinstance(value, bool):
                raise CheckInputError(f"{where}: skip={value!r} is not allowed; use true or false")
            out[key] = value
        else:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise CheckInputError(f"{where}: {key}={value!r} is not allowed; use a finite number")
            if key in ("atol", "rtol") and value < 0:
                raise CheckInputError(f"{where}: {key}={value!r} is not allowed; tolerances must be >= 0")
            out[key] = float(value)
    return out


def metric_kind(name: str, value: Any = 0.0) -> str:
    """The kind of a metric from its summary key (the part after the last ``/``) and value."""
    key = name.rsplit("/", 1)[-1].lower()
    if isinstance(value, (str, bool)):
        return "category"
    if key in _PARAMETER_KEYS:
        return "parameter"
    if key.startswith("horizon"):
        return "horizon"
    if key.startswith("lyapunov"):
        return "lyapunov"
    if key.startswith("decay"):
        return "decay"
    if "log10" in key:
        return "log10"
    return "number"


def _default_rule(kind: str) -> Rule:
    return Rule(**DEFAULT_RULES.get(kind, DEFAULT_RULES["number"]))


def _validate_overrides(overrides: Any, where: str) -> dict[str, Any]:
    """Check an overrides table ``{"defaults": rule, "kinds": {kind: rule}, "metrics": {pattern: rule}}``."""
    if overrides is None:
        return {}
    if not isinstance(overrides, Mapping):
        raise CheckInputError(f"{where} must be a table with sections {', '.join(_OVERRIDE_SECTIONS)}")
    unknown = [k for k in overrides if k not in _OVERRIDE_SECTIONS]
    if unknown:
        raise CheckInputError(f"{where}: unknown section {unknown[0]!r}; allowed sections: "
                              f"{', '.join(_OVERRIDE_SECTIONS)} (per-metric rules go under [metrics.\"NAME\"])")
    _validate_rule(overrides.get("defaults", {}), f"{where} [defaults]")
    for section in ("kinds", "metrics"):
        table = overrides.get(section, {})
        if not isinstance(table, Mapping):
            raise CheckInputError(f"{where} [{section}] must be a table of rules")
        for key, rule in table.items():
            if section == "kinds" and key not in DEFAULT_RULES:
                raise CheckInputError(f"{where}: unknown metric kind {key!r}; kinds: {', '.join(DEFAULT_RULES)}")
            _validate_rule(rule, f"{where} [{section}.{json.dumps(key, ensure_ascii=False)}]")
    return dict(overrides)


def _apply_overrides(rule: Rule, name: str, kind: str, overrides: Mapping[str, Any], where: str) -> Rule:
    """defaults < kinds[kind] < matching metric patterns (in file order; the exact name last)."""
    if not overrides:
        return rule
    rule = rule.updated(overrides.get("defaults", {}), where)
    rule = rule.updated(overrides.get("kinds", {}).get(kind, {}), where)
    metrics = overrides.get("metrics", {})
    for pattern, fields in metrics.items():
        if pattern != name and fnmatch.fnmatchcase(name, pattern):
            rule = rule.updated(fields, where)
    if name in metrics:
        rule = rule.updated(metrics[name], where)
    return rule


# --------------------------------------------------------------------------------------------
# loading


def _read_json(path: Path, what: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckInputError(f"cannot read {what} {str(path)!r}: {exc.__class__.__name__}: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CheckInputError(f"{what} {str(path)!r} is not valid JSON (line {exc.lineno}, column {exc.colno}: "
                              f"{exc.msg}); regenerate the file") from None


def _schema_error(data: Any, where: str, expected: str, hint: str) -> CheckInputError:
    got = data.get("schema") if isinstance(data, Mapping) else type(data).__name__
    extra = ""
    if isinstance(got, str) and got.rsplit("/", 1)[0] == expected.rsplit("/", 1)[0]:
        extra = " (written by a different gradscope version; upgrade gradscope or regenerate the file)"
    elif got == BASELINE_SCHEMA:
        extra = " (this is a baseline file; the report comes first: gradscope check REPORT --baseline BASELINE)"
    elif got == REPORT_SCHEMA:
        extra = " (this is a report, not a baseline; create a baseline with: gradscope baseline REPORT -o FILE)"
    return CheckInputError(f"{where} has schema {got!r}, expected {expected!r}{extra}; {hint}")


def _validate_report(data: Any, where: str) -> dict[str, Any]:
    hint = "write reports with: gradscope analyse ... --out DIR"
    if isinstance(data, Mapping) and data.get("schema") == ANALYSIS_SCHEMA:
        data = {"schema": REPORT_SCHEMA, "analyses": [data]}  # one Analysis.to_dict() is a report of one
    if not isinstance(data, Mapping) or data.get("schema") != REPORT_SCHEMA:
        raise _schema_error(data, where, REPORT_SCHEMA, hint)
    analyses = data.get("analyses")
    if not isinstance(analyses, list) or not analyses:
        raise CheckInputError(f"{where}: 'analyses' must be a non-empty list; got {analyses!r:.60}; {hint}")
    seen = set()
    for i, analysis in enumerate(analyses):
        name = analysis.get("name") if isinstance(analysis, Mapping) else None
        if not isinstance(name, str) or not name:
            raise CheckInputError(f"{where}: analyses[{i}] has no 'name' (a non-empty string); {hint}")
        if name in seen:
            raise CheckInputError(f"{where}: two analyses are named {name!r}; names must be unique "
                                  "because metrics are addressed as NAME/KEY")
        seen.add(name)
        if not isinstance(analysis.get("summary"), Mapping):
            raise CheckInputError(f"{where}: analyses[{i}] ({name!r}) has no 'summary' table; {hint}")
    return dict(data)


def _validate_baseline(data: Any, where: str) -> dict[str, Any]:
    hint = "regenerate it with: gradscope baseline REPORT -o FILE --update"
    if not isinstance(data, Mapping) or data.get("schema") != BASELINE_SCHEMA:
        raise _schema_error(data, where, BASELINE_SCHEMA, hint)
    metrics = data.get("metrics")
    if not isinstance(metrics, Mapping) or not metrics:
        raise CheckInputError(f"{where}: 'metrics' must be a non-empty table; {hint}")
    for name, entry in metrics.items():
        if not isinstance(entry, Mapping) or "value" not in entry:
            raise CheckInputError(f"{where}: metric {name!r} must be a table with a 'value'; {hint}")
        value = entry["value"]
        if not (value is None or isinstance(value, (int, float, str, bool))):
            raise CheckInputError(f"{where}: metric {name!r} has value {value!r:.60}; expected a number or a string")
        _validate_rule(entry, f"{where}: metric {name!r}")
    _validate_overrides(data.get("overrides"), f"{where}: 'overrides'")
    return dict(data)


def load_report(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate a report: a ``report.json`` file or a folder that holds one."""
    path = Path(path)
    if path.is_dir():
        path = path / "report.json"
    if not path.exists():
        raise CheckInputError(f"report not found: {str(path)!r}; pass a report.json file or the folder that holds "
                              "one (written by: gradscope analyse ... --out DIR)")
    report = _validate_report(_read_json(path, "report"), f"report {str(path)!r}")
    report["_path"] = str(path)
    return report


def load_baseline(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate a baseline file; a missing file raises :class:`BaselineMissingError` (exit 4)."""
    path = Path(path)
    if path.is_dir():
        raise CheckInputError(f"baseline {str(path)!r} is a folder; pass the baseline JSON file")
    if not path.exists():
        raise BaselineMissingError(f"baseline not found: {str(path)!r}; create it with: gradscope baseline REPORT "
                                   f"-o {path} (then review and commit it)")
    baseline = _validate_baseline(_read_json(path, "baseline"), f"baseline {str(path)!r}")
    baseline["_path"] = str(path)
    return baseline


def load_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read check overrides from TOML: a file with ``[defaults]``, ``[kinds.K]``, ``[metrics."NAME"]``
    tables, or a ``pyproject.toml`` holding them under ``[tool.gradscope.check]``."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise CheckInputError(f"config not found: {str(path)!r}; pass an existing TOML file or leave out --config") from None
    except OSError as exc:
        raise CheckInputError(f"cannot read config {str(path)!r}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise CheckInputError(f"config {str(path)!r} is not valid TOML ({exc}); fix the file") from None
    if "tool" in data:
        data = data["tool"].get("gradscope", {}).get("check") if isinstance(data["tool"], dict) else None
        if data is None:
            raise CheckInputError(f"config {str(path)!r} has a [tool] table without [tool.gradscope.check]; "
                                  "put the check settings there")
    return _validate_overrides(data, f"config {str(path)!r}")


def _as_report(report: Any) -> dict[str, Any]:
    if isinstance(report, (str, os.PathLike)):
        return load_report(report)
    return _validate_report(report, "report")


def _as_baseline(baseline: Any) -> dict[str, Any]:
    if isinstance(baseline, (str, os.PathLike)):
        return load_baseline(baseline)
    return _validate_baseline(baseline, "baseline")


# --------------------------------------------------------------------------------------------
# metrics and baselines


def _number(value: Any) -> Any:
    """JSON numbers as float (null = NaN, the way strict JSON writers store it); other values unchanged."""
    if value is None:
        return math.nan
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return value


def report_metrics(report: Any) -> dict[str, Any]:
    """``{"<analysis>/<key>": value}`` for every scalar in every analysis summary (nested tables are
    flattened with ``/``). Numbers become floats (null -> NaN); strings and booleans are kept."""
    report = _as_report(report)
    out: dict[str, Any] = {}

    def walk(prefix: str, table: Mapping[str, Any]) -> None:
        for key, value in table.items():
            name = f"{prefix}/{key}"
            if isinstance(value, Mapping):
                walk(name, value)
            elif value is None or isinstance(value, (int, float, str, bool)):
                out[name] = _number(value)

    for analysis in report["analyses"]:
        walk(analysis["name"], analysis["summary"])
    return out


def _precision(report: Mapping[str, Any]) -> dict[str, Any]:
    env = report.get("environment") or {}
    first = (report.get("analyses") or [{}])[0].get("precision") or {}
    return {"dtype": env.get("dtype", first.get("dtype")), "matmul": env.get("matmul_precision", first.get("matmul"))}


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


def make_baseline(report: Any, tolerances: Mapping[str, Any] | None = None, *,
                  previous: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A baseline (schema ``gradscope.baseline/1``) recording every summary metric of ``report``.

    Each metric gets its kind's default rule, then the rule it had in ``previous`` (an older baseline:
    hand-tuned tolerances survive ``--update``), then ``tolerances`` (an overrides table as in
    :func:`load_config`). Metrics that are NaN because they were not computed (``lyapunov_max`` with
    ``lyapunov=False``) are left out; any other non-finite value raises :class:`ReportNonFiniteError`.
    """
    from gradscope import __version__  # the package root is JAX-free (lazy attributes)

    report = _as_report(report)
    overrides = _validate_overrides(tolerances, "tolerances")
    old_metrics = (previous or {}).get("metrics") or {}
    metrics: dict[str, Any] = {}
    for name, value in report_metrics(report).items():
        kind = metric_kind(name, value)
        if isinstance(value, float) and not math.isfinite(value):
            if math.isnan(value) and name.rsplit("/", 1)[-1].startswith(_MAY_BE_NAN):
                continue
            raise ReportNonFiniteError(f"metric {name!r} is {value} in the report; refusing to record a non-finite "
                                       "baseline (rerun the analysis in float64 or fix the model)")
        rule = _default_rule(kind)
        if isinstance(old_metrics.get(name), Mapping):
            rule = rule.updated(old_metrics[name], f"previous baseline metric {name!r}")
        rule = _apply_overrides(rule, name, kind, overrides, "tolerances")
        if isinstance(value, float) and value.is_integer() and kind == "horizon":
            value = int(value)
        entry: dict[str, Any] = {"value": value, "kind": kind}
        if kind == "category":
            entry.update({k: v for k, v in rule.to_dict().items() if k in ("skip",)})
        else:
            entry.update(rule.to_dict())
        metrics[name] = entry
    if not metrics:
        raise CheckInputError("the report has no scalar summary metrics to record")
    env = dict(report.get("environment") or {})
    return {
        "schema": BASELINE_SCHEMA,
        "created_by": f"gradscope {__version__}",
        "created": _now(),
        "gradscope_version": report.get("gradscope_version", env.get("gradscope")),
        "precision": _precision(report),
        "platform": env.get("platform"),
        "environment": env,
        "source": {"report": report.get("_path"), "command": report.get("command"),
                   "created": report.get("created"), "config": report.get("config")},
        "metrics": metrics,
    }


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (`gradscope._atomic.write_text`), through a symlink to its target."""
    return write_text(Path(path), text)


def save_baseline(baseline: Mapping[str, Any], path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write a baseline atomically. An existing file is replaced only with ``overwrite=True``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise CheckInputError(f"baseline {str(path)!r} exists; pass --update (update=True) to replace it, "
                              "then review the diff before committing")
    clean = {k: v for k, v in baseline.items() if not k.startswith("_")}
    _validate_baseline(clean, "baseline")
    text = json.dumps(clean, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    return write_text_atomic(path, text)


# --------------------------------------------------------------------------------------------
# comparison


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
            "counts": {"metrics": len(self.rows), "failed": len(self.failures),
                       "skipped": sum(r.status == "skipped" for r in self.rows)},
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
        return MetricCheck(name, kind, base, None if missing else obs, delta, tolerance,
                           rule.atol if numeric else None, rule.rtol if numeric else None,
                           rule.direction, rule.min, rule.max, passed, status, message)

    if rule.skip:
        return row(True, "skipped", "skipped by configuration")
    if missing:
        return row(False, "missing", f"{name} is missing from the report (baseline {_fmt(base)}); the analysis or "
                                     "metric was renamed or removed")
    if kind == "category" or isinstance(base, (str, bool)) or isinstance(obs, (str, bool)):
        if obs == base:
            return row(True, "pass", f"unchanged ({_fmt(obs)})")
        return row(False, "fail", f"{name} changed from {_fmt(base)} to {_fmt(obs)}; it must stay equal")
    base, obs = float(base), float(obs)
    if not math.isfinite(base):
        if math.isnan(base) and math.isnan(obs):
            return row(True, "pass", "not computed in the baseline nor in the report")
        return row(False, "fail", f"the baseline value of {name} is {_fmt(base)}, which cannot be compared; "
                                  "regenerate the baseline")
    if not math.isfinite(obs):
        return row(False, "nonfinite", f"{name} is {_fmt(obs)} in the report (baseline {_fmt(base)}): the analysis "
                                       "produced a non-finite value or did not compute it (e.g. lyapunov=False)")
    delta = obs - base
    tol = rule.atol + rule.rtol * abs(base)
    rel = f", {100 * delta / abs(base):+.1f}%" if base != 0 else ""
    change = f"{name} changed from {_fmt(base)} to {_fmt(obs)} (delta {delta:+.6g}{rel})"
    problems = []
    if rule.direction == "both" and abs(delta) > tol:
        problems.append(f"beyond the tolerance +/-{tol:.6g} (atol={_fmt(rule.atol)}, rtol={_fmt(rule.rtol)})")
    elif rule.direction == "increase_is_bad" and delta > tol:
        problems.append(f"a rise beyond the tolerance {tol:.6g} (atol={_fmt(rule.atol)}, rtol={_fmt(rule.rtol)}; "
                        "increase_is_bad)")
    elif rule.direction == "decrease_is_bad" and -delta > tol:
        problems.append(f"a fall beyond the tolerance {tol:.6g} (atol={_fmt(rule.atol)}, rtol={_fmt(rule.rtol)}; "
                        "decrease_is_bad)")
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

    differ("gradscope version", baseline.get("gradscope_version"), report.get("gradscope_version", env.get("gradscope")),
           "regenerate the baseline after reviewing the change")
    bprec, rprec = baseline.get("precision") or {}, _precision(report)
    differ("precision dtype", bprec.get("dtype"), rprec.get("dtype"), "float32 and float64 results differ slightly")
    differ("matmul precision", bprec.get("matmul"), rprec.get("matmul"), "reduced matmul precision (TF32) changes "
           "long Jacobian products")
    for key, why in (("jax", "numbers may shift slightly"), ("backend", "CPU and GPU results differ slightly"),
                     ("x64", "float32 and float64 results differ slightly")):
        differ(f"environment {key}", benv.get(key), env.get(key), why)
    if _platform_family(baseline.get("platform", benv.get("platform"))) != _platform_family(env.get("platform")):
        differ("platform", baseline.get("platform", benv.get("platform")), env.get("platform"),
               "numbers may shift slightly")
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
    new = [n for n, v in observed.items() if n not in baseline["metrics"] and not (isinstance(v, float) and math.isnan(v))]
    if new:
        shown = ", ".join(new[:5]) + (f" and {len(new) - 5} more" if len(new) > 5 else "")
        warnings.append(f"{len(new)} metric{'s' * (len(new) != 1)} in the report are not in the baseline and were not "
                        f"checked ({shown}); add them with: gradscope baseline REPORT -o BASELINE --update")
    return CheckResult(tuple(rows), tuple(warnings), report.get("_path"), baseline.get("_path"),
                       types.MappingProxyType(dict(report.get("environment") or {})))


# output formats live in _check_formats (imported last: they use the records above)
from gradscope.checks.formats import (  # noqa: E402
    format_github, format_json, format_junit, format_markdown, format_text, render,
)
