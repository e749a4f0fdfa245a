"""Report document and folder: build_report, the shipped JSON Schema, write_report (files, refusal to
overwrite, atomicity), render_report round trip and its one-line errors."""

import json
import os
import platform
import re

import jax
import numpy as np
import pytest

jsonschema = pytest.importorskip("jsonschema")

import gradscope  # noqa: E402
from gradscope import _atomic  # noqa: E402
from gradscope._errors import ConfigError, GradscopeError  # noqa: E402
from gradscope.report import (  # noqa: E402
    ReportExistsError,
    ReportFormatError,
    build_report,
    figure_specs,
    interactive,  # noqa: E402
    load_report,
    load_schema,
    render_report,
    validate_report,
    write_report,
)
from gradscope.report import folder as folder_mod  # noqa: E402
from tests._report_data import LIGHT_KEYS, analyses, full_report, light_report  # noqa: E402


def _siblings(path):
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith("." + path.name))


# ---- document -----------------------------------------------------------------------------------


def test_build_report_follows_the_contract():
    r = full_report()
    assert r["schema"] == "gradscope.report/1"
    assert r["gradscope_version"] == gradscope.__version__
    assert r["command"] == "compare"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", r["created"])
    env = r["environment"]
    assert env["jax"] == jax.__version__ and env["backend"] == jax.default_backend()
    assert env["x64"] is bool(jax.config.jax_enable_x64)
    assert env["dtype"] == "float32" and env["matmul_precision"] == "highest"
    assert env["python"] == platform.python_version() and env["platform"] == platform.platform()
    assert [a["name"] for a in r["analyses"]] == ["rnn-tanh", "lstm"]
    json.dumps(r, allow_nan=False)  # strict JSON


def test_build_report_refuses_bad_input():
    a = analyses()
    with pytest.raises(ConfigError, match="command"):
        build_report(a, command="plot", config={})
    with pytest.raises(ConfigError, match="unique name"):
        build_report([a[0], a[0]], command="compare", config={})
    with pytest.raises(ConfigError, match="at least one"):
        build_report([], command="analyse", config={})


def test_schema_is_valid_draft_2020_12_and_accepts_real_reports():
    schema = load_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    for command in ("compare", "analyse"):
        jsonschema.Draft202012Validator(schema).validate(full_report(command))


@pytest.mark.parametrize(
    "breakage, where",
    [
        (lambda r: r.pop("analyses"), "analyses"),
        (lambda r: r.update(schema="gradscope.report/2"), "schema"),
        (lambda r: r["analyses"][0]["summary"].update(verdict="fine"), "verdict"),
        (lambda r: r["analyses"][0]["lag_profile"]["log10_spectral"].__setitem__(3, "big"), "log10_spectral"),
        (lambda r: r["analyses"][1]["triangle"].update(log10_frobenius=[1.0, 2.0]), "triangle"),
        (lambda r: r["environment"].pop("x64"), "x64"),
        (lambda r: r["analyses"][1].update(name="rnn-tanh"), "duplicate"),
        (lambda r: r.update(analyses=[]), "analyses"),
        (lambda r: r["analyses"][0].update(method="guess"), "method"),
    ],
)
def test_schema_rejects_broken_reports(breakage, where):
    r = full_report()
    breakage(r)
    with pytest.raises(ReportFormatError, match=where) as e:
        validate_report(r)
    assert "\n" not in str(e.value) and len(str(e.value)) < 300
    assert isinstance(e.value, GradscopeError)


# ---- write_report ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    r = full_report()
    out = write_report(tmp_path_factory.mktemp("rep") / "out", r)
    return out, r


