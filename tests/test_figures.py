"""Figures of saved analyses: real analyses of tiny models; the plotted data must be the dict's data,
every axes titled and labelled with units, gaps (None) drawn as NaN without crashing."""

import math

import numpy as np
import pytest
from matplotlib.figure import Figure

from gradscope._errors import ConfigError
from gradscope.report import figures as F
from tests._report_data import analyses


def _visible_axes(fig):
    # colour-bar axes are labelled through the colour bar, not checked here
    return [ax for ax in fig.axes if ax.axison and ax.get_label() != "<colorbar>"]


def _check_labelled(fig, *, legend=True):
    assert isinstance(fig, Figure)
    axes = _visible_axes(fig)
    assert axes
    for ax in axes:
        assert ax.get_title() or (fig._suptitle is not None and fig._suptitle.get_text())
        assert ax.get_xlabel() and ax.get_ylabel()
    if legend:
        assert any(ax.get_legend() is not None for ax in axes)
    fig.canvas.draw()  # renders without error (Agg)


@pytest.fixture(scope="module")
def data():
    return {a["name"]: a for a in analyses()}


def test_lag_profiles_plots_the_data_and_the_bound(data):
    items = [data["rnn-tanh"], data["lstm"]]
    fig = F.lag_profiles(items)
    _check_labelled(fig)
    (ax,) = _visible_axes(fig)
    assert "lag (steps)" in ax.get_xlabel() and "log10 norm" in ax.get_ylabel()
    assert ax.get_title()
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    for a in items:
        (ln,) = [ln for lab, ln in lines.items() if lab.startswith(a["name"] + " (")]
        lag = np.asarray(a["lag_profile"]["lag"], float)
        y = np.asarray(a["lag_profile"]["log10_spectral"], float)
        order = np.argsort(lag)
        np.testing.assert_allclose(ln.get_xdata(), lag[order])
        np.testing.assert_allclose(ln.get_ydata(), y[order])
        assert a["summary"]["verdict"] in ln.get_label()
    # the Elman analysis carries Pascanu's bound: dashed, same colour, slope log10_per_step
    b = data["rnn-tanh"]["bound"]
    (bl,) = [ln for lab, ln in lines.items() if lab.startswith("rnn-tanh: bound")]
    assert bl.get_linestyle() == "--"
    assert bl.get_color() == lines[next(k for k in lines if k.startswith("rnn-tanh ("))].get_color()
    x, yb = bl.get_xdata(), bl.get_ydata()
    np.testing.assert_allclose(yb, x * b["log10_per_step"], rtol=1e-12, atol=1e-12)
    # the measured curve lies below its bound (independent check of the data the figure shows)
    lag = np.asarray(data["rnn-tanh"]["lag_profile"]["lag"], float)
    y = np.asarray(data["rnn-tanh"]["lag_profile"]["log10_spectral"], float)
    assert np.all(y <= lag * b["log10_per_step"] + 1e-5)
    # threshold line at the horizon threshold
    thr = data["lstm"]["summary"]["horizon_threshold"]
    assert any(lab.startswith("horizon threshold") and np.allclose(ln.get_ydata(), thr) for lab, ln in lines.items())


def test_single_analysis_and_bad_input(data):
    fig = F.lag_profiles(data["lstm"])  # a single dict is accepted
    _check_labelled(fig)
    assert "lstm" in _visible_axes(fig)[0].get_title()
    with pytest.raises(ConfigError, match="analyses"):
        F.lag_profiles([])
    with pytest.raises(ConfigError, match="paths"):
        F.paths(data["rnn-tanh"])  # Elman has no direct path
    with pytest.raises(ConfigError, match="attribution"):
        F.attribution(data["rnn-tanh"])


