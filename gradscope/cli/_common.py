"""What every gradscope command shares: error handling, output streams, progress, option parsing.

Conventions (``reference/ecosystem.md`` §3): machine output (``--json``) is ``json.dumps`` on stdout,
never through rich; human text, warnings and progress go to stderr; every error is ONE line
``error: <what, which value, how to fix>`` on stderr with exit code 2 (usage and input errors), never a
traceback (``GRADSCOPE_DEBUG=1`` re-raises for debugging).

Nothing here imports JAX: ``gradscope check`` must start fast.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import typer
from typer.core import TyperGroup

try:  # typer >= 0.26 carries its own copy of click
    from typer._click import exceptions as _click_exc
except ImportError:  # pragma: no cover - older typer on top of click
    from click import exceptions as _click_exc

from gradscope._errors import ConfigError, GradscopeError, NonFiniteError
from gradscope._json import clean, dumps

EXIT_USAGE = 2
_ABORTS = tuple({typer.Abort, getattr(_click_exc, "Abort", typer.Abort)})


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def error_line(message: str) -> None:
    """Write ``error: <message>`` as a single line on stderr."""
    sys.stderr.write(f"error: {_one_line(message)}\n")
    sys.stderr.flush()


def warn(message: str) -> None:
    """A one-line warning on stderr (plain text, so it is readable in CI logs)."""
    sys.stderr.write(f"warning: {_one_line(message)}\n")
    sys.stderr.flush()


def info(message: str, quiet: bool = False) -> None:
    """Human text on stderr (stdout is reserved for --json)."""
    if not quiet:
        sys.stderr.write(f"{message}\n")
        sys.stderr.flush()


def stderr_console():
    from rich.console import Console

    return Console(stderr=True, highlight=False, no_color="NO_COLOR" in os.environ or None)


def stdout_console():
    from rich.console import Console

    return Console(highlight=False, no_color="NO_COLOR" in os.environ or None)


json_ready = clean  # the one sanitiser (gradscope._json)


def print_json(obj: Any) -> None:
    """Machine output: plain ``json.dumps`` on stdout, never through rich (no colour codes, no wrapping)."""
    sys.stdout.write(dumps(obj, indent=2) + "\n")
    sys.stdout.flush()


# ------------------------------------------------------------------------------------ error handling


class GuardedGroup(TyperGroup):
    """The app's click group: turns every expected failure into one line on stderr and an exit code.

    Typer's own handling prints usage errors in a rich box and unexpected exceptions as tracebacks; here
    the group runs click in non-standalone mode and maps: usage errors (unknown option, bad value, typo
    in a command name) → ``error: …`` + exit 2; `GradscopeError` → its message + its ``exit_code`` (2);
    anything else → one line that says it is a bug, exit 2. ``GRADSCOPE_DEBUG=1`` re-raises.
    The same path is taken under `typer.testing.CliRunner`, so the tests see what users see.
    """

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        debug = bool(os.environ.get("GRADSCOPE_DEBUG"))
        try:
            rv = super().main(args=args, prog_name=prog_name, complete_var=complete_var,
                              standalone_mode=False, **extra)
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
            error_line(f"internal error ({type(exc).__name__}: {exc}); rerun with GRADSCOPE_DEBUG=1 for a "
                       "traceback and please report it")
            code = EXIT_USAGE
        if standalone_mode:
            sys.exit(code)
        return code


# ------------------------------------------------------------------------------------------- progress


def progress_enabled(quiet: bool) -> bool:
    """Progress bars only for a person watching: not with --quiet, not when stderr is a file or pipe."""
    if quiet:
        return False
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


@contextlib.contextmanager
def progress(total: int, description: str, quiet: bool = False) -> Iterator[Callable[[str], None]]:
    """A rich progress bar on stderr with ``total`` steps; yields ``advance(label)`` (one call per step).

    When disabled (``--quiet`` or stderr not a TTY), ``advance`` does nothing.
    """
    if not progress_enabled(quiet):
        yield lambda label="": None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[label]}"), console=stderr_console(), transient=True) as bar:
        task = bar.add_task(description, total=total, label="")

        def advance(label: str = "") -> None:
            bar.update(task, advance=1, label=label)

        yield advance


# ------------------------------------------------------------------------------------- option parsing


def parse_list(option: str, text: str, convert: Callable[[str], Any], what: str) -> list:
    """``"a,b,c"`` → converted items; a bad item is a one-line error naming the option."""
    items = [s.strip() for s in str(text).split(",")]
    if not items or any(s == "" for s in items):
        raise ConfigError(f"{option}={text!r} is not allowed: expected a comma-separated list of {what}, e.g. "
                          f"{option} {'0,1' if convert is int else '0.5,1,1.5'}")
    out = []
    for s in items:
        try:
            out.append(convert(s))
        except ValueError:
            raise ConfigError(f"{option}={text!r} is not allowed: {s!r} is not {what[:-1] if what.endswith('s') else what}") from None
    return out


def parse_ints(option: str, text: str, minimum: int | None = None) -> list[int]:
    values = parse_list(option, text, int, "integers")
    for v in values:
        if minimum is not None and v < minimum:
            raise ConfigError(f"{option}={text!r} is not allowed: every value must be >= {minimum}")
    if len(set(values)) != len(values):
        raise ConfigError(f"{option}={text!r} is not allowed: values repeat")
    return values


def parse_floats(option: str, text: str, positive: bool = False) -> list[float]:
    values = parse_list(option, text, float, "numbers")
    for v in values:
        if not math.isfinite(v) or (positive and v <= 0):
            raise ConfigError(f"{option}={text!r} is not allowed: every value must be a finite"
                              f"{' positive' if positive else ''} number")
    if len(set(values)) != len(values):
        raise ConfigError(f"{option}={text!r} is not allowed: values repeat")
    return values


def check_positive(option: str, value: int) -> int:
    if value is None or value <= 0:
        raise ConfigError(f"{option}={value!r} is not allowed: expected a positive integer")
    return value


def check_nonnegative(option: str, value: int) -> int:
    if value is None or value < 0:
        raise ConfigError(f"{option}={value!r} is not allowed: expected an integer >= 0")
    return value


# short names used in analysis labels: "lstm:forget_bias=1" -> "lstm-fb1"
_ABBREV = {"forget_bias": "fb", "gain": "g", "recurrent_init": "", "max_length": "T", "chrono": "chrono",
           "activation": "", "scale": "s", "gate_bias": "gb"}


def _fmt_value(v: Any) -> str:
    if isinstance(v, float):
        return format(v, "g")
    return str(v)


@dataclass(frozen=True)
class CellSpec:
    """A registry cell with options, as written on the command line: ``name[:key=value[:key=value…]]``."""

    name: str
    options: dict = field(default_factory=dict)
    label: str = ""

    def describe(self) -> dict:
        return {"cell": self.name, "options": dict(self.options), "label": self.label}


def _coerce(cell: str, key: str, raw: str, default: Any) -> Any:
    """Convert a command-line value to the type of the option's default (bool/int/float/str/None)."""
    low = raw.strip().lower()
    if low in ("none", "null"):
        return None
    try:
        if isinstance(default, bool):
            if low in ("true", "1", "yes", "on"):
                return True
            if low in ("false", "0", "no", "off"):
                return False
            raise ValueError
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
        if isinstance(default, str):
            return raw
        # default None: a number if it reads as one, else the text
        try:
            return int(raw)
        except ValueError:
            try:
                return float(raw)
            except ValueError:
                return raw
    except ValueError:
        kind = type(default).__name__
        raise ConfigError(f"option {key}={raw!r} of cell {cell!r} is not allowed: expected a {kind}") from None