def test_write_report_writes_every_file(written):
    out, r = written
    assert sorted(p.name for p in out.iterdir()) == ["figures", "report.html", "report.json", "summary.md"]
    assert json.loads((out / "report.json").read_text()) == r  # the dict as given
    names = sorted(p.name for p in (out / "figures").iterdir())
    specs = figure_specs(r)
    assert names == sorted(s.filename for s in specs)
    # the comparison figure plus, per analysis, one figure per section it carries
    assert "lag_profiles.png" in names
    assert {"lstm_paths.png", "lstm_attribution.png", "lstm_gates.png", "rnn-tanh_triangle.png"} <= set(names)
    assert "rnn-tanh_paths.png" not in names  # Elman has no direct path
    for n in names:
        assert (out / "figures" / n).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert _siblings(out) == []  # no temporary folder left behind


def test_html_is_self_contained(written):
    out, r = written
    html = (out / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>")
    # scripts are inline only: plotly.js exactly once, then the figure specs (JSON) and one loop drawing them
    assert not re.search(r"<script[^>]*\bsrc\s*=", html, re.I)
    assert html.count(interactive.plotly_js()[:400]) == 1
    page = re.sub(r"<script\b[^>]*>.*?</script>", "", html, flags=re.S | re.I)  # the HTML outside the scripts
    assert "<link" not in page.lower() and "url(" not in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page, re.I)
    specs = figure_specs(r)
    imgs = re.findall(r'<img [^>]*src="([^"]+)"', html)
    plots = re.findall(r'<div class="gs-plot" id="plot-([^"]+)"></div>', html)
    assert all(s.startswith("data:image/png;base64,") for s in imgs)
    assert len(imgs) + len(plots) == len(specs) and html.count("<figcaption>") == len(specs)
    assert sorted(plots) == sorted(s.filename.removesuffix(".png") for s in specs if s.interactive is not None)
    assert "lag_profiles" in plots and "rnn-tanh_triangle" in plots
    # compare report: the comparison figure comes first, and the verdict table is there
    assert html.index('id="lag_profiles"') < html.index('id="rnn-tanh_triangle"')
    assert "Keeps its gradient" in html and "Vanishing" in html
    for a in r["analyses"]:
        assert a["name"] in html and a["summary"]["verdict"] in html
    assert "float32" in html and "highest" in html and jax.__version__ in html


def test_summary_md_fits_a_ci_step_summary(written):
    out, r = written
    md = (out / "summary.md").read_text()
    table = [ln for ln in md.splitlines() if ln.startswith("|")]
    assert len(table) == 2 + len(r["analyses"])  # header, separator, one row each
    header = [c.strip() for c in table[0].strip("|").split("|")]
    assert {"method", "precision", "verdict", "horizon", "decay_per_step", "lyapunov_max"} <= set(header)
    for a, row in zip(r["analyses"], table[2:]):
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[0] == f"`{a['name']}`"
        assert cells[header.index("method")] == "exact"
        assert cells[header.index("precision")].startswith("float32")
        assert int(cells[header.index("horizon")]) == a["summary"]["horizon"]
        assert float(cells[header.index("decay_per_step")]) == pytest.approx(a["summary"]["decay_per_step"], rel=1e-3)
    assert len(md) < 8000 and "<img" not in md


def test_refuses_to_overwrite_without_force(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ReportExistsError, match="--force") as e:
        write_report(out, light_report())
    assert isinstance(e.value, GradscopeError) and "\n" not in str(e.value)
    assert (out / "keep.txt").read_text() == "mine"
    # --force replaces a report, never a folder of the user's own files
    with pytest.raises(ReportExistsError, match="not written by gradscope"):
        write_report(out, light_report(), force=True)
    assert (out / "keep.txt").read_text() == "mine"
    (out / "keep.txt").unlink()
    write_report(out, light_report())
    write_report(out, full_report(), force=True)
    assert [a["name"] for a in load_report(out)["analyses"]] == [a["name"] for a in full_report()["analyses"]]
    empty = tmp_path / "empty"
    empty.mkdir()
    write_report(empty, light_report())  # an empty folder is fine without force
    assert (empty / "report.html").exists()
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(ReportExistsError, match="not a folder"):
        write_report(afile, light_report(), force=True)


