"""An analysis in a notebook: ``Analysis._repr_html_()``, ``Analysis.plot(kind)`` and ``gs.report.write``.

Truth is the analysis's own arrays (NumPy float64 from the engine's results, not the report's JSON): the
plotted lines must hold those numbers; the inline image must decode to a PNG; the written report.json must
validate against the shipped JSON Schema (jsonschema).
"""

import base64
import json
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from matplotlib.figure import Figure

import gradscope as gs
import gradscope.report  # noqa: F401  (gs.report)

XS = jax.random.uniform(jax.random.key(1), (8, 2), dtype=jnp.float64)  # one sequence: no batch aggregate


@pytest.fixture(scope="module")
def lstm():
    cell = gs.cells.make("lstm", 2, 4, key=jax.random.key(0), dtype=jnp.float64)
    return gs.analyse(cell, XS, name="lstm")


@pytest.fixture(scope="module")
def bare():
    """An Elman RNN with every optional stage off."""
    cell = gs.cells.make("rnn-tanh", 2, 4, key=jax.random.key(0), dtype=jnp.float64)
    return gs.analyse(cell, XS, name="bare", lyapunov=False, spectra=False, paths=False, gates=False)


def test_repr_html_shows_verdict_summary_and_an_inline_png(lstm):
    html = lstm._repr_html_()
    verdict = lstm.summary["verdict"]
    assert f'<span class="verdict {verdict}">{verdict}</span>' in html
    assert "<code>lstm</code>" in html and "log10_norm_max_lag" in html and "horizon" in html
    assert f"{lstm.summary['horizon']}" in html
    (src,) = re.findall(r'<img [^>]*src="data:image/png;base64,([^"]+)"', html)
    png = base64.b64decode(src, validate=True)
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000
    import io

    from matplotlib.image import imread

    img = imread(io.BytesIO(png))
    assert img.ndim == 3 and img.shape[0] > 100 and float(img[..., :3].std()) > 0.05  # a drawn figure
    assert "<script" not in html  # nothing that a notebook would refuse to show


def test_plot_lag_line_is_the_analysis_lag_profile(lstm):
    fig = lstm.plot("lag")
    assert isinstance(fig, Figure)
    line = fig.axes[0].get_lines()[0]
    y = np.asarray(lstm.lag_profile.log10_spectral, np.float64)  # by k = 0..T-1; lag T - k
    np.testing.assert_allclose(line.get_xdata(), np.arange(1, lstm.length + 1))
    np.testing.assert_allclose(line.get_ydata(), y[::-1], rtol=0, atol=1e-12)
    assert lstm.plot().axes[0].get_lines()[0].get_ydata().tolist() == line.get_ydata().tolist()  # default kind


def test_plot_lyapunov_spectra_paths_gates_hold_the_numbers(lstm):
    ex = np.asarray(lstm.lyapunov.exponents, np.float64)
    fig = lstm.plot("lyapunov")
    spectrum = [ln for ln in fig.axes[0].get_lines() if len(ln.get_ydata()) == ex.size][0]
    np.testing.assert_allclose(spectrum.get_ydata(), ex, rtol=0, atol=1e-12)

    fig = lstm.plot("spectra")
    lag = lstm.length - np.asarray(lstm.spectra.ks)
    sv = np.asarray(lstm.spectra.log10_sv, np.float64)  # (lags, k)
    top = fig.axes[0].get_lines()[0]  # sigma_1 against the lag, sorted by lag
    order = np.argsort(lag)
    np.testing.assert_allclose(top.get_xdata(), lag[order])
    np.testing.assert_allclose(top.get_ydata(), sv[order, 0], rtol=0, atol=1e-12)

    fig = lstm.plot("paths")
    lines = {ln.get_label(): ln for ln in fig.axes[0].get_lines()}
    highway = np.asarray(lstm.paths.highway_log10_spectral, np.float64)
    got = lines["cell-state highway ∏ f"]
    np.testing.assert_allclose(got.get_ydata(), highway, rtol=0, atol=1e-12)
    np.testing.assert_allclose(got.get_xdata(), lstm.length - np.arange(lstm.length))

    fig = lstm.plot("gates")
    g = {k: v for k, v in lstm.gates.items() if isinstance(v, dict) and v.get("histogram") is not None}
    assert g, "an LSTM has gates"
    for ax, (name, v) in zip(fig.axes, g.items()):
        counts = np.asarray(v["histogram"], np.float64)
        (stairs,) = ax.patches
        np.testing.assert_allclose(stairs.get_data().values, counts / counts.sum())
        assert name in ax.get_title()


@pytest.mark.parametrize(
    "kind, option",
    [("spectra", "spectra=True"), ("lyapunov", "lyapunov=True"), ("paths", "paths=True"), ("gates", "gates=True")],
)
def test_a_kind_the_analysis_lacks_names_the_option(bare, kind, option):
    with pytest.raises(gs.GradscopeError, match=re.escape(option)) as e:
        bare.plot(kind)
    assert "bare" in str(e.value) and "\n" not in str(e.value)


def test_an_unknown_kind_lists_the_kinds(bare):
    with pytest.raises(gs.GradscopeError, match="lag, spectra, lyapunov, paths, gates"):
        bare.plot("triangle")


def test_bare_analysis_still_displays(bare):
    html = bare._repr_html_()
    assert "data:image/png;base64," in html and "bare" in html


def test_report_write_validates_against_the_schema(lstm, bare, tmp_path):
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((Path(gs.report.__file__).parent / "schema.json").read_text())
    out = gs.report.write([lstm, bare], tmp_path / "two", dpi=40)
    rep = json.loads((out / "report.json").read_text())
    jsonschema.validate(rep, schema)
    assert rep["command"] == "compare" and [a["name"] for a in rep["analyses"]] == ["lstm", "bare"]
    assert rep["analyses"][0]["summary"]["horizon"] == lstm.summary["horizon"]
    assert {"report.html", "summary.md", "figures"} <= {p.name for p in out.iterdir()}
    one = gs.report.write(bare, tmp_path / "one", config={"note": "from a notebook"}, dpi=40)
    rep1 = json.loads((one / "report.json").read_text())
    jsonschema.validate(rep1, schema)
    assert rep1["command"] == "analyse" and rep1["config"] == {"note": "from a notebook"}
    with pytest.raises(gs.report.ReportExistsError):
        gs.report.write(bare, one)
    with pytest.raises(gs.GradscopeError, match="Analysis"):
        gs.report.write(42, tmp_path / "bad")
    assert gs.report.write.__doc__ and "report.json" in gs.report.write.__doc__


@pytest.mark.slow  # a fresh interpreter imports JAX (~8 s)
def test_the_analysis_layer_does_not_import_the_report_layer():
    import subprocess
    import sys

    code = (
        "import sys, gradscope.analysis.core; "
        "assert not any(m.startswith('gradscope.report') for m in sys.modules), 'report imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(gs.__file__).parents[1])
