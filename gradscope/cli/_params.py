"""The options several commands share, declared once: ``force: Force = False`` in a command's signature.

Each alias is ``Annotated[type, typer.Option(...)]``: one flag keeps one spelling, one short form and one help
text in every command that takes it (typer copies the option for each command). The default stays in the
signature, where typer wants it with ``Annotated``. An option whose help differs between commands (``--batch``,
``--hidden``: their defaults differ) stays in its command. Nothing here imports JAX.
"""

from __future__ import annotations

from typing import Annotated

import typer

Force = Annotated[bool, typer.Option("--force", help="Replace a non-empty --out.")]
#: ``--json`` of the commands that write a report
JsonReport = Annotated[bool, typer.Option("--json", help="Print the report JSON on stdout.")]
#: ``--json`` of the commands that only print (a table, or JSON instead of it)
JsonOnly = Annotated[bool, typer.Option("--json", help="Print JSON only (on stdout).")]
#: ``--quiet`` of the commands that show progress
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress and no table on stderr.")]
#: ``--quiet`` of the commands that only say what they wrote
Silent = Annotated[bool, typer.Option("--quiet", "-q", help="Nothing on stderr.")]
Float64 = Annotated[bool, typer.Option("--float64", help="Compute in float64 (default float32).")]
Threshold = Annotated[float, typer.Option("--threshold", help="log10 norm that defines the horizon.")]
Layers = Annotated[int, typer.Option("--layers", min=1, help="Stacked layers.")]
Residual = Annotated[bool, typer.Option("--residual", help="Residual connections between stacked layers.")]
#: ``--input`` of the commands that analyse one length (``sweep`` takes several: its FILE does not fix T)
InputSource = Annotated[
    str,
    typer.Option(
        "--input",
        help="Input source: noise, uniform, zeros, adding, copy, temporal-order; or a FILE (.npy, .npz:NAME, .csv, "
        ".safetensors:NAME) of shape (T, m) or (B, T, m), which fixes T, the batch and m (docs/inputs.md).",
    ),
]
