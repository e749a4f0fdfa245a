"""`gradscope cells` reads a snapshot of the registry so that it does not import JAX: the snapshot must equal
the live registry (regenerate with gradscope.cli.cells.write_catalogue after adding or changing a cell)."""

import json
import os
import subprocess
import sys

from gradscope.cli.cells import CATALOGUE, live_catalogue


def test_catalogue_equals_the_live_registry():
    snapshot = json.loads(CATALOGUE.read_text(encoding="utf-8"))
    live = json.loads(json.dumps(live_catalogue()))
    assert [r["name"] for r in snapshot] == [r["name"] for r in live], (
        "the cell catalogue is stale: run python -c 'from gradscope.cli.cells import write_catalogue; "
        "write_catalogue()'"
    )
    assert snapshot == live


def test_cells_listing_does_not_import_jax():
    code = (
        "import sys, json; from typer.testing import CliRunner; from gradscope.cli import app; "
        "r = CliRunner().invoke(app, ['cells', '--json']); assert r.exit_code == 0, r.output; "
        "rows = json.loads(r.stdout); print(len(rows), 'jax' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=dict(os.environ, GRADSCOPE_CACHE_DIR="off"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    n, jax_imported = out.stdout.split()
    assert int(n) == len(json.loads(CATALOGUE.read_text(encoding="utf-8"))) and jax_imported == "False"
