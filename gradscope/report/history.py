"""Gradient flow over a watched training run: read ``<LOGDIR>/gradscope.jsonl`` into the report's
``training.runs`` structure, so that ``gradscope history`` draws the figures ``gradscope train`` draws.

The log (written by `gradscope.watch.Watcher`, always) holds one JSON object per line::

    {"schema": "gradscope.watch/1", "step": int, "wall_time": float, "model": str,
     "analysis": Analysis.to_dict() (or its light form, without the lag-profile section)}

A last line without its newline that does not parse (a run killed while writing) is skipped with a note;
any other line that is not such an object, or names another schema, is an error.

Each model of the log becomes one run whose ``snapshots`` are its logged steps (see
`gradscope.report.training`): horizon, log10 ‖∂S_T/∂S_0‖₂, decay per step, largest Lyapunov exponent
(nats per step) and verdict from the analysis summary, and the lag profile log10 ‖∂S_T/∂S_k‖₂ by k.
For a stack (state blocks ``layer{l}.*``) each snapshot also has ``layers``: per layer l the curve

    n_l(k) = max over the reported block pairs b→a of layer l of log10 ‖∂S_T[a]/∂S_k[b]‖₂,

a lower bound on log10 ‖∂S^l_T/∂S^l_k‖₂ within log10 √(pairs) (a block of a matrix has a spectral norm no
larger than the matrix's), and its horizon (the largest lag τ with n_l ≥ threshold at every lag ≤ τ, the
rule of `gradscope.analysis.summary.summarise`) and its value at the longest lag. Lyapunov exponents are
those of the whole model (the spectrum of the joint step map): they have no per-layer split here.

Nothing here imports JAX or differentiates: the numbers are the watcher's.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from gradscope._errors import ConfigError
from gradscope._json import clean

WATCH_SCHEMA = "gradscope.watch/1"
LOG_FILE = "gradscope.jsonl"
SUMMARY_KEYS = ("horizon", "log10_norm_max_lag", "decay_per_step", "lyapunov_max", "verdict", "horizon_threshold")
_LAYER = re.compile(r"^(layer\d+)\.")


class History:
    """The parsed log: ``records`` in file order, ``notes`` (what was skipped and why), ``path``."""

    def __init__(self, path: Path, records: list[dict], notes: list[str]) -> None:
        self.path, self.records, self.notes = path, records, notes

    @property
    def models(self) -> list[str]:
        """The models of the log, in order of first appearance."""
        return list(dict.fromkeys(r["model"] for r in self.records))


def log_path(logdir) -> Path:
    """``<logdir>/gradscope.jsonl`` (a path to the file itself is accepted too)."""
    p = Path(logdir)
    return p if p.name == LOG_FILE or p.suffix == ".jsonl" else p / LOG_FILE


def _bad(path: Path, lineno: int, why: str) -> ConfigError:
    return ConfigError(
        f"{path}:{lineno}: {why}; the log must hold one {WATCH_SCHEMA} record per line, as written by "
        "gradscope.watch.Watcher"
    )


def _check_record(rec: Any, path: Path, lineno: int) -> dict:
    if not isinstance(rec, dict):
        raise _bad(path, lineno, f"a JSON {type(rec).__name__} where a record object belongs")
    if rec.get("schema") != WATCH_SCHEMA:
        raise ConfigError(
            f"{path}:{lineno}: schema {rec.get('schema')!r} is not {WATCH_SCHEMA!r}: this log was not written "
            "by gradscope.watch.Watcher (or by another version); point LOGDIR at a watcher's log"
        )
    step, model, a = rec.get("step"), rec.get("model"), rec.get("analysis")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise _bad(path, lineno, f"step={step!r} is not a non-negative integer")
    if not isinstance(model, str) or not model:
        raise _bad(path, lineno, f"model={model!r} is not a non-empty string")
    wt = rec.get("wall_time")
    if wt is not None and (isinstance(wt, bool) or not isinstance(wt, (int, float))):
        raise _bad(path, lineno, f"wall_time={wt!r} is not a number")
    if not isinstance(a, dict) or not isinstance(a.get("summary"), dict):
        raise _bad(path, lineno, "'analysis' is not an Analysis.to_dict() record with a summary")
    return rec


def read_history(logdir) -> History:
    """Parse ``<logdir>/gradscope.jsonl``; raise `ConfigError` (one line: which file, which line, the fix)
    for a missing or empty log, a line that is not JSON (except a torn last line, skipped with a note) or
    a record of another schema."""
    path = log_path(logdir)
    if not path.parent.is_dir():
        raise ConfigError(
            f"LOGDIR={str(path.parent)!r} is not a folder: give the logdir passed to gradscope.watch.Watcher"
        )
    if not path.is_file():
        raise ConfigError(
            f"{str(path)!r} does not exist: LOGDIR must be the logdir of a gradscope.watch.Watcher "
            "(it writes gradscope.jsonl there at every watched step)"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{str(path)!r} cannot be read ({e.__class__.__name__}): is it a watcher's log?") from None
    lines = text.split("\n")
    torn = not text.endswith("\n")  # the last line was cut while being written
    records, notes = [], []
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            if torn and i == len(lines):
                notes.append(f"line {i} is incomplete (the run stopped while writing it) and was skipped")
                continue
            raise _bad(path, i, f"not JSON ({e.msg} at column {e.colno})") from None
        records.append(_check_record(rec, path, i))
    if not records:
        raise ConfigError(f"{str(path)!r} holds no watched steps: run training with the watcher first")
    return History(path, records, notes)


# ------------------------------------------------------------------------------------------ runs


def _series(values) -> np.ndarray:
    return np.asarray([np.nan if v is None else float(v) for v in values or []], np.float64)


def profile_of(analysis: Mapping) -> list | None:
    """The lag profile by k (log10 ‖∂S_T/∂S_k‖₂; the Frobenius estimate in probe mode), or None (light
    record)."""
    lp = analysis.get("lag_profile")
    if not isinstance(lp, Mapping):
        return None
    y = lp.get("log10_spectral", lp.get("log10_frobenius"))
    return list(y) if isinstance(y, list) else None


def horizon_of(curve_by_k, threshold: float) -> int:
    """The largest lag τ such that the curve (indexed by k, lag T − k) is ≥ ``threshold`` at every lag ≤ τ
    (NaN, i.e. null, counts as below)."""
    by_lag = _series(curve_by_k)[::-1]
    with np.errstate(invalid="ignore"):
        above = by_lag >= threshold
    return int(by_lag.size if above.all() else np.argmin(above))


def layer_profiles(analysis: Mapping) -> dict[str, list]:
    """Per layer of a stack, the curve n_l(k) of the module docstring (``{}`` for a single cell, a probe-mode
    or a light record)."""
    blocks = (analysis.get("lag_profile") or {}).get("blocks") or {}
    by_layer: dict[str, list[np.ndarray]] = {}
    for pair, norms in blocks.items():
        src, _, dst = str(pair).partition("→")
        a, b = _LAYER.match(dst), _LAYER.match(src)
        if a is None or b is None or a.group(1) != b.group(1) or not isinstance(norms, Mapping):
            continue
        y = norms.get("log10_spectral")
        if isinstance(y, list):
            by_layer.setdefault(a.group(1), []).append(_series(y))
    out = {}
    for name in sorted(by_layer, key=lambda s: int(s[5:])):
        curves = by_layer[name]
        if len({c.size for c in curves}) != 1:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a lag where every pair is null stays null
            m = np.nanmax(np.stack(curves), axis=0)
        out[name] = clean(m)
    return out if len(out) > 1 else {}


def snapshot(record: Mapping) -> dict:
    """One logged step as a training-run snapshot (`gradscope.report.training`)."""
    a = record["analysis"]
    s = a["summary"]
    snap: dict[str, Any] = {"step": int(record["step"])}
    if record.get("wall_time") is not None:
        snap["wall_time"] = float(record["wall_time"])
    snap |= {k: s.get(k) for k in SUMMARY_KEYS}
    prof = profile_of(a)
    if prof is not None:
        snap["lag_profile"] = prof
    thr = s.get("horizon_threshold")
    thr = float(thr) if isinstance(thr, (int, float)) else -3.0
    layers = layer_profiles(a)
    if layers:
        snap["layers"] = {
            n: {"horizon": horizon_of(c, thr), "log10_norm_max_lag": c[0] if c else None, "lag_profile": c}
            for n, c in layers.items()
        }
    return snap


def history_runs(history: History) -> list[dict]:
    """One run per model (the ``training.runs`` entries of a report): its steps in order; a step logged
    twice (a resumed run) keeps its last record."""
    runs = []
    for model in history.models:
        by_step: dict[int, Mapping] = {}
        for r in history.records:
            if r["model"] == model:
                by_step[int(r["step"])] = r
        recs = [by_step[k] for k in sorted(by_step)]
        snaps = [snapshot(r) for r in recs]
        times = [float(r["wall_time"]) for r in recs if r.get("wall_time") is not None]
        seconds = max(times) - min(times) if times else None
        runs.append(
            {
                "name": model,
                "task": {},
                "config": {"source": WATCH_SCHEMA},
                "metric_name": "metric",
                "baseline": None,
                "steps_done": snaps[-1]["step"],
                "step": [],
                "loss": [],
                "metric": [],
                "grad_norm": [],
                "snapshots": snaps,
                "final": None,
                "diverged": None,
                "seconds": seconds if seconds is None or math.isfinite(seconds) else None,
            }
        )
    return runs


def final_analyses(history: History) -> list[dict]:
    """Per model, the analysis of its last logged step, named ``"<model> @ step <n>"``."""
    out = []
    for run_name in history.models:
        last = max((r for r in history.records if r["model"] == run_name), key=lambda r: int(r["step"]))
        out.append(dict(last["analysis"], name=f"{run_name} @ step {int(last['step'])}"))
    return out


def history_report(history: History, *, config: Mapping | None = None) -> dict:
    """The ``gradscope.report/1`` document of a watched run: the last step's analysis per model as its
    ``analyses`` and the runs of `history_runs` as its ``training`` section (`build_report` records the
    environment, which imports JAX)."""
    from gradscope.report.document import build_report

    cfg = {
        "log": str(history.path),
        "records": len(history.records),
        "models": history.models,
        "notes": list(history.notes),
        **dict(config or {}),
    }
    report = build_report(final_analyses(history), command="history", config=cfg)
    report["training"] = {"runs": clean(history_runs(history))}
    return report
