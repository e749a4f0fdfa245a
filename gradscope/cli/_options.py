"""What the commands' options mean: shared choices and defaults, cell specs, lists, inputs, --out, --float64.

A cell on the command line is ``name[:key=value[:key=value…]]`` (``lstm:forget_bias=1``): the name is
checked against the registry (with a "did you mean"), each option against the options the cell takes,
and values are converted to the type of the option's default. Every bad value is a one-line
`ConfigError` naming the option, the value and the fix. Nothing here imports JAX at module level
(cell specs import the registry only when a command builds cells).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from gradscope._errors import ConfigError, check_number

if TYPE_CHECKING:
    from gradscope.experiments.sweep import Config

#: defaults shared by analyse, compare and sweep
DEFAULTS = {"hidden": 32, "length": 200, "batch": 4, "input": "uniform", "input_size": 2}


class Init(str, enum.Enum):
    """``--init``: the recurrent initialisation of the Elman family."""

    uniform = "uniform"
    gaussian = "gaussian"
    orthogonal = "orthogonal"
    identity = "identity"


# ------------------------------------------------------------------------------------------ lists


def parse_list(option: str, text: str, convert: Callable[[str], Any], what: str) -> list:
    """``"a,b,c"`` → converted items; a bad item is a one-line error naming the option."""
    items = [s.strip() for s in str(text).split(",")]
    if not items or any(s == "" for s in items):
        raise ConfigError(
            f"{option}={text!r} is not allowed: expected a comma-separated list of {what}, e.g. "
            f"{option} {'0,1' if convert is int else '0.5,1,1.5'}"
        )
    out = []
    for s in items:
        try:
            out.append(convert(s))
        except ValueError:
            one = what[:-1] if what.endswith("s") else what
            raise ConfigError(f"{option}={text!r} is not allowed: {s!r} is not {one}") from None
    return out


def parse_ints(option: str, text: str, minimum: int | None = None) -> list[int]:
    """``"0,1,2"`` → ``[0, 1, 2]``: distinct integers, each >= ``minimum``."""
    values = parse_list(option, text, int, "integers")
    for v in values:
        if minimum is not None and v < minimum:
            raise ConfigError(f"{option}={text!r} is not allowed: every value must be >= {minimum}")
    if len(set(values)) != len(values):
        raise ConfigError(f"{option}={text!r} is not allowed: values repeat")
    return values


def parse_floats(option: str, text: str, positive: bool = False) -> list[float]:
    """``"0.5,1,1.5"`` → distinct finite numbers (``> 0`` with ``positive``)."""
    values = parse_list(option, text, float, "numbers")
    for v in values:
        try:
            check_number(option, v, positive=positive)
        except ConfigError:  # name the whole list as typed, not one parsed item
            raise ConfigError(
                f"{option}={text!r} is not allowed: every value must be a finite"
                f"{' positive' if positive else ''} number"
            ) from None
    if len(set(values)) != len(values):
        raise ConfigError(f"{option}={text!r} is not allowed: values repeat")
    return values


# ------------------------------------------------------------------------------------- cell specs

# short names used in analysis labels: "lstm:forget_bias=1" -> "lstm-fb1"
_ABBREV = {
    "forget_bias": "fb",
    "gain": "g",
    "recurrent_init": "",
    "max_length": "T",
    "chrono": "chrono",
    "activation": "",
    "scale": "s",
    "gate_bias": "gb",
}


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
        # default None: true/false as a bool (rglru:projection=false), a number if it reads as one, else the text
        if low in ("true", "false"):
            return low == "true"
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
    """The error for an option the cell does not take, listing the ones it does."""
    return ConfigError(
        f"option {option} is not accepted by cell {cell!r}; it takes: "
        f"{', '.join(allowed) or 'no options'} (see `gradscope cells`)"
    )


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
        raise ConfigError(
            f"cell spec {text!r} is not allowed: expected NAME or NAME:key=value, e.g. lstm:forget_bias=1"
        )
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
    bits = [
        f"{_ABBREV.get(k, k)}{_fmt_value(v)}" if k in _ABBREV else f"{k}={_fmt_value(v)}"
        for k, v in items
        if v is not None
    ]
    return "-".join([name, *bits])


def parse_cell_list(text: str) -> list[CellSpec]:
    """``"rnn-tanh,lstm:forget_bias=1"`` → specs with unique labels (a repeat gets ``#2``, ``#3`` …)."""
    items = [s for s in (t.strip() for t in str(text).split(","))]
    if not items or any(not s for s in items):
        raise ConfigError(
            f"--cells={text!r} is not allowed: expected a comma-separated list such as rnn-tanh,lstm:forget_bias=1,gru"
        )
    specs, seen = [], {}
    for s in items:
        spec = parse_cell_spec(s)
        n = seen.get(spec.label, 0) + 1
        seen[spec.label] = n
        if n > 1:
            spec = CellSpec(spec.name, spec.options, f"{spec.label}#{n}")
        specs.append(spec)
    return specs


def auto_options(cell: str, options: dict, length: int) -> dict:
    """IndRNN without an explicit max_length gets max_length = T: |u| ≤ γ^(1/T) (Li et al. 2018, §3.1).
    The same rule for every command: `gradscope.experiments.models.command_options`."""
    from gradscope.experiments.models import command_options

    return command_options(cell, options, length)


def seed_configs(label: str, seeds: list[int], **settings: Any) -> list[Config]:
    """One analysis per seed of one cell or model, named ``label`` (one seed) or ``label/s=SEED`` (several), as
    ``gradscope compare`` names its rows; ``settings`` are the other `Config` fields, shared by all seeds."""
    from gradscope.experiments.sweep import Config

    return [Config(name=label if len(seeds) == 1 else f"{label}/s={s}", label=label, seed=s, **settings) for s in seeds]


# ----------------------------------------------------------------------------------------- inputs


def input_source(source: str) -> str:
    """``--input``: an input source or task name, or a FILE (read and validated at once: `ConfigError`), else
    `UnknownNameError` with suggestions."""
    from gradscope.experiments.inputs import check_source

    return check_source(source)


def input_size_for(source: str, input_size: Optional[int], length: int) -> Optional[int]:
    """The model's input size: the task's for task sources (an explicit different one is an error)."""
    from gradscope.experiments import inputs

    task_m = inputs.task_input_size(source, max(length, 64))
    if task_m is None:
        return DEFAULTS["input_size"] if input_size is None else input_size
    if input_size is not None and input_size != task_m:
        raise ConfigError(
            f"--input-size={input_size} is not allowed with --input {source}: its inputs have "
            f"size {task_m} (leave --input-size out)"
        )
    return task_m


def model_input_size(m: int, source: str, input_size: Optional[int], length: int, takes: str) -> int:
    """``m``, the input size of imported weights, once the input source and a typed --input-size agree with it;
    ``takes`` names the weights in the errors (``the checkpoints take``)."""
    from gradscope.experiments import inputs

    task_m = inputs.task_input_size(source, max(length, 64))
    if task_m is not None and task_m != m:
        fix = f"give a file with {m} features per step" if inputs.is_file(source) else "use --input noise/uniform/zeros"
        raise ConfigError(f"--input {source} gives inputs of size {task_m}, but {takes} {m}: {fix}")
    if input_size is not None and input_size != m:
        raise ConfigError(f"--input-size={input_size} is not allowed: {takes} inputs of size {m}")
    return m


#: what a FILE fixes, as an error message names it
_FILE_SIZES = {"batch": "sequences", "length": "steps per sequence", "input_size": "features per step"}


def file_input(source: str, lengths: Optional[list[int]] = None, **typed: Optional[int]) -> Optional[dict]:
    """What a FILE ``--input`` fixes: ``{"batch": B, "length": T, "input_size": m, "lengths": [...], "source":
    record}`` (the record of `gradscope.experiments.input_files`); None for a generated source.

    Precedence: the file's sizes win. ``typed`` holds the values typed on the command line (``batch=``,
    ``length=``, ``input_size=``; None when not typed), and each must equal the file's. ``lengths`` (sweep's
    --lengths, when typed) may be shorter than T: each length analyses the first steps of every sequence.
    """
    from gradscope.experiments import input_files, inputs

    if not inputs.is_file(source):
        return None
    data = input_files.load(source)
    B, T, m = data.shape
    own = {"batch": B, "length": T, "input_size": m}
    shape = tuple(data.source["shape"])
    for key, value in typed.items():
        if value is not None and value != own[key]:
            flag = "--" + key.replace("_", "-")
            raise ConfigError(
                f"{flag}={value} is not allowed with --input {source}: its array (shape {shape}) has "
                f"{own[key]} {_FILE_SIZES[key]} (leave {flag} out)"
            )
    if lengths is not None and max(lengths) > T:
        raise ConfigError(
            f"--lengths={','.join(map(str, lengths))} is not allowed with --input {source}: its sequences have "
            f"{T} steps (shape {shape}); give lengths of at most {T} (each analyses the first steps)"
        )
    return {**own, "lengths": list(lengths) if lengths is not None else [T], "source": dict(data.source)}


def source_and_file(
    text: str, *, length: Optional[int], batch: Optional[int], input_size: Optional[int]
) -> tuple[str, Optional[dict]]:
    """``--input`` checked (`input_source`) and what it fixes when it is a FILE (`file_input`: the sizes typed
    on the command line must agree with the file's), as ``analyse`` and ``compare`` read it."""
    source = input_source(text)
    return source, file_input(source, length=length, batch=batch, input_size=input_size)


# ---------------------------------------------------------------------------------- --out, --float64


def check_out_dir(out: Path, force: bool, markers: tuple[str, ...] = ("report.json",), *, reserve: bool = True) -> Path:
    """Refuse, before any computation, an --out that must not be written (`gradscope._atomic.check_output_folder`:
    a file, a non-empty folder without --force, a folder gradscope did not write even with --force, the
    current folder, its parents or home) or whose parent folder does not exist. With ``reserve`` the folder is
    reserved for this process until it is published (a second run into it is refused)."""
    from gradscope._atomic import check_output_folder

    out = Path(out)
    why = check_output_folder(out, force=force, markers=markers, reserve=reserve)
    if why:
        raise ConfigError(f"--out={str(out)!r} is not allowed: {why}")
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
