"""Planning before any work: refuse, in seconds, what cannot run, and say what would fit.

`plan_analysis` runs first thing in `gradscope.analyse`; `gradscope.experiments.plan` builds on it for a
CLI configuration before its model or inputs exist (analyse, compare, sweep: `plan_config`) and first thing
in `gradscope.experiments.train.train` (`plan_training`). Each engine entry point plans its own stage
(`gradscope.engine._memory.plan_stage`). All of them predict the bytes from shapes alone — the model
built abstractly by `jax.eval_shape` where it does not exist yet, and the closed forms of
`gradscope.engine._memory` — and raise, before any rollout, a one-line `ResourceError`
(``"… needs X GB, Y GB available; at most T = … (or batch = …, hidden = …) fits"``) or `ConfigError`
(sizes and seeds outside the integer ranges JAX and XLA take).

An analysis runs its stages one after the other, keeping only their small outputs, so its peak is the
rollout (held twice: by `analyse` and by the stage re-running it), the gate values of the rollout
`gradscope.engine.gate_statistics` reads, and the largest stage:
``SLACK · itemsize · (B · (2 · rollout + gates + max_stage) + |θ|)``. A dense exact analysis whose
``B·T·d²`` step Jacobians take at most a quarter of the budget (`gradscope.engine.materialise_fits`) holds
them too, once, instead of recomputing them in every stage. A training step holds the forward
residuals and their cotangents, ``2 · (rollout + gates)`` per sequence, the readout's outputs, and the parameters
with their gradient and two Adam moments (4 |θ|); its diagnostics snapshot is an analysis of the probe
batch.
"""

from __future__ import annotations

import inspect
from typing import Any

from gradscope._errors import ConfigError
from gradscope.engine._memory import (
    SLACK,
    Sizes,
    check,
    gate_numbers,
    rollout_numbers,
    sizes_of,
    stage_numbers,
)
from gradscope.engine._memory import label as describe

#: the largest size along one axis (XLA's dimensions are 32-bit in places) and the deepest stack planned
MAX_EXTENT = 2**31 - 1
MAX_LAYERS = 4096
MAX_SEED = 2**63 - 1


def analysis_stages(**switches: Any) -> tuple[str, ...]:
    """The engine stages `gradscope.analyse` runs when called with ``switches`` (its keyword options: ``mode``,
    ``lyapunov``, ``triangle``, ``spectra``, ``paths``, ``attribution``, ``sensitivity``). An option not given
    has analyse's default, read from its signature: the defaults are declared once, so the plan cannot
    disagree with the analysis; a name analyse does not take is a ``TypeError``."""
    from gradscope.analysis.core import analyse  # here, not at the top: core imports this module

    call = inspect.signature(analyse).bind_partial(**switches)
    call.apply_defaults()
    sw = call.arguments
    exact = sw["mode"] == "exact"
    out = ["lag_profile" if exact else "probe"]
    out += ["lyapunov"] * sw["lyapunov"] + ["triangle"] * sw["triangle"] + ["attribution"] * sw["attribution"]
    out += ["singular_values", "step_singular_values"] * (sw["spectra"] and exact)
    out += ["path_split"] * (sw["paths"] and exact) + ["sensitivity"] * sw["sensitivity"]
    return tuple(out)


def analysis_bytes(s: Sizes, stages: tuple[str, ...], **opts: Any) -> int:
    """Peak bytes of an analysis running ``stages`` one after the other (module docstring)."""
    largest = max((stage_numbers(st, s, **opts) for st in stages), default=0)
    per_seq = 2 * rollout_numbers(s) + gate_numbers(s) + largest
    return int(SLACK * s.itemsize * (s.batch * per_seq + s.params))


def label(s: Sizes, name: str | None) -> str:
    """How a refusal names what was planned: its name, state size, T and batch."""
    return describe(name or "the analysis", s.state, s.length, s.batch)


def plan_analysis(model: Any, xs: Any, *, name: str | None = None, probes: int = 16, **switches: Any) -> None:
    """Refuse `gradscope.analyse(model, xs, **switches)` before its rollout when it would not fit.

    Reads only shapes (``model`` may be a `jax.eval_shape` twin, ``xs`` a `jax.ShapeDtypeStruct`); calls
    whose shapes are invalid pass through to the input checks, which name the problem.
    """
    s = sizes_of(model, xs)
    if s is None:
        return
    stages = analysis_stages(**switches)
    check(lambda z: analysis_bytes(z, stages, probes=probes), s, label(s, name))


def check_extents(**sizes: int) -> None:
    """``ConfigError`` for a size (``hidden=…``, ``length=…``, …) beyond `MAX_EXTENT`, naming its option."""
    for option, value in sizes.items():
        if int(value) > MAX_EXTENT:
            flag = "--" + option.replace("_", "-")
            raise ConfigError(f"{flag}={value} is not allowed: at most {MAX_EXTENT} (2**31 - 1)")


def check_seed(seed: int) -> None:
    """``ConfigError`` for a seed JAX cannot take (it keys with 64-bit integers)."""
    if not 0 <= int(seed) <= MAX_SEED:
        raise ConfigError(f"--seed={seed} is not allowed: expected an integer from 0 to 2**63 - 1")


def check_sizes(*, seed: int | None = None, layers: int | None = None, **extents: int | None) -> None:
    """`check_seed`, `check_extents` and the `MAX_LAYERS` limit in one call (None: not given)."""
    if seed is not None:
        check_seed(seed)
    check_extents(**{k: int(v) for k, v in extents.items() if v is not None})
    if layers is not None and int(layers) > MAX_LAYERS:
        raise ConfigError(f"--layers={layers} is not allowed: at most {MAX_LAYERS} stacked layers")
