"""Named reproductions of published claims about gradient flow, each with a quick (CI) and a full (GPU) setting.

    result = gradscope.experiments.reproduce.run("adding", quick=True)      # trains, measures, judges
    result["held"], result["outcome"]                             # did the claim hold, what was measured
    report = gradscope.experiments.reproduce.to_report(result)                # a gradscope.report/1 dict (+ sections)

Every experiment states its claim (with its paper; full references in docs/references.md), fixes its settings, runs,
and judges the claim by explicit *checks* written before the run (``expected`` is a sentence, ``held`` a
bool). A claim that does not hold in a setting is reported as such, with the measured numbers and the
reason the experiment gives (``why``); settings are not tuned until a claim holds.

Quick settings are sized for a 2-core CPU (tiny widths, short sequences, a few hundred steps) and keep
the qualitative contrast of the paper where it can be seen at that size; the full settings follow the
papers and need a GPU. Deviations from the papers are listed in each experiment's ``notes``.

=================  ===========================================================================================
``adding``         tanh RNN vs LSTM vs IRNN vs 2-layer IndRNN on the adding problem (Li et al. 2018, Fig. 2)
``forget-bias``    LSTM forget-gate bias 0 vs 1 vs chrono (Jozefowicz et al. 2015; Tallec & Ollivier 2018)
``bn-gamma``       recurrent batch norm with γ = 1 vs 0.1 (Cooijmans et al. 2016, Fig. 1)
``gru-vs-lstm``    tanh RNN vs GRU vs LSTM at matched parameter counts (Chung et al. 2014), char-level text
``depth``          gradient reaching each layer of deep stacks and deep feed-forward nets (depth as time)
``clipping``       norm clipping on an exploding tanh RNN (Pascanu et al. 2013, Algorithm 1)
=================  ===========================================================================================
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from gradscope._errors import ConfigError
from gradscope._registry import Registry
from gradscope.experiments.reproduce import adding, bn_gamma, clipping, depth, forget_bias, gru_vs_lstm
from gradscope.experiments.reproduce._common import run_record
from gradscope.experiments.reproduce._framework import SCHEMA, Context, Experiment

__all__ = ["EXPERIMENTS", "SCHEMA", "Context", "Experiment", "get", "names", "run", "run_record", "to_report"]

#: the reproductions in presentation order, one module per claim
EXPERIMENTS: dict[str, Experiment] = {
    m.EXPERIMENT.name: m.EXPERIMENT for m in (adding, forget_bias, bn_gamma, gru_vs_lstm, depth, clipping)
}


def names() -> dict[str, str]:
    """The reproductions: name → title."""
    return {n: e.title for n, e in EXPERIMENTS.items()}


_LOOKUP: Registry[Experiment] = Registry(
    "reproduction", unknown="reproduction {name!r} is not known: {hint}known reproductions are {known}", suggestions=2
)
for _e in EXPERIMENTS.values():
    _LOOKUP.register(_e.name, _e)


def get(name: str) -> Experiment:
    """The reproduction ``name``; else `UnknownNameError` with the closest names and the known ones."""
    return _LOOKUP.get(name)


def run(
    name: str, *, quick: bool = True, seed: int = 0, progress: Callable[[dict], None] | None = None, **overrides: Any
) -> dict:
    """Run the reproduction ``name`` in its quick (default) or full setting; returns the result record.

    The record (schema ``gradscope.reproduction/1``) holds the claim and source, the setting used, the
    checks (``expected``, ``measured``, ``held``), ``held`` (all checks held), a one-paragraph ``outcome``
    with the measured numbers, ``why`` (which checks failed) when the claim did not hold, the training
    runs and the gradient-flow analyses. Deterministic for a given seed, setting and platform.
    """
    e = get(name)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed={seed!r} is not allowed: expected an integer >= 0")
    setting = e.setting(quick, **overrides)
    ctx = Context(seed=seed, progress=progress or (lambda event: None))
    t0 = time.perf_counter()
    out = e.runner(setting, ctx)
    seconds = time.perf_counter() - t0
    checks = out["checks"]
    judged = [c for c in checks if c.get("judged", True)]
    held = bool(judged) and all(c["held"] for c in judged)
    failed = [c for c in judged if not c["held"]]
    why = None
    if failed:
        why = (
            "Not reproduced in this setting: "
            + "; ".join(f"{c['name']} — expected {c['expected']}, measured {c['measured']}" for c in failed)
            + "."
        )
    import jax

    from gradscope import __version__

    return {
        "schema": SCHEMA,
        "name": e.name,
        "title": e.title,
        "claim": e.claim,
        "source": e.source,
        "notes": e.notes,
        "setting": "quick" if quick else "full",
        "config": setting,
        "seed": seed,
        "checks": checks,
        "held": held,
        "outcome": out["outcome"],
        "why": why,
        "measurements": out["measurements"],
        "runs": ctx.runs,
        "analyses": ctx.analyses,
        "seconds": round(seconds, 2),
        "environment": {"gradscope": __version__, "jax": jax.__version__, "backend": jax.default_backend()},
    }


def to_report(result: dict) -> dict:
    """The ``gradscope.report/1`` document of a reproduction result, with two extra top-level sections:
    ``reproduction`` (claim, outcome, checks, held) and ``training`` (the runs, when there are any)."""
    from gradscope.report import build_report, clean

    command = "reproduce"
    config = {"reproduce": result["name"], "setting": result["setting"], "seed": result["seed"], **result["config"]}
    report = build_report(result["analyses"], command=command, config=clean(config))
    report["reproduction"] = clean(
        {
            k: result[k]
            for k in (
                "name",
                "title",
                "claim",
                "source",
                "notes",
                "setting",
                "checks",
                "held",
                "outcome",
                "why",
                "measurements",
                "seconds",
            )
        }
    )
    if result["runs"]:
        report["training"] = {"runs": clean(result["runs"])}
    return report
