"""Networks built from cells: deep `Stack`s (optionally residual) and `Bidirectional` wrappers.

Both follow the cell protocol (``blocks``, ``block_sizes``, ``step``, ``jacobian``), so the engine
treats them like any cell. The feed-forward `MLP` for depth diagnostics lives in `gradscope.mlp`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from gradscope import _random
from gradscope._errors import ConfigError, check_chained
from gradscope.cells._base import (
    Array,
    Aux,
    Cell,
    Jacobians,
    State,
    has_readout,
    jacobians,
    pytree_cell,
    readout_jacobians,
    static,
)


class _Network(Cell):
    """What `Stack` and `Bidirectional` share: a model made of parts (sub-models), each with a prefix for
    its state blocks; the joint state is the parts' states in order, and the sizes are computed from them."""

    _kind: ClassVar[str]  # the name of the network (`name`, `describe`)

    def _parts(self) -> tuple[tuple[str, Cell], ...]:  # pragma: no cover - abstract
        """``(prefix of the part's state blocks, part)`` for each part, in state order."""
        raise NotImplementedError

    @property
    def name(self) -> str:
        return self._kind

    # Cell declares these as class constants / plain attributes; a network computes them from its
    # parts. They are read-only either way (cells are frozen), which the checker cannot express.
    @property
    def blocks(self) -> tuple[str, ...]:  # pyright: ignore[reportIncompatibleVariableOverride]
        return tuple(f"{p}{b}" for p, c in self._parts() for b in c.blocks)

    @property
    def block_sizes(self) -> tuple[int, ...]:
        return tuple(n for _, c in self._parts() for n in c.block_sizes)

    @property
    def structure(self) -> str:  # pyright: ignore[reportIncompatibleVariableOverride]
        return "dense"

    def _split(self, state: Sequence[Array]) -> list[State]:
        """The joint state cut into the parts' states."""
        out: list[State] = []
        i = 0
        for _, c in self._parts():
            k = len(c.blocks)
            out.append(tuple(state[i : i + k]))
            i += k
        return out

    def __call__(self, x: Array, state: State) -> tuple[State, Aux]:
        return self.step(x, state, 0)

    def named_cells(self, prefix: str = "") -> tuple[tuple[str, Cell], ...]:
        return tuple(nc for p, c in self._parts() for nc in c.named_cells(f"{prefix}{p}"))


