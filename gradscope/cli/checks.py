"""``gradscope check`` and ``gradscope baseline``: CI regression checks (see :mod:`gradscope.checks`).

    gradscope baseline REPORT --output baselines/lstm.json      # record once, review, commit
    gradscope check REPORT --baseline baselines/lstm.json       # in CI: exit 1 on a regression

Nothing here imports JAX, and ``gradscope.checks`` is imported only when a command runs, so ``gradscope
check`` starts fast in CI. Exit codes: 0 pass, 1 regression, 2 usage or input error (unreadable/corrupt
JSON, wrong schema, bad TOML, refusing to overwrite a baseline), 3 non-finite value in the report, 4
baseline missing. Errors are one line on stderr (the app's `GuardedGroup`), never a traceback.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, Optional

import typer

from gradscope.cli._output import warn

# GitHub caps a step summary at 1 MiB; appending past it aborts the upload
_STEP_SUMMARY_LIMIT = 1024 * 1024


CheckFormat = Literal["text", "json", "junit", "github", "markdown"]


def _append_step_summary(markdown: str) -> None:
    """Append the Markdown table to ``$GITHUB_STEP_SUMMARY`` when running in GitHub Actions."""
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        return
    data = markdown.encode("utf-8")
    try:
        used = os.path.getsize(target) if os.path.exists(target) else 0
        if used + len(data) > _STEP_SUMMARY_LIMIT:
            warn("step summary left out: it would exceed GitHub's 1 MiB limit")
            return
        with open(target, "ab") as fh:
            fh.write(data)
    except OSError as exc:
        warn(f"could not append to GITHUB_STEP_SUMMARY ({exc})")


def check(
    report: Path = typer.Argument(..., help="report.json, or the report folder that holds it"),
    baseline: Path = typer.Option(..., "--baseline", "-b", help="baseline JSON file (gradscope.baseline/1)"),
    config: Optional[Path] = typer.Option(
        None,
        "--config",
        help='TOML with tolerance overrides: tables defaults, kinds.KIND, metrics."NAME" '
        "(or tool.gradscope.check in pyproject.toml)",
    ),
    format: CheckFormat = typer.Option("text", "--format", "-f", case_sensitive=False, help="output format"),
    output: Optional[Path] = typer.Option(
        None, "--output", help="write the output to FILE instead of stdout (a file: -o/--out is a folder elsewhere)"
    ),
) -> None:
    """Compare a report with a baseline; exit 0 pass, 1 regression, 2 input error, 3 non-finite, 4 no baseline.

    Example: `gradscope check lstm-report --baseline baselines/lstm.json`

    In CI, as a JUnit file: `gradscope check lstm-report -b baselines/lstm.json --format junit --output junit.xml`
    """
    from gradscope import checks

    overrides = checks.load_config(config) if config is not None else None
    result = checks.compare(report, baseline, overrides)
    text = checks.render(result, format)
    if output is not None:
        checks.write_text_atomic(output, text)
        typer.echo(result.summary_line(), err=True)
    else:
        typer.echo(text, nl=False)
    if format == "github":
        _append_step_summary(checks.format_markdown(result))
    raise typer.Exit(result.exit_code)


def baseline(
    report: Path = typer.Argument(..., help="report.json, or the report folder that holds it"),
    output: Path = typer.Option(
        ..., "--output", help="baseline JSON file to write (a file: -o/--out is a folder elsewhere)"
    ),
    update: bool = typer.Option(False, "--update", help="replace an existing baseline (keeps its hand-set tolerances)"),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML with tolerances to record in the baseline"),
) -> None:
    """Record a report's summary metrics as a baseline. An existing file is replaced only with --update.

    Example: `gradscope baseline lstm-report --output baselines/lstm.json` (once; review and commit it)

    After an intended change: `gradscope baseline lstm-report --output baselines/lstm.json --update`
    """
    from gradscope import checks

    previous = None
    if output.exists():
        if not update:
            raise checks.CheckInputError(
                f"baseline {str(output)!r} exists; pass --update to replace it (then review the diff before committing)"
            )
        try:
            previous = checks.load_baseline(output)
        except checks.CheckInputError as exc:
            warn(f"replacing an unreadable baseline, its tolerances are lost ({exc})")
    tolerances = checks.load_config(config) if config is not None else None
    new = checks.make_baseline(report, tolerances, previous=previous)
    checks.save_baseline(new, output, overwrite=update)
    verb = "updated" if previous is not None else "wrote"
    typer.echo(f"{verb} baseline {output} ({len(new['metrics'])} metrics)", err=True)


COMMANDS = (check, baseline)
