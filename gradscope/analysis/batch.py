"""Many same-shaped models in one program: ``jax.jit(jax.vmap(core))`` over a stack of models, sharded
across devices.

Configurations of a sweep that share a cell, hidden size, length and input batch differ only in their
weights (gain, initialisation, seed). Their model pytrees are stacked leaf by leaf
(``jax.tree.map(jnp.stack, …)``) and one jitted, vmapped analysis runs over the stack. The stack's
leading axis ("cfg") is laid out over the devices with a `NamedSharding` on a 1-D mesh with an *Auto*
axis (in JAX 0.10, Explicit-mode meshes break inside ``jnp.linalg.qr``), and the
vmapped core runs under ``shard_map`` so that each device computes its own slice with the one-device
program and nothing is communicated. (A plain ``jit(vmap(f))`` over the sharded stack also runs, but
the partitioner may compile the non-first devices' slices differently: on 4 simulated CPU devices an
LSTM's path-split remainder then differed in the last bit — shard_map removes that.)

The core calls the same jitted stage functions as `gradscope.analyse` (rollout ``_states``, lag profile,
Lyapunov spectrum by QR, singular values at log-spaced lags, step spectra, path split, the rollout's
gate aux) on each model, so ``analyse_stack(models, xs)[i]`` is ``analyse(models[i], xs[i])`` for the
default exact-mode stages (equal to float rounding; tests/test_sweep.py). A configuration's result does
not depend on which other configurations share its stack or how many devices there are: there is no
reduction across the cfg axis (bitwise equality on CPU is tested with 4 simulated devices).

Memory: `config_bytes` estimates the peak buffers of one configuration; `plan_stack` turns the device
budget (`_memory.available_bytes` × `BUDGET_FRACTION`) into how many configurations to vmap at once and
raises `ResourceError` when not even one fits.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradscope._errors import ConfigError, check_number
from gradscope._rollout import _scan, check_inputs, refuse_non_finite
from gradscope._xla import jit
from gradscope.analysis import summary as sm
from gradscope.analysis.core import Analysis, _describe, with_findings
from gradscope.engine._memory import BUDGET_FRACTION, available_bytes, label, require
from gradscope.engine._prep import _states, is_diagonal, matmul_precision
from gradscope.engine.bounds import bound
from gradscope.engine.paths import PathSplit, _path_split, gate_statistics, has_direct_path
from gradscope.engine.products import LagProfile, _lag_profile, block_pairs, lag_pair_names
from gradscope.engine.spectra import Lyapunov, Spectra, _lyapunov, _singular_values, _step_sv, default_ks

#: the cfg axis name of the device mesh
AXIS = "cfg"


# ------------------------------------------------------------------------------------------- plan


def _stages(model, T: int) -> dict:
    """The static choices `gradscope.analyse` makes for a model of state size d and length T."""
    d = int(sum(model.block_sizes))
    diag = is_diagonal(model)
    paths = has_direct_path(model)
    r0 = r1 = 0
    if paths:
        block = getattr(model, "direct_block", "h")
        i = list(model.blocks).index(block)
        r0 = int(sum(model.block_sizes[:i]))
        r1 = r0 + int(model.block_sizes[i])
    return {
        "diag": diag,
        "k": d if diag else min(d, 16),
        "ks": tuple(int(k) for k in default_ks(T)),
        "top": min(d, 32),
        "steps": tuple(int(t) for t in np.unique(np.linspace(0, T - 1, min(T, 16)).astype(int))),
        "paths": paths,
        "r0": r0,
        "r1": r1,
    }


def config_bytes(model, batch: int, length: int, input_size: int) -> int:
    """Estimated peak bytes of one configuration's analysis (inputs, states, outputs, live d×d products).

    Generous on purpose (×2 for XLA temporaries): the sweep would rather run a smaller stack than fail.
    """
    d = int(sum(model.block_sizes))
    item = jnp.dtype(model.dtype).itemsize
    st = _stages(model, length)
    npairs = len(block_pairs(model))
    params = sum(int(np.prod(np.shape(l))) for l in jax.tree.leaves(model))
    B, T = int(batch), int(length)
    per_seq = (
        (T + 1) * d
        + T * input_size  # states and inputs
        + T * (2 + 2 * npairs)  # lag profile outputs
        + 2 * T * st["k"]  # Lyapunov running sums and sorted trace
        + len(st["ks"]) * st["top"]
        + len(st["steps"]) * (d * d + d)  # spectra (step Jacobians)
        + 6 * T  # path split
        + 8 * T * d  # the rollout's gate aux (up to 8 gate vectors per step)
        + 12 * d * d  # live products, subspace blocks, QR/SVD workspace of one step
    )
    return int(2 * item * (B * per_seq + params))


def plan_stack(
    model,
    batch: int,
    length: int,
    input_size: int,
    n_configs: int,
    *,
    n_devices: int = 1,
    max_vmap: int | None = None,
    budget: int | None = None,
    what: str = "one configuration",
) -> int:
    """How many configurations to vmap at once: a multiple of ``n_devices`` that fits the memory budget.

    The budget is per device (a GPU's own memory); CPU devices share the host's memory, so there it is
    divided among them. ``max_vmap`` caps the stack (None: as many as fit, at most ``n_configs`` rounded
    up to the device count); ``budget`` overrides the bytes available per device. Raises `ResourceError`
    when not even one configuration fits.
    """
    per = config_bytes(model, batch, length, input_size)
    if budget is None:
        dev = jax.devices()[0]
        budget = int(BUDGET_FRACTION * available_bytes(dev))
        if dev.platform == "cpu":
            budget //= max(1, n_devices)
    require(
        per,
        label(what, sum(model.block_sizes), length, batch),
        per_step_bytes=max(1, per // max(1, length)),
        budget=budget,
    )
    per_device = max(1, budget // per)
    want = n_configs if max_vmap is None else min(int(max_vmap), n_configs)
    per_device = min(per_device, max(1, -(-want // n_devices)))
    return int(per_device * n_devices)


# ------------------------------------------------------------------------------------------- core


def _core(model, xs, state0, *, diag, k, ks, top, steps, paths, r0, r1):
    """The exact-mode stages of `gradscope.analyse` for ONE model over its batch ``xs`` (B, T, m)."""
    pxs, S = _states(model, xs, state0, True)
    spec, frob, pf, ps = _lag_profile(model, pxs, S, True, diag, True)
    ex, trace = _lyapunov(model, pxs, S, True, k, 0, diag)
    out: dict[str, Any] = {"spec": spec, "frob": frob, "pf": pf, "ps": ps, "lyap": ex, "trace": trace}
    out["finite"] = jnp.all(jnp.isfinite(S), axis=-1)  # (B, T+1): where the state overflowed
    out["sv"] = _singular_values(model, pxs, S, True, ks, top)
    out["ssv"] = _step_sv(model, pxs, S, jnp.asarray(steps), True)
    if paths:
        out["paths"] = _path_split(model, pxs, S, True, r0, r1)
    out["aux"] = jax.vmap(_scan, in_axes=(None, 0, 0))(model, xs, state0).aux
    return out


# compiled as the serial stages are (gradscope._xla): the same code generator, the same bits
@functools.partial(jit, static_argnames=("mesh", "diag", "k", "ks", "top", "steps", "paths", "r0", "r1"))
def _stack_core(models, xs, state0, mesh, diag, k, ks, top, steps, paths, r0, r1):
    """vmap of `_core` over the cfg axis, run by `shard_map` on each device's own slice of the stack.

    shard_map rather than letting the partitioner split a jitted vmap: every device then runs exactly
    the one-device program on its local slice (no cross-device ops can be inserted), which is what
    makes the results bitwise independent of the device count. (check_vma=False: the scans' carries
    start unsharded.)
    """
    from jax.sharding import PartitionSpec as P

    core = functools.partial(_core, diag=diag, k=k, ks=ks, top=top, steps=steps, paths=paths, r0=r0, r1=r1)
    local = jax.vmap(core, in_axes=(0, 0, None))
    return jax.shard_map(local, mesh=mesh, in_specs=(P(AXIS), P(AXIS), P()), out_specs=P(AXIS), check_vma=False)(
        models, xs, state0
    )


def _signature(model):
    leaves, treedef = jax.tree.flatten(model)
    return treedef, tuple((tuple(np.shape(l)), str(jnp.asarray(l).dtype)) for l in leaves)


def stack_models(models: Sequence):
    """Stack same-structured models leaf by leaf into one pytree with a leading cfg axis."""
    sig = _signature(models[0])
    for i, m in enumerate(models[1:], 1):
        if _signature(m) != sig:
            raise ConfigError(
                f"models[{i}] ({getattr(m, 'name', type(m).__name__)}) differs in structure or "
                f"shapes from models[0] ({getattr(models[0], 'name', '?')}): only models with the "
                "same cell, options and sizes can be stacked"
            )
    return jax.tree.map(lambda *ls: jnp.stack(ls), *models)


def mesh_for(devices=None):
    """A 1-D mesh over ``devices`` (default: all devices of all processes) with an Auto ``cfg`` axis."""
    from jax.sharding import AxisType

    devices = list(jax.devices() if devices is None else devices)
    return jax.make_mesh((len(devices),), (AXIS,), axis_types=(AxisType.Auto,), devices=devices)


def _put(x, sharding):
    # make_array_from_callback also works with several processes (each supplies its own shards)
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])


def _fetch(x):
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


def run_stack(models: Sequence, xs, *, devices=None, pad_to: int | None = None):
    """Run the exact-mode stages over ``models`` (same structure) with inputs ``xs`` (N, B, T, m).

    The stack is padded (with copies of its last model) to ``pad_to`` (so stacks of one group share one
    compiled program) and to a multiple of the device count, laid out
    over a `mesh_for(devices)` along cfg, and computed by one jitted vmapped program. Returns
    ``(raw, stages)``: host NumPy arrays with a leading axis of length N, and the static stage choices.
    """
    n = len(models)
    xs = np.asarray(xs)
    if xs.ndim != 4 or xs.shape[0] != n:
        raise ConfigError(f"xs has shape {xs.shape}: expected (len(models)={n}, B, T, input_size)")
    mesh = mesh_for(devices)
    nd = mesh.devices.size
    size = max(n, int(pad_to or 0))
    pad = size - n + (-size) % nd
    models = list(models) + [models[-1]] * pad
    xs = np.concatenate([xs, np.repeat(xs[-1:], pad, axis=0)]) if pad else xs
    refuse_non_finite(xs, axes=("config", "batch", "t", "feature"))
    xs0, state0, _ = check_inputs(models[0], xs[0])
    st = _stages(models[0], int(xs.shape[2]))
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    sh = NamedSharding(mesh, P(AXIS))
    stacked = jax.tree.map(lambda l: _put(l, sh), stack_models(models))
    xs_d = _put(xs.astype(np.dtype(xs0.dtype)), sh)
    state0 = tuple(np.asarray(s) for s in state0)
    out = _stack_core(stacked, xs_d, state0, mesh, **st)
    raw = jax.tree.map(lambda a: _fetch(a)[:n], out)
    return raw, st


def _take(tree, i):
    return jax.tree.map(lambda a: a[i], tree)


class _Traj:
    """The part of a `Trajectory` that `gate_statistics` reads."""

    def __init__(self, aux):
        self.aux = aux


def analyse_stack(
    models: Sequence,
    xs,
    *,
    names: Sequence[str] | None = None,
    threshold: float = -3.0,
    devices=None,
    pad_to: int | None = None,
) -> list:
    """`gradscope.analyse` (exact mode, default stages) of each model on its own batch ``xs[i]``
    (N, B, T, m), computed as one stacked, sharded program; returns a list of `Analysis`."""
    check_number("threshold", threshold)  # a log10 norm, such as -3
    if len(models) == 0:
        raise ConfigError("models=[] is not allowed: give at least one model")
    names = list(names) if names is not None else [getattr(m, "name", "") or type(m).__name__ for m in models]
    raw, st = run_stack(models, xs, devices=devices, pad_to=pad_to)
    m0 = models[0]
    B, T = int(np.shape(xs)[1]), int(np.shape(xs)[2])
    pair_names = lag_pair_names(m0)  # complex-diagonal models report all their block pairs
    out = []
    for i, model in enumerate(models):
        r = _take(raw, i)
        lp = LagProfile(
            r["spec"],
            r["frob"],
            {
                n: {"log10_spectral": r["ps"][..., j], "log10_frobenius": r["pf"][..., j]}
                for j, n in enumerate(pair_names)
            },
            T,
        )
        summary = sm.summarise(sm.batch_mean(lp.log10_spectral, True), threshold)
        ly = Lyapunov(r["lyap"], r["trace"], 0)
        summary["lyapunov_max"] = float(np.mean(np.asarray(ly.exponents, np.float64)[..., 0]))
        res = {
            "lag_profile": lp,
            "lyapunov": ly,
            "spectra": Spectra(ks=np.asarray(st["ks"]), log10_sv=r["sv"], length=T),
            "step_spectra": (np.asarray(st["steps"]), r["ssv"]),
            "bound": bound(model),
        }
        if st["paths"]:
            block = getattr(model, "direct_block", "h")
            ps = PathSplit(block, *[r["paths"][..., j, :] for j in range(6)])
            res["paths"] = ps
            summary["highway_log10_max_lag"] = float(sm.batch_mean(ps.highway_log10_spectral, True)[0])
            summary["remainder_log10_max_lag"] = float(sm.batch_mean(ps.remainder_log10_frobenius, True)[0])
        res["gates"] = gate_statistics(model, _Traj(r["aux"]))
        curve = sm.batch_mean(lp.log10_spectral, True)
        summary["finite"] = bool(np.isfinite(curve).all())
        summary = sm.diagnose(
            summary, curve, per_sequence=lp.log10_spectral, lyapunov=ly, state_finite=r["finite"], gates=res["gates"]
        )
        out.append(
            with_findings(
                Analysis(
                    name=names[i],
                    model=_describe(model),
                    blocks=tuple(model.blocks),
                    block_sizes=tuple(int(n) for n in model.block_sizes),
                    length=T,
                    batch=B,
                    dtype=str(jnp.dtype(model.dtype)),
                    method="exact",
                    summary=summary,
                    matmul=matmul_precision(),
                    **res,
                )
            )
        )
    return out
