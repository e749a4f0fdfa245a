"""Memory planning: know what a stage will hold before running it, and say what would fit.

Every public engine entry point calls `plan_stage` before its rollout. The bytes are predicted from
shapes alone (batch B, length T, input size m, state size d = Σ block sizes, parameter count |θ|, item
size) by the closed forms of `stage_numbers` — per sequence: the rollout holds (T+1)·d states, T·m
inputs and up to 8·T·d gate values; a dense lag profile one d × d product and O(T) norms; a triangle
its (T+1)² output; attribution and `step_jacobians` every step Jacobian, T·d² numbers; parameter
sensitivity the d × |θ| tangent — times `SLACK` for XLA's temporaries. That is compared with a budget
of `BUDGET_FRACTION` of the memory available (the GPU allocator's limit, or the machine's free physical
memory on a CPU); a request over it raises `ResourceError` in one line, before any work:

    "<what> needs X GB, Y GB available; at most T = … (or batch = …, hidden = …) fits"

where each alternative is the largest value of that size alone that would fit (found by bisection on
the same closed form). The estimates err on the generous side: planning refuses what cannot run, it does
not size buffers.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from gradscope._errors import GradscopeError

#: fraction of the device's memory a single stage may plan to use
BUDGET_FRACTION = 0.5
#: factor for XLA's temporaries (copies of scan carries, fusion buffers, LAPACK workspace)
SLACK = 2


class ResourceError(GradscopeError, MemoryError):
    """A computation would not fit in the device's memory."""


def available_bytes(device: Any = None) -> int:
    """Bytes free on ``device`` (default: the first JAX device): a GPU's allocator limit minus what is in
    use, else the machine's free physical memory (``sysconf``)."""
    import jax

    device = device or jax.devices()[0]
    try:
        stats = device.memory_stats() or {}
        if "bytes_limit" in stats:
            return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    except Exception:  # noqa: BLE001 - some backends do not report memory stats
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 8 * 2**30


def budget_bytes() -> int:
    """The bytes one stage (or one whole analysis) may plan to use: `BUDGET_FRACTION` of `available_bytes`."""
    return int(BUDGET_FRACTION * available_bytes())


def gb(n: float) -> str:
    """Bytes as decimal gigabytes, e.g. ``'3.1'``, ``'0.012'``, ``'1,024'``."""
    v = n / 1e9
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 1:
        return f"{v:.1f}"
    return f"{v:.2g}"


# ------------------------------------------------------------------------------------------- sizes


@dataclasses.dataclass(frozen=True)
class Sizes:
    """The shapes a plan is made from. ``hidden``: the hidden size, offered as a remedy only with
    ``rebuild(hidden) -> Sizes`` (the model's shapes at another hidden size, e.g. built abstractly by
    `jax.eval_shape`); a model the user passed in has neither."""

    batch: int
    length: int
    inputs: int
    state: int
    params: int
    itemsize: int
    blocks: int = 1
    diagonal: bool = False
    hidden: int | None = None
    rebuild: Callable[[int], Sizes] | None = dataclasses.field(default=None, compare=False, repr=False)

    def replace(self, **kw: int) -> Sizes:
        if "hidden" in kw:
            assert self.rebuild is not None, "hidden is only varied with a rebuild"
            base = self.rebuild(kw.pop("hidden"))
            kw = {"batch": self.batch, "length": self.length, **kw}
            return dataclasses.replace(base, **kw)
        return dataclasses.replace(self, **kw)


