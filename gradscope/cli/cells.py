"""``gradscope cells``: the registered cells, their family, description, equation and options."""

from __future__ import annotations

import typer

from gradscope.cli._output import print_json, stdout_console


def cells(json_out: bool = typer.Option(False, "--json", help="Print JSON only (on stdout).")) -> None:
    """List the registered cells: name, family, description and equation.

    Example: `gradscope cells --json | jq '.[].name'`
    """
    from gradscope.cells import entries, options

    rows = [
        {
            "name": e.name,
            "family": e.family,
            "description": e.description,
            "equation": e.equation,
            "options": options(e.name),
        }
        for e in entries()
    ]
    if json_out:
        print_json(rows)
        return
    from rich.table import Table

    t = Table(
        title=f"{len(rows)} registered cells (use a name with --cell / --cells; options as name:key=value)",
        title_justify="left",
        show_lines=False,
    )
    for col in ("name", "family", "description", "equation"):
        t.add_column(col, overflow="fold")
    for r in rows:
        t.add_row(r["name"], r["family"], r["description"], r["equation"])
    stdout_console().print(t)


COMMANDS = (cells,)