def option_error(option: str, cell: str, allowed: dict) -> ConfigError:
    return ConfigError(f"option {option} is not accepted by cell {cell!r}; it takes: "
                       f"{', '.join(allowed) or 'no options'} (see `gradscope cells`)")


def parse_cell_spec(text: str) -> CellSpec:
    """``"lstm:forget_bias=1"`` → CellSpec("lstm", {"forget_bias": 1.0}, label "lstm-fb1").

    The cell name is checked against the registry (with a "did you mean"), every option against the
    options the cell accepts, and values are converted to the type of the option's default. A ``name=``
    entry sets the label used in reports.
    """
    from gradscope.cells import entry, options  # imports JAX: only when a command builds cells

    parts = [p.strip() for p in str(text).strip().split(":")]
    name = parts[0]
    if not name:
        raise ConfigError(f"cell spec {text!r} is not allowed: expected NAME or NAME:key=value, e.g. lstm:forget_bias=1")
    entry(name)  # UnknownNameError with suggestions
    allowed = options(name)
    opts: dict[str, Any] = {}
    label = ""
    for p in parts[1:]:
        key, sep, raw = p.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key or not raw.strip():
            raise ConfigError(f"cell spec {text!r} is not allowed: {p!r} should be key=value, e.g. lstm:forget_bias=1")
        if key == "name":
            label = raw.strip()
            continue
        if key not in allowed:
            raise option_error(repr(key), name, allowed)
        opts[key] = _coerce(name, key, raw, allowed[key])
    if not label:
        label = default_label(name, opts)
    return CellSpec(name, opts, label)


