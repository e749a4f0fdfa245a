"""``gradscope cells``: the registered cells, their family, description, equation and options.

A listing must be instant, and importing the cells means importing JAX (seconds). So the command reads
``_cell_catalogue.json``, a snapshot of the registry written by `write_catalogue` and kept equal to the
live registry by tests/test_cell_catalogue.py (a new cell without a catalogue entry fails the suite).
"""

from __future__ import annotations

import json
from pathlib import Path

from gradscope.cli._output import print_json, stdout_console
from gradscope.cli._params import JsonOnly

CATALOGUE = Path(__file__).with_name("_cell_catalogue.json")


def live_catalogue() -> list[dict]:
    """The rows of the live registry (imports the cells, hence JAX)."""
    from gradscope.cells import entries, options

    return [
        {
            "name": e.name,
            "family": e.family,
            "description": e.description,
            "equation": e.equation,
            "options": options(e.name),
        }
        for e in entries()
    ]


def write_catalogue() -> None:
    """Regenerate the snapshot: ``python -c "from gradscope.cli.cells import write_catalogue; write_catalogue()"``."""
    from gradscope._atomic import write_text

    write_text(CATALOGUE, json.dumps(live_catalogue(), indent=1, ensure_ascii=False) + "\n")


def cells(json_out: JsonOnly = False) -> None:
    """List the registered cells: name, family, description and equation.

    Example: `gradscope cells --json | jq '.[].name'`
    """
    rows = json.loads(CATALOGUE.read_text(encoding="utf-8"))
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
