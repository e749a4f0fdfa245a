"""The ``gradscope`` command line: a thin typer app over the library.

    gradscope cells                      # the registered cells
    gradscope compare                    # which cells vanish, explode or keep their gradient
    gradscope analyse --cell lstm --forget-bias 1 --out lstm-report
    gradscope sweep --cells rnn-tanh,lstm --gains 0.5,1,1.5 --lengths 50,100 --out sweep
    gradscope merge sweep-parts --out sweep  # parts of `sweep --shard i/n` → one report
    gradscope report lstm-report         # re-render HTML/Markdown/figures from report.json
    gradscope inspect model.safetensors  # what a weight file holds and how it maps
    gradscope check REPORT --baseline B  # CI regression check (no JAX import)

Machine output (``--json``) is plain JSON on stdout; human text and progress bars go to stderr; errors are
one line ``error: …`` with exit code 2. This module imports no JAX at module level (``gradscope check``
must start fast): the library is imported inside the command functions.
"""

from __future__ import annotations

import enum
import json
import time
from pathlib import Path
from typing import Optional

import typer

from gradscope import __version__
from gradscope.cli._common import (
    GuardedGroup,
    check_finite,
    check_out_dir,
    enable_float64,
    info,
    option_error,
    parse_cell_list,
    parse_cell_spec,
    parse_floats,
    parse_ints,
    print_json,
    progress,
    start_distributed,
    stderr_console,
    stdout_console,
    warn,
)
from gradscope._errors import ConfigError

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

#: the embedded default of `gradscope compare`: the textbook contrast of vanishing and kept gradients
DEFAULT_COMPARE_CELLS = ("rnn-tanh", "lstm:forget_bias=0", "lstm:forget_bias=1", "gru", "indrnn", "irnn", "ln-lstm")
#: in the default comparison IndRNN gets the official adding-problem init of its last layer (Li et al. 2018,
#: IndRNN_Theano_Lasagne/adding/adding.py): u ~ U((1/2)^(1/T), 2^(1/T)), so |u|^T ∈ [1/2, 2]: the recurrent
#: weights alone neither vanish nor explode over T steps. (The registry default u ~ U(0, 2^(1/T)) is the
#: first-layer init, under which most units forget within tens of steps.)
INDRNN_LOW = 0.5
DEFAULTS = {"hidden": 32, "length": 200, "batch": 4, "input": "uniform", "input_size": 2}


class Init(str, enum.Enum):
    uniform = "uniform"
    gaussian = "gaussian"
    orthogonal = "orthogonal"
    identity = "identity"


class Mode(str, enum.Enum):
    exact = "exact"
    probe = "probe"


class Arch(str, enum.Enum):
    auto = "auto"
    torch_lstm = "torch-lstm"
    torch_gru = "torch-gru"
    torch_rnn_tanh = "torch-rnn-tanh"
    torch_rnn_relu = "torch-rnn-relu"


