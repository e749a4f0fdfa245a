"""The `Finding` record and the JSON helpers that the finding rules share (no JAX)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

SEVERITIES = ("info", "warning", "error")


@dataclasses.dataclass(frozen=True)
class Finding:
    """One diagnosis: ``id``, ``severity``, ``message``, ``evidence`` (numbers), ``suggestion``, ``reference``."""

    id: str
    severity: str
    message: str
    evidence: dict
    suggestion: str
    reference: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN/±inf in the evidence written as None)."""
        return {
            "id": self.id,
            "severity": self.severity,
            "message": self.message,
            "evidence": {k: _num(v) for k, v in self.evidence.items()},
            "suggestion": self.suggestion,
            "reference": self.reference,
        }


def finding(id: str, message: str, evidence: dict, suggestion: str | None = None) -> Finding:
    """A `Finding` whose severity, suggestion and reference come from the advice table
    (`gradscope.analysis._advice.ADVICE`); ``suggestion`` replaces the table's where the fix carries a number."""
    from gradscope.analysis._advice import ADVICE

    advice = ADVICE[id]
    return Finding(id, advice.severity, message, evidence, suggestion or advice.suggestion, advice.reference)


Rule = Callable[[Mapping[str, Any]], "Finding | None"]


def _num(v):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return v
    return v if math.isfinite(v) else None


def _float(v) -> float:
    """A JSON number (None = NaN/−inf) as a float; None → NaN."""
    return float("nan") if v is None else float(v)


def _series(values) -> list[float]:
    return [_float(v) for v in values or []]
