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

The figures (`loss_curves`, `horizon_over_training`, `lag_heatmap`, `layer_curves`) live in
`gradscope.report._training_figures` and are imported here, so ``training.loss_curves`` and the others keep
working; this module lists them in the catalogue (`figure_specs`), writes the HTML and Markdown sections and
the report folder. Like the rest of `gradscope.report`, nothing here differentiates.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Mapping
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

from gradscope.report._training_figures import (
    _runs,
    horizon_over_training,
    lag_heatmap,
    layer_curves,
    loss_curves,
)
from gradscope.report.catalogue import FigureSpec, unique_slug

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# --------------------------------------------------------------------------------------- catalogue


FILE_PREFIX = "training_"


#: the figures of each run with snapshots: (file-name suffix, title after the run's name, caption, the snapshot
#: key the figure reads, the figure); a figure is listed when a snapshot has that key (light records carry no
#: lag profile, only stacks carry layers)
_PER_RUN: tuple[tuple[str, str, str, str, Callable[[Mapping], Figure]], ...] = (
    (
        "lags",
        "gradient by lag during training",
        "Heat-map of log10 ‖∂S_T/∂S_k‖₂ (colour) against the lag τ = T − k (rows) and the training step "
        "(columns). Read a column as the lag profile at that step: colour fading upwards is vanishing; a band "
        "that moves up over training means the model learned to carry its gradient further back.",
        "lag_profile",
        lag_heatmap,
    ),
    (
        "layers",
        "gradient flow per layer during training",
        "For each layer l of the stack, the horizon and the log10 norm at the longest lag of its own state's "
        "gradient, max over the layer's block pairs of ‖∂S^l_T[a]/∂S^l_k[b]‖₂ (a lower bound on "
        "‖∂S^l_T/∂S^l_k‖₂). A layer whose horizon stays short while the others grow is where the gradient is lost.",
        "layers",
        layer_curves,
    ),
)


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
        used: set[str] = set()
        for r in runs:
            if not r.get("snapshots"):
                continue
            base = unique_slug(str(r.get("name", "run")), used)
            for suffix, title, caption, key, draw in _PER_RUN:
                if any(s.get(key) for s in r["snapshots"]):
                    specs.append(
                        FigureSpec(
                            f"training_{base}_{suffix}.png",
                            f"{r.get('name', '')}: {title}",
                            caption,
                            lambda r=r, draw=draw: draw(r),
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
