"""Which figures a report holds, their file names and their captions (what is shown, how to read it).

Shared by the PNG folder, the HTML page and notebooks: the comparison figure (all analyses' norm
against lag on one axis) comes first, then per analysis the figures whose section it carries.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from gradscope.analysis.findings import CURSE_EXCESS
from gradscope.report import interactive as I
from gradscope.report import views
from gradscope.report.family import Family, family_of

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclasses.dataclass(frozen=True)
class FigureSpec:
    """One figure of a report: ``filename`` under ``figures/``, a heading and a one-paragraph caption."""

    filename: str
    title: str
    caption: str
    make: Callable[[], Figure]
    analysis: str | None = None  # None: the comparison figure
    #: the Plotly spec of the same figure for the HTML page (`gradscope.report.interactive`); None: PNG only
    interactive: Callable[[], Mapping | None] | None = None
    #: what the figure is drawn from, for drawing it in another process: ``(kind, record)`` with
    #: ``analysis_figure(kind)(record)`` the figure (a per-analysis figure: the analysis record; the comparison
    #: figure: ``{"analyses": [...]}``); None: drawn only here (sweep heat-maps, training curves)
    source: tuple[str, Mapping] | None = None

    def png(self, dpi: int = 100) -> bytes:
        """Render to PNG bytes (Agg, no pyplot state)."""
        return to_png(self.make(), dpi)


def to_png(fig: Figure, dpi: int) -> bytes:
    """``fig`` as PNG bytes: the one way every report PNG is written, in-process or in a worker (laid out and
    drawn once, `gradscope.report._render`)."""
    from gradscope.report._render import to_png as render

    return render(fig, dpi)


def slug(name: str) -> str:
    """A file-name-safe form of an analysis name."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("._") or "analysis"
    return s[:60]


def unique_slug(name: str, used: set[str]) -> str:
    """`slug` of ``name`` with ``_`` appended until it is not in ``used`` (it is then added), so that two
    analyses or runs of the same name still get figure files of their own."""
    base = slug(name)
    while base in used:
        base += "_"
    used.add(base)
    return base


def _fmt(x, spec=".2f", none="n/a"):
    return none if x is None else format(x, spec)


def _lag_caption(items) -> str:
    s = items[0].get("summary", {}) if items else {}
    thr = s.get("horizon_threshold", -3.0)
    many = len(items) > 1
    text = (
        "The spectral norm of the Jacobian product ∂S_T/∂S_k (log10) against the lag τ = T − k, i.e. how much "
        "of a perturbation of the state k steps back still reaches the last step. "
        + ("Each model has its own colour; " if many else "")
        + "a straight falling line is exponential vanishing (the slope is the decay in log10 units per step), "
        "a rising one exploding; gaps are exactly zero products. "
        f"The dotted line is the horizon threshold 10^{thr:g}: "
        "the horizon is the largest lag whose norm stays above it. "
        "Dashed lines, where present, are the classical upper bounds τ·log10(γ σ_max) "
        "(Pascanu et al. 2013; IndRNN: max |u|); the measured curve must lie below its bound."
    )
    return text


#: how each kind of cell loses its gradient, one sentence for the spectra and Lyapunov captions
_MECHANISM = {
    "dense": (
        "For this {label} the one-step Jacobian is diag(φ′)·W: the singular values of W shrunk by the "
        "activation's slope ({slope}); when they stay below 1 the product vanishes, above 1 it explodes "
        "(Pascanu et al. 2013)."
    ),
    "gated": (
        "For this {label} the one-step Jacobian holds the diagonal of the gates on its direct path (LSTM: the "
        "forget gate f_t on the cell state; GRU: 1 − z_t): gates near 1 keep singular values near 1 along that "
        "highway, gates near 0.5 halve the gradient at every step."
    ),
    "diagonal": (
        "For this {label} the state Jacobian is diagonal: each unit i decays at its own rate |a_t,i| per step, "
        "the Lyapunov exponents are the units' mean log-decays λ_i = ⟨ln|a_t,i|⟩ and τ_i = −1/λ_i their time "
        "constants (see the per-unit view)."
    ),
}


def _mechanism(fam: Family) -> str:
    slope = {"tanh": "tanh′ ≤ 1", "relu": "relu′ is 0 or 1: switched-off units cut the gradient"}.get(
        str(fam.activation), "φ′"
    )
    return " " + _MECHANISM[fam.kind].format(label=fam.label, slope=slope)


