"""The report that explains: Diagnosis, family-specific captions, per-layer and per-unit views, the
figure glitches (lag-1 round-off, legends, integer ticks) and the PNG fallback without Plotly.

Independent truths: per-unit time constants of an IndRNN whose relu never switches off are −1/ln|u_i|
(closed form); per-layer curves of a stack equal the per-layer diagonal blocks of jax.jacrev of the
unrolled map; the LSTM's lag-1 remainder is zero in exact arithmetic."""

import dataclasses
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradscope as gs
from gradscope.analysis import analyse
from gradscope.report import build_report, figure_specs, interactive, render_html, render_markdown, views
from gradscope.report import figures as F
from gradscope.report.diagnosis import diagnose
from gradscope.report.family import family_of
from tests._report_data import analyses

T = 24


@pytest.fixture(scope="module")
def small():
    """A small compare: tanh RNN, GRU and an IndRNN whose relu never switches off (u in (0.5, 1.05))."""
    out = {}
    xs = jax.random.uniform(jax.random.key(1), (2, T, 3))  # positive inputs
    for i, name in enumerate(["rnn-tanh", "gru", "indrnn"]):
        cell = gs.cells.make(name, 3, 6, key=jax.random.key(i))
        if name == "indrnn":  # positive weights and bias: pre-activations > 0, relu' = 1 at every step
            u = jnp.array([0.5, 0.7, 0.9, 0.95, 0.99, 1.05], cell.weight_ih.dtype)
            cell = dataclasses.replace(
                cell, weight_ih=jnp.abs(cell.weight_ih), weight_hh_diag=u, bias=cell.bias * 0 + 0.1
            )
        out[name] = analyse(cell, xs, name=name).to_dict()
    return out


@pytest.mark.slow  # compiles three small analyses (~30 s on 2 busy cores)
def test_the_record_names_the_family(small):
    fams = {n: family_of(a) for n, a in small.items()}
    assert (fams["rnn-tanh"].kind, fams["rnn-tanh"].family, fams["rnn-tanh"].activation) == ("dense", "elman", "tanh")
    assert (fams["gru"].kind, fams["gru"].family) == ("gated", "gru")
    assert (fams["indrnn"].kind, fams["indrnn"].relu) == ("diagonal", True)
    assert small["indrnn"]["model"]["parts"][0]["structure"] == "diagonal"


@pytest.mark.slow  # compiles three small analyses (~30 s on 2 busy cores)
def test_captions_are_specific_to_the_family(small):
    report = build_report(list(small.values()), command="compare")
    caps = {s.filename: s.caption for s in figure_specs(report)}
    for fname, cap in caps.items():
        if fname.startswith(("rnn-tanh_", "indrnn_")):
            assert "forget gate" not in cap.lower() and "highway" not in cap.lower(), fname  # no gates here
    assert "diag(φ′)·W" in caps["rnn-tanh_singular_values.png"] and "tanh′ ≤ 1" in caps["rnn-tanh_lyapunov.png"]
    assert "1 − z" in caps["gru_singular_values.png"] and "gate" in caps["gru_gates.png"]
    assert "per-unit" in caps["indrnn_lyapunov.png"] and "relu" in caps["indrnn_gates.png"]
    assert "indrnn_units.png" in caps and "rnn-tanh_units.png" not in caps
    lstm = analyses()[1]
    caps = {s.filename: s.caption for s in figure_specs(build_report([lstm], command="analyse"))}
    assert "forget gate" in caps["lstm_gates.png"] and "round-off" in caps["lstm_paths.png"]


@pytest.mark.slow  # compiles three small analyses (~30 s on 2 busy cores)
def test_per_unit_time_constants_are_minus_one_over_log_u(small):
    a = small["indrnn"]
    u = np.array([0.5, 0.7, 0.9, 0.95, 0.99, 1.05])
    assert a["gates"]["relu"]["inactive_fraction"] == 0.0  # the premise: relu' = 1 everywhere
    got = views.unit_time_constants(a)
    assert got is not None
    with np.errstate(divide="ignore"):
        want = np.sort(np.where(u >= 1, np.inf, -1.0 / np.log(u)))[::-1]
    np.testing.assert_allclose(got["tau"], want, rtol=1e-4)
    assert got["long"] == int(np.sum(want >= T)) == 2 and got["cut"] == 0  # 0.99 (τ ≈ 99.5) and 1.05 (∞): ≥ T
    d = diagnose(a)
    assert any("2 of 6 units (33%)" in x and f"T = {T}" in x for x in d.details)


@pytest.mark.slow  # compiles three small analyses (~30 s on 2 busy cores)
def test_per_layer_curves_match_jacrev_of_the_unrolled_stack():
    from gradscope.nets import Stack

    key = jax.random.key(3)
    l0 = gs.cells.make("rnn-tanh", 2, 4, key=key, gain=1.2)
    l1 = gs.cells.make("rnn-tanh", 4, 4, key=jax.random.key(4), gain=0.3)  # the layer that loses the gradient
    net = Stack((l0, l1))
    xs = jax.random.normal(jax.random.key(5), (12, 2))
    a = analyse(net, xs, name="stack").to_dict()
    curves = views.layer_curves(a)
    assert [c["layer"] for c in curves] == ["layer0", "layer1"]

    def run(s, k):
        state = (s[:4], s[4:])
        for t in range(k, xs.shape[0]):
            state, _ = net.step(xs[t], state, t)
        return jnp.concatenate(state)

    states = [jnp.zeros(8)]
    for t in range(xs.shape[0]):
        st, _ = net.step(xs[t], (states[-1][:4], states[-1][4:]), t)
        states.append(jnp.concatenate(st))
    for c, sl in zip(curves, (slice(0, 4), slice(4, 8))):
        want = []
        for lag in c["lag"]:
            k = int(xs.shape[0] - lag)
            J = jax.jacrev(run)(states[k], k)
            want.append(np.log10(np.linalg.norm(np.asarray(J, np.float64)[sl, sl], 2)))
        np.testing.assert_allclose(c["log10"], want, atol=2e-4)
    assert curves[1]["decay_per_step"] < curves[0]["decay_per_step"]
    d = diagnose(a)
    assert any("layer1 loses the gradient fastest" in x for x in d.details)
    assert "stack_layers.png" in {s.filename for s in figure_specs(build_report([a], command="analyse"))}


