"""``--distributed``: start multi-process JAX before any computation (``gradscope sweep``; docs/scale.md).

The four options of a multi-process run are declared here, next to `start_distributed`, which checks them
together: a command takes them as ``distributed: Distributed = False, coordinator: Coordinator = None, …``.
"""

from __future__ import annotations

import io
import os
import sys
from typing import Annotated, Optional

import typer

from gradscope._errors import ConfigError
from gradscope.cli._output import one_line

Distributed = Annotated[
    bool,
    typer.Option(
        "--distributed",
        help="Call jax.distributed.initialize() first "
        "(multi-process JAX: auto-detected on Slurm, Open MPI, TPU pods; elsewhere "
        "give --coordinator, --num-processes and --process-id; see docs/scale.md).",
    ),
]
Coordinator = Annotated[
    Optional[str],
    typer.Option("--coordinator", help="With --distributed: HOST:PORT of process 0's coordinator service."),
]
NumProcesses = Annotated[
    Optional[int], typer.Option("--num-processes", help="With --distributed: how many processes take part.")
]
ProcessId = Annotated[
    Optional[int],
    typer.Option(
        "--process-id",
        help="With --distributed: this process's index, 0 … num-processes − 1 (process 0 writes the report).",
    ),
]


def start_distributed(
    distributed: bool, coordinator: str | None, num_processes: int | None, process_id: int | None
) -> None:
    """``jax.distributed.initialize`` for ``--distributed``, before any JAX computation.

    With none of ``--coordinator/--num-processes/--process-id`` JAX detects the cluster (Slurm, Open MPI,
    TPU pods); elsewhere all three are needed (JAX reads only the coordinator address from the environment).
    """
    given = {"--coordinator": coordinator, "--num-processes": num_processes, "--process-id": process_id}
    named = [k for k, v in given.items() if v is not None]
    if not distributed:
        if named:
            raise ConfigError(f"{named[0]} only applies to a multi-process run: add --distributed")
        return
    if named and len(named) < 3:
        missing = [k for k in given if k not in named]
        raise ConfigError(
            f"{', '.join(named)} given without {', '.join(missing)}: give all three, or none of "
            "them on a cluster JAX detects by itself (Slurm, Open MPI, TPU pods)"
        )
    if coordinator is not None and num_processes is not None and process_id is not None:  # all three given
        host, _, port = coordinator.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(
                f"--coordinator={coordinator!r} is not allowed: expected HOST:PORT, e.g. "
                "node0:12345 (the address of process 0)"
            )
        if num_processes < 1:
            raise ConfigError(f"--num-processes={num_processes} is not allowed: expected an integer >= 1")
        if not 0 <= process_id < num_processes:
            raise ConfigError(
                f"--process-id={process_id} is not allowed: expected 0 … {num_processes - 1} "
                f"(--num-processes={num_processes})"
            )
    import jax

    try:
        jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id)
    except (ValueError, RuntimeError) as exc:
        raise ConfigError(
            f"--distributed: JAX could not start the multi-process run ({one_line(str(exc))[:300]}); "
            "outside Slurm, Open MPI and TPU pods give --coordinator, --num-processes and "
            "--process-id"
        ) from None
    _native_stdout_to_stderr()


def _native_stdout_to_stderr() -> None:
    """Point file descriptor 1 at stderr and give Python's ``sys.stdout`` a private copy of the real stdout.

    Why: the CPU collectives (Gloo) log their connections with C++ ``std::cout``, which would corrupt
    ``--json`` output; stdout must hold only what gradscope prints. Skipped when stdout is not fd 1
    (captured, e.g. under typer's CliRunner).
    """
    try:
        if sys.stdout.fileno() != 1:
            return
    except (AttributeError, OSError, ValueError):
        return
    sys.stdout.flush()
    real = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = io.TextIOWrapper(io.FileIO(real, "w"), encoding=sys.stdout.encoding, line_buffering=True)