def default_label(name: str, opts: dict) -> str:
    """``lstm`` + {forget_bias: 1} → ``lstm-fb1``; options in the cell's own order, so the label is stable."""
    from gradscope.cells import options

    order = {k: i for i, k in enumerate(options(name))}
    items = sorted(opts.items(), key=lambda kv: order.get(kv[0], len(order)))
    bits = [f"{_ABBREV.get(k, k)}{_fmt_value(v)}" if k in _ABBREV else f"{k}={_fmt_value(v)}"
            for k, v in items if v is not None]
    return "-".join([name, *bits])


def parse_cell_list(text: str) -> list[CellSpec]:
    """``"rnn-tanh,lstm:forget_bias=1"`` → specs with unique labels (a repeat gets ``#2``, ``#3`` …)."""
    items = [s for s in (t.strip() for t in str(text).split(","))]
    if not items or any(not s for s in items):
        raise ConfigError(f"--cells={text!r} is not allowed: expected a comma-separated list such as "
                          "rnn-tanh,lstm:forget_bias=1,gru")
    specs, seen = [], {}
    for s in items:
        spec = parse_cell_spec(s)
        n = seen.get(spec.label, 0) + 1
        seen[spec.label] = n
        if n > 1:
            spec = CellSpec(spec.name, spec.options, f"{spec.label}#{n}")
        specs.append(spec)
    return specs


# ------------------------------------------------------------------------------------ outputs, numbers