@pytest.mark.slow  # compiles three small analyses (~30 s on 2 busy cores)
def test_every_analysis_has_its_diagnosis_with_its_numbers(small):
    report = build_report(list(small.values()), command="compare")
    html, md = render_html(report), render_markdown(report)
    for a in report["analyses"]:
        s = a["summary"]
        m = re.search(rf'<div class="diag [a-z]*" id="diagnosis-{re.escape(a["name"])}">(.*?)</div>', html, re.S)
        assert m, a["name"]
        text = m.group(1)
        assert s["verdict"] in text
        assert f"{s['decay_per_step']:+.3g}" in text and f"{s['decay_per_step_stderr']:.2g}" in text
        assert f"{s['lyapunov_max']:+.3g}" in text
        horizon = f"horizon ≥ {T} steps" if s["horizon_censored"] else f"horizon {s['horizon']} of {T} steps"
        assert horizon in text
        for f in a["findings"]:
            assert f["id"] in text
        assert "Try:" in text
        assert f"**`{a['name']}`**" in md
    assert html.index('id="diagnosis"') < html.index('id="summary"')  # the Diagnosis opens the report


def test_diagnosis_of_overflow_zero_gradient_and_inconclusive():
    base = {"name": "x", "length": 5000, "model": {"cell": "rnn-relu"}, "findings": []}
    s = {"verdict": "exploding", "overflow_step": 781, "lyapunov_max": 0.5, "lyapunov_max_stderr": 0.01}
    d = diagnose(base | {"summary": s})
    assert "overflowed" in d.sentence and "step 781 of 5000" in d.sentence and "gain" in d.tries[0]
    d = diagnose(base | {"summary": {"verdict": "vanishing", "zero_lag": 3, "horizon": 2, "horizon_threshold": -3}})
    assert "exactly zero from lag 3" in d.sentence
    why = "T = 12 is too short"
    d = diagnose(base | {"summary": {"verdict": "inconclusive", "verdict_reason": why, "decay_per_step": -0.01}})
    assert any(why in x for x in d.details) and any("--length" in t for t in d.tries)


def test_lstm_lag1_roundoff_is_not_drawn():
    a = analyses()[1]  # LSTM, float32
    p = a["paths"]
    total, rem = np.asarray(p["total_log10_spectral"], float), np.asarray(p["remainder_log10_spectral"], float)
    # at lag 1 (last entry) the remainder is round-off (~eps of the total, not a model property): the record
    # holds null there (gradscope.analysis.summary.remainder_resolved), numbers well above it elsewhere
    assert np.isnan(rem[-1]) and np.all(rem[:-1] > total[:-1] - 4)
    (ax,) = [ax for ax in F.paths(a).axes if ax.axison]
    (line,) = [ln for ln in ax.get_lines() if str(ln.get_label()).startswith("remainder")]
    x, y = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
    assert np.isnan(y[x == 1]).all() and np.isfinite(y[x > 1]).all()
    assert "round-off at lag 1" in str(line.get_label())
    spec = interactive.paths(a)
    (trace,) = [t for t in spec["data"] if t["name"].startswith("remainder")]
    assert trace["y"][-1] is None and trace["x"][-1] == 1


def test_legend_names_only_drawn_series_and_ticks_are_integers():
    a, b = analyses()
    b["lag_profile"]["log10_spectral"] = [None] * len(b["lag_profile"]["lag"])  # nothing to draw
    a["lag_profile"] = {k: v[-3:] for k, v in a["lag_profile"].items() if k in ("k", "lag", "log10_spectral")}
    a["lag_profile"]["lag"] = [3, 2, 1]
    fig = F.lag_profiles([a, b], bounds=False)
    (ax,) = [ax for ax in fig.axes if ax.axison]
    leg = ax.get_legend()
    assert leg is not None
    labels = [t.get_text() for t in leg.get_texts()]
    assert any(lab.startswith(a["name"]) for lab in labels)
    assert not any(lab.startswith(b["name"] + " (") for lab in labels)
    fig.canvas.draw()
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)


@pytest.mark.slow  # compiles three small analyses (~30 s on 2 busy cores)
def test_without_plotly_the_page_falls_back_to_png(small, monkeypatch):
    report = build_report(list(small.values()), command="compare")
    monkeypatch.setattr(interactive, "available", lambda: False)
    html = render_html(report)
    assert "<script" not in html and "plotly package is not installed" in html
    assert len(re.findall(r'<img [^>]*src="data:image/png;base64,', html)) == len(figure_specs(report))


@pytest.mark.slow  # compiles three small analyses (~30 s on 2 busy cores)
def test_toc_anchors_resolve_in_the_markup(small):
    html = render_html(build_report(list(small.values()), command="compare"))
    ids = set(re.findall(r'\bid="([^"]+)"', html))
    hrefs = re.findall(r'href="#([^"]+)"', html)
    assert hrefs and set(hrefs) <= ids
    assert {"diagnosis", "summary", "comparison", "configuration"} <= set(hrefs)
    for s in figure_specs(build_report(list(small.values()), command="compare")):
        assert s.filename.removesuffix(".png") in hrefs
    assert math.isfinite(len(html))
