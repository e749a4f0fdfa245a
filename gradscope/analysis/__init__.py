"""Analysis: `analyse` wires the engine stages into one immutable `Analysis` record (numbers, summary metrics,
verdict, findings); `analyse_stack` does the same for a stack of same-shaped models in one compiled program.
`gradscope.analysis.findings` holds the rules that turn an analysis's numbers into findings.

Names are loaded lazily (PEP 562), so that the JAX-free rules of `gradscope.analysis.findings` can be
imported (by the report renderer, for saved reports) without importing JAX.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gradscope._lazy import lazy_getattr

if TYPE_CHECKING:
    from gradscope.analysis.core import Analysis, analyse
    from gradscope.analysis.findings import RULES, Finding, evaluate
    from gradscope.analysis.summary import summarise

_LAZY = {
    "Analysis": "gradscope.analysis.core",
    "analyse": "gradscope.analysis.core",
    "summarise": "gradscope.analysis.summary",
    "RULES": "gradscope.analysis.findings",
    "Finding": "gradscope.analysis.findings",
    "evaluate": "gradscope.analysis.findings",
}

__all__ = ["RULES", "Analysis", "Finding", "analyse", "evaluate", "summarise"]


__getattr__ = lazy_getattr("gradscope.analysis", _LAZY, globals())
