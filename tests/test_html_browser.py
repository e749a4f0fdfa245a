"""report.html in a real headless Chromium (Debian package ``chromium``): it renders (the screenshot
is not blank), the DOM holds the inlined figures, and the browser logs no console or load errors.
Skipped when Chromium is not installed."""

import re
import shutil
import subprocess

import numpy as np
import pytest

from gradscope.report import figure_specs, write_report
from tests._report_data import full_report

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (apt-get install chromium)")

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--enable-logging=stderr",
    "--v=0",
]


def _chromium(tmp_path, *args):
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args]
    return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    report = full_report()
    out = write_report(root / "out", report)
    return root, out / "report.html", report


def _page_errors(stderr: str) -> list[str]:
    """Console messages and load failures of the page (not Chromium's own D-Bus/GPU chatter)."""
    bad = []
    for line in stderr.splitlines():
        if re.search(
            r"Uncaught|:CONSOLE[:(]|console\.error|ERR_FILE_NOT_FOUND|ERR_NAME_NOT_RESOLVED"
            r"|ERR_INTERNET_DISCONNECTED|Refused to load|Failed to load resource",
            line,
        ):
            bad.append(line)
    return bad


def test_screenshot_is_not_blank(page, tmp_path):
    from matplotlib.image import imread

    root, html, _ = page
    shot = tmp_path / "shot.png"
    # the virtual-time budget lets the inlined PNGs decode before the shot, also on a loaded CI machine
    res = _chromium(
        tmp_path, f"--screenshot={shot}", "--window-size=1200,6000", "--virtual-time-budget=5000", html.as_uri()
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert shot.exists(), res.stderr[-2000:]
    img = imread(shot)[..., :3]
    assert img.shape[:2] == (6000, 1200)  # tall enough to reach the figures below the tables
    gray = img.mean(axis=-1)
    nonwhite = float((gray < 0.95).mean())
    assert 0.03 < nonwhite < 0.9, nonwhite  # text, tables and figures, on a white page
    assert float(gray.std()) > 0.05
    # colour: the viridis/tab10 figures and the verdict badges are not grey
    chroma = img.max(axis=-1) - img.min(axis=-1)
    assert float((chroma > 0.2).mean()) > 0.005
    assert _page_errors(res.stderr) == []


def test_dom_has_inlined_figures_and_no_console_errors(page, tmp_path):
    root, html, report = page
    res = _chromium(tmp_path, "--dump-dom", "--virtual-time-budget=5000", html.as_uri())
    assert res.returncode == 0, res.stderr[-2000:]
    dom = res.stdout
    assert re.search(r"<h1[^>]*>gradscope compare report</h1>", dom)
    specs = figure_specs(report)
    srcs = re.findall(r'<img [^>]*src="([^"]*)"', dom)
    plots = [s for s in specs if s.interactive is not None]
    assert len(srcs) == len(specs) - len(plots) > 0  # figures without an interactive version stay PNG
    assert all(s.startswith("data:image/png;base64,") and len(s) > 1000 for s in srcs)
    assert dom.count("<figcaption>") == len(specs)
    assert _page_errors(res.stderr) == []
    assert "Uncaught" not in res.stderr


def test_interactive_figures_render_with_no_console_errors(page, tmp_path):
    """Plotly draws every interactive figure: one plot container (with its SVG layers) per figure spec."""
    root, html, report = page
    res = _chromium(tmp_path, "--dump-dom", "--virtual-time-budget=10000", html.as_uri())
    assert res.returncode == 0, res.stderr[-2000:]
    dom = res.stdout
    n = sum(s.interactive is not None for s in figure_specs(report))
    assert n >= 3
    assert len(re.findall(r'<div class="gs-plot[^"]*" id="plot-', dom)) == n
    assert dom.count('class="plot-container plotly"') == n  # drawn by plotly.js, not just placeholders
    assert dom.count('class="main-svg"') >= n
    assert len(re.findall(r'class="[^"]*\bscatterlayer\b', dom)) >= 1  # the line traces are in the SVG
    assert _page_errors(res.stderr) == []


def test_table_of_contents_anchors_resolve(page, tmp_path):
    """Every in-page link of the rendered DOM (the contents, the Diagnosis) has its target element."""
    root, html, report = page
    res = _chromium(tmp_path, "--dump-dom", "--virtual-time-budget=3000", html.as_uri())
    dom = res.stdout
    nav = re.search(r'<nav class="toc" id="contents">(.*?)</nav>', dom, re.S)
    assert nav, "no table of contents"
    hrefs = re.findall(r'href="#([^"]+)"', nav.group(1))
    ids = set(re.findall(r'\bid="([^"]+)"', dom))
    assert len(hrefs) >= 2 + len(figure_specs(report)) and set(hrefs) <= ids
    for target in ("diagnosis", "summary", "comparison", "configuration"):
        assert target in hrefs
    for a in report["analyses"]:
        assert f"diagnosis-{a['name']}" in ids
    assert dom.index('id="diagnosis"') < dom.index('id="summary"')


def test_the_page_opens_offline(page, tmp_path):
    """No resource is fetched from the network: every host lookup fails in this browser, and the error
    detector (which sees ERR_NAME_NOT_RESOLVED / failed loads) stays silent; no http(s) src or href."""
    root, html, report = page
    text = html.read_text()
    outside = re.sub(r"<script\b[^>]*>.*?</script>", "", text, flags=re.S | re.I)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", outside, re.I)
    assert not re.search(r"<script[^>]*\bsrc\s*=", text, re.I) and "<link" not in outside.lower()
    res = _chromium(
        tmp_path, "--host-resolver-rules=MAP * ~NOTFOUND", "--dump-dom", "--virtual-time-budget=10000", html.as_uri()
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.count('class="plot-container plotly"') == sum(
        s.interactive is not None for s in figure_specs(report)
    )
    assert _page_errors(res.stderr) == []


def test_images_decode_in_the_browser(page, tmp_path):
    """Each inlined PNG has a natural size > 0 once loaded: check through the DOM after a script-free
    trick — a page that only shows one figure, screenshotted, must contain that figure's pixels."""
    from matplotlib.image import imread

    root, html, report = page
    text = html.read_text()
    found = re.search(r'<img [^>]*src="([^"]+)"', text)
    assert found is not None
    src = found.group(1)
    single = tmp_path / "one.html"
    single.write_text(
        f'<!DOCTYPE html><html><body style="margin:0;background:#fff">'
        f'<img src="{src}" style="display:block"></body></html>'
    )
    shot = tmp_path / "one.png"
    res = _chromium(
        tmp_path, f"--screenshot={shot}", "--window-size=800,600", "--virtual-time-budget=5000", single.as_uri()
    )
    assert res.returncode == 0 and shot.exists(), res.stderr[-2000:]
    img = imread(shot)[..., :3]
    assert float((img.mean(axis=-1) < 0.9).mean()) > 0.02  # the figure's lines and text are drawn
    assert np.isfinite(img).all()


def test_the_error_detector_sees_console_errors(tmp_path):
    """The check above is only worth something if a page with errors fails it."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<!DOCTYPE html><html><body><p>x</p><script>console.error("boom"); notDefined();</script></body></html>'
    )
    res = _chromium(tmp_path, "--dump-dom", bad.as_uri())
    errors = _page_errors(res.stderr)
    assert any("boom" in e for e in errors) and any("Uncaught" in e for e in errors)


# ----------------------------------------------------------------------------- gradscope history


@pytest.fixture(scope="module")
def history_page(tmp_path_factory):
    """`gradscope history` on the log of a real watched PyTorch run: a 2-layer nn.LSTM trained for 30 steps
    with a `Watcher` every 10 steps. Returns the page and the logged records (the truth the report must show)."""
    import json

    torch = pytest.importorskip("torch")
    from typer.testing import CliRunner

    from gradscope import cli
    from gradscope.watch import Watcher

    root = tmp_path_factory.mktemp("history")
    torch.manual_seed(0)
    model = torch.nn.LSTM(2, 6, num_layers=2, batch_first=True)
    opt, xs = torch.optim.SGD(model.parameters(), lr=0.5), torch.randn(2, 12, 2)
    with Watcher(xs, every=10, logdir=root / "log") as watcher:
        for step in range(30):
            loss = model(xs)[0][:, -1].pow(2).mean() - model(xs)[0][:, 0].pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            watcher.step(model, step)
    records = [json.loads(line) for line in (root / "log" / "gradscope.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [0, 10, 20]
    res = CliRunner().invoke(cli.app, ["history", str(root / "log"), "--out", str(root / "out"), "-q"])
    assert res.exit_code == 0, res.output
    return root / "out", records


def test_history_of_a_watched_pytorch_run_shows_the_logged_values(history_page):
    """The heat-map columns and the horizon curve of the report are the values the watcher logged."""
    import json

    out, records = history_page
    rep = json.loads((out / "report.json").read_text())
    (run,) = rep["training"]["runs"]
    assert [s["step"] for s in run["snapshots"]] == [r["step"] for r in records]
    for snap, rec in zip(run["snapshots"], records):
        assert snap["lag_profile"] == rec["analysis"]["lag_profile"]["log10_spectral"]
        assert snap["horizon"] == rec["analysis"]["summary"]["horizon"]
        assert snap["log10_norm_max_lag"] == rec["analysis"]["summary"]["log10_norm_max_lag"]
    # the weights moved, so the logged profiles differ from step to step: a report ignoring them would fail
    assert (
        records[0]["analysis"]["lag_profile"]["log10_spectral"]
        != records[-1]["analysis"]["lag_profile"]["log10_spectral"]
    )


def test_history_report_renders_with_its_heatmap(history_page, tmp_path):
    from matplotlib.image import imread

    out, _ = history_page
    html = out / "report.html"
    res = _chromium(tmp_path, "--dump-dom", "--virtual-time-budget=2000", html.as_uri())
    assert res.returncode == 0, res.stderr[-2000:]
    dom = res.stdout
    assert re.search(r"<h1[^>]*>gradscope history report</h1>", dom)
    heat = re.search(r'<figure id="training_[^"]*_lags">.*?<img [^>]*src="(data:image/png;base64,[^"]+)"', dom, re.S)
    assert heat is not None and len(heat.group(1)) > 1000, "the lag × step heat-map is not on the page"
    assert re.search(r'<figure id="training_horizon">', dom)
    assert _page_errors(res.stderr) == []
    # the heat-map's pixels are drawn in the browser (a page with only that image, screenshotted)
    single = tmp_path / "heat.html"
    single.write_text(f'<!DOCTYPE html><html><body style="margin:0"><img src="{heat.group(1)}"></body></html>')
    shot = tmp_path / "heat.png"
    res = _chromium(
        tmp_path, f"--screenshot={shot}", "--window-size=900,500", "--virtual-time-budget=5000", single.as_uri()
    )
    assert res.returncode == 0 and shot.exists(), res.stderr[-2000:]
    img = imread(shot)[..., :3]
    chroma = img.max(axis=-1) - img.min(axis=-1)
    assert float((chroma > 0.2).mean()) > 0.2  # the viridis cells fill most of the figure
    assert _page_errors(res.stderr) == []


def test_the_offline_check_sees_a_network_resource(tmp_path):
    """The offline test above is only worth something if a page that needs the network fails it: a page
    loading plotly.js from a CDN draws nothing offline (the failed load itself is not logged, its use is)."""
    bad = tmp_path / "cdn.html"
    bad.write_text(
        '<!DOCTYPE html><html><body><div id="p"></div><script src="https://cdn.plot.ly/plotly-3.0.0.min.js"></script>'
        '<script>Plotly.newPlot("p", [{"y": [1, 2]}]);</script></body></html>'
    )
    res = _chromium(
        tmp_path, "--host-resolver-rules=MAP * ~NOTFOUND", "--dump-dom", "--virtual-time-budget=3000", bad.as_uri()
    )
    assert any("Plotly is not defined" in e for e in _page_errors(res.stderr))
    assert 'class="plot-container plotly"' not in res.stdout
