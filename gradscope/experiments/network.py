"""The trained model: a recurrent model followed by a linear readout.

    net ─ Network(rnn, readout):  h_t = rnn.step(x_t, h_{t-1}),  ŷ = W h_T + b  (readout "last")
                                                                  ŷ_t = W h_t + b  (readout "every")

``h_t`` is what the model emits at step t (`Cell.readout`: the top layer's output, with the shortcut of a
residual `Stack`). The readout is PyTorch's ``Linear`` (layout and initialisation).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp

from gradscope import _random
from gradscope._errors import ConfigError, ShapeError
from gradscope.cells._base import pytree_cell, static

if TYPE_CHECKING:
    from gradscope.experiments.tasks import Task


@pytree_cell
class Readout:
    """A linear readout ``y = W h + b`` (``weight (out, in)``, ``bias (out,)``, PyTorch ``Linear`` layout)."""

    weight: jax.Array
    bias: jax.Array

    @classmethod
    def init(cls, key: jax.Array, in_size: int, out_size: int, dtype: Any = jnp.float32) -> Readout:
        """PyTorch's ``Linear`` init: ``U(−1/√in, 1/√in)`` for both weight and bias."""
        k1, k2 = _random.split_keys(key)
        b = 1.0 / math.sqrt(in_size)
        return cls(
            _random.uniform(k1, (out_size, in_size), dtype, -b, b), _random.uniform(k2, (out_size,), dtype, -b, b)
        )

    def __call__(self, h: jax.Array) -> jax.Array:
        return h @ self.weight.T + self.bias


def _features(rnn: Any, x: jax.Array, state: tuple[jax.Array, ...]) -> jax.Array:
    """What the readout sees at one step: the model's layer output (a residual Stack adds its shortcut)."""
    return rnn.readout(state, x)


@pytree_cell
class Network:
    """A recurrent model (cell, `Stack` or `Bidirectional`) followed by a linear `Readout`."""

    rnn: Any
    readout: Readout
    mode: str = static(default="last")

    def features(self, xs: jax.Array) -> jax.Array:
        """Readout inputs for one sequence ``xs (T, m)``: ``(T, d_out)``, starting from the zero state."""
        dtype = jax.tree_util.tree_leaves(self.readout)[0].dtype
        state0 = tuple(jnp.zeros((n,), dtype) for n in self.rnn.block_sizes)
        xin = self.rnn.prepare_inputs(xs)

        def body(s, tx):
            t, x = tx
            s2, _ = self.rnn.step(x, s, t)
            return s2, _features(self.rnn, x, s2)

        return jax.lax.scan(body, state0, (jnp.arange(xin.shape[0]), xin))[1]

    def __call__(self, xs: jax.Array) -> jax.Array:
        """Predictions for a batch ``xs (B, T, m)``: ``(B, out)`` (mode "last") or ``(B, T, out)``."""
        feats = jax.vmap(self.features)(xs.astype(self.readout.weight.dtype))
        return self.readout(feats[:, -1] if self.mode == "last" else feats)


def network(rnn: Any, task: Task, *, key: jax.Array) -> Network:
    """Attach a freshly initialised readout for ``task`` to ``rnn``.

    A readout at every step needs a causal model (ŷ_t may depend on x_1..x_t only); a model that is not
    says so with ``causal = False`` (e.g. `Bidirectional`), and is refused for such tasks.
    """
    if rnn.input_size != task.input_size:
        raise ShapeError(
            f"the model's input_size is {rnn.input_size}, but task {task.name!r} has input_size={task.input_size}"
        )
    if task.readout == "every" and not getattr(rnn, "causal", True):
        raise ConfigError(
            f"a {type(rnn).__name__} model cannot be trained on task {task.name!r}: its readout is at "
            "every step, and the model's state at a step depends on later inputs"
        )
    dtype = jax.tree_util.tree_leaves(rnn)[0].dtype
    return Network(rnn, Readout.init(key, rnn.output_size, task.output_size, dtype), mode=task.readout)