def _gates_caption(a: Mapping, fam: Family) -> str:
    """What the gate panel shows for this cell: forget-gate talk only where a forget gate is drawn."""
    g = a.get("gates") or {}
    names = [k for k, v in g.items() if isinstance(v, Mapping) and v.get("histogram") is not None]
    relu = [k for k, v in g.items() if isinstance(v, Mapping) and "dead_fraction" in v]
    text = []
    if names:
        text.append(
            f"Distribution of the gate activations ({', '.join(names)}) over all units, steps and sequences "
            "(fraction of values per bin). A gate is counted as saturated where σ′(·) < 0.01 (its value near 0 "
            "or 1): a saturated gate passes no gradient to its own weights."
        )
        if any(k == "f" or k.endswith(".f") for k in names):
            text.append(
                "The forget gate f is the LSTM's highway: held near 1 ('open') it keeps the cell-state gradient, "
                "at 0.5 (no forget bias) it halves it every step."
            )
        elif any(k == "z" or k.endswith(".z") for k in names):
            text.append("The update gate z sets GRU's direct path: 1 − z near 1 keeps the previous state.")
    if relu:
        text.append(
            f"The bars give, for the relu units of this {fam.label}, the fraction inactive at a step (relu′ = 0, "
            "the gradient through them is cut there) and the fraction dead for a whole sequence."
        )
    return " ".join(text) or "This cell records no gate or relu statistics."


def _captions(a: Mapping) -> dict[str, str]:
    s = a.get("summary", {})
    T = a.get("length")
    fam = family_of(a)
    hw, rest = s.get("highway_log10_max_lag"), s.get("remainder_log10_max_lag")
    block = (a.get("paths") or {}).get("block", "")
    gated = "LSTM cell-state path ∏ f_t" if block == "c" else "GRU direct path ∏ diag(1 − z_t)"
    batch = a.get("batch")
    band = (
        f" With {batch} sequences each line is the per-sequence median (a value some sequence has, unlike the "
        "mean), the shaded bands the min–max over the sequences of the largest and smallest one."
        if batch and (a.get("spectra") or {}).get("log10_singular_values_median") is not None
        else ""
    )
    roundoff = (
        " At lag 1 the remainder is exactly zero in exact arithmetic (c_(t−1) reaches c_t only through f_t: "
        "the gates read h_(t−1), not c_(t−1)); its float value is round-off, about eps of the total, and is not "
        "drawn (as in notebooks/03-the-lstm-highway)."
        if block == "c"
        else ""
    )
    units = views.unit_time_constants(a)
    return {
        "triangle": (
            f"log10 Frobenius norm of ∂S_t/∂S_k for every target step t (rows) and source step k ≤ t (columns) "
            f"over the {T} steps. Read along a row to see how far back step t still depends on; along a diagonal "
            "band (constant lag) to see whether the decay is uniform in time. Dark is small; white cells above "
            "the diagonal are undefined, white cells below it are exactly zero."
        ),
        "singular_values": (
            "Left: all singular values σ_i of ∂S_T/∂S_k (log10) against the lag — the largest one is the norm of the "
            "lag profile, the spread tells how many directions survive (a fan collapsing onto one line means the "
            "gradient keeps only a low-rank memory). Right: singular values of each one-step Jacobian ∂S_(t+1)/∂S_t; "
            "values persistently below the dotted line σ = 1 make the product shrink." + band + _mechanism(fam)
        ),
        "lyapunov": (
            "Left: the Lyapunov exponents λ_1 ≥ … ≥ λ_k in nats per step "
            f"(λ_1 = {_fmt(s.get('lyapunov_max'), '.3f')}); "
            "λ_1 < 0 means every direction contracts (vanishing gradients), λ_1 > 0 that some direction grows "
            "(exploding), λ_1 ≈ 0 the edge of chaos. Right: the running estimates against the number of steps "
            "averaged; flat lines at the right end mean the sequence is long enough for the estimate to have converged."
            + _mechanism(fam)
        ),
        "paths": (
            f"Split of ∂{block}_T/∂{block}_k into the {gated} (the 'highway' that gated cells add) and all other "
            f"paths through the recurrent weights, in log10 spectral norm against the lag. At the longest lag the "
            f"highway carries 10^{_fmt(hw)} and the remainder 10^{_fmt(rest)}. A highway above the remainder "
            "means the gate keeps the long-range gradient alive; a highway that falls as fast as the total means "
            "the gates are closing." + roundoff
        ),
        "attribution": (
            "Left: norm of the part of the parameter gradient ∂E/∂θ that comes from lag τ = t − k (Pascanu et al. "
            "2013, eqs. 3–5), with the norm of the total gradient dashed; the long-lag contributions being many "
            "orders of magnitude below the total is what 'the gradient is dominated by short-term dependencies' "
            "means. Right: norm of the back-propagated error ∂E/∂S_t for each state block (rows) over time; for "
            "stacked networks this is the depth × time picture."
        ),
        "gates": _gates_caption(a, fam),
        "sensitivity": (
            f"Left: log10 Frobenius norm of ∂S_t/∂θ, the sensitivity of the state after step t to each parameter "
            f"leaf (the largest at t = {T} first, dashed: all parameters together), computed exactly by forward "
            "propagation. Right: the total against the state norm log10 ‖S_t‖₂ and their difference. A difference "
            "that keeps rising means the state's sensitivity to the parameters outgrows the state itself — the "
            "curse of memory of Zucchet & Orvieto 2024, which the finding curse-of-memory reports when the rise "
            f"exceeds {CURSE_EXCESS:g} decade{'s' if CURSE_EXCESS != 1 else ''}."
        ),
        "layers": (
            f"Each layer's own recurrence in this {fam.label}: log10 ‖∂S_T[l]/∂S_k[l]‖₂ of the layer's first state "
            "block against the lag, with its decay per step (least-squares slope) in the legend. The steepest "
            "curve is the layer that loses the gradient; the Diagnosis names it."
        ),
        "units": (
            f"Per-unit time constants of this {fam.label}: its Jacobian is diagonal, so unit i decays at its own "
            "rate λ_i = ⟨ln|a_t,i|⟩ nats per step (the Lyapunov exponents) and τ_i = −1/λ_i steps is how long its "
            f"gradient takes to fall by a factor e. Units above the dashed line (τ ≥ T = {T}) keep their memory over "
            "the whole sequence; triangles are units that do not decay at all (λ_i ≥ 0)"
            + (
                f"; {units['cut']} units whose gradient is cut to exactly zero by a switched-off relu are not drawn"
                if units and units["cut"]
                else ""
            )
            + " (Li et al. 2018; Orvieto et al. 2023)."
        ),
    }


