"""``gradscope compare``: registry cells side by side, on the same inputs, in one report.

    gradscope compare                    # which cells vanish, explode or keep their gradient
    gradscope compare --preset modern    # the diagonal and gated recurrences of recent sequence models

The library (JAX) is imported inside the command.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from gradscope._errors import ConfigError
from gradscope.cli import _checkpoints
from gradscope.cli._options import (
    DEFAULTS,
    CellSpec,
    auto_options,
    check_out_dir,
    enable_float64,
    input_size_for,
    parse_cell_list,
    parse_floats,
    parse_ints,
    seed_configs,
    source_and_file,
)
from gradscope.cli._output import info, warn
from gradscope.cli._params import Float64, Force, InputSource, JsonReport, Quiet, Threshold
from gradscope.cli._reports import analyse_all, finish, write

#: the embedded default of `gradscope compare`: the textbook contrast of vanishing and kept gradients
DEFAULT_COMPARE_CELLS = ("rnn-tanh", "lstm:forget_bias=0", "lstm:forget_bias=1", "gru", "indrnn", "irnn", "ln-lstm")
#: IndRNN gets the official adding-problem init of its last layer (Li et al. 2018): u ~ U((1/2)^(1/T), 2^(1/T)),
#: in every command (`gradscope.experiments.models.layer_options`)
INDRNN_LOW = 0.5


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

    from gradscope import _random
    from gradscope._errors import GradscopeError
    from gradscope.experiments.models import build_model

    for spec in specs:
        sizes = {"input_size": input_size, "hidden": hidden, "length": length, "dtype": dtype}
        try:
            jax.eval_shape(lambda k, spec=spec: build_model(spec.name, spec.options, key=k, **sizes), _random.key(0))
        except (GradscopeError, TypeError, ValueError) as exc:
            meaning = f" (for {spec.name}, {SIZE_MEANINGS[spec.name]})" if spec.name in SIZE_MEANINGS else ""
            raise ConfigError(
                f"cell {spec.label!r} cannot be built with --input-size {input_size} --hidden {hidden}: "
                f"{str(exc).rstrip('.')}{meaning}"
            ) from None


def _with_gains(specs: list[CellSpec], gains: Optional[str]) -> list[CellSpec]:
    """``--gains G1,G2``: every spec whose cell takes a ``gain`` (and does not set one) once per gain,
    labelled ``NAME:gain=G``; the others as they are. A list where no cell takes a gain is refused."""
    if gains is None:
        return specs
    from gradscope.cells import options as cell_options

    values = parse_floats("--gains", gains, positive=True)
    out: list[CellSpec] = []
    for spec in specs:
        if "gain" not in cell_options(spec.name) or "gain" in spec.options:
            out.append(spec)
            continue
        out += [CellSpec(spec.name, spec.options | {"gain": g}, f"{spec.label}:gain={g:g}") for g in values]
    if len(out) == len(specs) and len(values) > 1:
        raise ConfigError(
            f"--gains={gains!r} does not apply: none of the cells has a gain option (the Elman family rnn-tanh, "
            "rnn-relu, irnn, … has one)"
        )
    return out


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
    weights: Optional[str] = typer.Option(
        None,
        "--weights",
        "-w",
        help="Compare checkpoints instead of cells: comma-separated weight files (a.safetensors,b.safetensors), "
        "each imported as `gradscope analyse --weights` does, all on the same inputs; named by file stem.",
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
    gains: Optional[str] = typer.Option(
        None,
        "--gains",
        help="Recurrent gains, comma-separated: the spectral radius of W_hh (as in `gradscope sweep`). Each cell "
        "with a gain option (Elman family) is compared at every gain, as NAME:gain=G; cells without one "
        "(LSTM, GRU, …) once.",
    ),
    input: InputSource = DEFAULTS["input"],
    input_size: Optional[int] = typer.Option(
        None, "--input-size", min=1, help="Input size m [default: 2, or the preset's; task sources fix it]."
    ),
    threshold: Threshold = -3.0,
    float64: Float64 = False,
    out: Path = typer.Option(Path("gradscope-report"), "--out", "-o", help="Report folder to write."),
    force: Force = False,
    json_out: JsonReport = False,
    quiet: Quiet = False,
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

    Example: `gradscope compare --cells rnn-tanh,lstm --gains 0.5,1,1.5` (the tanh RNN across the edge of chaos)

    Checkpoints: `gradscope compare --weights step100.safetensors,step900.safetensors --out ckpts`
    """
    t0 = time.perf_counter()
    dtype = enable_float64(float64)
    from gradscope.cells import names as cell_names
    from gradscope.experiments import inputs

    chosen = _preset(preset, cells)
    source, fin = source_and_file(input, length=length, batch=batch, input_size=input_size)  # typed values must agree
    if fin is not None:  # the file's sizes win over a preset's
        length, batch = fin["length"], fin["batch"]
    if weights is not None:  # checkpoints side by side (gradscope.cli._checkpoints)
        if cells is not None or preset is not None or hidden is not None or gains is not None:
            raise ConfigError(
                "--cells, --preset, --hidden and --gains are not allowed with --weights: the files fix the models"
            )
        check_out_dir(out, force)
        return _checkpoints.run(
            weights,
            out=out,
            force=force,
            json_out=json_out,
            t0=t0,
            input_file=fin["source"] if fin is not None else None,
            source=source,
            length=DEFAULTS["length"] if length is None else length,
            batch=DEFAULTS["batch"] if batch is None else batch,
            seeds=parse_ints("--seeds", seeds, minimum=0),
            input_size=input_size,
            dtype=dtype,
            threshold=threshold,
            quiet=quiet,
        )
    hidden = hidden if hidden is not None else chosen.get("hidden", DEFAULTS["hidden"])
    length = length if length is not None else chosen.get("length", DEFAULTS["length"])
    batch = batch if batch is not None else chosen.get("batch", DEFAULTS["batch"])
    seed_list = parse_ints("--seeds", seeds, minimum=0)
    cell_text = cells if cells is not None else ",".join(chosen.get("cells", DEFAULT_COMPARE_CELLS))
    default_cells = not chosen and cell_text == ",".join(DEFAULT_COMPARE_CELLS)
    entries = [s.strip() for s in cell_text.split(",")]
    if default_cells:  # the embedded default: skip (with a warning) what this version does not register
        missing = [e for e in entries if e.split(":")[0] not in cell_names()]
        for e in missing:
            warn(f"cell {e!r} is not registered in this version; left out of the comparison")
        entries = [e for e in entries if e not in missing]
    specs = _with_gains(parse_cell_list(",".join(entries)), gains)
    check_out_dir(out, force)
    m = input_size_for(source, input_size, length)
    if input_size is None and "input_size" in chosen and inputs.task_input_size(source, max(length, 64)) is None:
        m = chosen["input_size"]  # a task source fixes the input size; otherwise the preset's
    assert m is not None  # input_size_for: the task's, the given or the default size
    _check_buildable(specs, m, hidden, length, dtype)
    sizes = {"length": length, "batch": batch, "input": source, "input_size": m, "dtype": dtype, "threshold": threshold}
    configs = []
    for spec in specs:
        opts = auto_options(spec.name, spec.options, length)
        configs += seed_configs(spec.label, seed_list, cell=spec.name, options=opts, hidden=hidden, **sizes)
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
        **({"input_file": fin["source"]} if fin is not None else {}),
    }
    from gradscope.report.drawing import figure_pool

    with figure_pool(len(configs)) as pool:  # each model's figures are drawn while the next is analysed
        analyses = analyse_all(configs, quiet=quiet, what="comparing", pool=pool)
        report = write(out, analyses, command="compare", config=config, force=force, quiet=quiet, pool=pool)
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


COMMANDS = (compare,)
