"""The two summary heat-maps of a sweep report and the sweep report folder: the largest Lyapunov exponent
(nats per step) over gain × cell, and the gradient horizon over length × cell. JAX-free."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from gradscope._atomic import TargetExistsError, publish_folder, temp_folder
from gradscope._errors import ConfigError


def _fmt(v: float) -> str:
    """A gain as written in a configuration name (``g=1.5``)."""
    return format(float(v), "g")


def _grid_rows(report: dict) -> list[dict]:
    """One row per analysis: label, gain (or None), length, seed, and the two plotted summary numbers."""
    grid_cfg = {c["name"]: c for c in (report.get("config") or {}).get("grid", []) if isinstance(c, dict)}
    rows = []
    for a in report.get("analyses", []):
        name = a.get("name", "")
        parts = name.split("/")
        c = grid_cfg.get(name, {})
        label = c.get("label") or parts[0]
        gain = c.get("gain")
        if gain is None and "gain" not in c:
            gain = next((float(p[2:]) for p in parts[1:] if p.startswith("g=")), None)
        length = c.get("length") or a.get("length")
        s = a.get("summary", {})
        rows.append(
            {
                "label": label,
                "gain": gain,
                "length": length,
                "lyapunov_max": s.get("lyapunov_max"),
                "horizon": s.get("horizon"),
            }
        )
    return rows


def _mean(vals) -> float:
    v = [float(x) for x in vals if x is not None and math.isfinite(float(x))]
    return float(np.mean(v)) if v else float("nan")


def _heatmap(M, row_labels, col_labels, *, title, xlabel, colour_label, fmt):
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    M = np.asarray(M, np.float64)
    fig = Figure(
        figsize=(1.6 + 0.9 * max(len(col_labels), 2), 1.2 + 0.45 * max(len(row_labels), 2)), layout="constrained"
    )
    ax = fig.add_subplot()
    cmap = colormaps["viridis"].with_extremes(bad="0.92")
    masked = np.ma.masked_invalid(M)
    im = ax.imshow(masked, cmap=cmap, aspect="auto")
    fig.colorbar(im, ax=ax, label=colour_label)
    ax.set_xticks(range(len(col_labels)), col_labels)
    ax.set_yticks(range(len(row_labels)), row_labels)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    finite = M[np.isfinite(M)]
    mid = (finite.min() + finite.max()) / 2 if finite.size else 0.0
    for i in range(M.shape[0]):
        for j in range(M.shape[1]):
            v = M[i, j]
            txt = fmt(v) if np.isfinite(v) else "n/a"
            colour = ("white" if v < mid else "black") if np.isfinite(v) else "0.45"
            ax.text(j, i, txt, ha="center", va="center", fontsize=8, color=colour)
    return fig


def sweep_figures(report: dict) -> list:
    """Two heat-maps (matplotlib `Figure`s) of a sweep report.

    1. largest Lyapunov exponent (nats/step), rows = cells, columns = swept gains; cells without a
       ``gain`` option fill only the column "no gain" (the gain does not apply to them), mean over
       lengths and seeds;
    2. gradient horizon (steps), rows = cell (and gain), columns = lengths, mean over seeds.
    """
    rows = _grid_rows(report)
    if not rows:
        raise ConfigError("the report holds no analyses: nothing to draw")
    labels = list(dict.fromkeys(r["label"] for r in rows))
    gains = sorted({r["gain"] for r in rows if r["gain"] is not None})
    has_na = any(r["gain"] is None for r in rows)
    cols = [_fmt(g) for g in gains] + (["no gain"] if has_na else [])
    L = np.full((len(labels), len(cols)), np.nan)
    for i, lab in enumerate(labels):
        for j, g in enumerate(gains + ([None] if has_na else [])):
            L[i, j] = _mean(r["lyapunov_max"] for r in rows if r["label"] == lab and r["gain"] == g)
    fig1 = _heatmap(
        L,
        labels,
        cols,
        title="largest Lyapunov exponent",
        xlabel="recurrent gain",
        colour_label="λ_max (nats per step)",
        fmt=lambda v: f"{v:.3f}",
    )

    lengths = sorted({int(r["length"]) for r in rows if r["length"] is not None})
    row_keys = list(dict.fromkeys((r["label"], r["gain"]) for r in rows))
    H = np.full((len(row_keys), len(lengths)), np.nan)
    for i, (lab, g) in enumerate(row_keys):
        for j, T in enumerate(lengths):
            H[i, j] = _mean(r["horizon"] for r in rows if (r["label"], r["gain"]) == (lab, g) and r["length"] == T)
    row_labels = [lab if g is None else f"{lab} g={_fmt(g)}" for lab, g in row_keys]
    fig2 = _heatmap(
        H,
        row_labels,
        [str(T) for T in lengths],
        title="gradient horizon",
        xlabel="length T",
        colour_label="horizon (steps)",
        fmt=lambda v: f"{v:.0f}",
    )
    return [fig1, fig2]


#: file names of the two heat-maps of `sweep_figures`, in that order
SWEEP_FIGURE_FILES = ("sweep_lyapunov_gain_cell.png", "sweep_horizon_length_cell.png")


def write_sweep_report(out, report: dict, *, force: bool = False, dpi: int = 100) -> Path:
    """Write the report folder (`gradscope.report.write_report`) plus the two heat-maps in ``OUT/heatmaps/``.

    The whole folder is assembled in a hidden sibling and renamed into place, so ``OUT`` is never
    half-written. (``gradscope report`` keeps ``heatmaps/`` when it re-renders.)
    """
    from gradscope.report import write_report
    from gradscope.report.document import ReportExistsError
    from gradscope.report.folder import check_target

    out = Path(out)
    try:
        check_target(out, force)
    except ReportExistsError as e:
        raise ConfigError(str(e)) from None
    with temp_folder(out) as tmp:
        folder = tmp / "report"
        write_report(folder, report)
        specs = _report_figure_files(report)
        if not any(f in specs for f in SWEEP_FIGURE_FILES):  # the report module does not draw them itself
            (folder / "heatmaps").mkdir()
            for fname, fig in zip(SWEEP_FIGURE_FILES, sweep_figures(report)):
                fig.savefig(folder / "heatmaps" / fname, dpi=dpi)
        try:
            publish_folder(folder, out, replace=force or (out.is_dir() and not any(out.iterdir())))
        except TargetExistsError:
            raise ConfigError(
                f"--out={str(out)!r} appeared while the sweep ran (another run writing it?): it was not replaced; "
                "pass --force to replace it or choose another --out"
            ) from None
    return out


def _report_figure_files(report: dict) -> set[str]:
    try:
        from gradscope.report import figure_specs
    except ImportError:  # pragma: no cover
        return set()
    return {s.filename for s in figure_specs(report)}
