"""Where the commands' output goes: machine output on stdout, people's text on stderr.

Machine output (``--json``) is ``json.dumps`` on stdout, never through rich (no colour codes, no
wrapping); human text, warnings, tables and progress bars go to stderr, so ``--json | jq`` always works.
Nothing here imports JAX.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from gradscope._json import clean, dumps

if TYPE_CHECKING:
    from rich.console import Console


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines included) made one space."""
    return " ".join(str(text).split())


def error_line(message: str) -> None:
    """Write ``error: <message>`` as a single line on stderr."""
    sys.stderr.write(f"error: {one_line(message)}\n")
    sys.stderr.flush()


def warn(message: str) -> None:
    """A one-line warning on stderr (plain text, so it is readable in CI logs)."""
    sys.stderr.write(f"warning: {one_line(message)}\n")
    sys.stderr.flush()


def info(message: str, quiet: bool = False) -> None:
    """Human text on stderr (stdout is reserved for --json)."""
    if not quiet:
        sys.stderr.write(f"{message}\n")
        sys.stderr.flush()


def stderr_console() -> Console:
    """A rich console on stderr (tables for people); plain with ``NO_COLOR``."""
    from rich.console import Console

    return Console(stderr=True, highlight=False, no_color="NO_COLOR" in os.environ or None)


def stdout_console() -> Console:
    """A rich console on stdout, for commands whose table is their output (``cells``, ``inspect``)."""
    from rich.console import Console

    return Console(highlight=False, no_color="NO_COLOR" in os.environ or None)


json_ready = clean  # the one sanitiser (gradscope._json)


def print_json(obj: Any) -> None:
    """Machine output: plain ``json.dumps`` on stdout, never through rich (no colour codes, no wrapping)."""
    sys.stdout.write(dumps(obj, indent=2) + "\n")
    sys.stdout.flush()


def progress_enabled(quiet: bool) -> bool:
    """Progress bars only for a person watching: not with --quiet, not when stderr is a file or pipe."""
    if quiet:
        return False
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


@contextlib.contextmanager
def progress(total: int, description: str, quiet: bool = False) -> Iterator[Callable[..., None]]:
    """A rich progress bar on stderr with ``total`` steps; yields ``advance(label, steps=1)`` (one call per
    step; ``steps=0`` only names the stage now being computed, e.g. ``advance("analysing lstm", 0)``).

    When disabled (``--quiet`` or stderr not a TTY), ``advance`` does nothing.
    """
    if not progress_enabled(quiet):
        yield lambda label="", steps=1: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[label]}"),
        console=stderr_console(),
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=total, label="")

        def advance(label: str = "", steps: int = 1) -> None:
            bar.update(task, advance=steps, label=label)

        yield advance


@contextlib.contextmanager
def stage(message: str, quiet: bool = False) -> Iterator[None]:
    """A one-line spinner on stderr naming the stage being computed (``writing 26 figures``), gone when it
    ends; nothing with ``--quiet`` or when stderr is not a TTY (CI logs stay free of it)."""
    if not progress_enabled(quiet):
        yield
        return
    with stderr_console().status(message):
        yield
