"""How a command fails: one line ``error: <what, which value, how to fix>`` on stderr and an exit code.

Never a traceback: ``GRADSCOPE_DEBUG=1`` re-raises for debugging. Exit code 2 for usage and input
errors; a `GradscopeError` brings its own (``gradscope check``: 1 regression, 3 non-finite, 4 baseline
missing). Nothing here imports JAX.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

import typer
from typer.core import TyperGroup

try:  # typer >= 0.26 carries its own copy of click
    from typer._click import exceptions as _click_exc
except ImportError:  # pragma: no cover - older typer on top of click
    from click import exceptions as _click_exc

from gradscope._errors import GradscopeError
from gradscope.cli._output import error_line

EXIT_USAGE = 2
_ABORTS = tuple({typer.Abort, getattr(_click_exc, "Abort", typer.Abort)})


class GuardedGroup(TyperGroup):
    """The app's click group: turns every expected failure into one line on stderr and an exit code.

    Typer's own handling prints usage errors in a rich box and unexpected exceptions as tracebacks; here
    the group runs click in non-standalone mode and maps: usage errors (unknown option, bad value, typo
    in a command name) → ``error: …`` + exit 2; `GradscopeError` → its message + its ``exit_code`` (2);
    anything else → one line that says it is a bug, exit 2. ``GRADSCOPE_DEBUG=1`` re-raises.
    The same path is taken under `typer.testing.CliRunner`, so the tests see what users see.
    Every parameter's value gets a word in the help (`gradscope.cli._help.label_command`).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from gradscope.cli._help import label_command

        label_command(self)

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        debug = bool(os.environ.get("GRADSCOPE_DEBUG"))
        if _quiet(sys.argv[1:] if args is None else list(args)) and not debug:
            silence_third_party()
        try:
            rv = super().main(args=args, prog_name=prog_name, complete_var=complete_var, standalone_mode=False, **extra)
            code = rv if isinstance(rv, int) else 0
        except _click_exc.NoArgsIsHelpError as exc:
            # `gradscope` with no arguments: show the help (typer's rich help prints itself while the
            # message is built; plain click returns it as the message)
            text = exc.format_message()
            if text.strip():
                sys.stdout.write(text + "\n")
            code = 0
        except _click_exc.UsageError as exc:
            hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
            error_line(exc.format_message() + hint)
            code = EXIT_USAGE
        except _click_exc.ClickException as exc:
            error_line(exc.format_message())
            code = exc.exit_code
        except _ABORTS:
            error_line("aborted")
            code = 130
        except GradscopeError as exc:
            if debug:
                raise
            error_line(str(exc))
            code = getattr(exc, "exit_code", EXIT_USAGE)
        except OSError as exc:
            if debug:
                raise
            where = f" ({exc.filename!r})" if exc.filename else ""
            error_line(f"{exc.strerror or exc}{where}; check the path and its permissions")
            code = EXIT_USAGE
        except MemoryError:
            if debug:
                raise
            error_line("out of memory: use a smaller --hidden/--length/--batch, or --mode probe")
            code = EXIT_USAGE
        except Exception as exc:  # a bug in gradscope: still one line, but say so
            if debug:
                raise
            error_line(
                f"internal error ({type(exc).__name__}: {exc}); rerun with GRADSCOPE_DEBUG=1 for a "
                "traceback and please report it"
            )
            code = EXIT_USAGE
        if standalone_mode:
            sys.exit(code)
        return code


def _quiet(args: list[str]) -> bool:
    """``-q``/``--quiet`` among the arguments (before a ``--``)."""
    head = args[: args.index("--")] if "--" in args else args
    return "-q" in head or "--quiet" in head


def silence_third_party() -> None:
    """Under ``--quiet`` only gradscope's own error line may reach stderr: Python warnings (of any library) are
    ignored, and the loggers of JAX/absl/XLA are raised to ERROR before they are imported."""
    import logging
    import warnings

    warnings.simplefilter("ignore")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # XLA's C++ log lines
    for name in ("jax", "jax._src.xla_bridge", "absl", "torch", "h5py", "matplotlib"):
        logging.getLogger(name).setLevel(logging.ERROR)
