"""The ``gradscope`` command line: a thin typer app over the library.

    gradscope cells                      # the registered cells
    gradscope compare                    # which cells vanish, explode or keep their gradient
    gradscope analyse --cell lstm --forget-bias 1 --out lstm-report
    gradscope sweep --cells rnn-tanh,lstm --gains 0.5,1,1.5 --lengths 50,100 --out sweep
    gradscope merge sweep-parts --out sweep  # parts of `sweep --shard i/n` → one report
    gradscope report lstm-report         # re-render HTML/Markdown/figures from report.json
    gradscope inspect model.safetensors  # what a weight file holds and how it maps
    gradscope check REPORT --baseline B  # CI regression check (no JAX import)
    gradscope train --task adding --cell indrnn --out run
    gradscope reproduce adding --out repro-adding
    gradscope history runs/lstm          # gradient flow over a watched training run

One module per command group (`compare` has its own), each listing its command functions in ``COMMANDS``;
this module only makes
the app and registers them all, in the order ``gradscope --help`` shows them. Shared pieces: `_output`
(stdout/stderr, JSON, progress), `_errors` (one-line errors and exit codes), `_options` (cell specs, lists,
inputs, --out, --float64), `_params` (the options several commands share, declared once), `_reports`
(analyses → report folder), `_distributed` (multi-process JAX and its options).

Machine output (``--json``) is plain JSON on stdout; human text and progress bars go to stderr; errors are
one line ``error: …`` with exit code 2. No module of the CLI imports JAX at module level (``gradscope
check`` must start fast): the library is imported inside the command functions.
"""

from __future__ import annotations

import typer

from gradscope import __version__
from gradscope.cli import analyse, cells, checks, compare, history, report, sweep, train
from gradscope.cli._errors import GuardedGroup

app = typer.Typer(
    cls=GuardedGroup,
    name="gradscope",
    help="Gradient-flow diagnostics for recurrent neural networks: how much of the signal at step k still "
    "reaches step T, and why.\n\nStart with `gradscope compare` (a report in ./gradscope-report).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    add_completion=False,
    rich_markup_mode="markdown",
)

#: the command groups, in the order `gradscope --help` lists their commands
GROUPS = (cells, analyse, compare, sweep, report, checks, train, history)


def _version(value: bool):
    if value:
        print(f"gradscope {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    no_cache: bool = typer.Option(
        False,
        "--no-cache",
        help="Do not use the persistent compilation cache for this command (GRADSCOPE_CACHE_DIR=off: never; "
        "GRADSCOPE_CACHE_DIR=DIR moves it).",
    ),
) -> None:
    """Gradient-flow diagnostics for recurrent neural networks (errors: one line, exit code 2;
    GRADSCOPE_DEBUG=1 shows tracebacks)."""
    import warnings

    from gradscope import _cache

    # compiled programs are reused between runs (see gradscope._cache); a corrupt entry is only a miss
    _cache.enable(None if no_cache else _cache.cache_dir())
    warnings.filterwarnings("ignore", message="Error reading persistent compilation cache entry")


for _group in GROUPS:
    for _command in _group.COMMANDS:
        app.command()(_command)


def main() -> None:
    """Console-script entry point (``gradscope``): the process is the CLI's, so XLA's faster-compiling
    loop emitters are a process flag (`gradscope._xla`), set before JAX starts."""
    from gradscope import _xla

    _xla.prefer_flag(_xla.EMITTER_FLAG)
    app()