def _version(value: bool):
    if value:
        print(f"gradscope {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """Gradient-flow diagnostics for recurrent neural networks (errors: one line, exit code 2;
    GRADSCOPE_DEBUG=1 shows tracebacks)."""


# ----------------------------------------------------------------------------------------- helpers


def _input_source(source: str) -> str:
    from gradscope.experiments.inputs import check_source

    return check_source(source)


def _input_size(source: str, input_size: Optional[int], length: int) -> Optional[int]:
    """The model's input size: the task's for task sources (an explicit different one is an error)."""
    from gradscope.experiments import inputs

    task_m = inputs.task_input_size(source, max(length, 64))
    if task_m is None:
        return DEFAULTS["input_size"] if input_size is None else input_size
    if input_size is not None and input_size != task_m:
        raise ConfigError(f"--input-size={input_size} is not allowed with --input {source}: the task's inputs have "
                          f"size {task_m} (leave --input-size out)")
    return task_m


def _auto_options(cell: str, options: dict, length: int) -> dict:
    """IndRNN without an explicit max_length gets max_length = T: |u| ≤ γ^(1/T) (Li et al. 2018, §3.1)."""
    if cell == "indrnn" and options.get("max_length") is None:
        return {**options, "max_length": length}
    return options


def _analyse_all(configs, *, quiet: bool, what: str, model=None):
    """Analyse each configuration with a progress bar (one step each); raise on non-finite results."""
    from gradscope.experiments import sweep

    records = []
    with progress(len(configs), what, quiet) as advance:
        for cfg in configs:
            if model is None:
                a = sweep.analyse_config(cfg)
            else:
                a = sweep.analyse_model(model, cfg, sweep.config_keys(cfg.seed)[1])
            check_finite([(cfg.name, a.summary)])
            records.append(_record(a))
            advance(cfg.name)
    return records


def _record(analysis) -> dict:
    from gradscope.cli._common import json_ready

    return json.loads(json.dumps(json_ready(analysis.to_dict()), allow_nan=False))


def _write(out: Path, analyses: list[dict], *, command: str, config: dict, force: bool) -> dict:
    """Build the report (gradscope.report) and write its folder atomically; returns the report dict."""
    from gradscope import report as rep

    report = rep.build_report(analyses, command=command, config=config)
    if command == "sweep":
        from gradscope.experiments.sweep import write_sweep_report

        write_sweep_report(out, report, force=force)
    else:
        rep.write_report(out, report, force=force)
    return report


def _fmt(v, spec: str) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return format(v, spec)
    return str(v)


_VERDICT_STYLE = {"vanishing": "red", "exploding": "magenta", "stable": "green"}


def _summary_table(analyses: list[dict], title: str):
    from rich.table import Table

    t = Table(title=title, title_justify="left",
              caption="norm: log10 ‖∂S_T/∂S_0‖₂; decay: its slope per step; horizon: largest lag with log10 "
                      "norm ≥ threshold; λ_max: largest Lyapunov exponent (nats/step)", caption_justify="left")
    t.add_column("analysis", no_wrap=True)
    t.add_column("verdict", no_wrap=True)
    t.add_column("norm", justify="right", no_wrap=True)
    t.add_column("decay", justify="right", no_wrap=True)
    t.add_column("horizon", justify="right", no_wrap=True)
    t.add_column("λ_max", justify="right", no_wrap=True)
    for a in analyses:
        s = a.get("summary", {})
        v = s.get("verdict", "?")
        t.add_row(a.get("name", "?"), f"[{_VERDICT_STYLE.get(v, 'white')}]{v}[/]", _fmt(s.get("log10_norm_max_lag"), ".2f"),
                  _fmt(s.get("decay_per_step"), ".4f"), f"{_fmt(s.get('horizon'), 'd')} / {a.get('length', '?')}",
                  _fmt(s.get("lyapunov_max"), ".4f"))
    return t


def _finish(out: Path, report: dict, *, json_out: bool, quiet: bool, title: str, seconds: float) -> None:
    if json_out:
        print_json(report)
    if not quiet and not json_out:
        stderr_console().print(_summary_table(report["analyses"], title))
    info(f"wrote {out}/ (report.json, report.html, summary.md) in {seconds:.0f} s", quiet)


# ------------------------------------------------------------------------------------------- cells


@app.command()
def cells(json_out: bool = typer.Option(False, "--json", help="Print JSON only (on stdout).")) -> None:
    """List the registered cells: name, family, description and equation.

    Example: `gradscope cells --json | jq '.[].name'`
    """
    from gradscope.cells import entries, options

    rows = [{"name": e.name, "family": e.family, "description": e.description, "equation": e.equation,
             "options": options(e.name)} for e in entries()]
    if json_out:
        print_json(rows)
        return
    from rich.table import Table

    t = Table(title=f"{len(rows)} registered cells (use a name with --cell / --cells; options as name:key=value)",
              title_justify="left", show_lines=False)
    for col in ("name", "family", "description", "equation"):
        t.add_column(col, overflow="fold")
    for r in rows:
        t.add_row(r["name"], r["family"], r["description"], r["equation"])
    stdout_console().print(t)


# ----------------------------------------------------------------------------------------- analyse

# command-line flag -> registry option
_FLAG_OPTIONS = {"--forget-bias": "forget_bias", "--chrono": "chrono", "--gain": "gain", "--init": "recurrent_init"}


@app.command()
def analyse(
    cell: Optional[str] = typer.Option(None, "--cell", "-c", help="Registry cell (see `gradscope cells`), "
                                       "optionally with options: lstm:forget_bias=1."),
    weights: Optional[Path] = typer.Option(None, "--weights", "-w", help="Analyse an imported model from a weight "
                                           "file (.safetensors, .npz, .pt) instead of --cell."),
    arch: Arch = typer.Option(Arch.auto, "--arch", help="Architecture of --weights (auto: detected from the "
                              "tensor names; layers and bidirectional are inferred)."),
    hidden: Optional[int] = typer.Option(None, "--hidden", min=1, help="Hidden size [default: 32]."),
    length: int = typer.Option(DEFAULTS["length"], "--length", "-T", min=1, help="Sequence length T."),
    batch: int = typer.Option(DEFAULTS["batch"], "--batch", "-B", min=1, help="Input sequences (results are "
                              "batch means)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed for weights and inputs."),
    forget_bias: Optional[float] = typer.Option(None, "--forget-bias", help="LSTM forget-gate bias."),
    chrono: Optional[float] = typer.Option(None, "--chrono", help="LSTM chrono initialisation with T_max "
                                           "(Tallec & Ollivier 2018)."),
    gain: Optional[float] = typer.Option(None, "--gain", help="Recurrent gain (Elman family)."),
    init: Optional[Init] = typer.Option(None, "--init", help="Recurrent initialisation (Elman family)."),
    layers: int = typer.Option(1, "--layers", min=1, help="Stacked layers."),
    residual: bool = typer.Option(False, "--residual", help="Residual connections between stacked layers."),
    input: str = typer.Option(DEFAULTS["input"], "--input", help="Input source: noise, uniform, zeros, adding, "
                              "copy, temporal-order."),
    input_size: Optional[int] = typer.Option(None, "--input-size", min=1, help="Input size m [default: 2; "
                                             "task sources fix it]."),
    float64: bool = typer.Option(False, "--float64", help="Compute in float64 (default float32)."),
    triangle: bool = typer.Option(False, "--triangle/--no-triangle", help="Also compute the (T+1)×(T+1) "
                                  "triangle of all ‖∂S_t/∂S_k‖ (O(T²))."),
    attribution: bool = typer.Option(False, "--attribution", help="Also compute gradient attribution by lag."),
    mode: Mode = typer.Option(Mode.exact, "--mode", help="exact (dense Jacobians) or probe (matrix-free, large "
                              "hidden sizes)."),
    threshold: float = typer.Option(-3.0, "--threshold", help="log10 norm below which the gradient counts as "
                                    "vanished (defines the horizon)."),
    out: Path = typer.Option(..., "--out", "-o", help="Report folder to write (refused if non-empty, unless "
                             "--force)."),
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
    from gradscope.experiments.sweep import Config

    source = _input_source(input)
    flags = {"--forget-bias": forget_bias, "--chrono": chrono, "--gain": gain,
             "--init": init.value if init is not None else None}
    given = {f: v for f, v in flags.items() if v is not None}
    if (cell is None) == (weights is None):
        raise ConfigError("give exactly one of --cell NAME (a registry cell) or --weights FILE (an imported model)")
    check_out_dir(out, force)
    model = None
    if weights is not None:
        if given:
            raise ConfigError(f"{next(iter(given))} is not allowed with --weights: the imported weights fix the model")
        if hidden is not None or layers != 1 or residual:
            raise ConfigError("--hidden/--layers/--residual are not allowed with --weights: they are read from the file")
        model = _load_weights(weights, arch, dtype)
        m = int(model.input_size)
        from gradscope.experiments import inputs

        task_m = inputs.task_input_size(source, max(length, 64))
        if task_m is not None and task_m != m:
            raise ConfigError(f"--input {source} gives inputs of size {task_m}, but the model in {str(weights)!r} "
                              f"takes {m}: use --input noise, uniform or zeros")
        if input_size is not None and input_size != m:
            raise ConfigError(f"--input-size={input_size} is not allowed: the model in {str(weights)!r} takes inputs "
                              f"of size {m}")
        cfg = Config(name=weights.stem, cell="imported", label=weights.stem, hidden=int(model.hidden_size),
                     length=length, batch=batch, seed=seed, input=source, input_size=m, dtype=dtype,
                     threshold=threshold, mode=mode.value, triangle=triangle, attribution=attribution)
        config = {"weights": str(weights), "arch": arch.value, "model": _safe_describe(model)}
    else:
        if arch is not Arch.auto:
            raise ConfigError("--arch is only used with --weights FILE")
        spec = parse_cell_spec(cell)
        from gradscope.cells import options as cell_options

        allowed = cell_options(spec.name)
        opts = dict(spec.options)
        for flag, value in given.items():
            key = _FLAG_OPTIONS[flag]
            if key not in allowed:
                raise option_error(flag, spec.name, allowed)
            if key in opts:
                raise ConfigError(f"{flag} and {spec.name}:{key}=… both set {key}: give it once")
            opts[key] = value
        opts = _auto_options(spec.name, opts, length)
        explicit = spec.label != _label_with(spec.name, spec.options)  # set with :name=
        label = spec.label if explicit else _label_with(spec.name, opts)
        cfg = Config(name=label, cell=spec.name, options=opts, label=label,
                     hidden=DEFAULTS["hidden"] if hidden is None else hidden, length=length, batch=batch, seed=seed,
                     input=source, input_size=_input_size(source, input_size, length), dtype=dtype, layers=layers,
                     residual=residual, threshold=threshold, mode=mode.value, triangle=triangle,
                     attribution=attribution)
        config = {}
    config = {**cfg.to_dict(), **config}
    analyses = _analyse_all([cfg], quiet=quiet, what="analysing", model=model)
    report = _write(out, analyses, command="analyse", config=config, force=force)
    _finish(out, report, json_out=json_out, quiet=quiet, title="gradient flow", seconds=time.perf_counter() - t0)


def _label_with(name: str, opts: dict) -> str:
    from gradscope.cli._common import default_label

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


# ----------------------------------------------------------------------------------------- compare


@app.command()
def compare(
    cells: str = typer.Option(",".join(DEFAULT_COMPARE_CELLS), "--cells", help="Comma-separated registry cells, "
                              "each optionally with options: lstm:forget_bias=1:chrono=200."),
    hidden: int = typer.Option(DEFAULTS["hidden"], "--hidden", min=1, help="Hidden size."),
    length: int = typer.Option(DEFAULTS["length"], "--length", "-T", min=1, help="Sequence length T."),
    batch: int = typer.Option(DEFAULTS["batch"], "--batch", "-B", min=1, help="Input sequences per cell."),
    seeds: str = typer.Option("0", "--seeds", "--seed", help="Seed(s), comma-separated: 0 or 0,1,2."),
    input: str = typer.Option(DEFAULTS["input"], "--input", help="Input source: noise, uniform, zeros, adding, "
                              "copy, temporal-order."),
    input_size: Optional[int] = typer.Option(None, "--input-size", min=1, help="Input size m [default: 2]."),
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

    Example: `gradscope compare --cells rnn-tanh,lstm:forget_bias=1,indrnn --length 500 --out cmp`
    """
    t0 = time.perf_counter()
    dtype = enable_float64(float64)
    from gradscope.cells import names as cell_names
    from gradscope.experiments.sweep import Config

    source = _input_source(input)
    seed_list = parse_ints("--seeds", seeds, minimum=0)
    default_cells = cells == ",".join(DEFAULT_COMPARE_CELLS)
    entries = [s.strip() for s in cells.split(",")]
    if default_cells:  # the embedded default: skip (with a warning) what this version does not register
        missing = [e for e in entries if e.split(":")[0] not in cell_names()]
        for e in missing:
            warn(f"cell {e!r} is not registered in this version; left out of the comparison")
        entries = [e for e in entries if e not in missing]
    specs = parse_cell_list(",".join(entries))
    check_out_dir(out, force)
    m = _input_size(source, input_size, length)
    configs = []
    for spec in specs:
        opts = _auto_options(spec.name, spec.options, length)
        if default_cells and spec.name == "indrnn":
            opts = {**opts, "u_min": INDRNN_LOW ** (1.0 / length)}
        for s in seed_list:
            name = spec.label if len(seed_list) == 1 else f"{spec.label}/s={s}"
            configs.append(Config(name=name, cell=spec.name, options=opts,
                                  label=spec.label, hidden=hidden, length=length, batch=batch, seed=s, input=source,
                                  input_size=m, dtype=dtype, threshold=threshold))
    config = {"cells": [s.describe() for s in specs], "hidden": hidden, "length": length, "batch": batch,
              "seeds": seed_list, "input": source, "input_size": m, "dtype": dtype, "threshold": threshold,
              "grid": [c.to_dict() for c in configs]}
    analyses = _analyse_all(configs, quiet=quiet, what="comparing")
    report = _write(out, analyses, command="compare", config=config, force=force)
    _finish(out, report, json_out=json_out, quiet=quiet,
            title=f"gradient flow over T = {length} steps (hidden {hidden}, input {source}, {dtype})",
            seconds=time.perf_counter() - t0)
    if not quiet and not json_out:
        ranked = sorted(analyses, key=lambda a: -(a["summary"].get("log10_norm_max_lag") or -1e308))
        info("longest-lag gradient, largest first: " + " > ".join(a["name"] for a in ranked))


# ------------------------------------------------------------------------------------------- sweep


@app.command()
def sweep(
    cells: str = typer.Option("rnn-tanh,lstm", "--cells", help="Comma-separated registry cells (options as "
                              "name:key=value)."),
    gains: str = typer.Option("0.5,1,1.5", "--gains", help="Recurrent gains, for cells with a gain option "
                              "(Elman family); not applicable to the others."),
    lengths: str = typer.Option("50,100", "--lengths", help="Sequence lengths T."),
    seeds: str = typer.Option("0", "--seeds", help="Seeds."),
    init: Optional[Init] = typer.Option(None, "--init", help="Recurrent initialisation for cells that take one."),
    hidden: int = typer.Option(DEFAULTS["hidden"], "--hidden", min=1, help="Hidden size."),
    batch: int = typer.Option(DEFAULTS["batch"], "--batch", "-B", min=1, help="Input sequences per configuration."),
    input: str = typer.Option(DEFAULTS["input"], "--input", help="Input source."),
    input_size: Optional[int] = typer.Option(None, "--input-size", min=1, help="Input size m [default: 2]."),
    threshold: float = typer.Option(-3.0, "--threshold", help="log10 norm that defines the horizon."),
    float64: bool = typer.Option(False, "--float64", help="Compute in float64."),
    out: Path = typer.Option(Path("gradscope-sweep"), "--out", "-o", help="Report folder to write (with --shard: "
                             "the folder that collects the parts)."),
    partial: Optional[Path] = typer.Option(None, "--partial", help="Partial-results file (JSON lines) [default: "
                                           "<out parent>/.<out name>.partial.jsonl]; a rerun resumes from it."),
    vmap: Optional[int] = typer.Option(None, "--vmap", min=1, help="At most this many configurations analysed "
                                       "at once (vmapped) [default: as many as the memory budget allows]."),
    shard: Optional[str] = typer.Option(None, "--shard", help="i/n: analyse only slice i (0-based) of n of the "
                                        "grid and write OUT/part-i-of-n.json; combine with `gradscope merge`."),
    distributed: bool = typer.Option(False, "--distributed", help="Call jax.distributed.initialize() first "
                                     "(multi-process JAX: auto-detected on Slurm, Open MPI, TPU pods; elsewhere "
                                     "give --coordinator, --num-processes and --process-id; see docs/scale.md)."),
    coordinator: Optional[str] = typer.Option(None, "--coordinator", help="With --distributed: HOST:PORT of "
                                              "process 0's coordinator service."),
    num_processes: Optional[int] = typer.Option(None, "--num-processes", help="With --distributed: how many "
                                                "processes take part."),
    process_id: Optional[int] = typer.Option(None, "--process-id", help="With --distributed: this process's "
                                             "index, 0 … num-processes − 1 (process 0 writes the report)."),
    force: bool = typer.Option(False, "--force", help="Replace a non-empty --out (with --shard: the part file)."),
    json_out: bool = typer.Option(False, "--json", help="Print the report JSON on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress and no table on stderr."),
) -> None:
    """Sweep a grid: cells × recurrent gain × lengths × seeds, one table and two heat-maps.

    Same-shaped configurations are vmapped together and spread over all devices. Interrupted? Run the
    same command again: finished configurations are read from the partial file.

    Example: `gradscope sweep --cells rnn-tanh,lstm --gains 0.5,1,1.5 --lengths 50,100 --seeds 0,1 --out sweep`
    """
    t0 = time.perf_counter()
    from gradscope.experiments import merge as mg

    shard_ix = mg.parse_shard(shard) if shard is not None else None
    start_distributed(distributed, coordinator, num_processes, process_id)
    dtype = enable_float64(float64)
    import jax

    from gradscope.experiments import sweep as sw

    source = _input_source(input)
    specs = parse_cell_list(cells)
    gain_list = parse_floats("--gains", gains, positive=True)
    length_list = parse_ints("--lengths", lengths, minimum=1)
    seed_list = parse_ints("--seeds", seeds, minimum=0)
    if shard_ix is None:
        check_out_dir(out, force)
    elif (out / mg.part_name(*shard_ix)).exists() and not force:
        raise ConfigError(f"--out={str(out)!r} already holds {mg.part_name(*shard_ix)}: pass --force to replace it")
    m = _input_size(source, input_size, max(length_list))
    configs = sw.grid([(s.label, s.name, s.options) for s in specs], gain_list, length_list, seed_list,
                      init=init.value if init is not None else None, hidden=hidden, batch=batch, input=source,
                      input_size=m, dtype=dtype, threshold=threshold)
    not_applicable = [s.label for s in specs if all(c.gain is None for c in configs if c.label == s.label)]
    config = {"cells": [s.describe() for s in specs], "gains": gain_list, "lengths": length_list, "seeds": seed_list,
              "init": init.value if init is not None else None, "hidden": hidden, "batch": batch, "input": source,
              "input_size": m, "dtype": dtype, "threshold": threshold, "gain_not_applicable": not_applicable,
              "grid": [c.to_dict() for c in configs]}
    if shard_ix is not None:
        configs = mg.shard_configs(configs, *shard_ix)
        default_partial = out / f".{mg.part_name(*shard_ix)}.partial.jsonl"
        out.mkdir(parents=True, exist_ok=True)
    else:
        default_partial = out.parent / f".{out.name}.partial.jsonl"
    partial = partial if partial is not None else default_partial
    writer = jax.process_index() == 0
    resumed = []
    with progress(len(configs), "sweeping", quiet or not writer) as advance:
        def done(cfg, was_resumed):
            if was_resumed:
                resumed.append(cfg.name)
            advance(cfg.name)

        analyses = sw.run_sweep(configs, partial=partial, on_done=done, max_vmap=vmap,
                                on_analysis=lambda cfg, a: check_finite([(cfg.name, a.summary)])) if configs else []
    quiet = quiet or not writer
    if resumed:
        info(f"resumed {len(resumed)} of {len(configs)} configurations from {partial}", quiet)
    if not_applicable:
        info(f"--gains does not apply to {', '.join(not_applicable)} (no gain option): analysed once per length "
             "and seed", quiet)
    if not writer:
        return
    if shard_ix is not None:
        path = mg.write_part(out, config, *shard_ix, analyses)
        Path(partial).unlink(missing_ok=True)
        if json_out:
            print_json({"part": str(path), "shard": list(shard_ix), "analyses": len(analyses)})
        info(f"wrote {path} ({len(analyses)} of {len(config['grid'])} configurations) in "
             f"{time.perf_counter() - t0:.0f} s; combine the parts with `gradscope merge {out}`", quiet)
        return
    report = _write(out, analyses, command="sweep", config=config, force=force)
    Path(partial).unlink(missing_ok=True)  # the report now holds every result
    _finish(out, report, json_out=json_out, quiet=quiet, title="sweep", seconds=time.perf_counter() - t0)


@app.command()
def merge(
    parts: list[Path] = typer.Argument(..., help="Part files of `gradscope sweep --shard i/n`, or the folder "
                                       "holding them."),
    out: Path = typer.Option(Path("gradscope-sweep"), "--out", "-o", help="Report folder to write."),
    force: bool = typer.Option(False, "--force", help="Replace a non-empty --out."),
    json_out: bool = typer.Option(False, "--json", help="Print the report JSON on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No table on stderr."),
) -> None:
    """Merge the parts of a sharded sweep into one report (the same as an unsharded run's).

    Checks that the parts come from one sweep and that every shard is there exactly once.

    Example: `gradscope merge sweep-parts --out sweep`
    """
    t0 = time.perf_counter()
    from gradscope.experiments import merge as mg

    check_out_dir(out, force)
    config, analyses = mg.merge_parts(parts)
    report = _write(out, analyses, command="sweep", config=config, force=force)
    _finish(out, report, json_out=json_out, quiet=quiet, title="sweep", seconds=time.perf_counter() - t0)


# ------------------------------------------------------------------------------------ report, inspect


@app.command()
def report(
    folder: Path = typer.Argument(..., help="A report folder (holding report.json)."),
    json_out: bool = typer.Option(False, "--json", help="Print the written files as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Nothing on stderr."),
) -> None:
    """Re-render HTML, Markdown and figures from FOLDER/report.json, without recomputing.

    Example: `gradscope report gradscope-report`
    """
    if folder.suffix == ".json" and folder.is_file():  # report.json itself is fine too
        folder, src = folder.parent, folder
    else:
        src = folder / "report.json"
    if not src.exists():
        raise ConfigError(f"{str(src)!r} does not exist: give a folder written by `gradscope analyse/compare/sweep`")
    try:
        data = json.loads(src.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{str(src)!r} is not valid JSON ({exc}); rerun the command that wrote it") from None
    if not isinstance(data, dict) or not str(data.get("schema", "")).startswith("gradscope.report/"):
        raise ConfigError(f"{str(src)!r} is not a gradscope report (schema {data.get('schema') if isinstance(data, dict) else None!r}, "
                          "expected 'gradscope.report/1')")
    from gradscope import report as rep

    written = rep.render_report(folder)
    files = [str(p) for p in written] if isinstance(written, (list, tuple)) else [str(folder)]
    if json_out:
        print_json({"folder": str(folder), "files": files})
    info(f"rendered {folder}/ from report.json ({len(data.get('analyses', []))} analyses)", quiet)


@app.command()
def inspect(
    file: Path = typer.Argument(..., help="A weight file: .safetensors, .npz, .pt/.pth, .weights.h5."),
    framework: Optional[str] = typer.Option(None, "--framework", help="torch, keras, flax or equinox "
                                            "(default: detected from the tensor names)."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON only (on stdout)."),
) -> None:
    """Show what a weight file holds and the gradscope model it maps to (nothing is executed).

    Example: `gradscope inspect lstm.safetensors --json`
    """
    if not file.exists():
        raise ConfigError(f"FILE={str(file)!r} does not exist: check the path")
    if file.is_dir():
        raise ConfigError(f"FILE={str(file)!r} is a folder: give a weight file")
    from gradscope.io import inspect_file

    d = inspect_file(str(file), framework=framework)
    if json_out:
        print_json(d)
        return
    from rich.table import Table

    con = stdout_console()
    head = Table(show_header=False, title=str(file), title_justify="left")
    head.add_column("key", style="bold")
    head.add_column("value", overflow="fold")
    for k in ("format", "size_bytes", "framework", "num_parameters"):
        head.add_row(k, str(d.get(k)))
    for k, v in (d.get("mapping") or {}).items():
        head.add_row(f"maps to: {k}", json.dumps(v) if isinstance(v, (list, dict)) else str(v))
    if d.get("problem"):
        head.add_row("problem", f"[red]{d['problem']}[/]")
    for k, v in (d.get("metadata") or {}).items():
        head.add_row(f"metadata: {k}", str(v))
    con.print(head)
    t = Table(title="tensors", title_justify="left")
    for col in ("name", "shape", "dtype"):
        t.add_column(col)
    for row in d.get("tensors", []):
        t.add_row(row["name"], "×".join(map(str, row["shape"])) or "scalar", row["dtype"])
    con.print(t)


# ------------------------------------------------------------------------------------ check, baseline

try:  # JAX-free: `gradscope check` stays fast
    from gradscope.cli.checks import register as _register_checks
except ImportError:  # pragma: no cover - the module is part of the package
    _register_checks = None
if _register_checks is not None:
    _register_checks(app)

from gradscope.cli.train import register as _reg_train  # noqa: E402  (train, reproduce; JAX-free import)

_reg_train(app)


def main() -> None:
    """Console-script entry point (``gradscope``)."""
    app()
