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
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar, dataclass_transform

import jax
import jax.numpy as jnp
import numpy as np
from jax.core import Tracer

from gradscope import _random
from gradscope._errors import ShapeError

if TYPE_CHECKING:
    from jaxtyping import Array, Float

    State = tuple[Array, ...]
else:
    from jax import Array

    State = tuple  # a tuple of 1-D arrays, one per block
#: The per-step extras a step returns (gate values, pre-activations), by name.
Aux = dict[str, Any]
#: ``(∂S'/∂S (d, d), ∂S'/∂x (d, m))``: the one-step Jacobians of a model.
Jacobians = tuple["Float[Array, 'd d']", "Float[Array, 'd m']"]
_C = TypeVar("_C")


class Model(Protocol):
    """What the engine needs of a model (a cell, a `Stack`, a `Bidirectional`, a user's class).

    ``step(x, state, t) -> (new_state, aux)`` for one example; the sizes name the flat state layout.
    """

    @property
    def blocks(self) -> tuple[str, ...]: ...

    @property
    def block_sizes(self) -> tuple[int, ...]: ...

    @property
    def input_size(self) -> int: ...

    def step(self, x: Array, state: State, t: Any) -> tuple[State, Aux]: ...


def static(default: Any = dataclasses.MISSING, **kw: Any) -> Any:
    """A hyperparameter field: static under `jax.jit`, not a pytree leaf.

    Type checkers see a default only when it is passed by keyword (``static(default=0)``): the
    `dataclass_transform` field-specifier convention. ``static(0)`` works the same at run time.
    """
    return dataclasses.field(default=default, metadata={"static": True}, **kw)


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field, static))
def pytree_cell(cls: type[_C]) -> type[_C]:
    """Make ``cls`` a frozen dataclass registered as a JAX pytree.

    Weights are data fields; fields declared with `static` are metadata (sizes, activation, variant).
    """
    # every cell records the registry name it was built under (static; set by `make`)
    if "registry_name" not in cls.__dict__.get("__annotations__", {}):
        cls.__annotations__ = dict(cls.__dict__.get("__annotations__", {}), registry_name=str)
        setattr(cls, "registry_name", static(default="", kw_only=True))
    dc: Any = dataclasses.dataclass(frozen=True)(cls)
    data: list[str] = []
    meta: list[str] = []
    for f in dataclasses.fields(dc):
        (meta if f.metadata.get("static", False) else data).append(f.name)
    return jax.tree_util.register_dataclass(dc, data_fields=data, meta_fields=meta)


class Cell:
    """Base class for recurrent cells (see the module docstring for the protocol)."""

    blocks: ClassVar[tuple[str, ...]] = ("h",)
    #: "dense" or "diagonal": the structure of dS'/dS, which the engine exploits.
    structure: ClassVar[str] = "dense"
    # every cell has these sizes: static dataclass fields in the cells, properties in the networks
    # (declarations only: they create no class attribute)
    input_size: int
    hidden_size: int
    if TYPE_CHECKING:  # every concrete cell is a dataclass (`pytree_cell`): `dataclasses.replace` works on it
        __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

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
    def dtype(self) -> Any:
        """The dtype of the first weight (float32 for a cell without weights)."""
        leaves = jax.tree_util.tree_leaves(self)
        return leaves[0].dtype if leaves else jnp.float32

    # --- stepping --------------------------------------------------------------------------
    def __call__(self, x: Array, state: State) -> tuple[State, Aux]:  # pragma: no cover - abstract
        raise NotImplementedError

    def step(self, x: Array, state: Sequence[Array], t: Any) -> tuple[State, Aux]:
        """One step with the time index (ignored by all but time-dependent cells)."""
        del t
        return self(x, tuple(state))

    def output(self, state: Sequence[Array]) -> Array:
        """The layer output read by the next layer of a stack: the first block (``h``)."""
        return state[0]

    def readout(self, state: Sequence[Array], x: Array) -> Array:
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

    def init_state(self, dtype: Any = None) -> State:
        """Zeros for every block (in the model's dtype unless ``dtype`` is given)."""
        dtype = dtype or self.dtype
        return tuple(jnp.zeros((n,), dtype) for n in self.block_sizes)

    def prepare_inputs(self, xs: Array) -> Array:
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


@pytree_cell
class SizedCell(Cell):
    """A cell whose sizes are static keyword-only fields (every built-in cell): ``input_size`` m and
    ``hidden_size`` n, declared once here instead of in each cell."""

    input_size: int = static(kw_only=True)
    hidden_size: int = static(kw_only=True)


