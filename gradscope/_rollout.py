"""Run a model over a sequence with `lax.scan` and keep every state: the `Trajectory`.

Time convention (README, Conventions): ``S_0`` is the initial state and ``S_t`` the state after consuming
``x_t``; a trajectory holds ``S_0 .. S_T`` for each named block and the per-step ``aux`` (gate
values, pre-activations) for steps 1..T.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from gradscope._array_like import to_array
from gradscope._errors import ConfigError, ShapeError
from gradscope.cells._base import Array, Aux, State, check_state, flatten_state
from gradscope.cells._protocol import check_model

if TYPE_CHECKING:
    from jaxtyping import Float


@partial(jax.tree_util.register_dataclass, data_fields=["states", "aux"], meta_fields=["blocks"])
@dataclasses.dataclass(frozen=True)
class Trajectory:
    """All states S_0..S_T by block (each ``(..., T+1, d_b)``) and per-step aux (``(..., T, ...)``)."""

    states: State
    aux: Aux
    blocks: tuple[str, ...]

    def __getitem__(self, name: str) -> Float[Array, "*B T1 d_b"]:
        """The states ``S_0..S_T`` of the block ``name``; else a `KeyError` listing the blocks."""
        try:
            return self.states[self.blocks.index(name)]
        except ValueError:
            raise KeyError(f"no state block {name!r}; blocks are {self.blocks}") from None

    @property
    def flat(self) -> Float[Array, "*B T1 d"]:
        """The flat state vectors ``(..., T+1, d)``, blocks concatenated in order."""
        return flatten_state(self.states)

    @property
    def final(self) -> State:
        """The last states ``S_T``, one ``(..., d_b)`` array per block."""
        return tuple(s[..., -1, :] for s in self.states)

    @property
    def length(self) -> int:
        """T, the number of steps."""
        return self.states[0].shape[-2] - 1


def check_inputs(model: Any, xs: Any, state0: Any = None) -> tuple[Array, State, bool]:
    """Validate ``xs`` (``(T, m)`` or ``(B, T, m)``: NumPy, JAX, or a torch tensor) and ``state0``; return
    ``(xs, state0, batched)``.

    ``xs`` is cast to the model's dtype; a missing ``state0`` becomes zeros. The model is checked against the
    cell protocol first (`gradscope.cells._protocol.check_model`: one abstract step, cached per model structure).
    """
    check_model(model)
    xs = to_array(xs)  # torch tensors → NumPy (detached, CPU); NumPy and JAX arrays unchanged
    if state0 is not None:
        state0 = jax.tree.map(to_array, state0)
    try:
        arr = xs if isinstance(xs, jax.Array) else np.asarray(xs)
    except (ValueError, TypeError):
        raise ShapeError(
            f"xs of type {type(xs).__name__} is not a rectangular array: expected (T, input_size) or "
            f"(B, T, input_size) numbers with input_size={model.input_size}"
        ) from None
    if arr.dtype == object:
        raise ShapeError(f"xs is not a rectangular numeric array (got dtype object): expected (T, {model.input_size})")
    if arr.ndim not in (2, 3):
        raise ShapeError(
            f"xs has shape {tuple(arr.shape)}: expected (T, input_size) or (B, T, input_size) "
            f"with input_size={model.input_size}"
        )
    if arr.shape[-1] != model.input_size:
        raise ShapeError(
            f"xs has {arr.shape[-1]} features (shape {tuple(arr.shape)}), "
            f"but the model's input_size is {model.input_size}"
        )
    if arr.shape[-2] < 1:
        raise ShapeError(f"xs has shape {tuple(arr.shape)}: the sequence must have at least one step")
    if arr.ndim == 3 and arr.shape[0] < 1:
        raise ShapeError(f"xs has shape {tuple(arr.shape)}: a batch needs at least one sequence (B >= 1)")
    if not np.issubdtype(np.dtype(arr.dtype), np.floating) and not np.issubdtype(np.dtype(arr.dtype), np.integer):
        raise ShapeError(f"xs has dtype {arr.dtype}: expected a real floating-point array")
    dtype = model.dtype
    with np.errstate(over="ignore"):  # an overflowing cast is refused just below, with its position
        xs = jnp.asarray(arr, dtype)
    try:
        refuse_non_finite(xs, arr, ("batch", "t", "feature") if arr.ndim == 3 else ("t", "feature"))
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        pass  # inside a user's jit the values are not known
    batched = xs.ndim == 3
    batch_shape = xs.shape[:1] if batched else ()
    if state0 is None:
        S0 = tuple(jax.device_put(np.zeros(batch_shape + (n,), dtype)) for n in model.block_sizes)  # no program
    else:
        S0 = tuple(jnp.asarray(s, dtype) for s in check_state(model, state0, batch_shape))
    return xs, S0, batched


def refuse_non_finite(xs: Any, original: Any = None, axes: tuple[str, ...] = ("batch", "t", "feature")) -> None:
    """Raise a `ConfigError` naming the first position (by ``axes``) where ``xs`` is NaN or ±inf; when the
    ``original`` value there is finite, the cast to ``xs``'s dtype overflowed it."""
    a = np.asarray(xs)
    bad = ~np.isfinite(a)
    if not bad.any():
        return
    pos = tuple(int(i) for i in np.argwhere(bad)[0])
    where = ", ".join(f"{n}={i}" for n, i in zip(axes[-a.ndim :], pos))
    orig = float(np.asarray(original)[pos] if original is not None else a[pos])
    count = int(bad.sum())
    if np.isfinite(orig):
        why = f"is {orig!r}, which overflows {a.dtype} (use float64 or rescale the inputs)"
    else:
        why = f"is {orig!r}: remove or impute the missing/infinite values before analysing"
    raise ConfigError(f"xs holds {count} non-finite value{'s' * (count != 1)}: xs[{where}] {why}")


def _loop(model: Any, xs: Array, state0: State) -> tuple[State, Aux]:
    def body(s: State, tx: tuple[Array, Array]) -> tuple[State, tuple[State, Aux]]:
        t, x = tx
        s2, aux = model.step(x, s, t)
        return s2, (s2, aux)

    return jax.lax.scan(body, state0, (jnp.arange(xs.shape[0]), xs))[1]


def _scan(model: Any, xs: Array, state0: State) -> Trajectory:
    xs = model.prepare_inputs(xs)
    # a cell may run the whole sequence at once (IndRNN: an associative scan); it falls back on the loop
    parallel: Callable[..., tuple[State, Aux]] | None = getattr(model, "parallel_rollout", None)
    loop = lambda: _loop(model, xs, state0)  # noqa: E731
    ss, aux = parallel(xs, state0, loop) if parallel is not None else loop()
    states = tuple(jnp.concatenate([s0[None], s], axis=0) for s0, s in zip(state0, ss))
    return Trajectory(states=states, aux=aux, blocks=tuple(model.blocks))


@partial(jax.jit, static_argnames=("batched",))
def _rollout(model: Any, xs: Array, state0: State, batched: bool) -> Trajectory:
    if batched:
        return jax.vmap(_scan, in_axes=(None, 0, 0))(model, xs, state0)
    return _scan(model, xs, state0)


def rollout(model: Any, xs: Float[ArrayLike, "T m"] | Float[ArrayLike, "B T m"], state0: Any = None) -> Trajectory:
    """Run ``model`` over ``xs`` (``(T, m)`` or ``(B, T, m)``) from ``state0`` (default zeros)."""
    xs, state0, batched = check_inputs(model, xs, state0)
    return _rollout(model, xs, state0, batched)
