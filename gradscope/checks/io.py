"""Reports and baselines on disk: reading and validating them, building a baseline, writing it atomically.

A *report* (``report.json``, schema ``gradscope.report/1``) holds one or more analyses, each with a
``summary`` of scalar metrics. A metric is addressed as ``"<analysis name>/<summary key>"``, e.g.
``"lstm-fb1/horizon"``. A *baseline* (schema ``gradscope.baseline/1``) records the values of those
metrics once, together with a rule per metric (:mod:`gradscope.checks.rules`). Baselines change only
when asked (``overwrite=True``) and are written atomically (`gradscope._atomic`).
"""

from __future__ import annotations

import datetime
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gradscope._atomic import write_text
from gradscope.checks._errors import BaselineMissingError, CheckInputError, ReportNonFiniteError
from gradscope.checks.rules import (
    _MAY_BE_NAN,
    _apply_overrides,
    _default_rule,
    _validate_overrides,
    _validate_rule,
    metric_kind,
)

REPORT_SCHEMA = "gradscope.report/1"
ANALYSIS_SCHEMA = "gradscope.analysis/1"
BASELINE_SCHEMA = "gradscope.baseline/1"


def _strict_constant(token: str) -> Any:
    raise ValueError(f"{token} is not a JSON number (strict JSON stores a missing value as null)")


def _read_json(path: Path, what: str, *, strict: bool = False) -> Any:
    """``path`` as JSON; every failure (unreadable, not UTF-8, invalid, nested past the interpreter's stack,
    and with ``strict`` the non-standard NaN/Infinity tokens) is one `CheckInputError` (exit 2)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckInputError(f"cannot read {what} {str(path)!r}: {exc.__class__.__name__}: {exc}") from None
    try:
        return json.loads(text, parse_constant=_strict_constant if strict else None)
    except json.JSONDecodeError as exc:
        raise CheckInputError(
            f"{what} {str(path)!r} is not valid JSON (line {exc.lineno}, column {exc.colno}: "
            f"{exc.msg}); regenerate the file"
        ) from None
    except RecursionError:
        raise CheckInputError(
            f"{what} {str(path)!r} is nested too deeply to be a gradscope file; regenerate it"
        ) from None
    except ValueError as exc:  # parse_constant
        raise CheckInputError(f"{what} {str(path)!r} is not valid JSON: {exc}; regenerate the file") from None


def _schema_error(data: Any, where: str, expected: str, hint: str) -> CheckInputError:
    got = data.get("schema") if isinstance(data, Mapping) else type(data).__name__
    extra = ""
    if isinstance(got, str) and got.rsplit("/", 1)[0] == expected.rsplit("/", 1)[0]:
        extra = " (written by a different gradscope version; upgrade gradscope or regenerate the file)"
    elif got == BASELINE_SCHEMA:
        extra = " (this is a baseline file; the report comes first: gradscope check REPORT --baseline BASELINE)"
    elif got == REPORT_SCHEMA:
        extra = " (this is a report, not a baseline; create a baseline with: gradscope baseline REPORT --output FILE)"
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
            raise CheckInputError(
                f"{where}: two analyses are named {name!r}; names must be unique "
                "because metrics are addressed as NAME/KEY"
            )
        seen.add(name)
        if not isinstance(analysis.get("summary"), Mapping):
            raise CheckInputError(f"{where}: analyses[{i}] ({name!r}) has no 'summary' table; {hint}")
    return dict(data)


def _validate_baseline(data: Any, where: str) -> dict[str, Any]:
    hint = "regenerate it with: gradscope baseline REPORT --output FILE --update"
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
        raise CheckInputError(
            f"report not found: {str(path)!r}; pass a report.json file or the folder that holds "
            "one (written by: gradscope analyse ... --out DIR)"
        )
    report = _validate_report(_read_json(path, "report"), f"report {str(path)!r}")
    report["_path"] = str(path)
    return report


def load_baseline(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate a baseline file; a missing file raises :class:`BaselineMissingError` (exit 4)."""
    path = Path(path)
    if path.is_dir():
        raise CheckInputError(f"baseline {str(path)!r} is a folder; pass the baseline JSON file")
    if not path.exists():
        raise BaselineMissingError(
            f"baseline not found: {str(path)!r}; create it with: gradscope baseline REPORT "
            f"--output {path} (then review and commit it)"
        )
    baseline = _validate_baseline(_read_json(path, "baseline", strict=True), f"baseline {str(path)!r}")
    baseline["_path"] = str(path)
    return baseline


def _as_report(report: Any) -> dict[str, Any]:
    if isinstance(report, (str, os.PathLike)):
        return load_report(report)
    return _validate_report(report, "report")


def _as_baseline(baseline: Any) -> dict[str, Any]:
    if isinstance(baseline, (str, os.PathLike)):
        return load_baseline(baseline)
    return _validate_baseline(baseline, "baseline")


def _number(value: Any) -> Any:
    """JSON numbers as float (null = NaN, the way strict JSON writers store it); other values unchanged."""
    if value is None:
        return math.nan
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return value


def report_metrics(report: Any) -> dict[str, Any]:
    """``{"<analysis>/<key>": value}`` for every scalar in every analysis summary (nested tables are
    flattened with ``/``). Numbers become floats (null -> NaN); strings and booleans are kept. Prose
    (``verdict_reason``: it quotes rounded numbers) is not a metric."""
    report = _as_report(report)
    out: dict[str, Any] = {}

    def walk(prefix: str, table: Mapping[str, Any]) -> None:
        for key, value in table.items():
            name = f"{prefix}/{key}"
            if key.endswith("_reason"):
                continue
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
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat()


def make_baseline(
    report: Any, tolerances: Mapping[str, Any] | None = None, *, previous: Mapping[str, Any] | None = None
) -> dict[str, Any]:
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
            raise ReportNonFiniteError(
                f"metric {name!r} is {value} in the report; refusing to record a non-finite "
                "baseline (rerun the analysis in float64 or fix the model)"
            )
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
        "source": {
            "report": report.get("_path"),
            "command": report.get("command"),
            "created": report.get("created"),
            "config": report.get("config"),
        },
        "metrics": metrics,
    }


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (`gradscope._atomic.write_text`: a temporary sibling, fsync,
    ``os.replace``), so a reader or a crash never sees half a file. Creates the parent folder.

    A symbolic link is written through: its target gets the new text and the link stays a link (a baseline
    kept in one place and linked from another is updated where it lives)."""
    path = Path(path)
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    return write_text(path, text)


def save_baseline(baseline: Mapping[str, Any], path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write a baseline atomically. An existing file is replaced only with ``overwrite=True``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise CheckInputError(
            f"baseline {str(path)!r} exists; pass --update (update=True) to replace it, "
            "then review the diff before committing"
        )
    clean = {k: v for k, v in baseline.items() if not k.startswith("_")}
    _validate_baseline(clean, "baseline")
    text = json.dumps(clean, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    return write_text_atomic(path, text)  # through a symlink to its target
