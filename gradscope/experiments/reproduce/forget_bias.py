"""Reproduction `forget-bias`: LSTM forget-gate bias: 0 vs 1 vs chrono."""

from __future__ import annotations

from typing import Any

from gradscope.experiments.reproduce._common import _analysis, _check, _final, _fmt, train_setting, training_knobs
from gradscope.experiments.reproduce._framework import Context, Experiment, Findings


def _run_forget_bias(s: dict, ctx: Context) -> Findings:
    from gradscope.cells import make
    from gradscope.experiments import tasks

    T = s["length"]
    task = tasks.make(s["task"], length=T)
    variants: dict[str, dict[str, Any]] = {
        "lstm-fb0": {"forget_bias": 0.0},
        "lstm-fb1": {"forget_bias": 1.0},
        "lstm-chrono": {"chrono": float(T)},
    }
    probe = task.sample(ctx.key(9), s["probe_batch"])[0]
    init, final = {}, {}
    for j, (name, opts) in enumerate(variants.items()):
        cell = make("lstm", task.input_size, s["hidden"], key=ctx.key(1, j), **opts)
        init[name] = _analysis(ctx, cell, probe, f"{name}@init")["summary"]
        if s["steps"]:
            ctx.say(f"training {name}")
            final[name] = _final(train_setting(ctx, name, cell, task, s, key=ctx.key(2), analyse_final=False))
    h = {n: init[n]["horizon"] for n in variants}
    hw = {n: init[n].get("highway_log10_max_lag") for n in variants}
    checks = [
        _check(
            "horizon-fb1-vs-fb0",
            "at initialisation the gradient horizon with forget bias 1 exceeds that with bias 0",
            f"horizon {h['lstm-fb1']} vs {h['lstm-fb0']} steps (of {T})",
            h["lstm-fb1"] > h["lstm-fb0"],
        ),
        _check(
            "horizon-chrono-vs-fb1",
            "chrono initialisation (T_max = T) keeps the gradient at least as far as bias 1",
            f"horizon {h['lstm-chrono']} vs {h['lstm-fb1']} steps",
            h["lstm-chrono"] >= h["lstm-fb1"],
        ),
    ]
    if final:
        m = task.metric_name
        better = (lambda a, b: a < b) if not task.higher_is_better else (lambda a, b: a > b)
        f0, f1, fc = final["lstm-fb0"], final["lstm-fb1"], final["lstm-chrono"]
        checks.append(
            _check(
                "train-fb1-vs-fb0",
                f"after training, forget bias 1 reaches a better {m} than bias 0",
                f"{m} {_fmt(f1, '.4f')} vs {_fmt(f0, '.4f')}",
                f1 is not None and (f0 is None or better(f1, f0)),
            )
        )
        checks.append(
            _check(
                "train-chrono-vs-fb0",
                f"after training, chrono reaches a better {m} than bias 0",
                f"{m} {_fmt(fc, '.4f')} vs {_fmt(f0, '.4f')}",
                fc is not None and (f0 is None or better(fc, f0)),
            )
        )
    outcome = (
        "At initialisation: horizon (steps with ‖∂S_T/∂S_k‖₂ ≥ 10^-3) "
        + ", ".join(f"{n} {h[n]}" for n in variants)
        + f" of T={T}; cell-state highway log10 ∏f at lag T "
        + ", ".join(f"{n} {_fmt(hw[n], '.2f')}" for n in variants)
        + "."
    )
    if final:
        outcome += (
            f" After {s['steps']} steps on {task.name} (T={T}), final {task.metric_name}: "
            + ", ".join(f"{n} {_fmt(final[n], '.4f')}" for n in variants)
            + f" (baseline {task.baseline:.3f})."
        )
    return Findings(
        measurements={"horizon_at_init": h, "highway_log10_at_init": hw, "final_metric": final},
        outcome=outcome,
        checks=checks,
    )


_QUICK = dict(
    task="adding",
    length=100,
    hidden=32,
    **training_knobs(steps=0, batch=32, lr=2e-3, clip_norm=10.0, snapshot_every=100, probe_batch=8, eval_batch=512),
)
_FULL = _QUICK | dict(
    length=500,
    hidden=128,
    **training_knobs(steps=20000, batch=50, lr=1e-3, snapshot_every=1000, probe_batch=16, eval_batch=1000),
)

EXPERIMENT = Experiment(
    name="forget-bias",
    title="LSTM forget-gate bias: 0 vs 1 vs chrono",
    claim=(
        "A positive forget-gate bias keeps the LSTM's cell-state gradient alive over more steps than a zero bias "
        "(Jozefowicz et al.: bias 1 'closes the gap' to the GRU), and the chrono initialisation b_f ~ log U[1, T−1] "
        "keeps it longer still and 'greatly improves learning of long term dependencies' (Tallec & Ollivier)."
    ),
    source="Jozefowicz, Zaremba & Sutskever 2015 (ICML 2015), abstract; Tallec & Ollivier 2018 (ICLR 2018, "
    "arXiv:1804.11188)",
    quick=_QUICK,
    full=_FULL,
    runner=_run_forget_bias,
    notes=(
        "Gradient flow is measured at initialisation on the task's inputs (horizon: largest lag with "
        "‖∂S_T/∂S_k‖₂ ≥ 10^-3); training uses the adding problem (a long-memory task that runs offline) instead of "
        "the papers' ARITH/XML/PTB (Jozefowicz) and copy/adding (Tallec & Ollivier) runs. Chrono uses T_max = T. "
        "The quick setting checks only the gradient-flow part (steps = 0): 400 quick training steps left all three "
        "LSTMs at the adding baseline, which says nothing about the claim; the full setting trains."
    ),
)
