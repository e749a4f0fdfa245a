"""Training-run and reproduction parts of a report: figures, HTML and Markdown sections, folder writer.

A training report is a ``gradscope.report/1`` document (the final model's analyses) with up to two extra
top-level sections, written by ``gradscope train`` and ``gradscope reproduce``::

    "training":     {"runs": [run, ...]}        run = gradscope.experiments.reproduce.run_record(...):
                    {"name", "task", "config", "metric_name", "baseline", "steps_done",
                     "step": [..], "loss": [..], "metric": [..], "grad_norm": [..]   (block means if long),
                     "snapshots": [{"step", "horizon", "log10_norm_max_lag", "decay_per_step",
                                    "lyapunov_max", "verdict", "lag_profile": [by k = 0..T-1]}, ...],
                     "final": {...} | null, "diverged": {"step", "message"} | null, "seconds"}
    "reproduction": {"name", "title", "claim", "source", "notes", "setting", "checks", "held",
                     "outcome", "why", "measurements", "seconds"}

Figures (matplotlib, no pyplot): `loss_curves` (training loss and global gradient norm against the
step, the task's baseline dashed; only for runs with a loss), `horizon_over_training` (the gradient
horizon, log10 ‖∂S_T/∂S_0‖₂ and, where computed, λ_max of the probe batch at each snapshot), `lag_heatmap`
(log10 ‖∂S_T/∂S_k‖₂ by lag × training step) and `layer_curves` (per layer of a stack, for snapshots with
``"layers": {"layer0": {"horizon", "log10_norm_max_lag", "lag_profile"}, ...}``, as
`gradscope.report.history` writes them for ``gradscope history``).
Like the rest of `gradscope.report`, nothing here differentiates.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Mapping
from html import escape
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from gradscope.report import figures as F
from gradscope.report._plot import _CYCLE, CMAP
from gradscope.report.catalogue import FigureSpec, slug


def _runs(report_or_runs) -> list[Mapping]:
    if isinstance(report_or_runs, Mapping):
        if "runs" in report_or_runs:
            return list(report_or_runs["runs"])
        return list((report_or_runs.get("training") or {}).get("runs", []))
    return list(report_or_runs)


def _snap(run: Mapping, key: str):
    snaps = run.get("snapshots") or []
    return (np.array([s["step"] for s in snaps], np.float64), F.series([s.get(key) for s in snaps]))


# ------------------------------------------------------------------------------------------- figures


def loss_curves(runs) -> Figure:
    """Left: training loss against the step (log scale), one line per run, the task's baseline (the loss
    of the best input-independent predictor) dashed; a cross marks where a run diverged. Right: the
    global gradient norm before clipping (log scale)."""
    runs = _runs(runs)
    fig = Figure(figsize=(11, 4.4), layout="constrained")
    ax, ag = fig.subplots(1, 2)
    baselines = set()
    for i, r in enumerate(runs):
        c = _CYCLE[i % len(_CYCLE)]
        step, loss, gn = F.series(r.get("step")), F.series(r.get("loss")), F.series(r.get("grad_norm"))
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
    fig = Figure(figsize=(15 if lyap else 11, 4.2), layout="constrained")
    axes = list(fig.subplots(1, 3 if lyap else 2))
    ah, an = axes[0], axes[1]
    for i, r in enumerate(runs):
        c = _CYCLE[i % len(_CYCLE)]
        s, h = _snap(r, "horizon")
        _, n = _snap(r, "log10_norm_max_lag")
        ah.plot(s, h, color=c, marker="o", ms=3, lw=1.4, label=str(r.get("name", i)))
        an.plot(s, n, color=c, marker="o", ms=3, lw=1.4, label=str(r.get("name", i)))
        if lyap:
            _, lam = _snap(r, "lyapunov_max")
            axes[2].plot(s, lam, color=c, marker="o", ms=3, lw=1.4, label=str(r.get("name", i)))
    ah.set_ylabel("horizon (steps)")
    ah.set_title("Gradient horizon during training")
    an.set_ylabel(F.NORM_UNIT + r"  $\log_{10}\|\partial S_T/\partial S_0\|_2$")
    an.set_title("Gradient norm at the longest lag during training")
    if lyap:
        axes[2].axhline(0.0, color="0.5", ls=":", lw=1)
        axes[2].set_ylabel(r"$\lambda_{\max}$" + f" ({F.LYAP_UNIT})")
        axes[2].set_title("Largest Lyapunov exponent during training")
    for a in axes:
        a.set_xlabel("training step")
        a.grid(True, alpha=0.3)
        if runs:
            a.legend(fontsize="small", loc="best")
        else:
            F._no_data(a, "no snapshots (train with snapshot_every)")
    return fig


def lag_heatmap(run: Mapping) -> Figure:
    """log10 ‖∂S_T/∂S_k‖₂ of the probe batch, by lag T − k (rows) and training step (columns)."""
    fig = Figure(figsize=(9, 4.6), layout="constrained")
    ax = fig.add_subplot()
    snaps = run.get("snapshots") or []
    prof = [F.series(s.get("lag_profile"))[::-1] for s in snaps]  # by lag 1..T
    if not prof or not max(p.size for p in prof):
        F._no_data(ax, "no snapshots with lag profiles")
        return fig
    M = np.full((max(p.size for p in prof), len(prof)), np.nan)  # (T lags, snapshots); a shorter T: gaps
    for j, p in enumerate(prof):
        M[: p.size, j] = p
    steps = [int(s["step"]) for s in snaps]
    T = M.shape[0]
    F._heatmap(fig, ax, M, label=F.NORM_UNIT, extent=(-0.5, len(steps) - 0.5, 0.5, T + 0.5))
    ax.set_xticks(range(len(steps)))
    ax.set_xticklabels([str(s) for s in steps], rotation=45 if len(steps) > 8 else 0, fontsize="small")
    ax.set_xlabel("training step (snapshot)")
    ax.set_ylabel(F.LAG_UNIT + "  τ = T − k")
    ax.set_title(f"Gradient by lag during training: {run.get('name', '')}")
    return fig


def layer_curves(run: Mapping) -> Figure:
    """Per layer of a stack (snapshots with ``layers``, see `gradscope.report.history`): left, the layer's
    horizon; right, its log10 norm at the longest lag, against the training step; one line per layer."""
    snaps = [s for s in run.get("snapshots") or [] if s.get("layers")]
    names = list(dict.fromkeys(n for s in snaps for n in s["layers"]))
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ah, an = fig.subplots(1, 2)
    cmap = colormaps[CMAP]
    for i, name in enumerate(names):
        c = cmap(i / max(len(names) - 1, 1) * 0.9)
        s = np.array([x["step"] for x in snaps if name in x["layers"]], np.float64)
        h = F.series([x["layers"][name].get("horizon") for x in snaps if name in x["layers"]])
        n = F.series([x["layers"][name].get("log10_norm_max_lag") for x in snaps if name in x["layers"]])
        ah.plot(s, h, color=c, marker="o", ms=3, lw=1.4, label=name)
        an.plot(s, n, color=c, marker="o", ms=3, lw=1.4, label=name)
    ah.set_ylabel("horizon (steps)")
    ah.set_title("Gradient horizon per layer")
    an.set_ylabel(F.NORM_UNIT + r"  $\log_{10}\|\partial S^l_T/\partial S^l_0\|_2$ (largest block)")
    an.set_title("Gradient norm at the longest lag per layer")
    for a in (ah, an):
        a.set_xlabel("training step")
        a.grid(True, alpha=0.3)
        if names:
            a.legend(fontsize="small", loc="best")
        else:
            F._no_data(a, "no per-layer data (not a stack, or no lag-profile blocks)")
    fig.suptitle(f"Per layer during training: {run.get('name', '')}")
    return fig


# --------------------------------------------------------------------------------------- catalogue


FILE_PREFIX = "training_"


def figure_specs(report: Mapping) -> list[FigureSpec]:
    """The training figures of a report (empty without a ``training`` section); file names start with
    `FILE_PREFIX` so the HTML shows them in the training section."""
    runs = _runs(report)
    if not runs:
        return []
    specs = []
    if any(r.get("loss") for r in runs):  # a watched run (gradscope history) logs no loss
        specs.append(
            FigureSpec(
                "training_loss.png",
                "Training loss and gradient norm",
                "Training loss against the optimisation step (log scale; long runs are shown as block means), "
                "one colour per run; the dashed line is the task's baseline, the loss of the best predictor "
                "that ignores the input, so a curve that stays on it has learned nothing. Right: the global "
                "gradient norm before clipping; spikes are exploding gradients.",
                lambda: loss_curves(runs),
            )
        )
    if any(r.get("snapshots") for r in runs):
        specs.append(
            FigureSpec(
                "training_horizon.png",
                "Gradient flow during training",
                "Diagnostics of the recurrent model on a fixed probe batch at each snapshot: the "
                "horizon (largest lag whose ‖∂S_T/∂S_k‖₂ stays above the threshold) and the log10 norm "
                "at the longest lag, and, where it was computed, the largest Lyapunov exponent (nats per step; "
                "above 0 the dynamics are chaotic and gradients explode). A horizon that grows while the loss "
                "falls means training opened a longer gradient path.",
                lambda: horizon_over_training(runs),
            )
        )
        used = set()
        for r in runs:
            if not r.get("snapshots"):
                continue
            base = slug(str(r.get("name", "run")))
            while base in used:
                base += "_"
            used.add(base)
            if any(s.get("lag_profile") for s in r["snapshots"]):  # light records carry no lag profile
                specs.append(
                    FigureSpec(
                        f"training_{base}_lags.png",
                        f"{r.get('name', '')}: gradient by lag during training",
                        "Heat-map of log10 ‖∂S_T/∂S_k‖₂ (colour) against the lag τ = T − k (rows) and the "
                        "training step (columns). Read a column as the lag profile at that step: colour "
                        "fading upwards is vanishing; a band that moves up over training means the model "
                        "learned to carry its gradient further back.",
                        lambda r=r: lag_heatmap(r),
                        str(r.get("name", "")),
                    )
                )
            if any(s.get("layers") for s in r["snapshots"]):
                specs.append(
                    FigureSpec(
                        f"training_{base}_layers.png",
                        f"{r.get('name', '')}: gradient flow per layer during training",
                        "For each layer l of the stack, the horizon and the log10 norm at the longest lag of "
                        "its own state's gradient, max over the layer's block pairs of ‖∂S^l_T[a]/∂S^l_k[b]‖₂ "
                        "(a lower bound on ‖∂S^l_T/∂S^l_k‖₂). A layer whose horizon stays short while the "
                        "others grow is where the gradient is lost.",
                        lambda r=r: layer_curves(r),
                        str(r.get("name", "")),
                    )
                )
    return specs


# --------------------------------------------------------------------------------------- HTML / Markdown


def _num(v, spec=".4g") -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int, float)):
        return format(v, spec)
    return str(v)


def _run_rows(runs) -> list[list[str]]:
    rows = []
    for r in runs:
        f = r.get("final") or {}
        m = r.get("metric_name", "metric")
        d = r.get("diverged")
        snaps = r.get("snapshots") or []
        rows.append(
            [
                str(r.get("name", "")),
                str((r.get("task") or {}).get("task", "")),
                _num(r.get("steps_done")),
                _num(r.get("baseline")),
                _num(f.get("loss")),
                f"{m} {_num(f.get(m))}",
                _num(f.get("success")),
                _num(snaps[0].get("horizon")) + " → " + _num(snaps[-1].get("horizon")) if snaps else "—",
                f"diverged at step {d['step']}" if d else "—",
                _num(r.get("seconds"), ".1f"),
            ]
        )
    return rows


_RUN_HEAD = [
    "run",
    "task",
    "steps",
    "baseline loss",
    "final loss",
    "final metric",
    "success",
    "horizon (first → last)",
    "diverged",
    "seconds",
]


def reproduction_html(rep: Mapping) -> str:
    held = bool(rep.get("held"))
    badge = (
        '<span class="verdict stable">claim held</span>'
        if held
        else '<span class="verdict vanishing">claim did not hold</span>'
    )
    rows = "".join(
        f"<tr><td><code>{escape(str(c.get('name')))}</code></td><td>{escape(str(c.get('expected')))}</td>"
        f"<td>{escape(str(c.get('measured')))}</td><td>{'held' if c.get('held') else '<b>not held</b>'}"
        f"{'' if c.get('judged', True) else ' (observation, not judged)'}</td></tr>"
        for c in rep.get("checks", [])
    )
    why = f'<p class="lead"><b>Why not:</b> {escape(str(rep["why"]))}</p>' if rep.get("why") else ""
    return (
        f"<h2>Reproduction: {escape(str(rep.get('title', rep.get('name', ''))))} "
        f"({escape(str(rep.get('setting', '')))} "
        f"setting) {badge}</h2>"
        f'<p class="lead"><b>Claim.</b> {escape(str(rep.get("claim", "")))} '
        f"<i>({escape(str(rep.get('source', '')))})</i></p>"
        f'<p class="lead"><b>Measured.</b> {escape(str(rep.get("outcome", "")))}</p>{why}'
        '<div class="scroll"><table><thead><tr><th>check</th><th>expected</th><th>measured</th><th>result</th></tr>'
        f"</thead><tbody>{rows}</tbody></table></div>"
        f'<p class="env">Setting notes: {escape(str(rep.get("notes", "")))} '
        f"Wall time {escape(_num(rep.get('seconds'), '.1f'))} s.</p>"
    )


def training_html(report: Mapping, images: Mapping[str, bytes] | None = None) -> str:
    import base64

    runs = _runs(report)
    if not runs:
        return ""
    images = dict(images or {})
    head = "".join(f"<th>{escape(h)}</th>" for h in _RUN_HEAD)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in _run_rows(runs))
    parts = [
        f"<h2>Training ({len(runs)} run{'s' if len(runs) != 1 else ''})</h2>",
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>',
    ]
    for spec in figure_specs(report):
        png = images.get(spec.filename) or spec.png()
        data = base64.b64encode(png).decode("ascii")
        parts.append(
            f'<figure id="{escape(spec.filename.removesuffix(".png"))}"><h3>{escape(spec.title)}</h3>'
            f'<img alt="{escape(spec.title)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{escape(spec.caption)}</figcaption></figure>"
        )
    return "\n".join(parts)


def reproduction_markdown(rep: Mapping) -> str:
    lines = [
        f"## Reproduction `{rep.get('name')}` ({rep.get('setting')}): "
        f"{'claim held' if rep.get('held') else 'claim did NOT hold'}",
        "",
        f"**Claim.** {rep.get('claim')} ({rep.get('source')})",
        "",
        f"**Measured.** {rep.get('outcome')}",
        "",
    ]
    if rep.get("why"):
        lines += [f"**Why not.** {rep['why']}", ""]
    lines += ["| check | expected | measured | result |", "|---|---|---|---|"]
    for c in rep.get("checks", []):
        res = ("held" if c.get("held") else "**not held**") + ("" if c.get("judged", True) else " (observation)")
        lines.append(f"| `{c.get('name')}` | {c.get('expected')} | {c.get('measured')} | {res} |".replace("\n", " "))
    return "\n".join(lines + [""])


def training_markdown(report: Mapping) -> str:
    runs = _runs(report)
    if not runs:
        return ""
    lines = ["### Training runs", "", "| " + " | ".join(_RUN_HEAD) + " |", "|" + "---|" * len(_RUN_HEAD)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in _run_rows(runs)]
    return "\n".join(lines + [""])


# ------------------------------------------------------------------------------------------ writing


ENTRIES = ("figures", "summary.md", "report.html", "report.json")  # report.json last: it marks completion


def write_training_report(out_dir, report: Mapping, *, force: bool = False) -> Path:
    """Write the report folder of a training run or reproduction (``report.json``, ``report.html``,
    ``summary.md``, ``figures/``) into ``out_dir``.

    Everything is rendered in a hidden sibling folder first; then each entry replaces its old version
    (``report.json`` last), so other files in ``out_dir`` (e.g. the run's ``checkpoints/``) are kept. A
    non-empty ``out_dir`` without ``force`` raises `gradscope.report.ReportExistsError`.
    """
    from gradscope.report import ReportExistsError, write_report

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ReportExistsError(f"output {out} exists and is not a folder: choose another --out")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ReportExistsError(f"output folder {out} exists and is not empty: pass --force (force=True) to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        write_report(tmp, report)
        out.mkdir(exist_ok=True)
        for name in ENTRIES:
            target = out / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(tmp / name, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