#: sweeps with more analyses than this get only their heat-maps (no lag-profile or per-analysis figures)
SWEEP_FIGURE_LIMIT = 16


#: the heading of each per-analysis figure (after the analysis's name), by kind (the file-name suffix)
_TITLES = {
    "triangle": "Jacobian products ∂S_t/∂S_k",
    "singular_values": "Singular-value spectra",
    "lyapunov": "Lyapunov exponents",
    "paths": "Path decomposition",
    "attribution": "Gradient attribution",
    "gates": "Gate saturation",
    "sensitivity": "Parameter sensitivity ∂S_t/∂θ",
    "layers": "Gradient per layer",
    "units": "Per-unit time constants",
}
#: the views that follow the `figures.PER_ANALYSIS` figures: kind → (whether the analysis has it, the figure);
#: unlike those they have no section of their own, they are read from a stack's blocks or a diagonal cell's rates
_VIEWS: dict[str, tuple[Callable[[Mapping], bool], Callable[[Mapping], Figure]]] = {
    "layers": (lambda a: bool(views.layer_curves(a)), views.layers_figure),
    "units": (lambda a: views.unit_time_constants(a) is not None, views.units_figure),
}


#: per-analysis figure kind → the section of the analysis record it shows, in the report's order; each is
#: drawn by the function of the same name in `gradscope.report.figures`
SECTIONS = {
    "triangle": "triangle",
    "singular_values": "spectra",
    "lyapunov": "lyapunov",
    "paths": "paths",
    "attribution": "attribution",
    "gates": "gates",
    "sensitivity": "sensitivity",
}


