"""Grids of analyses: cells × recurrent gain × sequence length × seed, resumable, and their heat-maps.

One *configuration* is a registry cell with options, a hidden size, an input source, a length T and a
seed; `analyse_config` builds the model from ``key(seed)`` and the inputs from an independent key, so
every cell with the same seed sees the same input sequences. `run_sweep` runs a grid and returns the
``Analysis.to_dict()`` of each configuration, named ``"<cell>/g=<gain>/T=<T>/s=<seed>"`` (``g=`` only for
cells that take a ``gain`` option: the Elman family, where the recurrent matrix is scaled by it —
Pascanu et al. 2013's σ_max(W) knob); with a partial-results file (JSON lines, one per finished
configuration) a rerun continues where an interrupted one stopped and returns the identical list.

Scale: configurations that differ only in their weights (same cell, options, sizes) are grouped, their
models stacked, and each stack analysed by one ``jax.jit(jax.vmap(…))`` program whose configuration axis
is sharded over all devices (`gradscope.analysis.batch`); stack sizes come from the memory budget.
Results equal the one-at-a-time `analyse_config` bitwise on CPU and do not depend on the stack size or
the device count (keys depend only on a configuration's seed). `gradscope.experiments.merge` splits a grid into
``--shard i/n`` slices for clusters without a JAX coordinator and merges their parts (docs/scale.md).

`sweep_figures(report)` draws the two summary heat-maps from a report: the largest Lyapunov exponent
(nats per step) over gain × cell, and the gradient horizon (largest lag with log10 ‖∂S_T/∂S_k‖₂ ≥ the
threshold) over length × cell.
"""

from gradscope.experiments.sweep.batching import analyse_configs, batchable, chunks, groups, plan_group
from gradscope.experiments.sweep.config import (
    Config,
    analyse_config,
    analyse_model,
    build_model,
    config_keys,
    grid,
    plan_config,
)
from gradscope.experiments.sweep.resume import PARTIAL_SCHEMA, read_partial
from gradscope.experiments.sweep.run import _record, run_sweep
from gradscope.report.sweep import SWEEP_FIGURE_FILES, sweep_figures, write_sweep_report

__all__ = [
    "_record",
    "Config",
    "grid",
    "build_model",
    "config_keys",
    "plan_config",
    "analyse_model",
    "analyse_config",
    "groups",
    "batchable",
    "analyse_configs",
    "plan_group",
    "chunks",
    "run_sweep",
    "read_partial",
    "PARTIAL_SCHEMA",
    "sweep_figures",
    "SWEEP_FIGURE_FILES",
    "write_sweep_report",
]
