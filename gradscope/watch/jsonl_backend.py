"""The JSON-lines log every watcher writes: ``<logdir>/gradscope.jsonl``, one JSON object per watched step::

    {"schema": "gradscope.watch/1", "step": int, "wall_time": float, "model": str, "analysis": {...}}

``step`` is the training step the user passed to ``watcher.step``; ``wall_time`` the Unix time (seconds) at
which the analysis finished; ``model`` the watched model's name (several models may share one log);
``analysis`` is `gradscope.Analysis.to_dict()` (summary, verdict, findings, lag profile with its block pairs,
and whatever opt-in stages ran) without ``lag_profile.log10_spectral_per_sequence`` (B curves per line
would make the log B times larger; the batch curve stays). Strict JSON: NaN and ±inf are written as
null (`gradscope._json`).

Each line is appended and flushed as soon as its step is analysed, so a run that is killed keeps every
finished line; a last line without its newline is a torn write, which readers (``gradscope history``)
skip. An existing log is appended to (a resumed run continues it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gradscope._json import dumps

SCHEMA = "gradscope.watch/1"
LOG_FILE = "gradscope.jsonl"


def analysis_record(analysis: Any) -> dict:
    """``analysis.to_dict()`` as logged (see the module docstring)."""
    d = analysis.to_dict()
    lp = d.get("lag_profile")
    if isinstance(lp, dict):
        lp.pop("log10_spectral_per_sequence", None)
    return d


class JsonlBackend:
    """Appends one record per watched step to ``<logdir>/gradscope.jsonl``."""

    name = "jsonl"

    def __init__(self, logdir: Path, **_: Any) -> None:
        self.path = Path(logdir) / LOG_FILE
        self._f = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (kept open for the run; closed by close)

    def write(self, record: dict, scalars: dict[str, float], analysis: Any) -> None:
        self._f.write(dumps(record, ensure_ascii=False) + "\n")
        self._f.flush()

    def close(self, last: Any = None, failed: bool = False) -> None:
        if not self._f.closed:
            self._f.close()