def test_triangle_heatmap(data):
    a = data["lstm"]
    fig = F.triangle(a)
    _check_labelled(fig, legend=False)
    ax = _visible_axes(fig)[0]
    (im,) = ax.get_images()
    assert im.get_cmap().name.startswith("viridis")
    M = np.asarray(a["triangle"]["log10_frobenius"], dtype=float)  # None -> nan
    shown = im.get_array()
    assert shown.shape == M.shape == (a["length"] + 1, a["length"] + 1)
    # above the diagonal is masked (undefined), the diagonal ∂S_t/∂S_t = I has ‖I‖_F = sqrt(d)
    iu = np.triu_indices_from(M, k=1)
    assert np.all(np.ma.getmaskarray(shown)[iu])
    d = sum(a["block_sizes"])
    np.testing.assert_allclose(np.diag(shown), 0.5 * math.log10(d), atol=1e-5)
    assert "target step" in ax.get_ylabel() and "source step" in ax.get_xlabel()
    cbar_axes = [x for x in fig.axes if x is not ax]
    assert cbar_axes and "log10 norm" in cbar_axes[0].get_ylabel()


def test_spectra_and_lyapunov(data):
    for a in data.values():
        fig = F.singular_values(a)
        _check_labelled(fig)
        ax1, ax2 = _visible_axes(fig)
        sp = a["spectra"]
        order = np.argsort(sp["lag"])
        top = [ln for ln in ax1.get_lines() if "largest" in str(ln.get_label())][0]
        drawn = np.asarray(top.get_ydata(), float)
        if a["batch"] is None:  # one sequence: its own values
            np.testing.assert_allclose(drawn, np.asarray(sp["log10_singular_values"], float)[order, 0])
        else:  # a batch: the per-sequence median, never the batch mean (a value no sequence has)
            med, lo, hi = (np.asarray(sp[f"log10_singular_values_{k}"], float) for k in ("median", "min", "max"))
            np.testing.assert_allclose(drawn, med[order, 0])
            assert a["batch"] == 2  # the median of two sequences is the midpoint of their min and max
            np.testing.assert_allclose(med, (lo + hi) / 2, rtol=1e-12, atol=1e-12)  # None (a zero σ) in both
            ok = np.isfinite(med)
            assert ok.any() and np.all(lo[ok] <= med[ok]) and np.all(med[ok] <= hi[ok])
            # log10 of the mean norm (the old curve) lies above the mean of the logs (Jensen), strictly when they differ
            mean = np.asarray(sp["log10_singular_values"], float)[ok]
            assert np.all(mean >= med[ok] - 1e-9) and np.any(mean > med[ok] + 1e-6)
            assert any("min–max" in lab for lab in ax1.get_legend_handles_labels()[1])
        assert "lag (steps)" in ax1.get_xlabel() and "log10 norm" in ax1.get_ylabel()
        fig = F.lyapunov(a)
        _check_labelled(fig)
        ax1, ax2 = _visible_axes(fig)
        assert "nats per step" in ax1.get_ylabel() and "nats per step" in ax2.get_ylabel()
        pts = [ln for ln in ax1.get_lines() if ln.get_marker() == "o"][0]
        np.testing.assert_allclose(pts.get_ydata(), a["lyapunov"]["exponents"])
        # the exponents are sorted descending and λ₁ is the summary's lyapunov_max
        assert np.all(np.diff(pts.get_ydata()) <= 1e-12)
        if a["batch"] is None:  # batched: to_dict and summary average the batch differently
            assert pts.get_ydata()[0] == pytest.approx(a["summary"]["lyapunov_max"], rel=1e-6)


