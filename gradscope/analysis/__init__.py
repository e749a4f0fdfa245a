"""Analysis: `analyse` wires the engine stages into one immutable `Analysis` record (numbers, summary metrics,
verdict); `analyse_stack` does the same for a stack of same-shaped models in one compiled program."""

from gradscope.analysis.core import Analysis, analyse, summarise

__all__ = ["Analysis", "analyse", "summarise"]
