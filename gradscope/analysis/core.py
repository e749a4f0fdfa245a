"""`analyse`: the one place that wires the engine's stages into an immutable `Analysis`.

The summary metrics and the verdict come from `gradscope.analysis.summary`.
``sensitivity=True`` adds the parameter sensitivity log10 ‖∂S_t/∂θ‖_F per parameter leaf (Zucchet & Orvieto
2024; `gradscope.engine.parameter_sensitivity`). Every analysis carries its ``findings``: the rules of
`gradscope.analysis.findings` (curse of memory, chaos, dead units, forget gate) run on its numbers.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from gradscope import engine
from gradscope._errors import ConfigError, check_bool, check_number
from gradscope.analysis import summary as sm
from gradscope.analysis.findings import Finding, evaluate
from gradscope.analysis.plan import plan_analysis
from gradscope.analysis.verdict import thresholds
from gradscope.engine._prep import MATMUL_PRECISION, is_diagonal, matmul_precision, prepare
from gradscope.engine.paths import has_direct_path

SCHEMA = "gradscope.analysis/1"


@dataclasses.dataclass(frozen=True)
class Analysis:
    """Everything `analyse` computed for one model and input batch; immutable; ``to_dict()`` for JSON."""

    name: str
    model: dict
    blocks: tuple
    block_sizes: tuple
    length: int
    batch: int | None
    dtype: str
    method: str
    summary: dict
    lag_profile: Any = None
    triangle: Any = None
    lyapunov: Any = None
    spectra: Any = None
    step_spectra: Any = None
    bound: dict | None = None
    paths: Any = None
    gates: dict | None = None
    attribution: Any = None
    matmul: str = MATMUL_PRECISION  # the matmul precision it was computed with (engine._prep.matmul_precision)
    sensitivity: Any = None  # engine.ParameterSensitivity (analyse(..., sensitivity=True))
    findings: tuple[Finding, ...] = ()  # gradscope.analysis.findings, evaluated by analyse

    def to_dict(self) -> dict:
        """JSON-ready record: batch curves are log10 of the mean norm over the sequences (`_batch_mean`),
        rates (Lyapunov exponents, growth slopes) plain means; NaN and −inf are written as None."""
        out = self._record(light=False)
        out["findings"] = [f.to_dict() for f in self.findings]
        return out

    def _repr_html_(self) -> str:
        """Notebook display: the verdict, the summary table and the lag profile as an inline PNG
        (`gradscope.report.notebook.analysis_html`)."""
        from gradscope.report.notebook import analysis_html  # presentation: imported only when shown

        return analysis_html(self)

    def plot(self, kind: str = "lag"):
        """A matplotlib ``Figure`` of this analysis: ``kind`` is "lag", "spectra", "lyapunov", "paths" or
        "gates" (`gradscope.report.notebook.plot`; a section the analysis lacks raises `ConfigError` naming
        the analyse option that computes it)."""
        from gradscope.report.notebook import plot

        return plot(self, kind)

    def _record(self, light: bool) -> dict:
        """`to_dict` without the findings; ``light`` leaves out what no finding rule reads (the lag-profile,
        triangle, spectra, paths and attribution sections), which is all the rules need."""
        b = self.batch is not None
        out: dict[str, Any] = {
            "schema": SCHEMA,
            "name": self.name,
            "model": self.model,
            "blocks": list(self.blocks),
            "block_sizes": [int(n) for n in self.block_sizes],
            "length": self.length,
            "batch": self.batch,
            "precision": {"dtype": self.dtype, "matmul": self.matmul},
            "method": self.method,
            "summary": {k: (sm.json_num(v) if isinstance(v, float) else v) for k, v in self.summary.items()},
            "verdict_rule": thresholds(),
        }
        if self.gates is not None:
            out["gates"] = self.gates
        if self.sensitivity is not None:
            out["sensitivity"] = sm.sensitivity_dict(self.sensitivity, b)
        if self.bound is not None:
            out["bound"] = self.bound
        if light:
            return out
        lp = self.lag_profile
        if lp is not None:
            d = {"k": list(range(self.length)), "lag": list(range(self.length, 0, -1))}
            if self.method == "probe":
                d |= {
                    "log10_frobenius": sm.json_list(sm.batch_mean(lp.log10_frobenius, b)),
                    "log10_frobenius_stderr": sm.json_list(sm.batch_mean(lp.log10_frobenius_stderr, b)),
                    "log10_spectral_lower": sm.json_list(sm.batch_mean(lp.log10_spectral_lower, b)),
                    "probes": lp.probes,
                }
            else:
                d |= {
                    "log10_spectral": sm.json_list(sm.batch_mean(lp.log10_spectral, b)),
                    "log10_frobenius": sm.json_list(sm.batch_mean(lp.log10_frobenius, b)),
                    "blocks": {
                        n: {k: sm.json_list(sm.batch_mean(v, b)) for k, v in bl.items()} for n, bl in lp.blocks.items()
                    },
                }
                if b:
                    d["log10_spectral_per_sequence"] = sm.json_list(lp.log10_spectral)
            out["lag_profile"] = d
        if self.triangle is not None:
            out["triangle"] = {"log10_frobenius": sm.json_list(sm.batch_mean(self.triangle.log10_frobenius, b))}
        if self.lyapunov is not None:
            # exponents are rates (nats per step), not log-norms: the batch aggregate is their plain mean
            out["lyapunov"] = {
                "exponents": sm.json_list(sm.plain_mean(self.lyapunov.exponents, b)),
                "trace": sm.json_list(sm.plain_mean(self.lyapunov.trace, b)[:: max(1, self.length // 200)]),
                "warmup": self.lyapunov.warmup,
                "units": "nats per step",
            }
        if self.spectra is not None:
            sv, note = sm.resolved(self.spectra.log10_sv, dense=_dense(self.model))
            out["spectra"] = {
                "k": [int(k) for k in self.spectra.ks],
                "lag": [int(self.length - k) for k in self.spectra.ks],
                "log10_singular_values": sm.json_list(sm.batch_mean(sv, b)),
                "resolution": note,
            } | sm.per_sequence(sv, b)
        if self.step_spectra is not None:
            ts, sv = self.step_spectra
            sv, note = sm.resolved(sv, dense=_dense(self.model))
            out["step_spectra"] = {
                "t": [int(t) for t in ts],
                "log10_singular_values": sm.json_list(sm.batch_mean(sv, b)),
                "resolution": note,
            } | sm.per_sequence(sv, b)
        if self.paths is not None:
            p = self.paths
            curves = {f.name: sm.batch_mean(getattr(p, f.name), b) for f in dataclasses.fields(p) if f.name != "block"}
            note = ""
            for kind in ("spectral", "frobenius"):
                name = f"remainder_log10_{kind}"
                curves[name], note = sm.remainder_resolved(
                    curves[f"total_log10_{kind}"], curves[name], p.total_log10_spectral.dtype
                )
            out["paths"] = {"block": p.block, "resolution": note} | {n: sm.json_list(c) for n, c in curves.items()}
        if self.attribution is not None:
            a = self.attribution
            out["attribution"] = {
                "log10_by_lag": sm.json_list(sm.batch_mean(a.log10_by_lag, b)),
                "log10_total": sm.json_list(sm.batch_mean(a.log10_total, b)),
                "log10_block_time": sm.json_list(sm.batch_mean(a.log10_block_time, b)),
                "blocks": list(a.blocks),
            }
        return out


def _dense(model: dict) -> bool:
    """Whether the analysed model's spectra come from an SVD (not the exact diagonal products)."""
    return (model or {}).get("structure") not in ("diagonal", "complex-diagonal")