def analysis_figures(a: Mapping) -> list[str]:
    """The kinds of the per-analysis figures of the record ``a`` (`analysis_figure` draws one): one per
    section it carries, then the views its numbers allow (layers of a stack, unit time constants)."""
    return [kind for kind, section in SECTIONS.items() if a.get(section)] + [
        kind for kind, (shown, _) in _VIEWS.items() if shown(a)
    ]


#: the comparison figure's kind, drawn from ``{"analyses": [the records with a lag profile]}``
LAG_PROFILES = "lag_profiles"


def analysis_figure(kind: str) -> Callable[[Mapping], Figure]:
    """The function that draws the figure ``kind`` from its record (`FigureSpec.source`): a per-analysis
    figure from an analysis record, the comparison figure (`LAG_PROFILES`) from ``{"analyses": [...]}``."""
    if kind in _VIEWS:
        return _VIEWS[kind][1]
    from gradscope.report import figures  # matplotlib: imported where a figure is drawn, not to list them

    if kind == LAG_PROFILES:
        return lambda doc: figures.lag_profiles(list(doc["analyses"]))
    if kind not in SECTIONS:
        raise KeyError(kind)
    return getattr(figures, kind)


def figure_specs(report: Mapping) -> list[FigureSpec]:
    """The report's figures, comparison first, then per analysis those whose section is present."""
    items = list(report.get("analyses", []))
    specs: list[FigureSpec] = []
    # a large sweep is read through its table and heat-maps; per-analysis figures would be thousands of PNGs
    per_analysis = items if not (report.get("command") == "sweep" and len(items) > SWEEP_FIGURE_LIMIT) else []
    if any(a.get("lag_profile") for a in per_analysis):
        with_lp = [a for a in items if a.get("lag_profile")]
        many = len(with_lp) > 1
        specs.append(
            FigureSpec(
                "lag_profiles.png",
                "Gradient norm against lag" + (" — all models" if many else ""),
                _lag_caption(with_lp),
                lambda: analysis_figure(LAG_PROFILES)({"analyses": with_lp}),
                interactive=lambda: I.lag_profiles(with_lp),
                source=(LAG_PROFILES, {"analyses": with_lp}),
            )
        )
    used = {LAG_PROFILES}
    for a in per_analysis:
        name = str(a.get("name", ""))
        base = unique_slug(name, used)
        caps = _captions(a)
        for kind in analysis_figures(a):
            inter = I.BUILDERS.get(kind)
            specs.append(
                FigureSpec(
                    f"{base}_{kind}.png",
                    f"{name}: {_TITLES[kind]}",
                    caps[kind],
                    (lambda kind=kind, a=a: analysis_figure(kind)(a)),
                    name,
                    None if inter is None else (lambda inter=inter, a=a: inter(a)),
                    (kind, a),
                )
            )
    if report.get("command") == "sweep" and items:
        specs += _sweep_specs(report)
    if report.get("training"):
        from gradscope.report import training

        specs += training.figure_specs(report)
    return specs


def _sweep_specs(report: Mapping) -> list[FigureSpec]:
    """The two heat-maps of a sweep (`gradscope.report.sweep.sweep_figures`)."""
    from gradscope.report.sweep import SWEEP_FIGURE_FILES, sweep_figures

    thr = (report.get("config") or {}).get("threshold", -3.0)
    titles = ("Sweep: largest Lyapunov exponent by gain and cell", "Sweep: gradient horizon by length and cell")
    caps = (
        "The largest Lyapunov exponent λ_max (nats per step), mean over lengths and seeds, for each cell (rows) "
        "and recurrent gain (columns; 'no gain' for cells without a gain option). λ_max < 0: perturbations "
        "contract and gradients vanish at the rate λ_max per step; λ_max > 0: they grow (exploding); "
        "λ_max ≈ 0 is the edge of chaos. Grey cells were not part of the grid.",
        f"The gradient horizon (steps): the largest lag at which log10 ‖∂S_T/∂S_k‖₂ stays ≥ {thr:g}, mean over "
        "seeds, for each cell and gain (rows) and sequence length T (columns). A horizon equal to T means the "
        "gradient reaches the first step; a horizon that stays fixed as T grows is a memory limit of the model.",
    )
    return [
        FigureSpec(f, t, c, (lambda i=i: sweep_figures(dict(report))[i]))
        for i, (f, t, c) in enumerate(zip(SWEEP_FIGURE_FILES, titles, caps))
    ]