def model_sizes(
    model: Any,
    batch: int,
    length: int,
    inputs: int,
    *,
    hidden: int | None = None,
    rebuild: Callable[[int], Sizes] | None = None,
) -> Sizes:
    """`Sizes` of ``model`` (a model, or its abstract `jax.eval_shape` twin: only shapes are read);
    ``hidden``/``rebuild``: see `Sizes`."""
    import jax
    import jax.numpy as jnp

    from gradscope.engine._prep import is_diagonal

    blocks = tuple(int(n) for n in model.block_sizes)
    params = sum(math.prod(np.shape(leaf)) for leaf in jax.tree.leaves(model))
    if hidden is None:
        h = getattr(model, "hidden_size", None)
        hidden = h if isinstance(h, int) and h > 0 else None
    try:
        diag = bool(is_diagonal(model))
    except Exception:  # noqa: BLE001 - a model that fails here is refused by check_inputs, not by planning
        diag = False
    return Sizes(
        batch=int(batch),
        length=int(length),
        inputs=int(inputs),
        state=sum(blocks),
        params=int(params),
        itemsize=jnp.dtype(model.dtype).itemsize,
        blocks=len(blocks),
        diagonal=diag,
        hidden=hidden,
        rebuild=rebuild,
    )


def sizes_of(model: Any, xs: Any) -> Sizes | None:
    """`Sizes` of ``model`` run on ``xs`` ((T, m) or (B, T, m); any object with a ``shape``, nested lists
    too); None when the shapes are not those of a valid call (`check_inputs` then says why)."""
    try:
        shape = tuple(int(n) for n in (xs.shape if hasattr(xs, "shape") else np.shape(xs)))
        if len(shape) not in (2, 3) or min(shape) < 1:
            return None
        B = shape[0] if len(shape) == 3 else 1
        return model_sizes(model, B, shape[-2], shape[-1])
    except Exception:  # noqa: BLE001 - validation is check_inputs' job; planning only reads what it can
        return None


# ------------------------------------------------------------------------------------- closed forms


def _pairs(s: Sizes) -> int:
    return s.blocks**2 if s.blocks <= 4 else s.blocks


def rollout_numbers(s: Sizes) -> int:
    """Per sequence: the states S_0..S_T and the inputs."""
    return (s.length + 1) * s.state + s.length * s.inputs


def gate_numbers(s: Sizes) -> int:
    """Per sequence: the gate values a full rollout records (`Trajectory.aux`; LSTM: 4 gates of d/2 units,
    GRU 3 of d), at most 4·T·d."""
    return 4 * s.length * s.state


def stage_numbers(stage: str, s: Sizes, **opts: Any) -> int:
    """Numbers a stage holds per sequence on top of the rollout (its outputs and live workspace).

    ``opts``: ``k`` (Lyapunov exponents), ``probes`` (probe mode), ``steps`` (step spectra), ``chunk``
    (triangle slots).
    """
    T, d, m = s.length, s.state, s.inputs
    work = 12 * d * d  # a live d × d product, subspace blocks, QR/SVD workspace of one step
    if stage == "rollout":
        return 0
    if stage == "lag_profile":
        return 6 * T * d + 2 * T * _pairs(s) if s.diagonal else T * (2 + 2 * _pairs(s)) + work
    if stage == "lyapunov":
        k = min(d, int(opts.get("k") or d))
        return 2 * T * k + (6 * T * d if s.diagonal else work)
    if stage == "singular_values":
        return 64 * 32 + (6 * T * d if s.diagonal else work)
    if stage == "step_singular_values":
        n = opts.get("steps", 16)  # `analyse` takes 16 steps; step_singular_values(steps=None) all T
        return (T if n is None else int(n)) * 3 * (d * d + d)
    if stage == "path_split":
        return 6 * T + work
    if stage == "triangle":
        out = 2 * (T + 1) ** 2
        return out + (3 * T * d if s.diagonal else int(opts.get("chunk") or 1) * d * d + work)
    if stage == "attribution":
        return 3 * T * d * d
    if stage == "step_jacobians":
        return T * d * (d + m)
    if stage == "probe":
        return 3 * int(opts.get("probes") or 16) * d + 3 * T
    if stage == "sensitivity":
        return 3 * d * s.params + 4 * T
    raise ValueError(f"unknown stage {stage!r}")  # pragma: no cover - a programming error