def with_findings(a: Analysis) -> Analysis:
    """``a`` with its ``findings`` evaluated by the rules of `gradscope.analysis.findings`."""
    return dataclasses.replace(a, findings=evaluate(a._record(light=True)))


def _describe(model) -> dict:
    """The model's ``describe()`` plus ``parts``: per leaf cell its state-block ``prefix``, registry ``cell``,
    ``family`` (`gradscope.cells.entry`; "custom" if unregistered), Jacobian ``structure``, whether it has a
    gated direct path (``gated``) and its ``activation`` — what the report's captions and views read."""
    d = getattr(model, "describe", None)
    out = d() if callable(d) else None
    out = dict(out) if isinstance(out, dict) else {"cell": type(model).__name__}
    return out | {"parts": [_part(p, c) for p, c in getattr(model, "named_cells", lambda: (("", model),))()]}


def _part(prefix: str, cell) -> dict:
    from gradscope import cells
    from gradscope.engine._prep import structure

    name = str(getattr(cell, "name", "") or type(cell).__name__)
    act = getattr(cell, "activation", None)
    return {
        "prefix": prefix,
        "cell": name,
        "family": cells.entry(name).family if name in cells.names() else "custom",
        "structure": structure(cell),
        "gated": has_direct_path(cell),
        "activation": act if isinstance(act, str) else None,
    }


