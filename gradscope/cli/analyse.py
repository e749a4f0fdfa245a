"""``gradscope analyse``: one model, a registry cell or imported weights (``gradscope compare`` is in
`gradscope.cli.compare`).

    gradscope analyse --cell lstm --forget-bias 1 --out lstm-report
    gradscope analyse --weights lstm.safetensors --arch torch-lstm --out imported

The library (JAX) is imported inside the commands.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Literal, Optional

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
    model_input_size,
    option_error,
    parse_cell_spec,
    source_and_file,
)
from gradscope.cli._params import Float64, Force, InputSource, JsonReport, Layers, Quiet, Residual
from gradscope.cli._reports import analyse_all, finish, write

Mode = Literal["exact", "probe"]
Arch = Literal["auto", "torch-lstm", "torch-gru", "torch-rnn-tanh", "torch-rnn-relu"]


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
        "auto",
        "--arch",
        help="Architecture of --weights (auto: detected from the tensor names; layers and bidirectional are inferred).",
    ),
    hidden: Optional[int] = typer.Option(None, "--hidden", min=1, help="Hidden size [default: 32]."),
    length: Optional[int] = typer.Option(
        None, "--length", "-T", min=1, help=f"Sequence length T [default: {DEFAULTS['length']}, or the --input file's]."
    ),
    batch: Optional[int] = typer.Option(
        None,
        "--batch",
        "-B",
        min=1,
        help=f"Input sequences (results are batch means) [default: {DEFAULTS['batch']}, or the --input file's].",
    ),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed for weights and inputs."),
    forget_bias: Optional[float] = typer.Option(None, "--forget-bias", help="LSTM forget-gate bias."),
    chrono: Optional[float] = typer.Option(
        None, "--chrono", help="LSTM chrono initialisation with T_max (Tallec & Ollivier 2018)."
    ),
    gain: Optional[float] = typer.Option(
        None,
        "--gain",
        help="Spectral radius of W_hh (Elman family): an orthogonal W_hh of exactly that radius, or with --init "
        "gaussian/uniform entries of variance gain²/n [default: PyTorch's nn.RNN init U(±1/√n)].",
    ),
    init: Optional[Init] = typer.Option(
        None, "--init", help="Recurrent initialisation (Elman family) [default: uniform, or orthogonal with --gain]."
    ),
    layers: Layers = 1,
    residual: Residual = False,
    input: InputSource = DEFAULTS["input"],
    input_size: Optional[int] = typer.Option(
        None, "--input-size", min=1, help="Input size m [default: 2; task sources fix it]."
    ),
    float64: Float64 = False,
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
        "exact", "--mode", help="exact (dense Jacobians) or probe (matrix-free, large hidden sizes)."
    ),
    threshold: float = typer.Option(
        -3.0, "--threshold", help="log10 norm below which the gradient counts as vanished (defines the horizon)."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Report folder to write (refused if non-empty, unless --force)."),
    force: Force = False,
    json_out: JsonReport = False,
    quiet: Quiet = False,
) -> None:
    """Analyse the gradient flow of one model: a registry cell or an imported one.

    Example: `gradscope analyse --cell lstm --hidden 128 --length 500 --batch 8 --forget-bias 1 --out lstm-fb1`

    Imported: `gradscope analyse --weights lstm.safetensors --arch torch-lstm --out imported`
    """
    t0 = time.perf_counter()
    dtype = enable_float64(float64)  # before any array exists
    source, fin = source_and_file(input, length=length, batch=batch, input_size=input_size)  # typed values must agree
    length = fin["length"] if fin is not None else DEFAULTS["length"] if length is None else length
    batch = fin["batch"] if fin is not None else DEFAULTS["batch"] if batch is None else batch
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
        "mode": mode,
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
        config = {"weights": str(weights), "arch": arch, "model": _safe_describe(model)}
    else:
        if arch != "auto":
            raise ConfigError("--arch is only used with --weights FILE")
        assert cell is not None  # exactly one of --cell and --weights (checked above)
        cfg = _cell_config(cell, given, hidden, layers, residual, input_size, common)
        config = {}
    config = {**cfg.to_dict(), **config, **({"input_file": fin["source"]} if fin is not None else {})}
    from gradscope.report.drawing import figure_pool

    with figure_pool(1) as pool:  # its workers import matplotlib while the model is analysed, then draw
        analyses = analyse_all([cfg], quiet=quiet, what="analysing", model=model, pool=pool)
        report = write(out, analyses, command="analyse", config=config, force=force, quiet=quiet, pool=pool)
    finish(out, report, json_out=json_out, quiet=quiet, title="gradient flow", seconds=time.perf_counter() - t0)


def _imported_config(model, weights: Path, input_size: Optional[int], common: dict):
    """The analysis settings of an imported model; its input size must match the input source's."""
    from gradscope.experiments.sweep import Config

    takes = f"the model in {str(weights)!r} takes"
    m = model_input_size(int(model.input_size), common["input"], input_size, common["length"], takes)
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

    if arch == "auto":
        return io.load_model(str(path), dtype=dtype)
    kind, _, nonlin = arch.removeprefix("torch-").partition("-")
    return io.from_torch(str(path), kind=kind, nonlinearity=nonlin or None, dtype=dtype)


COMMANDS = (analyse,)
