"""The cell protocol: small frozen pytree dataclasses with one recurrent step.

A *model* (a cell, a `Stack`, a `Bidirectional`) is anything with

* ``blocks``: the names of its state blocks, in order (``("h",)``, ``("h", "c")``);
* ``block_sizes``: their sizes; the flat state vector S is their concatenation in that order;
* ``input_size``;
* ``step(x, state, t) -> (new_state, aux)`` for one example (``x`` of shape ``(input_size,)``,
  ``state`` a tuple of 1-D arrays) — batches are handled by ``jax.vmap`` in `rollout` and the engine;
* optionally ``jacobian(x, state, t) -> (dS'/dS, dS'/dx)``, the analytic one-step Jacobians.
  Without it the engine falls back to forward-mode autodiff.

Cells are called as ``new_state, aux = cell(x, state)``; ``step`` adds the time index for the few
cells whose statistics depend on it (recurrent batch norm keeps statistics per time step).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from gradscope._errors import ShapeError

State = tuple  # a tuple of 1-D arrays, one per block


def static(default=dataclasses.MISSING, **kw):
    """A hyperparameter field: static under `jax.jit`, not a pytree leaf."""
    return dataclasses.field(default=default, metadata={"static": True}, **kw)


def pytree_cell(cls):
    """Make ``cls`` a frozen dataclass registered as a JAX pytree.

    Weights are data fields; fields declared with `static` are metadata (sizes, activation, variant).
    """
    # every cell records the registry name it was built under (static; set by `make`)
    if "registry_name" not in cls.__dict__.get("__annotations__", {}):
        cls.__annotations__ = dict(cls.__dict__.get("__annotations__", {}), registry_name=str)
        cls.registry_name = static("")
    cls = dataclasses.dataclass(frozen=True)(cls)
    data, meta = [], []
    for f in dataclasses.fields(cls):
        (meta if f.metadata.get("static", False) else data).append(f.name)
    return jax.tree_util.register_dataclass(cls, data_fields=data, meta_fields=meta)


class Cell:
    """Base class for recurrent cells (see the module docstring for the protocol)."""

    blocks: ClassVar[tuple[str, ...]] = ("h",)
    #: "dense" or "diagonal": the structure of dS'/dS, which the engine exploits.
    structure: ClassVar[str] = "dense"

    @property
    def name(self) -> str:
        """The registry name the cell was built under (``make`` sets it), else the class name."""
        return getattr(self, "registry_name", "") or type(self).__name__

    # --- sizes ---------------------------------------------------------------------------
    @property
    def block_sizes(self) -> tuple[int, ...]:
        return (self.hidden_size,) * len(self.blocks)

    @property
    def state_size(self) -> int:
        return sum(self.block_sizes)

    @property
    def output_size(self) -> int:
        """Size of the output fed to the next layer (the ``h`` block)."""
        return self.block_sizes[0]

    @property
    def dtype(self):
        leaves = jax.tree_util.tree_leaves(self)
        return leaves[0].dtype if leaves else jnp.float32

    # --- stepping --------------------------------------------------------------------------
    def __call__(self, x, state):  # pragma: no cover - abstract
        raise NotImplementedError

    def step(self, x, state, t):
        """One step with the time index (ignored by all but time-dependent cells)."""
        del t
        return self(x, tuple(state))

    def output(self, state):
        """The layer output read by the next layer of a stack: the first block (``h``)."""
        return state[0]

    def readout(self, state, x):
        """The layer output fed to the next layer of a `Stack` at the same step: by default `output`
        (the first block). Cells whose layer output also reads the step input (LRU's y = Re(C h) + D x,
        Mamba's y = C_t·h_t + D u_t) override it, set ``output_size`` to its size, and may define
        ``readout_jacobian(state, x) -> (∂y/∂S, ∂y/∂x)`` (otherwise the Stack differentiates it)."""
        del x
        return self.output(state)

    def named_cells(self, prefix: str = "") -> tuple[tuple[str, Cell], ...]:
        """The leaf cells of a model with the prefix of their state blocks (``""`` for a cell,
        ``"layer1."`` in a `Stack`, ``"fwd.layer0."`` in a `Bidirectional` of Stacks). Networks override it,
        so that callers walk any model without knowing its classes."""
        return ((prefix, self),)

    def init_state(self, dtype=None) -> State:
        dtype = dtype or self.dtype
        return tuple(jnp.zeros((n,), dtype) for n in self.block_sizes)

    def prepare_inputs(self, xs):
        """Hook to transform the input sequence before the scan (Bidirectional pairs it)."""
        return xs

    # jacobian(x, state, t) -> (dS'/dS (d, d), dS'/dx (d, m)) is optional; see `has_analytic_jacobian`.

    def describe(self) -> dict[str, Any]:
        """Static configuration as plain Python (for reports)."""
        out: dict[str, Any] = {"cell": self.name}
        for f in dataclasses.fields(self):
            if f.metadata.get("static", False) and f.name != "registry_name":
                out[f.name] = getattr(self, f.name)
        return out


def has_readout(cell) -> bool:
    """Whether a cell's layer output differs from its first state block (it overrides `Cell.readout`)."""
    return getattr(type(cell), "readout", Cell.readout) is not Cell.readout


def readout_jacobians(cell, state, x):
    """``(∂y/∂S (o, d), ∂y/∂x (o, m))`` of ``y = cell.readout(state, x)``: the cell's formula or forward autodiff."""
    if callable(getattr(cell, "readout_jacobian", None)):
        return cell.readout_jacobian(tuple(state), x)
    s = flatten_state(state)
    return jax.jacfwd(lambda s, x: cell.readout(unflatten_state(cell, s), x), argnums=(0, 1))(s, x)


def has_analytic_jacobian(model) -> bool:
    return callable(getattr(model, "jacobian", None))


def flatten_state(state) -> jax.Array:
    """Concatenate the blocks of a state (a tuple of ``(..., d_b)`` arrays) along the last axis."""
    return jnp.concatenate([jnp.asarray(s) for s in state], axis=-1)


def unflatten_state(model, s) -> State:
    """Split a flat state ``(..., d)`` into the model's blocks."""
    out, i = [], 0
    for n in model.block_sizes:
        out.append(s[..., i : i + n])
        i += n
    return tuple(out)


def block_slices(model) -> dict[str, slice]:
    """Name -> slice into the flat state vector."""
    out, i = {}, 0
    for name, n in zip(model.blocks, model.block_sizes):
        out[name] = slice(i, i + n)
        i += n
    return out


def check_state(model, state, batch_shape=()) -> State:
    """Validate a user-supplied state (tuple/NamedTuple of block arrays) and return a plain tuple."""
    if not isinstance(state, (tuple, list)):
        state = (state,) if len(model.blocks) == 1 else state
    if not isinstance(state, (tuple, list)) or len(state) != len(model.blocks):
        raise ShapeError(
            f"state0 must be a tuple of {len(model.blocks)} arrays named {model.blocks}, "
            f"got {type(state).__name__}" + (f" of length {len(state)}" if isinstance(state, (tuple, list)) else "")
        )
    out = []
    for name, n, s in zip(model.blocks, model.block_sizes, state):
        try:
            s = jnp.asarray(s)
        except (TypeError, ValueError):
            raise ShapeError(
                f"state0 block {name!r} is {type(s).__name__}, not an array of shape {tuple(batch_shape) + (n,)}"
            ) from None
        want = tuple(batch_shape) + (n,)
        if s.shape != want:
            raise ShapeError(f"state0 block {name!r} has shape {s.shape}, expected {want}")
        out.append(s)
    return tuple(out)


def split_gates(z, n: int, k: int):
    """Split a stacked pre-activation ``(k*n,)`` into k blocks of n (PyTorch's gate stacking)."""
    return tuple(z[i * n : (i + 1) * n] for i in range(k))


def uniform_init(key, shape, bound, dtype):
    return jax.random.uniform(key, shape, dtype, -bound, bound)


def jacobians(model, x, state, t):
    """``(∂S'/∂S, ∂S'/∂x)`` for one example: the model's analytic formula, or forward-mode autodiff."""
    if has_analytic_jacobian(model):
        return model.jacobian(x, tuple(state), t)
    return autodiff_jacobians(model, x, state, t)


def autodiff_jacobians(model, x, state, t):
    """``(∂S'/∂S, ∂S'/∂x)`` by `jax.jacfwd` of the flat step map (the fallback, and the tests' oracle)."""
    s = flatten_state(state)

    def f(s, x):
        return flatten_state(model.step(x, unflatten_state(model, s), t)[0])

    return jax.jacfwd(f, argnums=(0, 1))(s, x)