def analyse(
    model,
    xs,
    state0=None,
    *,
    name: str | None = None,
    mode: str = "exact",
    threshold: float = -3.0,
    lyapunov: bool = True,
    lyapunov_k: int | None = None,
    warmup: int = 0,
    triangle: bool = False,
    spectra: bool = True,
    paths: bool = True,
    gates: bool = True,
    attribution: bool = False,
    sensitivity: bool = False,
    readout: str = "every",
    probes: int = 16,
    key=None,
) -> Analysis:
    """Analyse the gradient flow of ``model`` along ``xs`` (``(T, m)`` or ``(B, T, m)``).

    ``mode="exact"`` uses dense Jacobian products; ``mode="probe"`` matrix-free random probes with error
    bars (state sizes in the thousands). Stages can be switched off; ``triangle`` and ``attribution``
    are off by default (O(T²)), and so is ``sensitivity`` (log10 ‖∂S_t/∂θ‖_F per parameter leaf by forward
    propagation, O(d²·|θ|) per step). The result carries its ``findings`` (`gradscope.analysis.findings`).
    """
    if mode not in ("exact", "probe"):
        raise ConfigError(f"mode={mode!r} is not allowed: use 'exact' or 'probe'")
    check_number("threshold", threshold)  # a log10 norm, such as -3
    check_bool("sensitivity", sensitivity)
    # before any rollout: refuse, in one line, an analysis that would not fit (gradscope.analysis.plan)
    plan_analysis(
        model, xs, name=name, probes=probes, mode=mode, lyapunov=lyapunov, triangle=triangle, spectra=spectra,
        paths=paths, attribution=attribution, sensitivity=sensitivity,
    )  # fmt: skip
    steps = None
    if mode == "exact" and not is_diagonal(model) and engine.materialise_fits(model, xs):
        # one compiled program per model: the rollout and every step Jacobian; the dense stages below then
        # read arrays only, so their compiled programs are shared by every model of one state layout
        steps = engine.trajectory_steps(model, xs, state0, direct=paths and has_direct_path(model))
        pxs, S, batched = steps.xs, steps.S, steps.batched
    else:
        pxs, S, batched = prepare(model, xs, state0)  # validates once; the stages re-run the cheap rollout
    T, d = int(pxs.shape[-2]), int(S.shape[-1])
    B = int(pxs.shape[0]) if batched else None
    res: dict[str, Any] = {}
    if steps is not None:
        lp = engine.lag_profile_of(model, steps)
        per_seq = lp.log10_spectral
    elif mode == "exact":
        lp = engine.lag_profile(model, xs, state0)
        per_seq = lp.log10_spectral
    else:
        lp = engine.probe_lag_profile(model, xs, state0, probes=probes, key=key)
        per_seq = lp.log10_frobenius
    curve = sm.batch_mean(per_seq, batched)
    summary = sm.summarise(curve, threshold)
    res["lag_profile"] = lp
    if lyapunov:
        # diagonal models get the full spectrum for free; dense ones the top 16 by default
        k = (d if is_diagonal(model) else min(d, 16)) if lyapunov_k is None else lyapunov_k
        if steps is not None:
            ly = engine.lyapunov_spectrum_of(model, steps, k=k, warmup=warmup)
        else:
            ly = engine.lyapunov_spectrum(model, xs, state0, k=k, warmup=warmup)
        res["lyapunov"] = ly
        summary["lyapunov_max"] = float(np.mean(np.asarray(ly.exponents, np.float64)[..., 0]))  # arithmetic mean
    else:
        summary["lyapunov_max"] = summary["lyapunov_max_stderr"] = float("nan")
    if triangle:
        res["triangle"] = engine.triangle_of(model, steps) if steps is not None else engine.triangle(model, xs, state0)
    if spectra and mode == "exact":
        ts = np.unique(np.linspace(0, T - 1, min(T, 16)).astype(int))
        if steps is not None:
            res["spectra"] = engine.singular_values_of(model, steps, top_k=min(d, 32))
            res["step_spectra"] = engine.step_singular_values_of(model, steps, steps_at=ts)
        else:
            res["spectra"] = engine.singular_values(model, xs, state0, top_k=min(d, 32))
            res["step_spectra"] = engine.step_singular_values(model, xs, state0, steps=ts)
    res["bound"] = engine.bound(model)
    if paths and has_direct_path(model) and mode == "exact":
        ps = engine.path_split_of(model, steps) if steps is not None else engine.path_split(model, xs, state0)
        res["paths"] = ps
        summary["highway_log10_max_lag"] = float(sm.batch_mean(ps.highway_log10_spectral, batched)[0])
        summary["remainder_log10_max_lag"] = float(sm.batch_mean(ps.remainder_log10_frobenius, batched)[0])
    if gates:
        from gradscope._rollout import rollout

        traj = steps.trajectory if steps is not None else rollout(model, xs, state0)
        res["gates"] = engine.gate_statistics(model, traj)
    if attribution:
        res["attribution"] = engine.attribution(model, xs, state0, readout=readout, key=key)
    if sensitivity:
        res["sensitivity"] = engine.parameter_sensitivity(model, xs, state0)
    summary["finite"] = bool(np.isfinite(curve).all())
    summary = sm.diagnose(
        summary,
        curve,
        per_sequence=per_seq,
        lyapunov=res.get("lyapunov"),
        states=S,
        gates=res.get("gates"),
        warmup=warmup,
    )
    return with_findings(
        Analysis(
            name=name or getattr(model, "name", "") or type(model).__name__,
            model=_describe(model),
            blocks=tuple(model.blocks),
            block_sizes=tuple(int(n) for n in model.block_sizes),
            length=T,
            batch=B,
            dtype=str(S.dtype),
            method=mode,
            summary=summary,
            matmul=matmul_precision(),
            **res,
        )
    )
