"""The report document (``report.json``, schema ``gradscope.report/1``): build, clean, validate, load.

``report.json`` is the source of truth of a report folder; HTML, Markdown and PNGs are re-rendered
from it. Its JSON Schema (draft 2020-12) ships as ``gradscope/report/schema.json``. Validation uses
``jsonschema`` when it is installed (a test dependency) and otherwise a structural check of the
top level, so that a wrong file is still refused with one line.
"""

from __future__ import annotations

import datetime
import functools
import importlib.resources
import json
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gradscope._errors import ConfigError, GradscopeError
from gradscope._json import clean  # noqa: F401  (re-exported: report.clean)

SCHEMA = "gradscope.report/1"
ANALYSIS_SCHEMA = "gradscope.analysis/1"
COMMANDS = ("analyse", "compare", "sweep", "train", "reproduce", "history")


class ReportError(GradscopeError):
    """A report folder or file cannot be written or read."""


class ReportExistsError(ReportError, FileExistsError):
    """The output folder exists and is not empty (pass ``--force`` / ``force=True``)."""


class ReportFormatError(ReportError, ValueError):
    """``report.json`` is not valid JSON or does not match the report schema."""


@functools.cache
def load_schema() -> dict:
    """The JSON Schema of ``report.json`` shipped with the package."""
    text = importlib.resources.files("gradscope.report").joinpath("schema.json").read_text(encoding="utf-8")
    return json.loads(text)


def _where(path) -> str:
    return "/".join(str(p) for p in path) or "(top level)"


def _jsonschema():
    """The ``jsonschema`` package (with its ``exceptions``), or None where it is not installed."""
    try:
        import jsonschema
        import jsonschema.exceptions
    except ImportError:
        return None
    return jsonschema


def validate_report(report: Any, *, full: bool = True) -> None:
    """Raise `ReportFormatError` (one line) unless ``report`` matches ``gradscope.report/1``.

    ``full=False`` checks only the structure (schema name, required top-level keys, a non-empty list of
    analyses with unique names): what `build_report` and `write_report` need for a document gradscope
    assembled itself, where a full JSON-Schema walk over every number (seconds for a 7-model comparison)
    would only re-check the code. Files read back (`load_report`) get the full check; the test suite
    validates written reports against the schema.
    """
    if not isinstance(report, Mapping):
        raise ReportFormatError(f"report is a {type(report).__name__}: expected a JSON object with schema {SCHEMA!r}")
    got = report.get("schema")
    if got != SCHEMA:
        raise ReportFormatError(f"report schema is {got!r}: this gradscope reads {SCHEMA!r}")
    jsonschema = _jsonschema() if full else None
    if jsonschema is None:  # structural check only
        missing = [k for k in load_schema()["required"] if k not in report]
        if missing:
            raise ReportFormatError(f"report is missing {', '.join(missing)} (schema {SCHEMA})") from None
        if not isinstance(report["analyses"], list) or not report["analyses"]:
            raise ReportFormatError("report 'analyses' must be a non-empty list of analyses") from None
    else:
        validator = jsonschema.Draft202012Validator(load_schema())
        err = jsonschema.exceptions.best_match(validator.iter_errors(report))
        if err is not None:
            msg = " ".join(str(err.message).split())
            msg = msg if len(msg) <= 160 else msg[:157] + "..."
            raise ReportFormatError(f"report does not match schema {SCHEMA} at {_where(err.absolute_path)}: {msg}")
    names = [a.get("name") for a in report["analyses"] if isinstance(a, Mapping)]
    dup = sorted({str(n) for n in names if names.count(n) > 1})
    if dup:
        raise ReportFormatError(f"report has duplicate analysis names {dup}: each analysis needs a unique name")


def environment(dtype: str, matmul: str | None = None) -> dict:
    """Where and how the numbers were computed (JAX is imported here, lazily); ``matmul``: the analyses'
    matmul precision(s), by default the one the engine would use now."""
    import jax

    from gradscope import __version__
    from gradscope._precision import matmul_precision

    dev = jax.devices()[0]
    return {
        "gradscope": __version__,
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "device": str(getattr(dev, "device_kind", dev.platform)),
        "devices": jax.device_count(),  # over every process (a sweep shards its configurations over all of them)
        "processes": jax.process_count(),
        "x64": bool(getattr(jax.config, "jax_enable_x64")),
        "dtype": dtype,
        "matmul_precision": matmul or matmul_precision(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def build_report(analyses, *, command: str, config: Mapping | None = None) -> dict:
    """Assemble the ``gradscope.report/1`` document from analyses (`Analysis` or their ``to_dict()``)."""
    if command not in COMMANDS:
        raise ConfigError(f"command={command!r} is not allowed: use one of {', '.join(COMMANDS)}")
    if isinstance(analyses, Mapping) or not hasattr(analyses, "__iter__"):
        raise ConfigError(f"analyses={type(analyses).__name__} is not allowed: expected a list of analyses")
    items = [clean(a) for a in analyses]
    if not items:
        raise ConfigError("analyses=[] is not allowed: a report needs at least one analysis")
    names = [a.get("name") for a in items]
    dup = sorted({str(n) for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"analysis names {dup} repeat: give each analysis a unique name (analyse(..., name=...))")
    dtypes = sorted({str(a.get("precision", {}).get("dtype", "?")) for a in items})
    matmuls = sorted({str(a["precision"]["matmul"]) for a in items if a.get("precision", {}).get("matmul")})
    from gradscope import __version__

    report = {
        "schema": SCHEMA,
        "gradscope_version": __version__,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "command": command,
        "config": clean(dict(config or {})),
        "environment": environment(",".join(dtypes), ",".join(matmuls) or None),
        "analyses": items,
    }
    validate_report(report, full=False)  # assembled here: structure only
    return report


def load_report(path) -> dict:
    """Read and validate a ``report.json`` (a file or the folder holding it)."""
    p = Path(path)
    if p.is_dir():
        p = p / "report.json"
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReportFormatError(f"{p}: no such file (expected a report folder written by gradscope)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ReportFormatError(f"{p}: cannot be read ({e.__class__.__name__}: {e})") from None
    try:
        report = json.loads(text)
    except json.JSONDecodeError as e:
        raise ReportFormatError(f"{p}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
    try:
        validate_report(report)
    except ReportFormatError as e:
        raise ReportFormatError(f"{p}: {e}") from None
    return report