def check_out_dir(out: Path, force: bool) -> Path:
    """Refuse, before any computation, an output that exists and is not an empty folder (unless --force)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out={str(out)!r} is not allowed: it exists and is not a folder; choose another path")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ConfigError(f"--out={str(out)!r} exists and is not empty: pass --force to replace it, or choose "
                          "another folder")
    if not out.parent.exists():
        raise ConfigError(f"--out={str(out)!r} is not allowed: its parent folder {str(out.parent)!r} does not exist")
    return out


def enable_float64(float64: bool) -> str:
    """Switch JAX to 64-bit BEFORE any array is created when --float64 is given; returns the dtype name."""
    if float64:
        import jax

        jax.config.update("jax_enable_x64", True)
        return "float64"
    return "float32"


def start_distributed(distributed: bool, coordinator: str | None, num_processes: int | None,
                      process_id: int | None) -> None:
    """``jax.distributed.initialize`` for ``--distributed``, before any JAX computation.

    With none of ``--coordinator/--num-processes/--process-id`` JAX detects the cluster (Slurm, Open MPI,
    TPU pods); elsewhere all three are needed (JAX reads only the coordinator address from the environment).
    """
    given = {"--coordinator": coordinator, "--num-processes": num_processes, "--process-id": process_id}
    named = [k for k, v in given.items() if v is not None]
    if not distributed:
        if named:
            raise ConfigError(f"{named[0]} only applies to a multi-process run: add --distributed")
        return
    if named and len(named) < 3:
        missing = [k for k in given if k not in named]
        raise ConfigError(f"{', '.join(named)} given without {', '.join(missing)}: give all three, or none of "
                          "them on a cluster JAX detects by itself (Slurm, Open MPI, TPU pods)")
    if named:
        host, _, port = coordinator.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"--coordinator={coordinator!r} is not allowed: expected HOST:PORT, e.g. "
                              "node0:12345 (the address of process 0)")
        if num_processes < 1:
            raise ConfigError(f"--num-processes={num_processes} is not allowed: expected an integer >= 1")
        if not 0 <= process_id < num_processes:
            raise ConfigError(f"--process-id={process_id} is not allowed: expected 0 … {num_processes - 1} "
                              f"(--num-processes={num_processes})")
    import jax

    try:
        jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                                   process_id=process_id)
    except (ValueError, RuntimeError) as exc:
        raise ConfigError(f"--distributed: JAX could not start the multi-process run ({_one_line(str(exc))[:300]}); "
                          "outside Slurm, Open MPI and TPU pods give --coordinator, --num-processes and "
                          "--process-id") from None
    _native_stdout_to_stderr()


def _native_stdout_to_stderr() -> None:
    """Point file descriptor 1 at stderr and give Python's ``sys.stdout`` a private copy of the real stdout.

    Why: the CPU collectives (Gloo) log their connections with C++ ``std::cout``, which would corrupt
    ``--json`` output; stdout must hold only what gradscope prints. Skipped when stdout is not fd 1
    (captured, e.g. under typer's CliRunner).
    """
    try:
        if sys.stdout.fileno() != 1:
            return
    except (AttributeError, OSError, ValueError):
        return
    sys.stdout.flush()
    real = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = io.TextIOWrapper(io.FileIO(real, "w"), encoding=sys.stdout.encoding, line_buffering=True)


def non_finite(summary: dict) -> str | None:
    """Why a RAW ``Analysis.summary`` (floats, before ``to_dict``) is not usable, or None.

    NaN or +inf anywhere is an error (the states overflowed); −inf log-norms are legitimate (an exactly
    zero product, e.g. every relu unit switched off), and so is a lag profile that ends in −inf.
    """
    v = summary.get("log10_norm_max_lag")
    if not isinstance(v, (int, float)) or math.isnan(v) or v == math.inf:
        return f"log10_norm_max_lag={v}"
    lam = summary.get("lyapunov_max")
    if isinstance(lam, float) and (math.isnan(lam) or lam == math.inf):
        return f"lyapunov_max={lam}"
    if summary.get("finite") is False and v != -math.inf:
        return "the lag profile holds NaN or inf"
    return None


def check_finite(named_summaries: list[tuple[str, dict]]) -> None:
    """Raise `NonFiniteError` (one line, exit 2) naming the analyses whose raw summaries hold NaN/inf."""
    bad = [(n, why) for n, s in named_summaries if (why := non_finite(s))]
    if bad:
        listed = "; ".join(f"{n}: {w}" for n, w in bad[:4]) + (f"; and {len(bad) - 4} more" if len(bad) > 4 else "")
        raise NonFiniteError(f"non-finite results ({listed}); the states overflowed or became NaN: try --float64, a "
                             "smaller --gain or a shorter --length. No report was written")
