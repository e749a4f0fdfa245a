"""``gradscope sweep`` (a grid of cells × gains × lengths × seeds, resumable, shardable) and ``gradscope merge``
(the parts of a sharded sweep → one report).

    gradscope sweep --cells rnn-tanh,lstm --gains 0.5,1,1.5 --lengths 50,100 --out sweep
    gradscope merge sweep-parts --out sweep  # parts of `sweep --shard i/n` → one report

The library (JAX) is imported inside the commands.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from gradscope._errors import ConfigError
from gradscope.cli._distributed import Coordinator, Distributed, NumProcesses, ProcessId, start_distributed
from gradscope.cli._options import (
    DEFAULTS,
    Init,
    check_out_dir,
    enable_float64,
    file_input,
    input_size_for,
    input_source,
    parse_cell_list,
    parse_floats,
    parse_ints,
)
from gradscope.cli._output import info, print_json, progress
from gradscope.cli._params import Force, JsonReport, Quiet, Threshold
from gradscope.cli._reports import check_finite, finish, write


def sweep(
    cells: str = typer.Option(
        "rnn-tanh,lstm", "--cells", help="Comma-separated registry cells (options as name:key=value)."
    ),
    gains: str = typer.Option(
        "0.5,1,1.5",
        "--gains",
        help="Recurrent gains: the spectral radius of W_hh, for cells with a gain option (Elman family: an "
        "orthogonal W_hh of exactly that radius, or with --init gaussian/uniform entries of variance gain²/n). "
        "Gated cells (LSTM, GRU, …) take no gain: analysed once per length and seed.",
    ),
    lengths: Optional[str] = typer.Option(
        None,
        "--lengths",
        help="Sequence lengths T [default: 50,100; with an --input file its T; typed lengths take its first steps].",
    ),
    seeds: str = typer.Option("0", "--seeds", help="Seeds."),
    init: Optional[Init] = typer.Option(
        None, "--init", help="Recurrent initialisation for cells that take one [default: orthogonal with a gain]."
    ),
    hidden: int = typer.Option(DEFAULTS["hidden"], "--hidden", min=1, help="Hidden size."),
    batch: Optional[int] = typer.Option(
        None,
        "--batch",
        "-B",
        min=1,
        help=f"Input sequences per configuration [default: {DEFAULTS['batch']}, or the --input file's].",
    ),
    input: str = typer.Option(
        DEFAULTS["input"],
        "--input",
        help="Input source (noise, uniform, zeros, adding, copy, temporal-order) or a FILE (.npy, .npz:NAME, .csv, "
        ".safetensors:NAME) of shape (T, m) or (B, T, m), which fixes the batch and m (docs/inputs.md).",
    ),
    input_size: Optional[int] = typer.Option(None, "--input-size", min=1, help="Input size m [default: 2]."),
    threshold: Threshold = -3.0,
    float64: bool = typer.Option(False, "--float64", help="Compute in float64."),
    out: Path = typer.Option(
        Path("gradscope-sweep"),
        "--out",
        "-o",
        help="Report folder to write (with --shard: the folder that collects the parts).",
    ),
    partial: Optional[Path] = typer.Option(
        None,
        "--partial",
        help="Partial-results file (JSON lines) [default: "
        "<out parent>/.<out name>.partial.jsonl]; a rerun resumes from it.",
    ),
    vmap: Optional[int] = typer.Option(
        None,
        "--vmap",
        min=1,
        help="At most this many configurations analysed "
        "at once (vmapped) [default: as many as the memory budget allows].",
    ),
    shard: Optional[str] = typer.Option(
        None,
        "--shard",
        help="i/n: analyse only slice i (0-based) of n of the "
        "grid and write OUT/part-i-of-n.json; combine with `gradscope merge`.",
    ),
    distributed: Distributed = False,
    coordinator: Coordinator = None,
    num_processes: NumProcesses = None,
    process_id: ProcessId = None,
    force: bool = typer.Option(False, "--force", help="Replace a non-empty --out (with --shard: the part file)."),
    json_out: JsonReport = False,
    quiet: Quiet = False,
) -> None:
    """Sweep a grid: cells × recurrent gain × lengths × seeds, one table and two heat-maps.

    The gain is the spectral radius of the recurrent matrix, so the defaults cross the edge of chaos: the tanh
    RNN's largest Lyapunov exponent is < 0 at gain 0.5 and > 0 at 1.5 (Sompolinsky, Crisanti & Sommers 1988).

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

    source = input_source(input)
    specs = parse_cell_list(cells)
    gain_list = parse_floats("--gains", gains, positive=True)
    length_list = parse_ints("--lengths", lengths, minimum=1) if lengths is not None else None
    fin = file_input(source, lengths=length_list, batch=batch, input_size=input_size)  # typed values must agree
    length_list = fin["lengths"] if fin is not None else length_list or [50, 100]
    batch = fin["batch"] if fin is not None else DEFAULTS["batch"] if batch is None else batch
    seed_list = parse_ints("--seeds", seeds, minimum=0)
    if shard_ix is None:
        check_out_dir(out, force, reserve=jax.process_index() == 0)  # process 0 writes the report
    elif (out / mg.part_name(*shard_ix)).exists() and not force:
        raise ConfigError(f"--out={str(out)!r} already holds {mg.part_name(*shard_ix)}: pass --force to replace it")
    m = input_size_for(source, input_size, max(length_list))
    configs = sw.grid(
        [(s.label, s.name, s.options) for s in specs],
        gain_list,
        length_list,
        seed_list,
        init=init.value if init is not None else None,
        hidden=hidden,
        batch=batch,
        input=source,
        input_size=m,
        dtype=dtype,
        threshold=threshold,
    )
    not_applicable = [s.label for s in specs if all(c.gain is None for c in configs if c.label == s.label)]
    config = {
        "cells": [s.describe() for s in specs],
        "gains": gain_list,
        "lengths": length_list,
        "seeds": seed_list,
        "init": init.value if init is not None else None,
        "hidden": hidden,
        "batch": batch,
        "input": source,
        "input_size": m,
        "dtype": dtype,
        "threshold": threshold,
        "gain_not_applicable": not_applicable,
        "grid": [c.to_dict() for c in configs],
        **({"input_file": fin["source"]} if fin is not None else {}),
    }
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

        analyses = (
            sw.run_sweep(
                configs,
                partial=partial,
                on_done=done,
                max_vmap=vmap,
                on_analysis=lambda cfg, a: check_finite([(cfg.name, a.summary)]),
            )
            if configs
            else []
        )
    quiet = quiet or not writer
    if resumed:
        info(f"resumed {len(resumed)} of {len(configs)} configurations from {partial}", quiet)
    if not_applicable:
        info(
            f"--gains does not apply to {', '.join(not_applicable)} (no gain option): analysed once per length "
            "and seed",
            quiet,
        )
    if not writer:
        return
    if shard_ix is not None:
        path = mg.write_part(out, config, *shard_ix, analyses)
        Path(partial).unlink(missing_ok=True)
        if json_out:
            print_json({"part": str(path), "shard": list(shard_ix), "analyses": len(analyses)})
        info(
            f"wrote {path} ({len(analyses)} of {len(config['grid'])} configurations) in "
            f"{time.perf_counter() - t0:.0f} s; combine the parts with `gradscope merge {out}`",
            quiet,
        )
        return
    report = write(out, analyses, command="sweep", config=config, force=force)
    Path(partial).unlink(missing_ok=True)  # the report now holds every result
    finish(out, report, json_out=json_out, quiet=quiet, title="sweep", seconds=time.perf_counter() - t0)


def merge(
    parts: list[Path] = typer.Argument(
        ..., help="Part files of `gradscope sweep --shard i/n`, or the folder holding them."
    ),
    out: Path = typer.Option(Path("gradscope-sweep"), "--out", "-o", help="Report folder to write."),
    force: Force = False,
    json_out: JsonReport = False,
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
    report = write(out, analyses, command="sweep", config=config, force=force)
    finish(out, report, json_out=json_out, quiet=quiet, title="sweep", seconds=time.perf_counter() - t0)


COMMANDS = (sweep, merge)
