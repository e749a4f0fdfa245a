"""``gradscope report`` (re-render a report folder from its report.json) and ``gradscope inspect`` (what a
weight file holds and the model it maps to).

    gradscope report lstm-report         # re-render HTML/Markdown/figures from report.json
    gradscope inspect model.safetensors  # what a weight file holds and how it maps
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from gradscope._errors import ConfigError
from gradscope.cli._output import info, print_json, stdout_console
from gradscope.cli._params import JsonOnly, Silent


def report(
    folder: Path = typer.Argument(..., help="A report folder (holding report.json)."),
    json_out: bool = typer.Option(False, "--json", help="Print the written files as JSON."),
    quiet: Silent = False,
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
    schema = data.get("schema") if isinstance(data, dict) else None
    if not str(schema or "").startswith("gradscope.report/"):
        raise ConfigError(f"{str(src)!r} is not a gradscope report (schema {schema!r}, expected 'gradscope.report/1')")
    from gradscope import report as rep

    written = rep.render_report(folder)
    files = [str(p) for p in written] if isinstance(written, (list, tuple)) else [str(folder)]
    if json_out:
        print_json({"folder": str(folder), "files": files})
    info(f"rendered {folder}/ from report.json ({len(data.get('analyses', []))} analyses)", quiet)


def inspect(
    file: Path = typer.Argument(..., help="A weight file: .safetensors, .npz, .pt/.pth, .weights.h5."),
    framework: Optional[str] = typer.Option(
        None,
        "--framework",
        help="torch, keras, flax, equinox, mamba, xlstm, mingru, lru or rglru (default: from the tensor names).",
    ),
    json_out: JsonOnly = False,
) -> None:
    """Show what a weight file holds and the gradscope model it maps to (nothing is executed); exit 1 when
    it does not map onto a model (the problem is shown), 2 when it cannot be read.

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
    else:
        _print_inspection(file, d)
    if d.get("problem"):  # the file was read but does not map onto a model: exit 1, like a failed check
        raise typer.Exit(1)


def _print_inspection(file: Path, d: dict) -> None:
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


COMMANDS = (report, inspect)
