"""``gradscope analyse`` (one model: a registry cell or imported weights) and ``gradscope compare`` (cells
side by side).

    gradscope analyse --cell lstm --forget-bias 1 --out lstm-report
    gradscope analyse --weights lstm.safetensors --arch torch-lstm --out imported
    gradscope compare                    # which cells vanish, explode or keep their gradient

The library (JAX) is imported inside the commands.
"""

from __future__ import annotations

import enum
import json
import time
from pathlib import Path
from typing import Optional

import typer

from gradscope._errors import ConfigError
from gradscope.cli._options import (
    DEFAULTS,
    Init,
    auto_options,
    check_out_dir,
    default_label,
    enable_float64,
    input_size_for,
    input_source,
    option_error,
    parse_cell_list,
    parse_cell_spec,
    parse_ints,
)
from gradscope.cli._output import info, warn
from gradscope.cli._reports import analyse_all, finish, write

#: the embedded default of `gradscope compare`: the textbook contrast of vanishing and kept gradients
DEFAULT_COMPARE_CELLS = ("rnn-tanh", "lstm:forget_bias=0", "lstm:forget_bias=1", "gru", "indrnn", "irnn", "ln-lstm")
#: in the default comparison IndRNN gets the official adding-problem init of its last layer (Li et al. 2018,
#: IndRNN_Theano_Lasagne/adding/adding.py): u ~ U((1/2)^(1/T), 2^(1/T)), so |u|^T ∈ [1/2, 2]: the recurrent
#: weights alone neither vanish nor explode over T steps. (The registry default u ~ U(0, 2^(1/T)) is the
#: first-layer init, under which most units forget within tens of steps.)
INDRNN_LOW = 0.5


class Mode(str, enum.Enum):
    exact = "exact"
    probe = "probe"


class Arch(str, enum.Enum):
    auto = "auto"
    torch_lstm = "torch-lstm"
    torch_gru = "torch-gru"
    torch_rnn_tanh = "torch-rnn-tanh"
    torch_rnn_relu = "torch-rnn-relu"


# command-line flag -> registry option
_FLAG_OPTIONS = {"--forget-bias": "forget_bias", "--chrono": "chrono", "--gain": "gain", "--init": "recurrent_init"}


