"""`DeepBidirectional`: PyTorch's multi-layer bidirectional RNN (``num_layers > 1, bidirectional=True``).

In PyTorch, layer l reads, at every position t, the concatenation of *both* directions of layer
l−1 at that position::

    u^0_t = x_t
    f^l_t = cell^l_fwd(u^l_t, f^l_{t-1})            t = 1..T       (left to right)
    b^l_t = cell^l_bwd(u^l_t, b^l_{t+1})            t = T..1       (right to left)
    u^{l+1}_t = [f^l_t, b^l_t]

Because ``b^l_t`` depends on the *future* inputs of layer l, layer l+1 cannot start until layer l has
read the whole sequence: the network is **not** one recurrence over a joint state, so it cannot be a
`gradscope.nets.Stack` (whose layers step together) and the engine cannot analyse it as one model.

What it can do is analyse each layer separately: layer l is an ordinary `gradscope.nets.Bidirectional`
driven by the input sequence ``u^l`` that the layers below produce. `DeepBidirectional.layer_models_and_inputs`
returns exactly those pairs, so ``gs.analyse(model_l, inputs_l)`` gives layer l's gradient flow
(∂S^l_T/∂S^l_k through time, with the inputs held fixed). Cross-layer paths (through u^{l+1}) are
not part of those per-layer results.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradscope._errors import ConfigError


class DeepRollout(NamedTuple):
    """Per-layer outputs in PyTorch order: ``outputs[l]`` is ``(..., T, 2·h)`` = ``[f^l_t, b^l_t]``;
    ``trajectories[l]`` is layer l's `Trajectory` as a `Bidirectional` (backward states in the
    order the backward chain visits them)."""

    outputs: tuple
    trajectories: tuple

    @property
    def output(self):
        """The last layer's output, what ``torch.nn.RNN(...)(x)[0]`` returns."""
        return self.outputs[-1]

    def final_states(self, block: str = "h"):
        """Final states stacked like PyTorch's ``h_n`` / ``c_n``: ``(2·L, ..., d)``, layer 0 fwd,
        layer 0 bwd, layer 1 fwd, ... (the backward final state is after reading x_1)."""
        out = []
        for traj in self.trajectories:
            out.append(traj[f"fwd.{block}"][..., -1, :])
            out.append(traj[f"bwd.{block}"][..., -1, :])
        return jnp.stack(out)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class DeepBidirectional:
    """A stack of `Bidirectional` layers with PyTorch's inter-layer wiring (see the module docstring)."""

    layers: tuple

    def __post_init__(self):
        if len(self.layers) < 1:
            raise ConfigError("layers=() is not allowed: DeepBidirectional needs at least one layer")
        for l in range(1, len(self.layers)):
            want = self.layers[l - 1].output_size
            if self.layers[l].input_size != want:
                raise ConfigError(
                    f"layer {l} has input_size={self.layers[l].input_size}, "
                    f"but layer {l - 1} outputs {want} (both directions)"
                )

    name = "deep-bidirectional"

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def input_size(self) -> int:
        return self.layers[0].input_size

    @property
    def hidden_size(self) -> int:
        return self.layers[0].hidden_size

    @property
    def output_size(self) -> int:
        return self.layers[-1].output_size

    @property
    def dtype(self):
        return self.layers[0].dtype

    def rollout(self, xs, state0=None) -> DeepRollout:
        """Run every layer over ``xs`` (``(T, m)`` or ``(B, T, m)``); ``state0`` is ``None`` or a
        sequence with one `Bidirectional` state (or ``None``) per layer."""
        from gradscope._rollout import rollout

        if state0 is None:
            state0 = (None,) * self.num_layers
        if len(state0) != self.num_layers:
            raise ConfigError(f"state0 has {len(state0)} entries: expected one per layer ({self.num_layers})")
        outputs, trajs, inp = [], [], xs
        for layer, s0 in zip(self.layers, state0):
            traj = rollout(layer, inp, s0)
            inp = _torch_order_output(layer, traj)
            outputs.append(inp)
            trajs.append(traj)
        return DeepRollout(tuple(outputs), tuple(trajs))

    def layer_models_and_inputs(self, xs, state0=None) -> list[tuple]:
        """``[(Bidirectional layer l, its input sequence u^l), ...]`` for per-layer analysis."""
        ro = self.rollout(xs, state0)
        inputs = [jnp.asarray(xs, self.dtype)] + list(ro.outputs[:-1])
        return list(zip(self.layers, inputs))

    def named_cells(self, prefix: str = "") -> tuple:
        """The leaf cells with their positions: ``"layer{l}.fwd."`` / ``"layer{l}.bwd."`` (the model protocol
        of `gradscope.cells._base.Cell.named_cells`)."""
        return tuple(nc for l, b in enumerate(self.layers) for nc in b.named_cells(f"{prefix}layer{l}."))

    def describe(self) -> dict:
        return {"cell": self.name, "num_layers": self.num_layers, "layers": [layer.describe() for layer in self.layers]}


def _torch_order_output(layer, traj):
    """``[f_t, b_t]`` for t = 1..T: the backward state at position t is the one after reading
    x_T..x_t, i.e. the Bidirectional's backward state at step T − t + 1."""
    k = len(layer.forward.blocks)
    fwd = layer.forward.output(tuple(s[..., 1:, :] for s in traj.states[:k]))
    bwd = layer.backward.output(tuple(s[..., 1:, :] for s in traj.states[k:]))
    return jnp.concatenate([fwd, jnp.flip(bwd, axis=-2)], axis=-1)