def stage_bytes(stage: str, s: Sizes, **opts: Any) -> int:
    """Bytes of one engine stage: ``SLACK · itemsize · (B · (rollout + stage) + |θ|)``."""
    per_seq = rollout_numbers(s) + stage_numbers(stage, s, **opts)
    return int(SLACK * s.itemsize * (s.batch * per_seq + s.params))


# ------------------------------------------------------------------------------------------ verdict


def _largest(estimate: Callable[[Sizes], int], s: Sizes, field: str, budget: int) -> int:
    """The largest value (below the current one) of ``field`` alone for which ``estimate`` fits, or 0."""
    hi = int(getattr(s, field)) - 1
    if hi < 1 or estimate(s.replace(**{field: 1})) > budget:
        return 0
    lo = 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if estimate(s.replace(**{field: mid})) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return lo


def what_fits(estimate: Callable[[Sizes], int], s: Sizes, budget: int) -> str:
    """``"T = 1200 (or batch = 2, hidden = 40)"``: the largest length, batch and hidden size that fit,
    each changed alone; else ``"T = 90 with batch = 1"``; else ``""`` (the model itself is too large)."""
    names = [("length", "T"), ("batch", "batch")] + ([("hidden", "hidden")] if s.hidden and s.rebuild else [])
    alts = [f"{label} = {n}" for field, label in names if (n := _largest(estimate, s, field, budget))]
    if not alts and s.batch > 1:  # neither alone: the length with a single sequence
        n = _largest(estimate, s.replace(batch=1), "length", budget)
        return f"T = {n} with batch = 1" if n else ""
    if not alts:
        return ""
    return alts[0] + (f" (or {', '.join(alts[1:])})" if alts[1:] else "")


def refuse(nbytes: int, what: str, budget: int, fits: str) -> ResourceError:
    """The one-line `ResourceError`: ``"<what> needs X GB, Y GB available; at most <fits> fits"`` (or, when
    no smaller length, batch or hidden size alone would do, that the model itself is too large)."""
    tail = f"at most {fits} fits" if fits else "no smaller T or batch fits: the model itself is too large"
    return ResourceError(f"{what} needs {gb(nbytes)} GB, {gb(budget)} GB available; {tail}")


def check(estimate: Callable[[Sizes], int], s: Sizes, what: str, *, budget: int | None = None) -> int:
    """Raise `ResourceError` when ``estimate(s)`` exceeds the budget (naming what fits); return the bytes."""
    budget = budget_bytes() if budget is None else int(budget)
    nbytes = int(estimate(s))
    if nbytes > budget:
        raise refuse(nbytes, what, budget, what_fits(estimate, s, budget))
    return nbytes


def label(what: str, state: int, length: int, batch: int) -> str:
    """How a refusal names what was planned: what, its state size, T and batch."""
    return f"{what} (state size {state}, T = {length}, batch {batch})"


def plan_stage(stage: str, model: Any, xs: Any, *, what: str | None = None, **opts: Any) -> None:
    """Before an engine entry point's rollout: refuse a call whose stage would not fit (`stage_bytes`).
    Calls whose shapes are invalid pass through to `check_inputs`, which names the problem."""
    s = sizes_of(model, xs)
    if s is None:
        return
    check(lambda z: stage_bytes(stage, z, **opts), s, what or label(stage, s.state, s.length, s.batch))


def require(nbytes: int, what: str, *, per_step_bytes: int | None = None, budget: int | None = None) -> None:
    """Raise `ResourceError` if ``nbytes`` exceeds the stage budget; ``per_step_bytes`` lets the message
    say the longest sequence that would fit (for sizes planned from totals rather than `Sizes`)."""
    budget = budget_bytes() if budget is None else budget
    if nbytes <= budget:
        return
    n = budget // per_step_bytes if per_step_bytes else 0
    raise refuse(nbytes, what, budget, f"T = {n}" if n >= 1 else "")