def analyse(
    cell: Optional[str] = typer.Option(
        None, "--cell", "-c", help="Registry cell (see `gradscope cells`), optionally with options: lstm:forget_bias=1."
    ),
    weights: Optional[Path] = typer.Option(
        None,
        "--weights",
        "-w",
        help="Analyse an imported model from a weight file (.safetensors, .npz, .pt) instead of --cell.",
    ),
    arch: Arch = typer.Option(
        Arch.auto,
        "--arch",
        help="Architecture of --weights (auto: detected from the tensor names; layers and bidirectional are inferred).",
    ),
    hidden: Optional[int] = typer.Option(None, "--hidden", min=1, help="Hidden size [default: 32]."),
    length: int = typer.Option(DEFAULTS["length"], "--length", "-T", min=1, help="Sequence length T."),
    batch: int = typer.Option(
        DEFAULTS["batch"], "--batch", "-B", min=1, help="Input sequences (results are batch means)."
    ),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed for weights and inputs."),
    forget_bias: Optional[float] = typer.Option(None, "--forget-bias", help="LSTM forget-gate bias."),
    chrono: Optional[float] = typer.Option(
        None, "--chrono", help="LSTM chrono initialisation with T_max (Tallec & Ollivier 2018)."
    ),
    gain: Optional[float] = typer.Option(None, "--gain", help="Recurrent gain (Elman family)."),
    init: Optional[Init] = typer.Option(None, "--init", help="Recurrent initialisation (Elman family)."),
    layers: int = typer.Option(1, "--layers", min=1, help="Stacked layers."),
    residual: bool = typer.Option(False, "--residual", help="Residual connections between stacked layers."),
    input: str = typer.Option(
        DEFAULTS["input"], "--input", help="Input source: noise, uniform, zeros, adding, copy, temporal-order."
    ),
    input_size: Optional[int] = typer.Option(
        None, "--input-size", min=1, help="Input size m [default: 2; task sources fix it]."
    ),
    float64: bool = typer.Option(False, "--float64", help="Compute in float64 (default float32)."),
    triangle: bool = typer.Option(
        False, "--triangle/--no-triangle", help="Also compute the (T+1)×(T+1) triangle of all ‖∂S_t/∂S_k‖ (O(T²))."
    ),
    attribution: bool = typer.Option(False, "--attribution", help="Also compute gradient attribution by lag."),
    sensitivity: bool = typer.Option(
        False,
        "--sensitivity",
        help="Also compute the parameter sensitivity log10 ‖∂S_t/∂θ‖_F per parameter over t (curse of memory).",
    ),
    mode: Mode = typer.Option(
        Mode.exact, "--mode", help="exact (dense Jacobians) or probe (matrix-free, large hidden sizes)."
    ),
    threshold: float = typer.Option(
        -3.0, "--threshold", help="log10 norm below which the gradient counts as vanished (defines the horizon)."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Report folder to write (refused if non-empty, unless --force)."),
    force: bool = typer.Option(False, "--force", help="Replace a non-empty --out."),
    json_out: bool = typer.Option(False, "--json", help="Print the report JSON on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress and no table on stderr."),
) -> None:
    """Analyse the gradient flow of one model: a registry cell or an imported one.

    Example: `gradscope analyse --cell lstm --hidden 128 --length 500 --batch 8 --forget-bias 1 --out lstm-fb1`

    Imported: `gradscope analyse --weights lstm.safetensors --arch torch-lstm --out imported`
    """
    t0 = time.perf_counter()
    dtype = enable_float64(float64)  # before any array exists
    source = input_source(input)
    flags = {
        "--forget-bias": forget_bias,
        "--chrono": chrono,
        "--gain": gain,
        "--init": init.value if init is not None else None,
    }
    given = {f: v for f, v in flags.items() if v is not None}
    if (cell is None) == (weights is None):
        raise ConfigError("give exactly one of --cell NAME (a registry cell) or --weights FILE (an imported model)")
    check_out_dir(out, force)
    common = {
        "length": length,
        "batch": batch,
        "seed": seed,
        "input": source,
        "dtype": dtype,
        "threshold": threshold,
        "mode": mode.value,
        "triangle": triangle,
        "attribution": attribution,
        "sensitivity": sensitivity,
    }
    model = None
    if weights is not None:
        if given:
            raise ConfigError(f"{next(iter(given))} is not allowed with --weights: the imported weights fix the model")
        if hidden is not None or layers != 1 or residual:
            raise ConfigError(
                "--hidden/--layers/--residual are not allowed with --weights: they are read from the file"
            )
        model = _load_weights(weights, arch, dtype)
        cfg = _imported_config(model, weights, input_size, common)
        config = {"weights": str(weights), "arch": arch.value, "model": _safe_describe(model)}
    else:
        if arch is not Arch.auto:
            raise ConfigError("--arch is only used with --weights FILE")
        assert cell is not None  # exactly one of --cell and --weights (checked above)
        cfg = _cell_config(cell, given, hidden, layers, residual, input_size, common)
        config = {}
    config = {**cfg.to_dict(), **config}
    analyses = analyse_all([cfg], quiet=quiet, what="analysing", model=model)
    report = write(out, analyses, command="analyse", config=config, force=force)
    finish(out, report, json_out=json_out, quiet=quiet, title="gradient flow", seconds=time.perf_counter() - t0)
    if not quiet and not json_out:
        _print_findings(report["analyses"])


def _print_findings(analyses: list[dict]) -> None:
    """The findings of the analyses as a table on stderr (id, severity, message, suggestion), or one line
    saying that no rule fired."""
    from rich.markup import escape
    from rich.table import Table

    from gradscope.cli._output import stderr_console

    rows = [(a.get("name", "?"), f) for a in analyses for f in a.get("findings") or []]
    if not rows:
        info("findings: none (no rule of gradscope.analysis.findings fired)")
        return
    t = Table(title="findings", title_justify="left", caption="evidence and references: report.json, report.html")
    for col in ("analysis", "finding", "severity", "what was found", "suggestion"):
        t.add_column(col, no_wrap=col in ("analysis", "finding", "severity"))
    colour = {"error": "red", "warning": "yellow", "info": "cyan"}
    for name, f in rows:
        sev = str(f.get("severity", "?"))
        text = [escape(str(x)) for x in (name, f.get("id", "?"), f.get("message", ""), f.get("suggestion", ""))]
        t.add_row(text[0], text[1], f"[{colour.get(sev, 'white')}]{escape(sev)}[/]", text[2], text[3])
    stderr_console().print(t)


def _imported_config(model, weights: Path, input_size: Optional[int], common: dict):
    """The analysis settings of an imported model; its input size must match the input source's."""
    from gradscope.experiments import inputs
    from gradscope.experiments.sweep import Config

    m, source = int(model.input_size), common["input"]
    task_m = inputs.task_input_size(source, max(common["length"], 64))
    if task_m is not None and task_m != m:
        raise ConfigError(
            f"--input {source} gives inputs of size {task_m}, but the model in {str(weights)!r} "
            f"takes {m}: use --input noise, uniform or zeros"
        )
    if input_size is not None and input_size != m:
        raise ConfigError(
            f"--input-size={input_size} is not allowed: the model in {str(weights)!r} takes inputs of size {m}"
        )
    return Config(
        name=weights.stem, cell="imported", label=weights.stem, hidden=int(model.hidden_size), input_size=m, **common
    )


def _cell_config(
    cell: str, given: dict, hidden: Optional[int], layers: int, residual: bool, input_size: Optional[int], common: dict
):
    """The analysis settings of a registry cell: its spec, with the flags (--forget-bias …) as options."""
    from gradscope.cells import options as cell_options
    from gradscope.experiments.sweep import Config

    spec = parse_cell_spec(cell)
    allowed = cell_options(spec.name)
    opts = dict(spec.options)
    for flag, value in given.items():
        key = _FLAG_OPTIONS[flag]
        if key not in allowed:
            raise option_error(flag, spec.name, allowed)
        if key in opts:
            raise ConfigError(f"{flag} and {spec.name}:{key}=… both set {key}: give it once")
        opts[key] = value
    opts = auto_options(spec.name, opts, common["length"])
    explicit = spec.label != _label_with(spec.name, spec.options)  # set with :name=
    label = spec.label if explicit else _label_with(spec.name, opts)
    return Config(
        name=label,
        cell=spec.name,
        options=opts,
        label=label,
        hidden=DEFAULTS["hidden"] if hidden is None else hidden,
        layers=layers,
        residual=residual,
        input_size=input_size_for(common["input"], input_size, common["length"]),
        **common,
    )


def _label_with(name: str, opts: dict) -> str:
    return default_label(name, {k: v for k, v in opts.items() if k != "max_length"})


def _safe_describe(model) -> dict:
    d = getattr(model, "describe", None)
    try:
        return json.loads(json.dumps(d())) if callable(d) else {"model": type(model).__name__}
    except (TypeError, ValueError):
        return {"model": type(model).__name__}


def _load_weights(path: Path, arch: Arch, dtype: str):
    """An imported model: PyTorch via `from_torch` for an explicit --arch, else `load_model` (detected)."""
    if not path.exists():
        raise ConfigError(f"--weights={str(path)!r} does not exist: check the path")
    if path.is_dir():
        raise ConfigError(f"--weights={str(path)!r} is a folder: give a weight file (.safetensors, .npz, .pt)")
    from gradscope import io

    if arch is Arch.auto:
        return io.load_model(str(path), dtype=dtype)
    kind, _, nonlin = arch.value.removeprefix("torch-").partition("-")
    return io.from_torch(str(path), kind=kind, nonlinearity=nonlin or None, dtype=dtype)


#: `gradscope compare --preset NAME`: a named set of cells with the sizes it runs at. An explicit --hidden,
#: --length, --batch or --input-size overrides the preset's; --cells and --preset exclude each other.
PRESETS: dict[str, dict] = {
    # the diagonal and gated recurrences of recent sequence models (Orvieto et al. 2023; Gu et al. 2022;
    # Gu & Dao 2023; Dao & Gu 2024; Feng et al. 2024; De et al. 2024; Beck et al. 2024), small enough that
    # all nine run in seconds each on 2 CPU cores (the time is mostly compilation)
    "modern": {
        "cells": ("lru", "s4d", "mamba", "mamba2", "mingru", "minlstm", "rglru", "mlstm", "slstm"),
        "hidden": 8,
        "length": 64,
        "batch": 2,
        "input_size": 4,
    },
}

#: what --input-size and --hidden mean for the cells where they are not simply the input and state widths
SIZE_MEANINGS = {
    "lru": "--hidden is the number of complex modes n (state 2n)",
    "s4d": "--input-size is the channels H and --hidden the complex modes per channel N (state 2·H·N)",
    "mamba": "--input-size is the channels D and --hidden the states per channel N (state D·N)",
    "mamba2": "--input-size is the channels D, split into `heads` heads, and --hidden the states N (state D·N)",
    "rglru": "--hidden is the width n; an input projection is added when --input-size differs",
    "slstm": "--hidden is heads × head size: num_heads must divide it",
    "mlstm": "--hidden is heads × head size (state h, C, n, m: 2n + heads·Dh² + heads)",
}


def _preset(name: Optional[str], cells: Optional[str]) -> dict:
    """The settings of ``--preset NAME`` (empty without one); refuses an unknown name and --cells with it."""
    if name is None:
        return {}
    if name not in PRESETS:
        raise ConfigError(f"--preset={name!r} is not allowed: the presets are {', '.join(PRESETS)}")
    if cells is not None:
        raise ConfigError(f"--cells and --preset {name} both choose the cells: give one of them")
    return PRESETS[name]


def _check_buildable(specs, input_size: int, hidden: int, length: int, dtype: str) -> None:
    """Build every cell abstractly (`jax.eval_shape`: shapes only, no weights) before any analysis runs, so
    that sizes a cell cannot take (a head count that does not divide --hidden or --input-size, ...) fail
    at once, naming the cell, the flags and what the sizes mean for it."""
    import jax

    from gradscope._errors import GradscopeError
    from gradscope.cells import make

    for spec in specs:
        opts = auto_options(spec.name, spec.options, length)
        try:
            jax.eval_shape(
                lambda k, spec=spec, opts=opts: make(spec.name, input_size, hidden, key=k, dtype=dtype, **opts),
                jax.random.key(0),
            )
        except (GradscopeError, TypeError, ValueError) as exc:
            meaning = f" (for {spec.name}, {SIZE_MEANINGS[spec.name]})" if spec.name in SIZE_MEANINGS else ""
            raise ConfigError(
                f"cell {spec.label!r} cannot be built with --input-size {input_size} --hidden {hidden}: "
                f"{str(exc).rstrip('.')}{meaning}"
            ) from None


def compare(
    cells: Optional[str] = typer.Option(
        None,
        "--cells",
        help="Comma-separated registry cells, each optionally with options: lstm:forget_bias=1:chrono=200 "
        f"[default: {','.join(DEFAULT_COMPARE_CELLS)}].",
    ),
    preset: Optional[str] = typer.Option(
        None,
        "--preset",
        help="A named comparison instead of --cells. modern: "
        + ", ".join(PRESETS["modern"]["cells"])
        + " (hidden {hidden}, T = {length}, batch {batch}, input size {input_size}; explicit flags override).".format(
            **PRESETS["modern"]
        ),
    ),
    hidden: Optional[int] = typer.Option(
        None, "--hidden", min=1, help=f"Hidden size [default: {DEFAULTS['hidden']}, or the preset's]."
    ),
    length: Optional[int] = typer.Option(
        None, "--length", "-T", min=1, help=f"Sequence length T [default: {DEFAULTS['length']}, or the preset's]."
    ),
    batch: Optional[int] = typer.Option(
        None, "--batch", "-B", min=1, help=f"Input sequences per cell [default: {DEFAULTS['batch']}, or the preset's]."
    ),
    seeds: str = typer.Option("0", "--seeds", "--seed", help="Seed(s), comma-separated: 0 or 0,1,2."),
    input: str = typer.Option(
        DEFAULTS["input"], "--input", help="Input source: noise, uniform, zeros, adding, copy, temporal-order."
    ),
    input_size: Optional[int] = typer.Option(
        None, "--input-size", min=1, help="Input size m [default: 2, or the preset's; task sources fix it]."
    ),
    threshold: float = typer.Option(-3.0, "--threshold", help="log10 norm that defines the horizon."),
    float64: bool = typer.Option(False, "--float64", help="Compute in float64 (default float32)."),
    out: Path = typer.Option(Path("gradscope-report"), "--out", "-o", help="Report folder to write."),
    force: bool = typer.Option(False, "--force", help="Replace a non-empty --out."),
    json_out: bool = typer.Option(False, "--json", help="Print the report JSON on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress and no table on stderr."),
) -> None:
    """Compare cells side by side: which vanish, explode or keep their gradient.

    With no options: tanh RNN, LSTM with forget bias 0 and 1, GRU, IndRNN (with the adding-problem init
    u ~ U(2^(-1/T), 2^(1/T)) of Li et al. 2018), IRNN and layer-normalised LSTM, hidden 32, T = 200, 4 sequences
    of U(0,1) inputs (the adding problem's value stream), into ./gradscope-report.

    `--preset modern`: the recent diagonal and gated recurrences side by side: LRU, S4D, Mamba, Mamba-2, minGRU,
    minLSTM, RG-LRU, mLSTM and sLSTM at small sizes (hidden 8, input size 4, T = 64, 2 sequences). For S4D,
    Mamba and Mamba-2, --input-size is the number of channels and --hidden the states per channel.

    Example: `gradscope compare --cells rnn-tanh,lstm:forget_bias=1,indrnn --length 500 --out cmp`

    Example: `gradscope compare --preset modern --length 200 --out modern`
    """
    t0 = time.perf_counter()
    dtype = enable_float64(float64)
    from gradscope.cells import names as cell_names
    from gradscope.experiments import inputs
    from gradscope.experiments.sweep import Config

    chosen = _preset(preset, cells)
    hidden = hidden if hidden is not None else chosen.get("hidden", DEFAULTS["hidden"])
    length = length if length is not None else chosen.get("length", DEFAULTS["length"])
    batch = batch if batch is not None else chosen.get("batch", DEFAULTS["batch"])
    source = input_source(input)
    seed_list = parse_ints("--seeds", seeds, minimum=0)
    cell_text = cells if cells is not None else ",".join(chosen.get("cells", DEFAULT_COMPARE_CELLS))
    default_cells = not chosen and cell_text == ",".join(DEFAULT_COMPARE_CELLS)
    entries = [s.strip() for s in cell_text.split(",")]
    if default_cells:  # the embedded default: skip (with a warning) what this version does not register
        missing = [e for e in entries if e.split(":")[0] not in cell_names()]
        for e in missing:
            warn(f"cell {e!r} is not registered in this version; left out of the comparison")
        entries = [e for e in entries if e not in missing]
    specs = parse_cell_list(",".join(entries))
    check_out_dir(out, force)
    m = input_size_for(source, input_size, length)
    if input_size is None and "input_size" in chosen and inputs.task_input_size(source, max(length, 64)) is None:
        m = chosen["input_size"]  # a task source fixes the input size; otherwise the preset's
    assert m is not None  # input_size_for: the task's, the given or the default size
    _check_buildable(specs, m, hidden, length, dtype)
    configs = []
    for spec in specs:
        opts = auto_options(spec.name, spec.options, length)
        if default_cells and spec.name == "indrnn":
            opts = {**opts, "u_min": INDRNN_LOW ** (1.0 / length)}
        for s in seed_list:
            name = spec.label if len(seed_list) == 1 else f"{spec.label}/s={s}"
            configs.append(
                Config(
                    name=name,
                    cell=spec.name,
                    options=opts,
                    label=spec.label,
                    hidden=hidden,
                    length=length,
                    batch=batch,
                    seed=s,
                    input=source,
                    input_size=m,
                    dtype=dtype,
                    threshold=threshold,
                )
            )
    config = {
        "cells": [s.describe() for s in specs],
        **({"preset": preset} if chosen else {}),
        "hidden": hidden,
        "length": length,
        "batch": batch,
        "seeds": seed_list,
        "input": source,
        "input_size": m,
        "dtype": dtype,
        "threshold": threshold,
        "grid": [c.to_dict() for c in configs],
    }
    analyses = analyse_all(configs, quiet=quiet, what="comparing")
    report = write(out, analyses, command="compare", config=config, force=force)
    finish(
        out,
        report,
        json_out=json_out,
        quiet=quiet,
        title=f"gradient flow over T = {length} steps (hidden {hidden}, input {source}, {dtype})",
        seconds=time.perf_counter() - t0,
    )
    if not quiet and not json_out:
        ranked = sorted(analyses, key=lambda a: -(a["summary"].get("log10_norm_max_lag") or -1e308))
        info("longest-lag gradient, largest first: " + " > ".join(a["name"] for a in ranked))


COMMANDS = (analyse, compare)
