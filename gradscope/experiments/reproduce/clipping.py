"""Reproduction `clipping`: Norm clipping on an exploding tanh RNN."""

from __future__ import annotations

import math

from gradscope.experiments.reproduce._common import _analysis, _check, _final, _fmt, train_setting
from gradscope.experiments.reproduce._framework import Context, Experiment, Findings


def _run_clipping(s: dict, ctx: Context) -> Findings:
    from gradscope.cells import make
    from gradscope.experiments import tasks

    T = s["length"]
    task = tasks.make(s["task"], length=T)
    cell = make("rnn-tanh", task.input_size, s["hidden"], key=ctx.key(1), recurrent_init="gaussian", gain=s["gain"])
    probe = task.sample(ctx.key(9), s["probe_batch"])[0]
    a = _analysis(ctx, cell, probe, "rnn-tanh@init")
    recs = {}
    for name, clip in (("no-clipping", None), ("clipping", s["threshold"])):
        ctx.say(f"training {name}")
        recs[name] = train_setting(
            ctx, name, cell, task, s, key=ctx.key(2), optimizer="sgd", clip_norm=clip, analyse_final=False
        )
    m = task.metric_name
    f_no, f_cl = _final(recs["no-clipping"], "loss"), _final(recs["clipping"], "loss")
    e_no, e_cl = _final(recs["no-clipping"]), _final(recs["clipping"])
    g_max = max(recs["no-clipping"]["grad_norm"] or [float("nan")])
    lam = a["summary"].get("lyapunov_max")
    checks = [
        _check(
            "exploding-setting",
            f"the setting explodes: the unclipped run sees gradient norms far above the "
            f"threshold {s['threshold']:g} (max > 10×)",
            f"max ‖g‖ {_fmt(g_max, '.3g')}",
            math.isfinite(g_max) and g_max > 10 * s["threshold"],
        ),
        _check(
            "clipping-trains",
            f"with norm clipping SGD solves the task: final {m} ≤ {s['solved_below']:g} "
            "(Pascanu et al.'s success criterion)",
            f"{m} {_fmt(e_cl, '.3f')}",
            e_cl is not None and e_cl <= s["solved_below"],
        ),
        # a margin, not any difference: two runs that both sit at the baseline differ by noise
        _check(
            "clipping-helps",
            f"with norm clipping the final loss is lower than without by at least "
            f"{s['margin']:g} × the baseline loss {task.baseline:.3f} (or the unclipped run diverges)",
            f"loss {_fmt(f_cl, '.4f')} with vs {_fmt(f_no, '.4f')} without"
            + (
                f" (diverged at step {recs['no-clipping']['diverged']['step']})"
                if recs["no-clipping"]["diverged"]
                else ""
            ),
            f_cl is not None and (f_no is None or f_no - f_cl >= s["margin"] * task.baseline),
        ),
    ]
    outcome = (
        f"tanh RNN, recurrent gain {s['gain']:g} (λ_max at init {_fmt(lam, '.3f')} nats/step, verdict "
        f"{a['summary']['verdict']}), SGD lr {s['lr']:g}, {task.name} T={T}: final loss {_fmt(f_no, '.4f')} / "
        f"{m} {_fmt(e_no, '.3f')} without clipping, {_fmt(f_cl, '.4f')} / {_fmt(e_cl, '.3f')} with clipping at "
        f"{s['threshold']:g} (baseline loss {task.baseline:.3f}); largest unclipped gradient norm {_fmt(g_max, '.3g')}."
    )
    if recs["no-clipping"]["diverged"]:
        outcome += f" The unclipped run diverged at step {recs['no-clipping']['diverged']['step']}."
    return Findings(
        measurements={
            "final_loss": {"no-clipping": f_no, "clipping": f_cl},
            "final_metric": {"no-clipping": e_no, "clipping": e_cl},
            "max_grad_norm_unclipped": g_max,
            "lyapunov_max_at_init": lam,
        },
        outcome=outcome,
        checks=checks,
    )


_QUICK = dict(
    task="temporal-order",
    length=50,
    hidden=32,
    gain=2.0,
    steps=300,
    batch=20,
    lr=0.01,
    threshold=1.0,
    snapshot_every=100,
    probe_batch=8,
    eval_batch=512,
    solved_below=0.01,
    margin=0.1,
)
_FULL = _QUICK | dict(length=200, hidden=50, steps=50000, snapshot_every=2500, eval_batch=10000)

EXPERIMENT = Experiment(
    name="clipping",
    title="Norm clipping on an exploding tanh RNN",
    claim=(
        "Rescaling the gradient when its norm exceeds a threshold (Pascanu et al. 2013, Algorithm 1) lets SGD train "
        "a recurrent net whose gradients explode, where unclipped SGD is thrown off by the explosions."
    ),
    source="Pascanu, Mikolov & Bengio 2013 (ICML 2013, arXiv:1211.5063), §3.2, Algorithm 1 and §5 (temporal order)",
    quick=_QUICK,
    full=_FULL,
    runner=_run_clipping,
    notes=(
        "Pascanu et al.: 50 tanh units, SGD lr 0.01 without momentum, threshold 1, minibatch 20. The exploding "
        "setting is a Gaussian recurrent matrix with gain 2 (spectral radius ≈ 2) instead of their three inits; "
        "both runs start from the same weights and see the same batches. Solved: error rate ≤ 1 % on fresh "
        "sequences (Pascanu et al.'s success criterion); 'helps' needs a loss margin of 0.1 × the baseline, so "
        "two runs that both stay at the baseline do not count. The quick setting covers 300 updates, the full "
        "one 50 000; Pascanu et al. trained for up to 5 million."
    ),
)
