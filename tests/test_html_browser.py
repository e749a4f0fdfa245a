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
    res = _chromium(tmp_path, "--dump-dom", "--virtual-time-budget=2000", html.as_uri())
    assert res.returncode == 0, res.stderr[-2000:]
    dom = res.stdout
    assert "<h1>gradscope compare report</h1>" in dom
    srcs = re.findall(r'<img [^>]*src="([^"]*)"', dom)
    assert len(srcs) == len(figure_specs(report))
    assert all(s.startswith("data:image/png;base64,") and len(s) > 1000 for s in srcs)
    assert dom.count("<figcaption>") == len(srcs)
    assert _page_errors(res.stderr) == []
    assert "Uncaught" not in res.stderr


def test_images_decode_in_the_browser(page, tmp_path):
    """Each inlined PNG has a natural size > 0 once loaded: check through the DOM after a script-free
    trick — a page that only shows one figure, screenshotted, must contain that figure's pixels."""
    from matplotlib.image import imread

    root, html, report = page
    text = html.read_text()
    src = re.search(r'<img [^>]*src="([^"]+)"', text).group(1)
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
