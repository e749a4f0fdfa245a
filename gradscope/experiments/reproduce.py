"""Named reproductions of published claims about gradient flow, each with a quick (CI) and a full (GPU) setting.

    result = gradscope.experiments.reproduce.run("adding", quick=True)      # trains, measures, judges
    result["held"], result["outcome"]                             # did the claim hold, what was measured
    report = gradscope.experiments.reproduce.to_report(result)                # a gradscope.report/1 dict (+ sections)

Every experiment states its claim (with its source in ``reference/papers.md``), fixes its settings, runs,
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

import dataclasses
import importlib
import math
import time
from typing import Any, Callable

import numpy as np

from gradscope._errors import ConfigError, UnknownNameError

SCHEMA = "gradscope.reproduction/1"


@dataclasses.dataclass(frozen=True)
class Experiment:
    """A named reproduction: the claim, its source, the quick and full settings and the runner."""

    name: str
    title: str
    claim: str
    source: str
    quick: dict
    full: dict
    runner: Callable[[dict, "Context"], dict]
    notes: str = ""

    def setting(self, quick: bool = True, **overrides) -> dict:
        """The quick or full setting with ``overrides`` applied (unknown keys are refused)."""
        base = dict(self.quick if quick else self.full)
        unknown = sorted(set(overrides) - set(base))
        if unknown:
            raise ConfigError(f"setting {unknown[0]!r} is not allowed for reproduction {self.name!r}: its settings "
                              f"are {', '.join(base)}")
        base.update(overrides)
        return base


@dataclasses.dataclass
class Context:
    """What a runner gets besides its setting: the seed and the progress callback."""

    seed: int
    progress: Callable[[dict], None]
    runs: list = dataclasses.field(default_factory=list)  # training-run records (report "training" section)
    analyses: list = dataclasses.field(default_factory=list)  # Analysis.to_dict() records

    def key(self, *path: int):
        import jax

        k = jax.random.key(self.seed)
        for p in path:
            k = jax.random.fold_in(k, p)
        return k

    def say(self, message: str) -> None:
        self.progress({"event": "message", "message": message})


def _check(name: str, expected: str, measured: str, held: bool, judged: bool = True) -> dict:
    """One check of a claim. ``judged=False`` marks an observation outside the paper's setting: reported,
    but not part of whether the claim held."""
    return {"name": name, "expected": expected, "measured": measured, "held": bool(held), "judged": bool(judged)}


def _train_module():
    return importlib.import_module("gradscope.experiments.train")


# ------------------------------------------------------------------------------------- shared pieces


def _downsample(values, max_points: int = 1000):
    """(steps, values) with at most ``max_points`` entries: block means of the curve (NaN-free input)."""
    v = np.asarray(values, np.float64)
    n = v.size
    if n <= max_points:
        return list(range(1, n + 1)), v.tolist()
    edges = np.linspace(0, n, max_points + 1).astype(int)
    steps = [int(edges[i + 1]) for i in range(max_points)]
    return steps, [float(v[edges[i]:edges[i + 1]].mean()) for i in range(max_points)]


def run_record(name: str, result=None, *, task, history=None, diverged=None, final=None, seconds=0.0,
               config=None, snapshots=()) -> dict:
    """The JSON record of one training run (the report's ``training.runs`` entries; see
    `gradscope.report.training`): curves, snapshots, final evaluation, divergence."""
    if result is not None:
        loss, metric, gnorm = result.loss, result.metric, result.grad_norm
        config, snapshots = result.config, result.snapshots
    else:
        loss, metric, gnorm = (history or {}).get("loss", []), (history or {}).get("metric", []), \
            (history or {}).get("grad_norm", [])
    steps, loss_ds = _downsample(loss)
    _, metric_ds = _downsample(metric)
    _, gnorm_ds = _downsample(gnorm)
    train_mod = _train_module()
    return {
        "name": name,
        "task": train_mod._plain(task.describe()),
        "config": dict(config or {}),
        "metric_name": task.metric_name,
        "baseline": float(task.baseline),
        "steps_done": len(loss),
        "step": steps,
        "loss": loss_ds,
        "metric": metric_ds,
        "grad_norm": gnorm_ds,
        "snapshots": train_mod._plain(list(snapshots)),
        "final": final,
        "diverged": diverged,
        "seconds": round(float(seconds), 2),
    }


def train_run(ctx: Context, name: str, model, task, *, key, steps: int, batch: int, lr: float,
              optimizer: str = "adam", clip_norm=None, indrnn_clip=None, snapshot_every=None,
              probe_batch: int = 8, eval_batch: int = 512, analyse_final: bool = True) -> dict:
    """Train ``model`` on ``task`` (`gradscope.experiments.train.train`), evaluate it on fresh data and record the run.

    A diverged run (NaN/inf loss) is an outcome, not an error: it is recorded with the step at which it
    diverged and its final numbers are None. Returns the run record (also appended to ``ctx.runs``).
    """
    import jax

    tr = _train_module()
    t0 = time.perf_counter()

    def forward(event):
        ctx.progress({**event, "run": name})

    try:
        res = tr.train(model, task, key=key, steps=steps, batch=batch, optimizer=optimizer, lr=lr,
                       clip_norm=clip_norm, indrnn_clip=indrnn_clip, snapshot_every=snapshot_every,
                       probe_batch=probe_batch, progress=forward)
    except tr.TrainingDiverged as exc:
        rec = run_record(name, task=task, history=exc.history, diverged={"step": exc.step, "message": str(exc)},
                         seconds=time.perf_counter() - t0,
                         config={"steps": steps, "batch": batch, "optimizer": optimizer, "lr": lr,
                                 "clip_norm": clip_norm, "indrnn_clip": indrnn_clip})
        ctx.runs.append(rec)
        return rec
    ev = tr.evaluate(res.params, task, key=jax.random.fold_in(key, 7919), batch=eval_batch)
    final = {"loss": ev["loss"], task.metric_name: ev[task.metric_name], "success": ev["success"],
             "eval": (f"{eval_batch} fresh sequences" if not hasattr(task, "dataset") else "test split")}
    rec = run_record(name, res, task=task, final=final, seconds=time.perf_counter() - t0)
    ctx.runs.append(rec)
    if analyse_final:
        probe_xs = task.sample(jax.random.split(key, 3)[2], probe_batch)[0]  # train()'s probe batch
        ctx.analyses.append(_analysis(res.params.rnn, probe_xs, name))
    return rec


def _analysis(model, xs, name: str, **kw) -> dict:
    """Gradient-flow analysis as a JSON record (spectra and gate histograms off: the report is about training)."""
    from gradscope.analysis import analyse

    opts = dict(lyapunov=True, spectra=False, gates=False, paths=True)
    opts.update(kw)
    return analyse(model, xs, name=name, **opts).to_dict()


def _fmt(x, spec=".3f") -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)


def _final(rec: dict, key: str | None = None):
    """The final evaluated metric of a run, or None if it diverged."""
    f = rec.get("final")
    if not f:
        return None
    return f.get(key or rec["metric_name"])


# ------------------------------------------------------------------------------------------- adding


def _indrnn_stack(m: int, hidden: int, layers: int, T: int, key, *, residual: bool = False):
    """IndRNN as in the official adding-problem code (Li et al. 2018): |u| ≤ 2^(1/T); the last layer
    starts with u ~ U((1/2)^(1/T), 2^(1/T)) so that its recurrent weights alone keep the signal over T
    steps, the others with u ~ U(0, 2^(1/T))."""
    import jax

    from gradscope.cells import make
    from gradscope.nets import Stack

    keys = jax.random.split(key, layers)
    cells, inp = [], m
    for l in range(layers):
        last = l == layers - 1
        cells.append(make("indrnn", inp, hidden, key=keys[l], max_length=T, gamma=2.0,
                          u_min=0.5 ** (1.0 / T) if last else 0.0))
        inp = hidden
    return Stack(tuple(cells), residual=residual) if layers > 1 else cells[0]


def _adding_model(cell: str, hidden: int, T: int, key):
    from gradscope.cells import make

    if cell == "indrnn":
        return _indrnn_stack(2, hidden, 2, T, key)
    return make(cell, 2, hidden, key=key)


def _run_adding(s: dict, ctx: Context) -> dict:
    from gradscope.experiments import tasks

    learned, failed = s["learned_below"], s["failed_above"]
    table: dict[str, dict[int, Any]] = {}
    for i, T in enumerate(s["lengths"]):
        task = tasks.make("adding", length=T)
        for j, cell in enumerate(s["cells"]):
            if cell != "indrnn" and T > s["max_length_baselines"]:
                continue
            name = f"{cell}-T{T}"
            ctx.say(f"training {name}")
            rec = train_run(ctx, name, _adding_model(cell, s["hidden"], T, ctx.key(1, i, j)), task,
                            key=ctx.key(2, i), steps=s["steps"], batch=s["batch"], lr=s["lr"][cell],
                            clip_norm=s["clip_norm"], indrnn_clip=2.0 if cell == "indrnn" else None,
                            snapshot_every=s["snapshot_every"], probe_batch=s["probe_batch"],
                            eval_batch=s["eval_batch"])
            table.setdefault(cell, {})[T] = _final(rec)
    base = 1.0 / 6.0
    checks = []
    for cell, T, want in s["expect"]:
        mse = table.get(cell, {}).get(T)
        if want == "learns":
            ok = mse is not None and mse < learned * base
            exp = f"{cell} at T={T}: MSE < {learned:g} × baseline = {learned * base:.3f}"
        else:
            ok = mse is None or mse > failed * base
            exp = f"{cell} at T={T}: MSE stays above {failed:g} × baseline = {failed * base:.3f} (or diverges)"
        checks.append(_check(f"{cell}-T{T}", exp, "diverged" if mse is None else f"MSE {mse:.4f}", ok))
    rows = "; ".join(f"T={T}: " + ", ".join(f"{c} {_fmt(table[c].get(T), '.4f')}" for c in s["cells"]
                                            if T in table.get(c, {}))
                     for T in s["lengths"])
    return {"measurements": {"final_mse": {c: {str(T): v for T, v in d.items()} for c, d in table.items()},
                             "baseline_mse": base},
            "outcome": f"Final MSE on fresh sequences (baseline {base:.3f}): {rows}.",
            "checks": checks}


# -------------------------------------------------------------------------------------- forget bias


def _run_forget_bias(s: dict, ctx: Context) -> dict:
    from gradscope.experiments import tasks
    from gradscope.cells import make

    T = s["length"]
    task = tasks.make(s["task"], length=T)
    variants = {"lstm-fb0": {"forget_bias": 0.0}, "lstm-fb1": {"forget_bias": 1.0},
                "lstm-chrono": {"chrono": float(T)}}
    probe = task.sample(ctx.key(9), s["probe_batch"])[0]
    init, final = {}, {}
    for j, (name, opts) in enumerate(variants.items()):
        cell = make("lstm", task.input_size, s["hidden"], key=ctx.key(1, j), **opts)
        a = _analysis(cell, probe, f"{name}@init")
        ctx.analyses.append(a)
        init[name] = a["summary"]
        if s["steps"]:
            ctx.say(f"training {name}")
            rec = train_run(ctx, name, cell, task, key=ctx.key(2), steps=s["steps"], batch=s["batch"], lr=s["lr"],
                            clip_norm=s["clip_norm"], snapshot_every=s["snapshot_every"],
                            probe_batch=s["probe_batch"], eval_batch=s["eval_batch"], analyse_final=False)
            final[name] = _final(rec)
    h = {n: init[n]["horizon"] for n in variants}
    hw = {n: init[n].get("highway_log10_max_lag") for n in variants}
    checks = [
        _check("horizon-fb1-vs-fb0", "at initialisation the gradient horizon with forget bias 1 exceeds that with bias 0",
               f"horizon {h['lstm-fb1']} vs {h['lstm-fb0']} steps (of {T})", h["lstm-fb1"] > h["lstm-fb0"]),
        _check("horizon-chrono-vs-fb1", "chrono initialisation (T_max = T) keeps the gradient at least as far as bias 1",
               f"horizon {h['lstm-chrono']} vs {h['lstm-fb1']} steps", h["lstm-chrono"] >= h["lstm-fb1"]),
    ]
    if final:
        m = task.metric_name
        better = (lambda a, b: a < b) if not task.higher_is_better else (lambda a, b: a > b)
        f0, f1, fc = final["lstm-fb0"], final["lstm-fb1"], final["lstm-chrono"]
        checks.append(_check("train-fb1-vs-fb0", f"after training, forget bias 1 reaches a better {m} than bias 0",
                             f"{m} {_fmt(f1, '.4f')} vs {_fmt(f0, '.4f')}",
                             f1 is not None and (f0 is None or better(f1, f0))))
        checks.append(_check("train-chrono-vs-fb0", f"after training, chrono reaches a better {m} than bias 0",
                             f"{m} {_fmt(fc, '.4f')} vs {_fmt(f0, '.4f')}",
                             fc is not None and (f0 is None or better(fc, f0))))
    outcome = ("At initialisation: horizon (steps with ‖∂S_T/∂S_k‖₂ ≥ 10^-3) " +
               ", ".join(f"{n} {h[n]}" for n in variants) + f" of T={T}; cell-state highway log10 ∏f at lag T " +
               ", ".join(f"{n} {_fmt(hw[n], '.2f')}" for n in variants) + ".")
    if final:
        outcome += (f" After {s['steps']} steps on {task.name} (T={T}), final {task.metric_name}: " +
                    ", ".join(f"{n} {_fmt(final[n], '.4f')}" for n in variants) + f" (baseline {task.baseline:.3f}).")
    return {"measurements": {"horizon_at_init": h, "highway_log10_at_init": hw, "final_metric": final},
            "outcome": outcome, "checks": checks}


# ----------------------------------------------------------------------------------------- BN gamma


def _run_bn_gamma(s: dict, ctx: Context) -> dict:
    from gradscope.experiments import tasks
    from gradscope.cells import make
    from gradscope.cells.normalized import collect_statistics

    task = tasks.make(s["task"], length=s["length"])
    T = task.length
    xs = task.sample(ctx.key(9), s["batch"])[0]
    probe = xs[: s["probe_batch"]]
    summ = {}
    for j, (cell, opts) in enumerate(s["cells"].items()):
        for gamma in s["gammas"]:
            name = f"{cell}-g{gamma:g}"
            base = cell.split("@")[0]
            c = make(base, task.input_size, s["hidden"], key=ctx.key(1, j), gamma=float(gamma), max_length=T, **opts)
            c = collect_statistics(c, xs)  # per-step population statistics = this batch's (training mode)
            a = _analysis(c, probe, name, lyapunov=False)
            ctx.analyses.append(a)
            summ[name] = a["summary"]
    checks = []
    g_small, g_large = min(s["gammas"]), max(s["gammas"])
    for cell in s["cells"]:
        lo, hi = summ[f"{cell}-g{g_small:g}"], summ[f"{cell}-g{g_large:g}"]
        checks.append(_check(
            f"{cell}-horizon", f"{cell}: the gradient survives more steps with γ = {g_small:g} than with γ = {g_large:g} "
            "(longer horizon)",
            f"horizon {lo['horizon']} vs {hi['horizon']} of {T}; decay/step {_fmt(lo['decay_per_step'], '.4f')} vs "
            f"{_fmt(hi['decay_per_step'], '.4f')} log10; log10 norm at lag T {_fmt(lo['log10_norm_max_lag'], '.2f')} vs "
            f"{_fmt(hi['log10_norm_max_lag'], '.2f')}", lo["horizon"] > hi["horizon"], judged=cell in s["judged"]))
    outcome = "Per-step-statistics BN cells at initialisation (inference-mode Jacobians with this batch's statistics): " + \
        "; ".join(f"{n}: horizon {v['horizon']}/{T}, decay {_fmt(v['decay_per_step'], '.4f')} log10/step"
                  for n, v in summ.items()) + "."
    return {"measurements": {n: {k: v[k] for k in ("horizon", "decay_per_step", "log10_norm_max_lag")}
                             for n, v in summ.items()},
            "outcome": outcome, "checks": checks}


# -------------------------------------------------------------------------------------- GRU vs LSTM


def _params(cell: str, m: int, n: int, out: int) -> int:
    gates = {"rnn-tanh": 1, "gru": 3, "lstm": 4}[cell]
    return gates * (n * m + n * n + 2 * n) + n * out + out


def matched_hidden(cell: str, m: int, out: int, target: int) -> int:
    """The hidden size whose parameter count (PyTorch layout, two bias vectors, linear readout) is closest
    to ``target`` — Chung et al. compare units at (approximately) equal parameter counts."""
    return min(range(2, 4096), key=lambda n: abs(_params(cell, m, n, out) - target))


def _run_gru_vs_lstm(s: dict, ctx: Context) -> dict:
    from gradscope.experiments import tasks
    from gradscope.cells import make

    task = tasks.make(s["task"], length=s["length"])
    m, out = task.input_size, task.output_size
    target = _params("lstm", m, s["lstm_hidden"], out)
    final, sizes = {}, {}
    for j, cell in enumerate(("rnn-tanh", "gru", "lstm")):
        n = matched_hidden(cell, m, out, target)
        sizes[cell] = {"hidden": n, "parameters": _params(cell, m, n, out)}
        ctx.say(f"training {cell} ({n} units)")
        rec = train_run(ctx, cell, make(cell, m, n, key=ctx.key(1, j)), task, key=ctx.key(2), steps=s["steps"],
                        batch=s["batch"], lr=s["lr"], optimizer=s["optimizer"], clip_norm=s["clip_norm"],
                        snapshot_every=s["snapshot_every"], probe_batch=s["probe_batch"], analyse_final=True)
        final[cell] = _final(rec)
    t, g, l = final["rnn-tanh"], final["gru"], final["lstm"]
    tol = s["comparable_within"]
    ok = all(v is not None for v in (t, g, l))
    checks = [
        _check("gated-beat-tanh", f"GRU and LSTM both reach a lower {task.metric_name} than the tanh RNN",
               f"GRU {_fmt(g)}, LSTM {_fmt(l)}, tanh {_fmt(t)}", ok and g < t and l < t),
        _check("gru-comparable-lstm", f"GRU and LSTM are comparable (within {tol:g} {task.metric_name})",
               f"|GRU − LSTM| = {_fmt(abs(g - l) if ok else None)}", ok and abs(g - l) <= tol),
    ]
    outcome = (f"Character-level text (T={s['length']}), ~{target} parameters each, {s['steps']} steps: test "
               f"{task.metric_name} tanh {_fmt(t)} ({sizes['rnn-tanh']['hidden']} units), GRU {_fmt(g)} "
               f"({sizes['gru']['hidden']}), LSTM {_fmt(l)} ({sizes['lstm']['hidden']}); unigram baseline "
               f"{task.baseline / math.log(2):.3f} bpc.")
    return {"measurements": {"final_bpc": final, "sizes": sizes}, "outcome": outcome, "checks": checks}


# ------------------------------------------------------------------------------------------- depth


def _per_layer_gradient(model, xs, layers: int, ctx: Context):
    """log10 ‖∂E/∂h^(l)_{T−1}‖ for each layer l, batch mean of the log, with E = ⟨v, h^top_T⟩ (v a fixed
    random unit vector): the gradient that reaches layer l one step back, after crossing the layers above
    it within the last step. One vector-Jacobian product of the last step (what
    `gradscope.engine.attribution`'s layer × time map holds at t = T−1, without its T² cost)."""
    import jax
    import jax.numpy as jnp

    from gradscope._rollout import rollout

    T = xs.shape[1]
    states = rollout(model, xs[:, : T - 1]).states if T > 1 else None
    d_out = model.output_size
    v = jax.random.normal(ctx.key(5), (d_out,), xs.dtype)
    v = v / jnp.linalg.norm(v)

    def grad_one(x_last, s_prev):
        def E(s):
            s2, _ = model.step(x_last, s, T - 1)
            return jnp.vdot(v, model.output(s2))

        return jax.grad(E)(s_prev)

    s_prev = (tuple(b[:, -1] for b in states) if states is not None
              else tuple(jnp.zeros((xs.shape[0], n), xs.dtype) for n in model.block_sizes))
    g = jax.vmap(grad_one)(xs[:, -1], s_prev)
    out = []
    for l in range(layers):
        gl = g[model.blocks.index(f"layer{l}.h")]
        out.append(float(np.mean(np.log10(np.linalg.norm(np.asarray(gl, np.float64), axis=-1)))))
    return out


def _run_depth(s: dict, ctx: Context) -> dict:
    import jax

    from gradscope import mlp as mlpmod
    from gradscope import nets

    L, n, T = s["stack_layers"], s["hidden"], s["length"]
    xs = jax.random.normal(ctx.key(9), (s["batch"], T, n))
    stacks = {
        "indrnn-residual": _indrnn_stack(n, n, L, T, ctx.key(1, 0), residual=True),
        "indrnn-plain": _indrnn_stack(n, n, L, T, ctx.key(1, 0), residual=False),
        "lstm-stack": nets.stack("lstm", n, n, L, key=ctx.key(1, 1), forget_bias=1.0),
    }
    per_layer = {}
    for name, model in stacks.items():
        ctx.say(f"gradient per layer: {name}")
        per_layer[name] = _per_layer_gradient(model, xs, L, ctx)
    D, W = s["mlp_depth"], s["mlp_width"]
    x0 = jax.random.normal(ctx.key(8), (s["batch"], W))
    mlps = {
        "mlp-sigmoid": dict(activation="sigmoid"),
        "mlp-relu-he": dict(activation="relu", gain=math.sqrt(2.0)),
        "mlp-sigmoid-bn": dict(activation="sigmoid", batch_norm=True),
        "mlp-sigmoid-residual": dict(activation="sigmoid", residual=True),
    }
    mlp_summ = {}
    for j, (name, opts) in enumerate(mlps.items()):
        net = mlpmod.make_mlp(W, D, key=ctx.key(3, j), **opts)
        if net.batch_norm:
            net = mlpmod.collect_statistics(net, x0)
        xs0, state0 = mlpmod.mlp_inputs(net, x0)
        from gradscope.analysis import analyse

        a = analyse(net, xs0, state0, name=name, lyapunov=False, spectra=False, gates=False, paths=False).to_dict()
        ctx.analyses.append(a)
        mlp_summ[name] = a["summary"]
    drop = {k: v[-1] - v[0] for k, v in per_layer.items()}  # log10(top) − log10(bottom): orders lost
    thr = s["vanish_log10"]
    res_ok = drop["indrnn-residual"] < drop["lstm-stack"] and drop["indrnn-residual"] < drop["indrnn-plain"]
    mlp_norm = {k: v["log10_norm_max_lag"] for k, v in mlp_summ.items()}
    checks = [
        _check("stack-residual-indrnn", "the residual IndRNN loses fewer orders of magnitude of gradient from the top "
               "layer to the bottom layer than the plain IndRNN stack and the stacked LSTM",
               ", ".join(f"{k} {_fmt(v, '.2f')}" for k, v in drop.items()) + " orders", res_ok),
        _check("mlp-sigmoid-vanishes", f"the plain sigmoid MLP's ‖∂h_L/∂h_0‖₂ falls below 10^{thr:g} at depth {D}",
               f"log10 {_fmt(mlp_norm['mlp-sigmoid'], '.2f')}", mlp_norm["mlp-sigmoid"] < thr),
        _check("mlp-fixes-keep", f"relu (He init), batch norm and residual connections keep ‖∂h_L/∂h_0‖₂ above 10^{thr:g}",
               ", ".join(f"{k} {_fmt(v, '.2f')}" for k, v in mlp_norm.items() if k != "mlp-sigmoid"),
               all(v is not None and v >= thr for k, v in mlp_norm.items() if k != "mlp-sigmoid")),
    ]
    outcome = (f"Stacks of {L} layers ({n} units, T={T}): log10 ‖∂E/∂h^(l)_(T−1)‖ from the bottom to the top layer — " +
               "; ".join(f"{k}: " + ", ".join(_fmt(x, '.2f') for x in v) for k, v in per_layer.items()) +
               f". Feed-forward nets of depth {D} (width {W}): log10 ‖∂h_L/∂h_0‖₂ " +
               ", ".join(f"{k} {_fmt(v, '.2f')}" for k, v in mlp_norm.items()) + ".")
    return {"measurements": {"stack_log10_per_layer": per_layer, "stack_orders_lost": drop,
                             "mlp_log10_norm": mlp_norm},
            "outcome": outcome, "checks": checks}


# ---------------------------------------------------------------------------------------- clipping


def _run_clipping(s: dict, ctx: Context) -> dict:
    from gradscope.experiments import tasks
    from gradscope.cells import make

    T = s["length"]
    task = tasks.make(s["task"], length=T)
    cell = make("rnn-tanh", task.input_size, s["hidden"], key=ctx.key(1), recurrent_init="gaussian", gain=s["gain"])
    probe = task.sample(ctx.key(9), s["probe_batch"])[0]
    a = _analysis(cell, probe, "rnn-tanh@init")
    ctx.analyses.append(a)
    recs = {}
    for name, clip in (("no-clipping", None), ("clipping", s["threshold"])):
        ctx.say(f"training {name}")
        recs[name] = train_run(ctx, name, cell, task, key=ctx.key(2), steps=s["steps"], batch=s["batch"],
                               lr=s["lr"], optimizer="sgd", clip_norm=clip, snapshot_every=s["snapshot_every"],
                               probe_batch=s["probe_batch"], eval_batch=s["eval_batch"], analyse_final=False)
    m = task.metric_name
    f_no, f_cl = _final(recs["no-clipping"], "loss"), _final(recs["clipping"], "loss")
    e_no, e_cl = _final(recs["no-clipping"]), _final(recs["clipping"])
    g_max = max(recs["no-clipping"]["grad_norm"] or [float("nan")])
    lam = a["summary"].get("lyapunov_max")
    checks = [
        _check("exploding-setting", f"the setting explodes: the unclipped run sees gradient norms far above the "
               f"threshold {s['threshold']:g} (max > 10×)", f"max ‖g‖ {_fmt(g_max, '.3g')}",
               math.isfinite(g_max) and g_max > 10 * s["threshold"]),
        _check("clipping-trains", f"with norm clipping SGD solves the task: final {m} ≤ {s['solved_below']:g} "
               "(Pascanu et al.'s success criterion)", f"{m} {_fmt(e_cl, '.3f')}",
               e_cl is not None and e_cl <= s["solved_below"]),
        # a margin, not any difference: two runs that both sit at the baseline differ by noise
        _check("clipping-helps", f"with norm clipping the final loss is lower than without by at least "
               f"{s['margin']:g} × the baseline loss {task.baseline:.3f} (or the unclipped run diverges)",
               f"loss {_fmt(f_cl, '.4f')} with vs {_fmt(f_no, '.4f')} without"
               + (f" (diverged at step {recs['no-clipping']['diverged']['step']})" if recs["no-clipping"]["diverged"] else ""),
               f_cl is not None and (f_no is None or f_no - f_cl >= s["margin"] * task.baseline)),
    ]
    outcome = (f"tanh RNN, recurrent gain {s['gain']:g} (λ_max at init {_fmt(lam, '.3f')} nats/step, verdict "
               f"{a['summary']['verdict']}), SGD lr {s['lr']:g}, {task.name} T={T}: final loss {_fmt(f_no, '.4f')} / "
               f"{m} {_fmt(e_no, '.3f')} without clipping, {_fmt(f_cl, '.4f')} / {_fmt(e_cl, '.3f')} with clipping at "
               f"{s['threshold']:g} (baseline loss {task.baseline:.3f}); largest unclipped gradient norm {_fmt(g_max, '.3g')}.")
    if recs["no-clipping"]["diverged"]:
        outcome += f" The unclipped run diverged at step {recs['no-clipping']['diverged']['step']}."
    return {"measurements": {"final_loss": {"no-clipping": f_no, "clipping": f_cl},
                             "final_metric": {"no-clipping": e_no, "clipping": e_cl},
                             "max_grad_norm_unclipped": g_max, "lyapunov_max_at_init": lam},
            "outcome": outcome, "checks": checks}


# ------------------------------------------------------------------------------------------ registry

_ADDING_LR_FULL = {"rnn-tanh": 2e-3, "lstm": 2e-3, "irnn": 1e-5, "indrnn": 2e-4}

EXPERIMENTS: dict[str, Experiment] = {}


def _add(e: Experiment) -> None:
    EXPERIMENTS[e.name] = e


_add(Experiment(
    name="adding",
    title="The adding problem: tanh RNN vs LSTM vs IRNN vs IndRNN",
    claim=("A 2-layer IndRNN learns the adding problem (MSE far below the 0.167 of always predicting 1) at lengths where "
           "a tanh RNN does not learn at all; at T = 1000 LSTM and IRNN no longer learn it either, and IndRNN still does "
           "at T = 5000."),
    source="Li et al. 2018 (IndRNN), §5.1 and Fig. 2; papers.md §3, §10 item 6",
    quick=dict(lengths=[200], cells=["rnn-tanh", "lstm", "irnn", "indrnn"], hidden=32, steps=500, batch=32,
               lr={"rnn-tanh": 2e-3, "lstm": 2e-3, "irnn": 1e-4, "indrnn": 2e-3}, clip_norm=10.0,
               snapshot_every=100, probe_batch=8, eval_batch=512, max_length_baselines=1000,
               learned_below=0.5, failed_above=0.8,
               expect=[("indrnn", 200, "learns"), ("rnn-tanh", 200, "fails")]),
    full=dict(lengths=[100, 500, 1000, 5000], cells=["rnn-tanh", "lstm", "irnn", "indrnn"], hidden=128, steps=20000,
              batch=50, lr=_ADDING_LR_FULL, clip_norm=10.0, snapshot_every=1000, probe_batch=8, eval_batch=1000,
              max_length_baselines=1000, learned_below=0.1, failed_above=0.8,
              expect=[("indrnn", 100, "learns"), ("indrnn", 500, "learns"), ("indrnn", 1000, "learns"),
                      ("indrnn", 5000, "learns"), ("lstm", 100, "learns"), ("irnn", 100, "learns"),
                      ("rnn-tanh", 100, "fails"), ("lstm", 1000, "fails"), ("irnn", 1000, "fails")]),
    runner=_run_adding,
    notes=("Models as in the paper: 1-layer tanh RNN / LSTM / IRNN and a 2-layer IndRNN (relu; |u| ≤ 2^(1/T) enforced "
           "after every update; last layer u ~ U(2^(-1/T), 2^(1/T)) as in the official code), Adam, gradient norm "
           "clipped at 10. Quick: 32 units, one length (T = 200), 500 steps of batch 32, and a learning rate of 2e-3 for "
           "tanh RNN, LSTM and IndRNN (the paper's IndRNN rate 2e-4 needs tens of thousands of steps) and 1e-4 for "
           "IRNN (10× the paper's 1e-5; IRNN explodes at larger rates). 'Learns' means final MSE below "
           "learned_below × 0.167 on fresh sequences, 'fails' above failed_above × 0.167. The quick setting checks "
           "only the T = 200 contrast IndRNN vs tanh RNN; LSTM and IRNN are reported, not judged, there. "
           "Input weights use gradscope's U(±1/√m) init, not the official N(0, 0.001)."),
))

_add(Experiment(
    name="forget-bias",
    title="LSTM forget-gate bias: 0 vs 1 vs chrono",
    claim=("A positive forget-gate bias keeps the LSTM's cell-state gradient alive over more steps than a zero bias "
           "(Jozefowicz et al.: bias 1 'closes the gap' to the GRU), and the chrono initialisation b_f ~ log U[1, T−1] "
           "keeps it longer still and 'greatly improves learning of long term dependencies' (Tallec & Ollivier)."),
    source="Jozefowicz et al. 2015 (abstract); Tallec & Ollivier 2018; papers.md §2, §8c, §10 items 9 and 17",
    quick=dict(task="adding", length=100, hidden=32, steps=0, batch=32, lr=2e-3, clip_norm=10.0,
               snapshot_every=100, probe_batch=8, eval_batch=512),
    full=dict(task="adding", length=500, hidden=128, steps=20000, batch=50, lr=1e-3, clip_norm=10.0,
              snapshot_every=1000, probe_batch=16, eval_batch=1000),
    runner=_run_forget_bias,
    notes=("Gradient flow is measured at initialisation on the task's inputs (horizon: largest lag with "
           "‖∂S_T/∂S_k‖₂ ≥ 10^-3); training uses the adding problem (a long-memory task that runs offline) instead of "
           "the papers' ARITH/XML/PTB (Jozefowicz) and copy/adding (Tallec & Ollivier) runs. Chrono uses T_max = T. "
           "The quick setting checks only the gradient-flow part (steps = 0): 400 quick training steps left all three "
           "LSTMs at the adding baseline, which says nothing about the claim; the full setting trains."),
))

_add(Experiment(
    name="bn-gamma",
    title="Recurrent batch norm: initial γ = 1 vs γ = 0.1",
    claim=("With batch-normalised recurrent pre-activations, a large initial γ makes the gradient vanish quickly "
           "going back in time while γ = 0.1 keeps its norm nearly constant (Cooijmans et al. 2016, Fig. 1: 'For "
           "large values of γ, the norm quickly goes to zero as gradient is propagated back in time')."),
    source="Cooijmans et al. 2016 (Recurrent Batch Normalization), §4 and Fig. 1; papers.md §7b, §10 item 11",
    quick=dict(task="digits", length=None, hidden=32, batch=64, probe_batch=16, gammas=[1.0, 0.1],
               cells={"bn-rnn@identity": {"recurrent_init": "identity"}, "bn-rnn@orthogonal": {},
                      "bn-lstm": {}}, judged=["bn-rnn@identity"]),
    full=dict(task="digits", length=None, hidden=100, batch=512, probe_batch=64, gammas=[1.0, 0.1],
              cells={"bn-rnn@identity": {"recurrent_init": "identity"}, "bn-rnn@orthogonal": {},
                     "bn-lstm": {}}, judged=["bn-rnn@identity"]),
    runner=_run_bn_gamma,
    notes=("Diagnostics at initialisation, no training: per-step batch statistics are collected from a batch of "
           "sequential 8×8 digits (scikit-learn's, the offline stand-in for pixel-by-pixel MNIST; T = 64), then the "
           "inference-mode Jacobians with those statistics are analysed. The claim is judged in Cooijmans et al.'s "
           "BN-RNN setting (tanh, W_h = identity: bn-rnn@identity); the orthogonal-W_h BN-RNN and the BN-LSTM are "
           "reported as observations with the same check. At the first two steps every sequence has the same state "
           "(h_0 = 0, corner pixels 0), so BN divides by sqrt(eps) there and the norm jumps at the two longest lags; "
           "Cooijmans et al. add noise to h_0 against this, gradscope shows it as measured. Needs scikit-learn."),
))

_add(Experiment(
    name="gru-vs-lstm",
    title="Gated units vs tanh at matched parameter counts",
    claim=("Gated units (GRU, LSTM) model sequences better than tanh units at the same number of parameters, and GRU "
           "and LSTM are comparable; 'we could not make concrete conclusion on which of the two gating units was "
           "better' (Chung et al. 2014)."),
    source="Chung et al. 2014 (arXiv 1412.3555), abstract and conclusion; papers.md §1",
    quick=dict(task="text", length=50, lstm_hidden=32, steps=400, batch=32, lr=3e-3, optimizer="adam", clip_norm=1.0,
               snapshot_every=200, probe_batch=4, comparable_within=0.15),
    full=dict(task="text", length=100, lstm_hidden=256, steps=30000, batch=64, lr=2e-3, optimizer="adam",
              clip_norm=1.0, snapshot_every=2000, probe_batch=8, comparable_within=0.05),
    runner=_run_gru_vs_lstm,
    notes=("Chung et al. use polyphonic music and Ubisoft speech, RMSProp and weight noise; neither data set ships offline, "
           "so character-level language modelling on Python's pydoc text (bits per character on the test split) "
           "stands in, with Adam and the gradient norm clipped at 1 (their 'rescaled to 1'). Hidden sizes are chosen "
           "so that each model has about as many parameters as the LSTM (readout included), as in the paper. The quick "
           "setting covers only the first 400 steps of training; the paper compares the models at convergence."),
))

_add(Experiment(
    name="depth",
    title="Gradient through depth: residual IndRNN vs stacked LSTM; sigmoid vs relu vs BN vs residual MLPs",
    claim=("Gradients vanish through depth as through time: a deep plain sigmoid network loses its gradient "
           "geometrically (per layer at most ¼ σ_max(W)), while relu with He init, batch normalisation and residual "
           "connections keep it; in deep recurrent stacks the residual IndRNN passes the gradient to the bottom "
           "layer where a plain stack loses it (Li et al. 2019, Deep IndRNN)."),
    source="Li et al. 2018/2019 (IndRNN, Deep IndRNN) §3 residual IndRNN; Pascanu et al. 2013 §2.1; papers.md §3, §5, §8a",
    quick=dict(stack_layers=8, hidden=16, length=12, batch=4, mlp_depth=32, mlp_width=32, vanish_log10=-3.0),
    full=dict(stack_layers=21, hidden=128, length=50, batch=16, mlp_depth=200, mlp_width=512, vanish_log10=-3.0),
    runner=_run_depth,
    notes=("Diagnostics at initialisation. Stacks: E = ⟨v, h^top_T⟩ with a fixed random unit v; the gradient per layer "
           "is ‖∂E/∂h^(l)_(T−1)‖ (gradscope.engine.attribution), N(0, 1) inputs. The IndRNN stacks use the "
           "adding-problem init; the LSTM stack forget bias 1. MLPs: Gaussian N(0, gain²/n) weights (gain 1; relu √2), "
           "batch norm with statistics of the input batch, depth as time (gradscope.mlp)."),
))

_add(Experiment(
    name="clipping",
    title="Norm clipping on an exploding tanh RNN",
    claim=("Rescaling the gradient when its norm exceeds a threshold (Pascanu et al. 2013, Algorithm 1) lets SGD train "
           "a recurrent net whose gradients explode, where unclipped SGD is thrown off by the explosions."),
    source="Pascanu, Mikolov & Bengio 2013, §3.2, Algorithm 1 and §5 (temporal order); papers.md §5, §10 item 18",
    quick=dict(task="temporal-order", length=50, hidden=32, gain=2.0, steps=300, batch=20, lr=0.01, threshold=1.0,
               snapshot_every=100, probe_batch=8, eval_batch=512, solved_below=0.01, margin=0.1),
    full=dict(task="temporal-order", length=200, hidden=50, gain=2.0, steps=50000, batch=20, lr=0.01, threshold=1.0,
              snapshot_every=2500, probe_batch=8, eval_batch=10000, solved_below=0.01, margin=0.1),
    runner=_run_clipping,
    notes=("Pascanu et al.: 50 tanh units, SGD lr 0.01 without momentum, threshold 1, minibatch 20. The exploding "
           "setting is a Gaussian recurrent matrix with gain 2 (spectral radius ≈ 2) instead of their three inits; "
           "both runs start from the same weights and see the same batches. Solved: error rate ≤ 1 % on fresh "
           "sequences (Pascanu et al.'s success criterion); 'helps' needs a loss margin of 0.1 × the baseline, so "
           "two runs that both stay at the baseline do not count. The quick setting covers 300 updates, the full "
           "one 50 000; Pascanu et al. trained for up to 5 million."),
))


# ----------------------------------------------------------------------------------------------- API


def names() -> dict[str, str]:
    """The reproductions: name → title."""
    return {n: e.title for n, e in EXPERIMENTS.items()}


def get(name: str) -> Experiment:
    try:
        return EXPERIMENTS[name]
    except (KeyError, TypeError):
        import difflib

        close = difflib.get_close_matches(str(name), list(EXPERIMENTS), n=2)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise UnknownNameError(f"reproduction {name!r} is not known: {hint}known reproductions are "
                               f"{', '.join(EXPERIMENTS)}") from None


def run(name: str, *, quick: bool = True, seed: int = 0, progress: Callable[[dict], None] | None = None,
        **overrides) -> dict:
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
        why = "Not reproduced in this setting: " + "; ".join(
            f"{c['name']} — expected {c['expected']}, measured {c['measured']}" for c in failed) + "."
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
    report["reproduction"] = clean({k: result[k] for k in ("name", "title", "claim", "source", "notes", "setting",
                                                            "checks", "held", "outcome", "why", "measurements",
                                                            "seconds")})
    if result["runs"]:
        report["training"] = {"runs": clean(result["runs"])}
    return report