@pytree_cell
class Stack(_Network):
    """Layers fed one into the next within each time step.

    Layer l reads ``inp_l`` = the output (``h`` block) of layer l−1 at the same step, plus, with
    ``residual=True``, ``inp_{l−1}`` (identity shortcut, as in residual IndRNN; needs equal sizes).
    State blocks are named ``layer{l}.{block}``, layer 0 first.
    """

    layers: tuple[Cell, ...]
    residual: bool = static(default=False)

    def __post_init__(self) -> None:
        # pytree unflattening (tree_map over cells, e.g. masks) rebuilds Stacks from non-cells: no checks then
        if not all(hasattr(c, "input_size") for c in self.layers or ()):
            return
        if not self.layers:
            raise ConfigError("layers=() is not allowed: a Stack needs at least one layer")
        if not isinstance(self.residual, bool):
            raise ConfigError(f"residual={self.residual!r} is not allowed: expected True or False")
        for l in range(1, len(self.layers)):
            prev, cur = self.layers[l - 1], self.layers[l]
            if isinstance(cur, Bidirectional) or isinstance(prev, Bidirectional):
                raise ConfigError(
                    "a Bidirectional layer cannot sit inside a Stack (it needs the whole sequence); "
                    "wrap the Stack in Bidirectional instead"
                )
            check_chained(l, cur.input_size, prev.output_size)
            if self.residual and l >= 2 and cur.input_size != self.layers[l - 1].input_size:
                raise ConfigError(
                    f"residual=True needs equal widths: layer {l} input {cur.input_size} "
                    f"!= layer {l - 1} input {self.layers[l - 1].input_size}"
                )

    _kind = "stack"

    def _parts(self) -> tuple[tuple[str, Cell], ...]:
        return tuple((f"layer{l}.", c) for l, c in enumerate(self.layers))

    @property
    def input_size(self) -> int:  # pyright: ignore[reportIncompatibleVariableOverride]
        return self.layers[0].input_size

    @property
    def hidden_size(self) -> int:  # pyright: ignore[reportIncompatibleVariableOverride]
        return self.layers[-1].hidden_size

    @property
    def output_size(self) -> int:
        return self.layers[-1].output_size

    def _residual_from(self, l: int) -> bool:
        # the shortcut skips layer l's input into layer l+1's input; layer 0's input has the data width
        return self.residual and l >= 1

    def step(self, x: Array, state: Sequence[Array], t: Any) -> tuple[State, Aux]:
        new: list[Array] = []
        aux: Aux = {}
        inp = x
        for l, (c, s) in enumerate(zip(self.layers, self._split(tuple(state)))):
            s2, a = c.step(inp, s, t)
            new.extend(s2)
            aux.update({f"layer{l}.{k}": v for k, v in a.items()})
            out = c.readout(s2, inp)
            inp = out + inp if self._residual_from(l) else out
        return tuple(new), aux

    def output(self, state: Sequence[Array]) -> Array:
        """The top layer's output (its ``h`` block). With ``residual=True`` the stack's full output also
        adds the shortcut of the top layer's input, which needs the step's input: see `readout`."""
        return self.layers[-1].output(self._split(tuple(state))[-1])

    def readout(self, state: Sequence[Array], x: Array) -> Array:
        """What the top of the stack emits at a step whose input was ``x``: each layer's readout fed upwards,
        with the residual shortcuts (state only: the layers' new states are given, nothing is stepped)."""
        inp = x
        for l, (c, s) in enumerate(zip(self.layers, self._split(tuple(state)))):
            out = c.readout(s, inp)
            inp = out + inp if self._residual_from(l) else out
        return inp

    def jacobian(self, x: Array, state: Sequence[Array], t: Any = None) -> Jacobians:
        """Block lower-triangular ``∂S'/∂S``: layer l's new state depends on its own old state and,
        through its input, on every layer below (within the same step)."""
        d = self.state_size
        offs, o = [], 0
        for c in self.layers:
            offs.append(o)
            o += c.state_size
        dinp_dS = jnp.zeros((self.input_size, d), x.dtype)
        dinp_dx = jnp.eye(self.input_size, dtype=x.dtype)
        rows_S, rows_x, inp = [], [], x
        for l, (c, s) in enumerate(zip(self.layers, self._split(tuple(state)))):
            J, X = jacobians(c, inp, s, t)
            dS = X @ dinp_dS
            dS = dS.at[:, offs[l] : offs[l] + c.state_size].add(J)
            dx = X @ dinp_dx
            rows_S.append(dS)
            rows_x.append(dx)
            s2, _ = c.step(inp, s, t)
            out = c.readout(s2, inp)
            if has_readout(c):  # y = readout(S'_l, inp): chain through the new state and the input
                Ry, Rx = readout_jacobians(c, s2, inp)
                dout_dS, dout_dx = Ry @ dS + Rx @ dinp_dS, Ry @ dx + Rx @ dinp_dx
            else:  # output = the first block of the new state
                no = c.output_size
                dout_dS, dout_dx = dS[:no], dx[:no]
            if self._residual_from(l):
                dinp_dS, dinp_dx, inp = dout_dS + dinp_dS, dout_dx + dinp_dx, out + inp
            else:
                dinp_dS, dinp_dx, inp = dout_dS, dout_dx, out
        return jnp.concatenate(rows_S, 0), jnp.concatenate(rows_x, 0)

    def describe(self) -> dict[str, Any]:
        return {"cell": self._kind, "residual": self.residual, "layers": [c.describe() for c in self.layers]}


