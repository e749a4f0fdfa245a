"""The training-run figures of a report (matplotlib, no pyplot), re-exported by `gradscope.report.training`.

`loss_curves` (training loss and global gradient norm against the step, the task's baseline dashed; only for
runs with a loss), `horizon_over_training` (the gradient horizon, log10 ‖∂S_T/∂S_0‖₂ and, where computed,
λ_max of the probe batch at each snapshot), `lag_heatmap` (log10 ‖∂S_T/∂S_k‖₂ by lag × training step) and
`layer_curves` (per layer of a stack, for snapshots with
``"layers": {"layer0": {"horizon", "log10_norm_max_lag", "lag_profile"}, ...}``, as `gradscope.report.history`
writes them for ``gradscope history``). They read the run records described in `gradscope.report.training`;
like the rest of `gradscope.report`, nothing here differentiates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from gradscope.report._plot import (
    _CYCLE,
    CMAP,
    LAG_UNIT,
    LYAP_UNIT,
    NORM_UNIT,
    _heatmap,
    _no_data,
    colormap,
    new_figure,
    series,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _runs(report_or_runs) -> list[Mapping]:
    if isinstance(report_or_runs, Mapping):
        if "runs" in report_or_runs:
            return list(report_or_runs["runs"])
        return list((report_or_runs.get("training") or {}).get("runs", []))
    return list(report_or_runs)


def _snap(run: Mapping, key: str):
    snaps = run.get("snapshots") or []
    return (np.array([s["step"] for s in snaps], np.float64), series([s.get(key) for s in snaps]))


#: a series measured at the snapshots: one marked point per snapshot, joined
_SNAPSHOT_LINE = {"marker": "o", "ms": 3, "lw": 1.4}


def _finish_step_panels(axes, panels: Sequence[tuple[str, str]], *, drawn: bool, empty: str) -> None:
    """Label panels drawn against the training step alike: ``panels`` holds each one's (y label, title);
    every panel gets the step axis, a grid and its legend, or the ``empty`` note when nothing was drawn."""
    for a, (ylabel, title) in zip(axes, panels, strict=True):
        a.set_ylabel(ylabel)
        a.set_title(title)
        a.set_xlabel("training step")
        a.grid(True, alpha=0.3)
        if drawn:
            a.legend(fontsize="small", loc="best")
        else:
            _no_data(a, empty)


def loss_curves(runs) -> Figure:
    """Left: training loss against the step (log scale), one line per run, the task's baseline (the loss
    of the best input-independent predictor) dashed; a cross marks where a run diverged. Right: the
    global gradient norm before clipping (log scale)."""
    runs = _runs(runs)
    fig = new_figure(figsize=(11, 4.4), layout="constrained")
    ax, ag = fig.subplots(1, 2)
    baselines = set()
    for i, r in enumerate(runs):
        c = _CYCLE[i % len(_CYCLE)]
        step, loss, gn = series(r.get("step")), series(r.get("loss")), series(r.get("grad_norm"))
        if loss.size:
            ax.plot(step, loss, color=c, lw=1.4, label=str(r.get("name", i)))
        if gn.size:
            ag.plot(step, gn, color=c, lw=1.0, label=str(r.get("name", i)))
        d = r.get("diverged")
        if d:
            ax.axvline(d["step"], color=c, ls=":", lw=1)
            ax.plot(
                [d["step"]],
                [np.nanmax(loss) if loss.size and np.isfinite(loss).any() else 1.0],
                "x",
                color=c,
                ms=9,
                label=f"{r.get('name', i)} diverged at step {d['step']}",
            )
        if r.get("baseline") is not None:
            baselines.add(float(r["baseline"]))
    for b in sorted(baselines):
        ax.axhline(b, color="0.4", ls="--", lw=1.2, label=f"baseline {b:.3g}")
    for a, title, ylabel in (
        (ax, "Training loss", "loss (log scale)"),
        (ag, "Global gradient norm (before clipping)", "‖∂L/∂θ‖₂ (log scale)"),
    ):
        a.set_xlabel("training step")
        a.set_ylabel(ylabel)
        a.set_title(title)
        a.grid(True, alpha=0.3)
        if any(line.get_ydata().size and np.nanmin(np.asarray(line.get_ydata(), float)) > 0 for line in a.get_lines()):
            try:
                a.set_yscale("log")
            except ValueError:  # pragma: no cover - non-positive data only
                pass
    ax.legend(fontsize="small", loc="best")
    if len(runs) > 1:
        ag.legend(fontsize="small", loc="best")
    return fig


def _has_lyapunov(runs) -> bool:
    return any(np.isfinite(_snap(r, "lyapunov_max")[1]).any() for r in runs)


def horizon_over_training(runs) -> Figure:
    """Left: the gradient horizon (largest lag with ‖∂S_T/∂S_k‖₂ ≥ 10^threshold on the fixed probe batch) at
    each snapshot; middle: log10 ‖∂S_T/∂S_0‖₂ (the longest lag) at each snapshot; right, where a snapshot
    has one: the largest Lyapunov exponent λ_max (nats per step; > 0 chaotic, exploding)."""
    runs = [r for r in _runs(runs) if r.get("snapshots")]
    lyap = _has_lyapunov(runs)
    fig = new_figure(figsize=(15 if lyap else 11, 4.2), layout="constrained")
    axes = list(fig.subplots(1, 3 if lyap else 2))
    ah, an = axes[0], axes[1]
    for i, r in enumerate(runs):
        c = _CYCLE[i % len(_CYCLE)]
        s, h = _snap(r, "horizon")
        _, n = _snap(r, "log10_norm_max_lag")
        ah.plot(s, h, color=c, label=str(r.get("name", i)), **_SNAPSHOT_LINE)
        an.plot(s, n, color=c, label=str(r.get("name", i)), **_SNAPSHOT_LINE)
        if lyap:
            _, lam = _snap(r, "lyapunov_max")
            axes[2].plot(s, lam, color=c, label=str(r.get("name", i)), **_SNAPSHOT_LINE)
    panels = [
        ("horizon (steps)", "Gradient horizon during training"),
        (
            NORM_UNIT + r"  $\log_{10}\|\partial S_T/\partial S_0\|_2$",
            "Gradient norm at the longest lag during training",
        ),
    ]
    if lyap:
        axes[2].axhline(0.0, color="0.5", ls=":", lw=1)
        panels.append((r"$\lambda_{\max}$" + f" ({LYAP_UNIT})", "Largest Lyapunov exponent during training"))
    _finish_step_panels(axes, panels, drawn=bool(runs), empty="no snapshots (train with snapshot_every)")
    return fig


def lag_heatmap(run: Mapping) -> Figure:
    """log10 ‖∂S_T/∂S_k‖₂ of the probe batch, by lag T − k (rows) and training step (columns)."""
    fig = new_figure(figsize=(9, 4.6), layout="constrained")
    ax = fig.add_subplot()
    snaps = run.get("snapshots") or []
    prof = [series(s.get("lag_profile"))[::-1] for s in snaps]  # by lag 1..T
    if not prof or not max(p.size for p in prof):
        _no_data(ax, "no snapshots with lag profiles")
        return fig
    M = np.full((max(p.size for p in prof), len(prof)), np.nan)  # (T lags, snapshots); a shorter T: gaps
    for j, p in enumerate(prof):
        M[: p.size, j] = p
    steps = [int(s["step"]) for s in snaps]
    T = M.shape[0]
    _heatmap(fig, ax, M, label=NORM_UNIT, extent=(-0.5, len(steps) - 0.5, 0.5, T + 0.5))
    ax.set_xticks(range(len(steps)))
    ax.set_xticklabels([str(s) for s in steps], rotation=45 if len(steps) > 8 else 0, fontsize="small")
    ax.set_xlabel("training step (snapshot)")
    ax.set_ylabel(LAG_UNIT + "  τ = T − k")
    ax.set_title(f"Gradient by lag during training: {run.get('name', '')}")
    return fig


def layer_curves(run: Mapping) -> Figure:
    """Per layer of a stack (snapshots with ``layers``, see `gradscope.report.history`): left, the layer's
    horizon; right, its log10 norm at the longest lag, against the training step; one line per layer."""
    snaps = [s for s in run.get("snapshots") or [] if s.get("layers")]
    names = list(dict.fromkeys(n for s in snaps for n in s["layers"]))
    fig = new_figure(figsize=(11, 4.2), layout="constrained")
    ah, an = fig.subplots(1, 2)
    cmap = colormap(CMAP)
    for i, name in enumerate(names):
        c = cmap(i / max(len(names) - 1, 1) * 0.9)
        s = np.array([x["step"] for x in snaps if name in x["layers"]], np.float64)
        h = series([x["layers"][name].get("horizon") for x in snaps if name in x["layers"]])
        n = series([x["layers"][name].get("log10_norm_max_lag") for x in snaps if name in x["layers"]])
        ah.plot(s, h, color=c, label=name, **_SNAPSHOT_LINE)
        an.plot(s, n, color=c, label=name, **_SNAPSHOT_LINE)
    panels = [
        ("horizon (steps)", "Gradient horizon per layer"),
        (
            NORM_UNIT + r"  $\log_{10}\|\partial S^l_T/\partial S^l_0\|_2$ (largest block)",
            "Gradient norm at the longest lag per layer",
        ),
    ]
    empty = "no per-layer data (not a stack, or no lag-profile blocks)"
    _finish_step_panels((ah, an), panels, drawn=bool(names), empty=empty)
    fig.suptitle(f"Per layer during training: {run.get('name', '')}")
    return fig
