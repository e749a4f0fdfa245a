"""``gradscope compare --weights a.safetensors,b.safetensors,…``: checkpoints side by side, in one report.

Each file is imported as ``gradscope analyse --weights FILE`` imports it (`gradscope.io.load_model`, the
architecture detected from the tensor names) and analysed on the same inputs: the input source, T, the batch
and the seeds are shared, so the analyses differ only in the weights. Names are the file stems, made unique
with ``#2``, ``#3`` … (``--seeds 0,1`` adds ``/s=0``, ``/s=1``). Every file must exist, be importable and
take inputs of the same size; each failure is a one-line `ConfigError` naming the file. The library (JAX)
is imported inside the functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from gradscope._errors import ConfigError, GradscopeError


def checkpoint_paths(text: str) -> list[Path]:
    """``"a.safetensors,b.npz"`` → paths, each an existing file (a one-line error naming the one that is not)."""
    items = [s.strip() for s in str(text).split(",")]
    if not items or any(not s for s in items):
        raise ConfigError(
            f"--weights={text!r} is not allowed: expected a comma-separated list of weight files, e.g. "
            "--weights step100.safetensors,step900.safetensors"
        )
    paths = [Path(s) for s in items]
    for p in paths:
        if not p.exists():
            raise ConfigError(f"--weights: {str(p)!r} does not exist: check the path")
        if not p.is_file():
            raise ConfigError(f"--weights: {str(p)!r} is not a file: give weight files (.safetensors, .npz, .pt)")
    return paths


def unique_names(paths: list[Path]) -> list[str]:
    """File stems, a repeat made unique with ``#2``, ``#3`` … (``run1/model``, ``run2/model`` → model, model#2)."""
    seen: dict[str, int] = {}
    names = []
    for p in paths:
        n = seen.get(p.stem, 0) + 1
        seen[p.stem] = n
        names.append(p.stem if n == 1 else f"{p.stem}#{n}")
    return names


def load_checkpoints(paths: list[Path], dtype: str) -> list[Any]:
    """The imported models, in order; a file that cannot be imported is an error naming it."""
    from gradscope.cli.analyse import _load_weights

    models = []
    for p in paths:
        try:
            models.append(_load_weights(p, "auto", dtype))
        except GradscopeError as exc:
            msg = str(exc)
            raise ConfigError(msg if str(p) in msg else f"--weights: {str(p)!r}: {msg}") from None
    sizes = [int(m.input_size) for m in models]
    if len(set(sizes)) > 1:
        listed = ", ".join(f"{str(p)!r} takes {m}" for p, m in zip(paths, sizes))
        raise ConfigError(
            f"--weights: the checkpoints take inputs of different sizes ({listed}): compare checkpoints of one "
            "architecture, on the same inputs"
        )
    return models


def compare_checkpoints(
    text: str,
    *,
    source: str,
    length: int,
    batch: int,
    seeds: list[int],
    input_size: Optional[int],
    dtype: str,
    threshold: float,
    quiet: bool,
) -> tuple[dict, list[dict]]:
    """Import and analyse every checkpoint of ``text`` on the same inputs; returns ``(report config, analyses)``.

    Each analysis is `gradscope.experiments.sweep.analyse_model` of the imported model on the inputs of
    ``(source, seed)``, exactly what ``gradscope analyse --weights FILE`` computes for one file."""
    from gradscope.cli._options import model_input_size, seed_configs
    from gradscope.cli._output import progress
    from gradscope.cli._reports import check_finite, record
    from gradscope.cli.analyse import _safe_describe
    from gradscope.experiments import sweep

    paths = checkpoint_paths(text)
    names = unique_names(paths)
    models = load_checkpoints(paths, dtype)
    m = model_input_size(int(models[0].input_size), source, input_size, length, "the checkpoints take")
    sizes = {"length": length, "batch": batch, "input": source, "input_size": m, "dtype": dtype, "threshold": threshold}
    pairs = [
        (cfg, model)
        for name, model in zip(names, models)
        for cfg in seed_configs(name, seeds, cell="imported", hidden=int(model.hidden_size), **sizes)
    ]
    analyses = []
    with progress(len(pairs), "comparing", quiet) as advance:
        for cfg, model in pairs:
            a = sweep.analyse_model(model, cfg, sweep.config_keys(cfg.seed)[1])
            check_finite([(cfg.name, a.summary)])
            analyses.append(record(a))
            advance(cfg.name)
    config = {
        "weights": [str(p) for p in paths],
        "checkpoints": [
            {"name": n, "file": str(p), "model": _safe_describe(model)} for n, p, model in zip(names, paths, models)
        ],
        "length": length,
        "batch": batch,
        "seeds": list(seeds),
        "input": source,
        "input_size": m,
        "dtype": dtype,
        "threshold": threshold,
        "grid": [cfg.to_dict() for cfg, _ in pairs],
    }
    return config, analyses


def run(
    text: str, *, out: Path, force: bool, json_out: bool, t0: float, input_file: Optional[dict], **settings
) -> None:
    """`compare_checkpoints`, then the report folder and the summary, as every command writes them."""
    import time

    from gradscope.cli._reports import finish, write

    config, analyses = compare_checkpoints(text, **settings)
    if input_file is not None:
        config["input_file"] = input_file
    report = write(out, analyses, command="compare", config=config, force=force)
    finish(
        out,
        report,
        json_out=json_out,
        quiet=settings["quiet"],
        title=f"checkpoints over T = {settings['length']} steps (input {settings['source']}, {settings['dtype']})",
        seconds=time.perf_counter() - t0,
    )