@pytree_cell
class Bidirectional(_Network):
    """A forward and a backward model over the same sequence.

    Joint state at step t: ``S_t = [forward state after x_1..x_t, backward state after x_T..x_{T−t+1}]``
    (blocks ``fwd.*`` then ``bwd.*``). The two chains never interact, so ``∂S_t/∂S_k`` is block
    diagonal; the backward block is the backward direction's gradient flow over the same lags.
    """

    forward: Cell
    backward: Cell
    #: not causal: the state at step t also depends on x_{t+1..T} (read by `gradscope.experiments.network`)
    causal: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if not (hasattr(self.forward, "input_size") and hasattr(self.backward, "input_size")):
            return  # rebuilt from non-cells by a tree_map
        if self.forward.input_size != self.backward.input_size:
            raise ConfigError(
                f"forward input_size={self.forward.input_size} != backward input_size={self.backward.input_size}"
            )

    _kind = "bidirectional"

    def _parts(self) -> tuple[tuple[str, Cell], ...]:
        return (("fwd.", self.forward), ("bwd.", self.backward))

    @property
    def input_size(self) -> int:  # pyright: ignore[reportIncompatibleVariableOverride]
        return self.forward.input_size

    @property
    def hidden_size(self) -> int:  # pyright: ignore[reportIncompatibleVariableOverride]
        return self.forward.hidden_size

    @property
    def output_size(self) -> int:
        return self.forward.output_size + self.backward.output_size

    def prepare_inputs(self, xs: Array) -> Array:
        # pair x_t with x_{T+1-t}: the backward chain reads the sequence reversed
        return jnp.concatenate([xs, xs[::-1]], axis=-1)

    def step(self, x: Array, state: Sequence[Array], t: Any) -> tuple[State, Aux]:
        m = self.input_size
        sf, sb = self._split(tuple(state))
        nf, af = self.forward.step(x[:m], sf, t)
        nb, ab = self.backward.step(x[m:], sb, t)
        aux = {f"fwd.{k}": v for k, v in af.items()} | {f"bwd.{k}": v for k, v in ab.items()}
        return tuple(nf) + tuple(nb), aux

    def output(self, state: Sequence[Array]) -> Array:
        sf, sb = self._split(tuple(state))
        return jnp.concatenate([self.forward.output(sf), self.backward.output(sb)])

    def readout(self, state: Sequence[Array], x: Array) -> Array:
        """``x`` is the paired input of `prepare_inputs` ([x_t, x_{T+1−t}])."""
        m = self.input_size
        sf, sb = self._split(tuple(state))
        return jnp.concatenate([self.forward.readout(sf, x[:m]), self.backward.readout(sb, x[m:])])

    def jacobian(self, x: Array, state: Sequence[Array], t: Any = None) -> Jacobians:
        m = self.input_size
        sf, sb = self._split(tuple(state))
        Jf, Xf = jacobians(self.forward, x[:m], sf, t)
        Jb, Xb = jacobians(self.backward, x[m:], sb, t)
        J = jax.scipy.linalg.block_diag(Jf, Jb)
        X = jax.scipy.linalg.block_diag(Xf, Xb)
        return J, X

    def describe(self) -> dict[str, Any]:
        return {"cell": self._kind, "forward": self.forward.describe(), "backward": self.backward.describe()}


def stack(
    name: str, input_size: int, hidden_size: int, layers: int, *, key: Array, residual: bool = False, **opts: Any
) -> Stack:
    """``layers`` copies of the registered cell ``name`` (fresh weights each), optionally residual."""
    from gradscope._errors import check_positive_int
    from gradscope.cells import make

    layers = check_positive_int("layers", layers)
    keys = _random.split_keys(key, layers)
    cells: list[Cell] = []
    m = input_size
    for l in range(layers):
        c = make(name, m, hidden_size, key=keys[l], **opts)
        cells.append(c)
        m = c.output_size
    return Stack(tuple(cells), residual=residual)


def bidirectional(name: str, input_size: int, hidden_size: int, *, key: Array, **opts: Any) -> Bidirectional:
    """Forward and backward copies of the registered cell ``name`` with independent weights."""
    from gradscope.cells import make

    kf, kb = _random.split_keys(key)
    return Bidirectional(
        make(name, input_size, hidden_size, key=kf, **opts), make(name, input_size, hidden_size, key=kb, **opts)
    )