def test_nan_becomes_null_and_numpy_becomes_python(tmp_path):
    import numpy as np

    r = light_report()
    r["config"] = {"gain": np.float32(1.5), "nan": float("nan"), "shape": np.array([2, 30])}
    out = write_report(tmp_path / "out", r)
    cfg = json.loads((out / "report.json").read_text())["config"]
    assert cfg == {"gain": 1.5, "nan": None, "shape": [2, 30]}


class Boom(RuntimeError):
    pass


def test_failure_mid_write_leaves_no_partial_folder(tmp_path, monkeypatch):
    def fail(*args, **kwargs):  # after report.json and the figures were written
        raise Boom("disk full")

    monkeypatch.setattr(folder_mod, "render_html", fail)
    out = tmp_path / "out"
    with pytest.raises(Boom):
        write_report(out, light_report())
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []
    # replacing an existing report: a failure keeps the old one intact
    monkeypatch.undo()
    old = write_report(out, light_report())
    before = {p.relative_to(old): p.read_bytes() for p in old.rglob("*") if p.is_file()}
    monkeypatch.setattr(folder_mod, "render_html", fail)
    with pytest.raises(Boom):
        write_report(out, full_report(), force=True)
    after = {p.relative_to(old): p.read_bytes() for p in old.rglob("*") if p.is_file()}
    assert after == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_failure_while_swapping_restores_the_old_report(tmp_path, monkeypatch):
    out = write_report(tmp_path / "out", light_report())
    before = (out / "report.json").read_bytes()
    real = os.replace
    calls = []

    def flaky(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # moving the new folder into place fails
            raise OSError("rename failed")
        return real(src, dst)

    monkeypatch.setattr(_atomic, "_renameat2", lambda *a: False)  # the two-rename fallback (non-Linux)
    monkeypatch.setattr(_atomic.os, "replace", flaky)  # the one atomic writer publishes the folder
    with pytest.raises(OSError):
        write_report(out, light_report(), force=True)
    monkeypatch.undo()
    assert (out / "report.json").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


# ---- render_report ----------------------------------------------------------------------------------


def test_render_report_round_trip(tmp_path):
    r = light_report()
    out = write_report(tmp_path / "out", r)
    raw = (out / "report.json").read_bytes()
    html0 = (out / "report.html").read_text()
    (out / "notes.txt").write_text("user file")
    (out / "report.html").unlink()
    for p in (out / "figures").iterdir():
        p.unlink()
    (out / "summary.md").write_text("stale")
    assert render_report(out) == out
    assert (out / "report.json").read_bytes() == raw  # never rewritten
    assert (out / "notes.txt").read_text() == "user file"
    assert sorted(p.name for p in (out / "figures").iterdir()) == ["lag_profiles.png"]
    assert (out / "summary.md").read_text() != "stale"
    # the page is the same apart from the PNG bytes (a re-render need not be byte-identical)
    strip = lambda s: re.sub(r"base64,[A-Za-z0-9+/=]+", "", s)  # noqa: E731
    assert strip((out / "report.html").read_text()) == strip(html0)
    assert load_report(out) == r
    # to another folder
    other = render_report(out / "report.json", tmp_path / "copy")
    assert (other / "report.json").read_bytes() == raw and (other / "report.html").exists()
    with pytest.raises(ReportExistsError, match="--force"):
        render_report(out, tmp_path / "copy")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy", "out"]


def test_render_report_one_line_errors(tmp_path):
    d = tmp_path / "bad"
    d.mkdir()
    with pytest.raises(ReportFormatError, match="no such file"):
        render_report(d)
    (d / "report.json").write_text('{"schema": "gradscope.report/1", "analyses": [')
    with pytest.raises(ReportFormatError, match="not valid JSON") as e:
        render_report(d)
    assert "\n" not in str(e.value)
    (d / "report.json").write_text(json.dumps({"schema": "something/else"}))
    with pytest.raises(ReportFormatError, match="gradscope.report/1"):
        render_report(d)
    r = light_report()
    r["analyses"][0]["summary"]["horizon"] = "long"
    (d / "report.json").write_text(json.dumps(r))
    with pytest.raises(ReportFormatError, match="horizon") as e:
        render_report(d)
    assert "\n" not in str(e.value) and isinstance(e.value, GradscopeError)
    assert sorted(p.name for p in d.iterdir()) == ["report.json"]  # nothing rendered


@pytest.mark.slow
def test_report_environment_records_the_analyses_matmul_precision():
    import jax.numpy as jnp

    model = gradscope.cells.make("rnn-tanh", 2, 3, key=jax.random.key(0), dtype=jnp.float32)
    xs = jax.random.normal(jax.random.key(1), (4, 2), jnp.float32)
    with jax.default_matmul_precision("tensorfloat32"):
        fast = gradscope.analyse(model, xs, name="fast")
    report = build_report([fast], command="analyse")  # built outside the context: the analysis' setting counts
    assert report["environment"]["matmul_precision"] == "tensorfloat32"
    both = build_report([fast, gradscope.analyse(model, xs, name="exact")], command="compare")
    assert both["environment"]["matmul_precision"] == "highest,tensorfloat32"


# ---- parameter sensitivity and findings -----------------------------------------------------------


@pytest.fixture(scope="module")
def with_findings(tmp_path_factory):
    """An LSTM without forget bias (its forget gates average 0.5: the forget-gate finding fires) analysed
    with the parameter sensitivity, next to a light analysis written before findings existed."""
    import jax.numpy as jnp

    cell = gradscope.cells.make("lstm", 2, 4, key=jax.random.key(0), dtype=jnp.float32)
    xs = jax.random.normal(jax.random.key(1), (2, 10, 2), jnp.float32)
    a = gradscope.analyse(cell, xs, name="lstm-fb0", sensitivity=True, lyapunov=False, spectra=False).to_dict()
    old = {k: v for k, v in a.items() if k in LIGHT_KEYS and k != "bound"}  # a record of before findings
    old["name"] = "old"
    r = build_report([a, old], command="compare")
    return write_report(tmp_path_factory.mktemp("sens") / "out", r), r


def test_sensitivity_and_findings_are_written_plotted_and_listed(with_findings):
    from matplotlib.lines import Line2D

    from gradscope.report import figures

    out, r = with_findings
    a = r["analyses"][0]
    assert [f["id"] for f in a["findings"]] == ["forget-gate"] and "findings" not in r["analyses"][1]
    assert (out / "figures" / "lstm-fb0_sensitivity.png").is_file()
    # the figure draws the record's numbers: per parameter on the left, total and state norm on the right
    fig = figures.sensitivity(a)
    left, right = fig.axes[:2]
    drawn = {l.get_label(): l.get_ydata() for l in left.get_lines() if isinstance(l, Line2D)}
    s = a["sensitivity"]
    for n, v in s["by_parameter"].items():
        np.testing.assert_allclose(drawn[n], figures.series(v), equal_nan=True)
    ys = [l.get_ydata() for l in right.get_lines()]
    np.testing.assert_allclose(ys[0], figures.series(s["log10_total"]), equal_nan=True)
    np.testing.assert_allclose(ys[1], figures.series(s["log10_state"]), equal_nan=True)
    np.testing.assert_allclose(ys[2], ys[0] - ys[1], equal_nan=True)
    md = (out / "summary.md").read_text()
    assert "### Findings" in md and "`forget-gate`" in md and "forget_mean = " in md
    html = (out / "report.html").read_text()
    assert "Findings (1)" in html and "Tallec &amp; Ollivier 2018" in html
    assert "Parameter sensitivity" in html


def test_findings_sections_of_reports_with_none_or_without_findings():
    from gradscope.report import render_html, render_markdown

    r = light_report()  # written before findings existed: no section at all
    assert "Findings" not in render_markdown(r) and "Findings" not in render_html(r, {})
    for a in r["analyses"]:
        a["findings"] = []
    assert "None: no finding rule fired." in render_markdown(r)
    assert "None: no finding rule fired." in render_html(r, {})
    # a sweep's thousands of findings: summary.md lists the first MAX_FINDINGS and counts the rest
    from gradscope.report.markdown import MAX_FINDINGS

    f = {
        "id": "chaos",
        "severity": "warning",
        "message": "m",
        "evidence": {"x": 1.0},
        "suggestion": "s",
        "reference": "r",
    }
    r["analyses"][0]["findings"] = [f] * (MAX_FINDINGS + 7)
    md = render_markdown(r)
    assert md.count("`chaos`") == MAX_FINDINGS and "… and 7 more" in md


@pytest.mark.parametrize(
    "breakage, where",
    [
        (lambda a: a["findings"][0].update(severity="fatal"), "findings/0/severity"),
        (lambda a: a["findings"][0].pop("reference"), "findings/0"),
        (lambda a: a["findings"][0].update(id="Forget Gate"), "findings/0/id"),
        (lambda a: a["sensitivity"].update(by_parameter=[1.0]), "sensitivity/by_parameter"),
        (lambda a: a["sensitivity"].pop("log10_state"), "sensitivity"),
    ],
)
def test_schema_rejects_broken_findings_and_sensitivity(with_findings, breakage, where):
    import copy

    r = copy.deepcopy(with_findings[1])
    breakage(r["analyses"][0])
    with pytest.raises(ReportFormatError, match=where):
        validate_report(r)


def test_the_current_folder_and_its_parents_are_never_an_output(tmp_path, monkeypatch):
    from gradscope.report.folder import check_target

    work = tmp_path / "work"
    work.mkdir()
    (work / "data.csv").write_text("1,2\n")
    (work / "report.json").write_text("{}")  # even a folder that looks like a report
    monkeypatch.chdir(work)
    for out in (".", "..", str(work)):
        with pytest.raises(ReportExistsError, match="current folder"):
            check_target(out, force=True)
    assert (work / "data.csv").exists()
    check_target("fresh", force=False)  # a new folder is fine


def test_an_inconclusive_verdict_is_shown_with_its_reason(tmp_path):
    r = light_report()
    summary = r["analyses"][0]["summary"]
    summary["verdict"] = "inconclusive"
    summary["verdict_reason"] = "T = 12 is too short to separate the decay rate from the threshold"
    out = write_report(tmp_path / "out", r)
    md = (out / "summary.md").read_text()
    html = (out / "report.html").read_text()
    assert "1 inconclusive" in md and summary["verdict_reason"] in md
    assert "Inconclusive" in html and summary["verdict_reason"] in html


def test_building_and_rendering_a_report_never_imports_matplotlib(tmp_path):
    """matplotlib is imported where a figure is drawn (`gradscope.report._plot.new_figure`), so a command whose
    figures the workers draw (`gradscope.report.drawing`) does not pay for it: build, validate and render a
    report, with its PNGs given, in a fresh interpreter, and matplotlib is not loaded."""
    import subprocess
    import sys

    from gradscope._json import clean

    report = tmp_path / "report.json"
    report.write_text(json.dumps(clean(full_report())), encoding="utf-8")
    code = (
        "import sys; from pathlib import Path; import gradscope.report as rep\n"
        "from gradscope.report.catalogue import figure_specs\n"
        f"r = rep.load_report(Path({str(report)!r}))\n"
        "images = {s.filename: b'\\x89PNG' for s in figure_specs(r)}\n"
        "rep.render_html(r, images); rep.render_markdown(r)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
