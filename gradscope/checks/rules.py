"""Tolerance rules of a check: the rule of one metric, defaults by metric kind, overrides and TOML config.

A rule is ``atol``/``rtol`` with ``numpy.isclose`` semantics (the baseline b is the reference)::

    allowed |observed - b|  =  atol + rtol * |b|

plus a ``direction``: ``"both"`` fails on a change either way beyond the tolerance,
``"increase_is_bad"`` only on a rise, ``"decrease_is_bad"`` only on a fall (the spirit of
github-action-benchmark's bigger/smaller-is-better), plus optional absolute limits ``min``/``max``
that hold whatever the baseline (e.g. ``max = 0`` on the largest Lyapunov exponent: the network
must not become chaotic). Categorical metrics (``verdict``) must be equal.

Defaults per metric kind (``DEFAULT_RULES``): log10 norms get a tolerance in log10 units (norms span
tens of decades, so tolerances on raw norms would be meaningless); ``horizon`` a relative tolerance,
decreases are bad; ``lyapunov_max`` an absolute tolerance in nats/step, increases are bad; ``verdict``
must be equal. Overrides (``{"defaults": rule, "kinds": {kind: rule}, "metrics": {pattern: rule}}``,
from a TOML file, ``pyproject.toml`` or a baseline's ``"overrides"`` table) refine them.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import os
import tomllib
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gradscope._errors import ConfigError, check_number
from gradscope.checks._errors import CheckInputError

DIRECTIONS = ("both", "increase_is_bad", "decrease_is_bad")

# Metric kinds and their default rules. Calibrated on an LSTM (hidden 16, forget bias 1, T = 100,
# batch 4, float32): eight random seeds (weights and inputs) all stay within these of each other's
# baseline, while forget bias -3, or a tanh RNN's gain raised from 0.9 to 1.5, fail. Platform
# differences (float32 CPU vs GPU, ~1e-3) are far below them.
DEFAULT_RULES: Mapping[str, Mapping[str, Any]] = types.MappingProxyType(
    {
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
    }
)

_RULE_KEYS = ("atol", "rtol", "direction", "min", "max", "skip")
_OVERRIDE_SECTIONS = ("defaults", "kinds", "metrics")
# summary entries that are settings rather than results
_PARAMETER_KEYS = ("horizon_threshold", "threshold")
# documented "NaN if not computed" metrics: a baseline simply leaves them out
_MAY_BE_NAN = ("lyapunov",)


@dataclasses.dataclass(frozen=True)
class Rule:
    """How one metric is compared: isclose tolerances, direction, absolute limits."""

    atol: float = 0.0
    rtol: float = 0.0
    direction: str = "both"
    min: float | None = None
    max: float | None = None
    skip: bool = False

    def updated(self, fields: Mapping[str, Any], where: str) -> Rule:
        rule = dataclasses.replace(self, **_validate_rule(fields, where))
        if rule.min is not None and rule.max is not None:  # a min from one table, a max from another
            _validate_rule({"min": rule.min, "max": rule.max}, where)
        return rule

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
                raise CheckInputError(
                    f"{where}: direction={value!r} is not allowed; use one of {', '.join(DIRECTIONS)}"
                )
            out[key] = value
        elif key == "skip":
            if not isinstance(value, bool):
                raise CheckInputError(f"{where}: skip={value!r} is not allowed; use true or false")
            out[key] = value
        else:
            try:  # tolerances are >= 0; min and max any finite number
                out[key] = check_number(key, value, nonnegative=key in ("atol", "rtol"))
            except ConfigError as exc:
                raise CheckInputError(f"{where}: {exc}") from None
    if out.get("min") is not None and out.get("max") is not None and out["min"] > out["max"]:
        raise CheckInputError(
            f"{where}: min={out['min']:g} is greater than max={out['max']:g}; no value could pass: swap them"
        )
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
        raise CheckInputError(
            f"{where}: unknown section {unknown[0]!r}; allowed sections: "
            f'{", ".join(_OVERRIDE_SECTIONS)} (per-metric rules go under [metrics."NAME"])'
        )
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


def load_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read check overrides from TOML: a file with ``[defaults]``, ``[kinds.K]``, ``[metrics."NAME"]``
    tables, or a ``pyproject.toml`` holding them under ``[tool.gradscope.check]``."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise CheckInputError(
            f"config not found: {str(path)!r}; pass an existing TOML file or leave out --config"
        ) from None
    except OSError as exc:
        raise CheckInputError(f"cannot read config {str(path)!r}: {exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise CheckInputError(f"config {str(path)!r} is not valid TOML ({exc}); fix the file") from None
    except RecursionError:
        raise CheckInputError(f"config {str(path)!r} is nested too deeply to be a check config; fix the file") from None
    if "tool" in data:
        tool = data["tool"]
        gs = tool.get("gradscope") if isinstance(tool, dict) else None
        data = gs.get("check") if isinstance(gs, dict) else None
        if data is None:
            raise CheckInputError(
                f"config {str(path)!r} has a [tool] table without [tool.gradscope.check]; put the check settings there"
            )
    return _validate_overrides(data, f"config {str(path)!r}")