class DiagonalCell(Cell):
    """Base class for cells whose ∂S'/∂S is diagonal (``structure = "diagonal"``).

    They define ``jacobian_diag(x, state, t) -> (diag (d,), ∂S'/∂x (d, m))``, which the engine uses
    directly; the dense ``jacobian`` is ``(diag(diag), ∂S'/∂x)``.
    """

    structure: ClassVar[str] = "diagonal"

    if TYPE_CHECKING:

        def jacobian_diag(self, x: Array, state: State, t: Any = None) -> tuple[Array, Array]: ...

    def jacobian(self, x: Array, state: State, t: Any = None) -> Jacobians:
        diag, jx = self.jacobian_diag(x, state, t)
        return jnp.diag(diag), jx


def has_readout(cell: object) -> bool:
    """Whether a cell's layer output differs from its first state block (it overrides `Cell.readout`)."""
    return getattr(type(cell), "readout", Cell.readout) is not Cell.readout


def readout_jacobians(cell: Any, state: Sequence[Array], x: Array) -> tuple[Array, Array]:
    """``(∂y/∂S (o, d), ∂y/∂x (o, m))`` of ``y = cell.readout(state, x)``: the cell's formula or forward autodiff."""
    if callable(getattr(cell, "readout_jacobian", None)):
        return cell.readout_jacobian(tuple(state), x)
    s = flatten_state(state)
    return jax.jacfwd(lambda s, x: cell.readout(unflatten_state(cell, s), x), argnums=(0, 1))(s, x)


def has_analytic_jacobian(model: object) -> bool:
    """Whether ``model`` defines ``jacobian(x, state, t)`` (else the engine uses forward-mode autodiff)."""
    return callable(getattr(model, "jacobian", None))


def flatten_state(state: Sequence[Array]) -> Float[Array, "... d"]:
    """Concatenate the blocks of a state (a tuple of ``(..., d_b)`` arrays) along the last axis."""
    return jnp.concatenate([jnp.asarray(s) for s in state], axis=-1)


def unflatten_state(model: Model, s: Float[Array, "... d"]) -> State:
    """Split a flat state ``(..., d)`` into the model's blocks."""
    out, i = [], 0
    for n in model.block_sizes:
        out.append(s[..., i : i + n])
        i += n
    return tuple(out)


def block_slices(model: Model) -> dict[str, slice]:
    """Name -> slice into the flat state vector."""
    out: dict[str, slice] = {}
    i = 0
    for name, n in zip(model.blocks, model.block_sizes):
        out[name] = slice(i, i + n)
        i += n
    return out


def check_state(model: Model, state: Any, batch_shape: tuple[int, ...] = ()) -> State:
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


def split_gates(z: Array, n: int, k: int) -> tuple[Array, ...]:
    """Split a stacked pre-activation ``(k*n,)`` into k blocks of n (PyTorch's gate stacking)."""
    return tuple(z[i * n : (i + 1) * n] for i in range(k))


def with_rows(a: Array, *updates: tuple[slice, Any]) -> Array:
    """``a`` with ``a[rows] = value`` for each ``(rows, value)``: on the host when everything is concrete (an
    index update of a device array is a compiled program per shape), by ``.at[rows].set`` when traced."""
    if isinstance(a, Tracer) or any(isinstance(v, Tracer) for _, v in updates):
        for rows, v in updates:
            a = a.at[rows].set(v)
        return a
    h = np.array(a)
    for rows, v in updates:
        h[rows] = np.asarray(v)
    return jax.device_put(h)


def uniform_init(key: Array, shape: tuple[int, ...], bound: float, dtype: Any) -> Array:
    """U(−bound, bound) weights of ``shape`` (PyTorch's default initialisation)."""
    return _random.uniform(key, shape, dtype, -bound, bound)


def jacobians(model: Any, x: Float[Array, " m"], state: Sequence[Array], t: Any) -> Jacobians:
    """``(∂S'/∂S, ∂S'/∂x)`` for one example: the model's analytic formula, or forward-mode autodiff."""
    if has_analytic_jacobian(model):
        return model.jacobian(x, tuple(state), t)
    return autodiff_jacobians(model, x, state, t)


def autodiff_jacobians(model: Model, x: Float[Array, " m"], state: Sequence[Array], t: Any) -> Jacobians:
    """``(∂S'/∂S, ∂S'/∂x)`` by `jax.jacfwd` of the flat step map (the fallback, and the tests' oracle)."""
    s = flatten_state(state)

    def f(s: Array, x: Array) -> Array:
        return flatten_state(model.step(x, unflatten_state(model, s), t)[0])

    return jax.jacfwd(f, argnums=(0, 1))(s, x)
