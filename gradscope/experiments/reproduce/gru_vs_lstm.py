"""Reproduction `gru-vs-lstm`: Gated units vs tanh at matched parameter counts."""

from __future__ import annotations

import math

from gradscope.experiments.reproduce._common import _check, _final, _fmt, train_setting, training_knobs
from gradscope.experiments.reproduce._framework import Context, Experiment, Findings


def _params(cell: str, m: int, n: int, out: int) -> int:
    gates = {"rnn-tanh": 1, "gru": 3, "lstm": 4}[cell]
    return gates * (n * m + n * n + 2 * n) + n * out + out


def matched_hidden(cell: str, m: int, out: int, target: int) -> int:
    """The hidden size whose parameter count (PyTorch layout, two bias vectors, linear readout) is closest
    to ``target`` — Chung et al. compare units at (approximately) equal parameter counts."""
    return min(range(2, 4096), key=lambda n: abs(_params(cell, m, n, out) - target))


def _run_gru_vs_lstm(s: dict, ctx: Context) -> Findings:
    from gradscope.cells import make
    from gradscope.experiments import tasks

    task = tasks.make(s["task"], length=s["length"])
    m, out = task.input_size, task.output_size
    target = _params("lstm", m, s["lstm_hidden"], out)
    final, sizes = {}, {}
    for j, cell in enumerate(("rnn-tanh", "gru", "lstm")):
        n = matched_hidden(cell, m, out, target)
        sizes[cell] = {"hidden": n, "parameters": _params(cell, m, n, out)}
        ctx.say(f"training {cell} ({n} units)")
        final[cell] = _final(train_setting(ctx, cell, make(cell, m, n, key=ctx.key(1, j)), task, s, key=ctx.key(2)))
    t, g, l = final["rnn-tanh"], final["gru"], final["lstm"]
    tol = s["comparable_within"]
    ok = all(v is not None for v in (t, g, l))
    checks = [
        _check(
            "gated-beat-tanh",
            f"GRU and LSTM both reach a lower {task.metric_name} than the tanh RNN",
            f"GRU {_fmt(g)}, LSTM {_fmt(l)}, tanh {_fmt(t)}",
            ok and g < t and l < t,
        ),
        _check(
            "gru-comparable-lstm",
            f"GRU and LSTM are comparable (within {tol:g} {task.metric_name})",
            f"|GRU − LSTM| = {_fmt(abs(g - l) if ok else None)}",
            ok and abs(g - l) <= tol,
        ),
    ]
    outcome = (
        f"Character-level text (T={s['length']}), ~{target} parameters each, {s['steps']} steps: test "
        f"{task.metric_name} tanh {_fmt(t)} ({sizes['rnn-tanh']['hidden']} units), GRU {_fmt(g)} "
        f"({sizes['gru']['hidden']}), LSTM {_fmt(l)} ({sizes['lstm']['hidden']}); unigram baseline "
        f"{task.baseline / math.log(2):.3f} bpc."
    )
    return Findings(measurements={"final_bpc": final, "sizes": sizes}, outcome=outcome, checks=checks)


_QUICK = dict(
    task="text",
    length=50,
    lstm_hidden=32,
    **training_knobs(steps=400, batch=32, lr=3e-3, optimizer="adam", clip_norm=1.0, snapshot_every=200, probe_batch=4),
    comparable_within=0.15,
)
_FULL = _QUICK | dict(
    length=100,
    lstm_hidden=256,
    **training_knobs(steps=30000, batch=64, lr=2e-3, snapshot_every=2000, probe_batch=8),
    comparable_within=0.05,
)

EXPERIMENT = Experiment(
    name="gru-vs-lstm",
    title="Gated units vs tanh at matched parameter counts",
    claim=(
        "Gated units (GRU, LSTM) model sequences better than tanh units at the same number of parameters, and GRU "
        "and LSTM are comparable; 'we could not make concrete conclusion on which of the two gating units was "
        "better' (Chung et al. 2014)."
    ),
    source="Chung et al. 2014 (NIPS 2014 Deep Learning Workshop, arXiv:1412.3555), abstract and conclusion",
    quick=_QUICK,
    full=_FULL,
    runner=_run_gru_vs_lstm,
    notes=(
        "Chung et al. use polyphonic music and Ubisoft speech, RMSProp and weight noise; "
        "neither data set ships offline, "
        "so character-level language modelling on Python's pydoc text (bits per character on the test split) "
        "stands in, with Adam and the gradient norm clipped at 1 (their 'rescaled to 1'). Hidden sizes are chosen "
        "so that each model has about as many parameters as the LSTM (readout included), as in the paper. The quick "
        "setting covers only the first 400 steps of training; the paper compares the models at convergence."
    ),
)