def test_paths_attribution_gates(data):
    a = data["lstm"]
    fig = F.paths(a)
    _check_labelled(fig)
    (ax,) = _visible_axes(fig)
    labels = [ln.get_label() for ln in ax.get_lines()]
    assert any("highway" in s for s in labels) and any("remainder" in s for s in labels)
    assert any(s.startswith("total") for s in labels)
    hw = [ln for ln in ax.get_lines() if "highway" in ln.get_label()][0]
    # entry k is lag T − k; the longest lag's value is the summary's highway metric
    i = int(np.argmax(hw.get_xdata()))
    assert hw.get_xdata()[i] == a["length"]
    assert hw.get_ydata()[i] == pytest.approx(a["summary"]["highway_log10_max_lag"])

    fig = F.attribution(a)
    _check_labelled(fig)
    ax1, ax2 = _visible_axes(fig)
    ticks = [t.get_text() for t in ax2.get_yticklabels()]
    assert ticks == list(a["attribution"]["blocks"]) == ["h", "c"]
    (im,) = ax2.get_images()
    assert im.get_array().shape == (2, a["length"] + 1)
    line = ax1.get_lines()[0]
    np.testing.assert_allclose(line.get_ydata(), np.asarray(a["attribution"]["log10_by_lag"], float))

    fig = F.gates(a)
    _check_labelled(fig)
    titles = [ax.get_title() for ax in _visible_axes(fig)]
    assert any(t.startswith("gate f") and "open" in t for t in titles)
    # the bars are the histogram normalised to fractions
    ax = [ax for ax in _visible_axes(fig) if ax.get_title().startswith("gate i")][0]
    h = np.asarray(a["gates"]["i"]["histogram"], float)
    (st,) = [p for p in ax.patches]
    np.testing.assert_allclose(st.get_data().values, h / h.sum())


def test_relu_and_gateless(data):
    fig = F.gates({"name": "relu-net", "gates": {"relu": {"inactive_fraction": 0.25, "dead_fraction": 0.0}}})
    _check_labelled(fig)
    bars = [p.get_height() for p in _visible_axes(fig)[0].patches]
    assert bars == [0.25, 0.0]
    fig = F.gates({"name": "plain", "gates": {}})  # no gates: a labelled, empty figure
    assert isinstance(fig, Figure)
    fig.canvas.draw()


def test_none_values_are_gaps():
    """Hand-made dict (the only one): None = NaN or −inf in lists must plot as gaps, never crash."""
    T = 6
    a = {
        "name": "gappy",
        "length": T,
        "blocks": ["h"],
        "summary": {"verdict": "vanishing", "horizon_threshold": -3.0},
        "lag_profile": {
            "k": list(range(T)),
            "lag": list(range(T, 0, -1)),
            "log10_spectral": [None, None, -5.0, -3.0, None, -0.5],
        },
        "bound": {"kind": "pascanu", "log10_per_step": None},
        "triangle": {"log10_frobenius": [[None] * (T + 1) for _ in range(T + 1)]},
        "spectra": {"lag": [6, 3, 1], "log10_singular_values": [[None, None], [-2.0, None], [-0.1, -1.0]]},
        "step_spectra": {"t": [0, 1], "log10_singular_values": [[None, None], [None, None]]},
        "lyapunov": {"exponents": [None, -1.0], "trace": [[None, None], [-0.5, None]], "warmup": 0},
        "paths": {
            "block": "c",
            "total_log10_spectral": [None] * T,
            "highway_log10_spectral": [None] * T,
            "remainder_log10_spectral": [-1.0] * T,
        },
        "attribution": {
            "log10_by_lag": [None] * T,
            "log10_total": None,
            "log10_block_time": [[None]] * (T + 1),
            "blocks": ["h"],
        },
    }
    for fn in (F.lag_profiles, F.triangle, F.singular_values, F.lyapunov, F.paths, F.attribution):
        fig = fn(a)
        assert isinstance(fig, Figure)
        fig.canvas.draw()
    ax = _visible_axes(F.lag_profiles(a))[0]
    y = ax.get_lines()[0].get_ydata()  # sorted by lag 1..6: reversed
    assert np.isnan(y[[1, 4, 5]]).all() and np.isfinite(y[[0, 2, 3]]).all()
    assert not any("bound" in ln.get_label() for ln in ax.get_lines())  # bound None: not drawn


def test_the_written_out_tab10_colours_are_matplotlibs():
    """`_plot._CYCLE` is written out (so that the report's data side never imports matplotlib): it must be
    matplotlib's own tab10 table, value for value."""
    from matplotlib import colormaps

    from gradscope.report._plot import _CYCLE

    assert _CYCLE == tuple(tuple(float(v) for v in c[:3]) for c in colormaps["tab10"](np.arange(10)))
