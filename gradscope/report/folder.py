"""The report folder, written atomically::

    OUT/report.json        the source of truth (schema gradscope.report/1)
    OUT/report.html        one self-contained page (figures inlined)
    OUT/summary.md         Markdown summary for a CI step summary
    OUT/figures/*.png      every figure as a PNG

Everything is written into a hidden temporary sibling folder which is renamed into place at the end,
so ``OUT`` is never half-written: after a failure it is either absent or still the old report. A
non-empty existing ``OUT`` is only replaced with ``force=True`` (the CLI's ``--force``).
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path

from gradscope._atomic import TargetExistsError, check_output_folder, publish_folder, release_output, reserve_output
from gradscope._json import dumps
from gradscope.report.document import (
    ReportError,
    ReportExistsError,
    clean,
    load_report,
    validate_report,
)
from gradscope.report.drawing import FigurePool, pngs
from gradscope.report.html import render_html
from gradscope.report.markdown import render_markdown

RENDERED = ("report.html", "summary.md", "figures")


def _render_into(
    folder: Path, report: Mapping, *, dpi: int = 100, workers: int | None = 1, pool: FigurePool | None = None
) -> None:
    """Write figures/, summary.md and report.html (not report.json) into ``folder``; ``workers``: processes
    drawing the PNGs (None: `figure_workers`); ``pool``: where some were drawn already (`FigurePool`)."""
    figdir = folder / "figures"
    figdir.mkdir(exist_ok=True)
    images = pngs(report, dpi, workers, pool)
    for filename, png in images.items():
        (figdir / filename).write_bytes(png)
    (folder / "summary.md").write_text(render_markdown(report), encoding="utf-8")
    (folder / "report.html").write_text(render_html(report, images), encoding="utf-8")


def check_target(out: str | Path, force: bool) -> None:
    """Refuse an output folder that must not be written (`gradscope._atomic.check_output_folder`): a file, a
    non-empty folder without ``force``, a folder that is not a report even with ``force``, the current folder,
    its parents or home."""
    why = check_output_folder(out, force=force)
    if why:
        raise ReportExistsError(f"output {why}")


def _atomic(out: Path, fill, *, seed: Path | None = None, force: bool = True) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        if seed is not None:  # keep files the user put in the folder; drop what we re-render
            shutil.copytree(seed, tmp, ignore=lambda d, names: [n for n in names if Path(d) == seed and n in RENDERED])
        else:
            tmp.mkdir()
        fill(tmp)
        # without force, a folder that another run published meanwhile is not replaced (no silent loss)
        publish_folder(tmp, out, replace=force or _empty_dir(out))
    except TargetExistsError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ReportExistsError(
            f"output folder {out} appeared while this report was computed (another gradscope run writing it?): "
            "it was not replaced; pass --force to replace it or choose another --out"
        ) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        release_output(out)
        raise
    return out


def _empty_dir(out: Path) -> bool:
    return out.is_dir() and not any(out.iterdir())


def write_report(
    out_dir,
    report: Mapping,
    *,
    force: bool = False,
    dpi: int = 100,
    workers: int | None = 1,
    pool: FigurePool | None = None,
) -> Path:
    """Write a complete report folder for ``report`` (a ``gradscope.report/1`` dict) and return its path.

    The dict is written as given (as strict JSON: NaN/±inf become null, NumPy values Python values)
    after a structural check (`validate_report` with ``full=False``: schema name, required keys, unique
    analysis names). Raises `ReportExistsError` if ``out_dir`` is a non-empty folder and not ``force``,
    `ReportFormatError` if the report's structure is wrong. ``workers``: processes that draw the PNGs (None:
    `figure_workers`, as the CLI asks; the library draws them here unless asked, so that a user's script needs
    no ``if __name__ == "__main__"`` guard); ``pool``: a `FigurePool` that drew the analyses' figures while
    they were computed (the CLI's).
    """
    out = Path(out_dir)
    check_target(out, force)
    doc = clean(report)
    validate_report(doc, full=False)  # the structure; files read back get the full schema check

    def fill(tmp: Path):
        try:
            text = dumps(doc, indent=1, ensure_ascii=False)
        except (TypeError, ValueError) as e:  # clean() makes this unreachable for ordinary input
            raise ReportError(f"report cannot be written as JSON: {e}") from None
        (tmp / "report.json").write_text(text + "\n", encoding="utf-8")
        _render_into(tmp, doc, dpi=dpi, workers=workers, pool=pool)

    return _atomic(out, fill, force=force)


def render_report(report_dir, out_dir=None, *, force: bool = False, dpi: int = 100, workers: int | None = 1) -> Path:
    """Re-render HTML, Markdown and figures from a saved ``report.json`` without recomputing anything.

    In place by default (``report.json`` and any other files are kept byte for byte); with
    ``out_dir`` a new folder is written (same overwrite rule as `write_report`). Corrupt JSON or a
    wrong schema raise `ReportFormatError` with a one-line message. ``workers``: as for `write_report`.
    """
    src = Path(report_dir)
    report = load_report(src)
    src_dir = src if src.is_dir() else src.parent
    if out_dir is None or Path(out_dir).resolve() == src_dir.resolve():
        busy = reserve_output(src_dir)  # released by publish_folder
        if busy:
            raise ReportExistsError(f"cannot re-render: {busy}")
        return _atomic(src_dir, lambda tmp: _render_into(tmp, report, dpi=dpi, workers=workers), seed=src_dir)
    out = Path(out_dir)
    check_target(out, force)

    def fill(tmp: Path):
        shutil.copyfile(src_dir / "report.json", tmp / "report.json")
        _render_into(tmp, report, dpi=dpi, workers=workers)

    return _atomic(out, fill, force=force)
