"""``gradscope train`` (train a model on a task, following its gradient flow) and ``gradscope reproduce``
(published claims about gradient flow, checked).

    gradscope train --task adding --length 1000 --cell indrnn --layers 2 --hidden 128 --steps 5000 --out run
    gradscope reproduce adding --out repro-adding            # quick setting (CPU, CI)
    gradscope reproduce all --full --out repro               # the papers' settings (needs a GPU)

Module-level imports are JAX-free (``gradscope check`` must start fast): training, tasks and the report
writer are imported inside the commands.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Optional

import typer

from gradscope._errors import ConfigError, check_number
from gradscope.cli._options import check_out_dir, enable_float64, parse_cell_spec
from gradscope.cli._output import info, print_json, progress, stderr_console, stdout_console, warn
from gradscope.cli._params import Force, JsonOnly, JsonReport, Layers, Quiet, Residual

if TYPE_CHECKING:
    import jax
    from rich.table import Table

    from gradscope.cli._options import CellSpec


Optimizer = Literal["adam", "sgd"]
Schedule = Literal["constant", "step", "cosine"]


def build_model(
    cell: str, input_size: int, hidden: int, layers: int, residual: bool, length: int, *, key: jax.Array, dtype: Any
) -> tuple[Any, CellSpec]:
    """The recurrent model of ``gradscope train``: ``layers`` copies of the cell spec (fresh weights each),
    built as every command builds its models (`gradscope.experiments.models.build_model`: a plain ``indrnn``
    gets ``max_length = T`` and, in its last layer, ``u_min = (1/2)^(1/T)``)."""
    from gradscope.experiments.models import build_model as build

    spec = parse_cell_spec(cell)
    model = build(
        spec.name,
        spec.options,
        input_size=input_size,
        hidden=hidden,
        length=length,
        key=key,
        layers=layers,
        residual=residual,
        dtype=dtype,
    )
    return model, spec


def _has_indrnn(model: Any) -> bool:
    """Whether any leaf cell of ``model`` (`Cell.named_cells`: a cell, the layers of a Stack, ...) is an IndRNN."""
    from gradscope.cells.indrnn import IndRNN

    return any(isinstance(cell, IndRNN) for _, cell in model.named_cells())


def _final_table(runs: list[dict[str, Any]], title: str) -> Table:
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    for col in ("run", "steps", "final loss", "final metric", "baseline", "horizon (first → last)", "diverged"):
        t.add_column(col)
    for r in runs:
        f = r.get("final") or {}
        m = r.get("metric_name", "metric")
        snaps = r.get("snapshots") or []
        hz = f"{snaps[0]['horizon']} → {snaps[-1]['horizon']}" if snaps else "—"
        fm = f.get(m)
        t.add_row(
            r["name"],
            str(r["steps_done"]),
            "—" if f.get("loss") is None else f"{f['loss']:.4g}",
            "—" if fm is None else f"{m} {fm:.4g}",
            f"{r['baseline']:.4g}",
            hz,
            f"step {r['diverged']['step']}" if r.get("diverged") else "—",
        )
    return t


def _prepare_run_folder(out: Path, *, force: bool, resume: bool, checkpoints: bool) -> Path | None:
    """Check --out before any work; with --force drop old checkpoints. Returns the checkpoint folder (or None)."""
    if resume and force:
        raise ConfigError("--resume and --force are not allowed together: --force starts over, --resume continues")
    if not resume:  # a run folder holds a report, or at least checkpoints, when gradscope wrote it
        check_out_dir(out, force, markers=("report.json", "checkpoints/latest.json"))
    elif out.exists() and not out.is_dir():
        raise ConfigError(f"--out={str(out)!r} is not allowed: it exists and is not a folder")
    return out / "checkpoints" if (checkpoints or resume) else None


def train(
    task: str = typer.Option(..., "--task", help="Task: adding, copy, temporal-order, digits, permuted-digits, text."),
    length: Optional[int] = typer.Option(
        None, "--length", "-T", min=1, help="Sequence length T [default: the task's]."
    ),
    cell: str = typer.Option(
        "lstm", "--cell", "-c", help="Registry cell with options, e.g. indrnn or lstm:forget_bias=1."
    ),
    layers: Layers = 1,
    hidden: int = typer.Option(64, "--hidden", min=1, help="Hidden units per layer."),
    residual: Residual = False,
    steps: int = typer.Option(1000, "--steps", min=1, help="Optimisation steps (one fresh batch each)."),
    batch: int = typer.Option(32, "--batch", "-B", min=1, help="Sequences per step."),
    lr: float = typer.Option(1e-3, "--lr", help="Learning rate."),
    optimizer: Optimizer = typer.Option("adam", "--optimizer", help="adam or sgd."),
    schedule: Schedule = typer.Option("constant", "--schedule", help="Learning-rate schedule."),
    clip_norm: Optional[float] = typer.Option(
        None, "--clip-norm", help="Global gradient-norm clipping threshold (Pascanu et al. 2013)."
    ),
    indrnn_clip: Optional[float] = typer.Option(
        None,
        "--indrnn-clip",
        help="IndRNN constraint |u| ≤ γ^(1/T) after every update [default: γ = 2 for IndRNN models].",
    ),
    snapshot_every: Optional[int] = typer.Option(
        None, "--snapshot-every", min=1, help="Diagnostics snapshot every so many steps [default: steps/10]."
    ),
    probe_batch: int = typer.Option(8, "--probe-batch", min=1, help="Sequences of the fixed diagnostics probe batch."),
    checkpoint_every: Optional[int] = typer.Option(
        None, "--checkpoint-every", min=1, help="Checkpoint into OUT/checkpoints every so many steps."
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue from the latest checkpoint in OUT/checkpoints."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed for weights, data and probe batch."),
    float64: bool = typer.Option(False, "--float64", help="Train in float64 (default float32)."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder (refused if non-empty, unless --force or --resume)."),
    force: bool = typer.Option(False, "--force", help="Replace a non-empty --out (its checkpoints too)."),
    json_out: JsonReport = False,
    quiet: Quiet = False,
) -> None:
    """Train a recurrent model on a task and follow its gradient flow during training.

    Writes OUT/report.json, report.html, summary.md and figures/ (loss and gradient-norm curves, horizon
    against training step, heat-map of the gradient by lag against step) and, with --checkpoint-every,
    OUT/checkpoints/. A NaN/inf loss stops the run with one line naming the step and the last checkpoint.

    Example: `gradscope train --task adding --length 1000 --cell indrnn --layers 2 --hidden 128 --lr 2e-4
    --clip-norm 10 --steps 20000 --out indrnn-adding`

    Resume: `gradscope train ... --checkpoint-every 500 --out run` then the same command with `--resume`.
    """
    t0 = time.perf_counter()
    dtype = enable_float64(float64)
    check_number("--lr", lr, positive=True)
    for flag, v in (("--clip-norm", clip_norm), ("--indrnn-clip", indrnn_clip)):
        if v is not None:
            check_number(flag, v, positive=True)
    out = Path(out)
    ckpt_dir = _prepare_run_folder(out, force=force, resume=resume, checkpoints=checkpoint_every is not None)
    import jax
    import jax.numpy as jnp

    from gradscope.analysis import analyse
    from gradscope.analysis.plan import check_sizes
    from gradscope.experiments import tasks
    from gradscope.experiments import train as tr
    from gradscope.experiments.models import model_key
    from gradscope.experiments.plan import plan_training
    from gradscope.experiments.reproduce import run_record  # the run record reproductions use too
    from gradscope.report import build_report
    from gradscope.report.training import write_training_report

    check_sizes(seed=seed, layers=layers, hidden=hidden, batch=batch, length=length)  # before any work
    tk = tasks.make(task, length=length)
    T = tk.length
    wdtype = jnp.float64 if dtype == "float64" else jnp.float32

    def shapes(h: int) -> Any:  # the model's shapes only: the run is planned before any weights exist
        return jax.eval_shape(
            lambda k: build_model(cell, tk.input_size, h, layers, residual, T, key=k, dtype=wdtype)[0], model_key(seed)
        )

    plan_training(shapes(hidden), tk, batch=batch, probe_batch=probe_batch, build=shapes)
    # the weights come from model_key(seed), as in every command; training data, readout and probe batch
    # from an independent stream
    key = jax.random.fold_in(jax.random.key(seed), 1)
    model, spec = build_model(
        cell,
        tk.input_size,
        hidden,
        layers,
        residual,
        T,
        key=model_key(seed),
        dtype=jnp.float64 if dtype == "float64" else jnp.float32,
    )
    if indrnn_clip is None and _has_indrnn(model):
        indrnn_clip = 2.0
    every = snapshot_every or max(1, steps // 10)
    if force and (out / "checkpoints").exists():
        import shutil

        shutil.rmtree(out / "checkpoints")
    if ckpt_dir is not None:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
    label = f"{spec.label}" + (f"x{layers}" if layers > 1 else "") + ("-res" if residual else "")
    with progress(steps, f"training {label}", quiet) as advance:

        def on_event(event):
            if event["event"] == "start" and event["step"]:
                for _ in range(event["step"]):
                    advance("")
            elif event["event"] == "step":
                advance(f"loss {event['loss']:.4g}")

        res = tr.train(
            model,
            tk,
            key=key,
            steps=steps,
            batch=batch,
            optimizer=optimizer,
            lr=lr,
            schedule=schedule,
            clip_norm=clip_norm,
            indrnn_clip=indrnn_clip,
            snapshot_every=every,
            probe_batch=probe_batch,
            checkpoint_dir=ckpt_dir,
            checkpoint_every=checkpoint_every,
            resume=resume,
            progress=on_event,
        )
    ev = tr.evaluate(res.params, tk, key=jax.random.fold_in(key, 7919), batch=1000)
    final = {
        "loss": ev["loss"],
        tk.metric_name: ev[tk.metric_name],
        "success": ev["success"],
        "eval": "1000 fresh sequences" if not hasattr(tk, "dataset") else "test split",
    }
    rec = run_record(label, res, task=tk, final=final, seconds=time.perf_counter() - t0)
    probe_xs = tk.sample(jax.random.split(key, 3)[2], probe_batch)[0].astype(res.params.readout.weight.dtype)
    a = analyse(res.params.rnn, probe_xs, name=label).to_dict()
    config = {
        "task": tk.describe(),
        "cell": spec.describe(),
        "layers": layers,
        "hidden": hidden,
        "residual": residual,
        "seed": seed,
        "dtype": dtype,
        **res.config,
    }
    report = build_report([a], command="train", config=config)
    report["training"] = {"runs": [rec]}
    write_training_report(out, report, force=True)
    if json_out:
        print_json(report)
    if not quiet and not json_out:
        stderr_console().print(_final_table([rec], f"{label} on {tk.name} (T={T})"))
    info(f"wrote {out}/ (report.json, report.html, summary.md, figures/) in {time.perf_counter() - t0:.0f} s", quiet)


def reproduce(
    name: Optional[str] = typer.Argument(None, help="Reproduction name, or 'all' (see --list)."),
    full: bool = typer.Option(
        False, "--full", help="The papers' settings (hours; needs a GPU) instead of the quick CI setting."
    ),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed for weights and data."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Report folder (for 'all': one subfolder each)."),
    force: Force = False,
    check: bool = typer.Option(False, "--check", help="Exit with code 1 if a claim did not hold."),
    list_: bool = typer.Option(False, "--list", help="List the reproductions and their claims."),
    json_out: JsonOnly = False,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress and no summary on stderr."),
) -> None:
    """Reproduce a published claim about gradient flow and report whether it held.

    Reproductions: adding, forget-bias, bn-gamma, gru-vs-lstm, depth, clipping. Each report states the
    claim, the measured outcome and whether it held (and why not).

    Example: `gradscope reproduce adding --out repro-adding`

    All quick versions, failing CI when a claim does not hold: `gradscope reproduce all --out repro --check`
    """
    from gradscope.experiments import reproduce as rp

    if list_:
        _list_reproductions(rp, json_out)
        return
    if name is None:
        raise ConfigError(
            "give a reproduction NAME (or 'all'), or --list to see them: e.g. "
            "`gradscope reproduce adding --out repro-adding`"
        )
    chosen = list(rp.EXPERIMENTS) if name == "all" else [rp.get(name).name]
    if out is None:
        raise ConfigError("--out DIR is required: the folder the report is written to")
    out = Path(out)
    check_out_dir(out, force)
    enable_float64(False)
    import jax

    if full and jax.default_backend() == "cpu":
        warn("--full runs the papers' settings, which take hours on a CPU; they are meant for a GPU")
    from gradscope.report.training import write_training_report

    results = []
    for n in chosen:
        rp.get(n)  # an unknown name fails here, before any work
        target = out if name != "all" else out / n
        with progress(1, f"reproducing {n} ({'full' if full else 'quick'})", quiet) as advance:
            res = rp.run(n, quick=not full, seed=seed)
            advance(n)
        write_training_report(target, rp.to_report(res), force=True)
        results.append(res)
        info(f"{n}: claim {'held' if res['held'] else 'did NOT hold'} ({res['seconds']:.0f} s) -> {target}/", quiet)
        if not quiet and not json_out:
            stderr_console().print(f"  {res['outcome']}", highlight=False)
            if res["why"]:
                stderr_console().print(f"  [red]{res['why']}[/]", highlight=False)
    if json_out:
        keys = (
            "name",
            "title",
            "claim",
            "source",
            "setting",
            "held",
            "outcome",
            "why",
            "checks",
            "measurements",
            "seconds",
        )
        from gradscope.report import clean

        docs = [clean({k: r[k] for k in keys}) for r in results]
        print_json(docs[0] if name != "all" else {"reproductions": docs})
    if check and not all(r["held"] for r in results):
        raise typer.Exit(code=1)


def _list_reproductions(rp: Any, json_out: bool) -> None:
    """``--list``: name, claim and source of every reproduction (JSON on stdout with --json)."""
    rows = [{"name": e.name, "title": e.title, "claim": e.claim, "source": e.source} for e in rp.EXPERIMENTS.values()]
    if json_out:
        print_json(rows)
        return
    from rich.table import Table

    t = Table(title="reproductions (gradscope reproduce NAME --out DIR)", title_justify="left")
    for col in ("name", "claim", "source"):
        t.add_column(col, overflow="fold")
    for r in rows:
        t.add_row(r["name"], r["claim"], r["source"])
    stdout_console().print(t)


COMMANDS = (train, reproduce)
