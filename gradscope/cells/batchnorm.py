"""Recurrent batch-normalised cells (bn-lstm, bn-rnn), their training mode and statistics.

Recurrent batch norm (Cooijmans et al. 2016), ``BN(u; γ, β) = β + γ ⊙ (u − E[u])/sqrt(Var[u] + eps)``::

    bn-lstm   (i, f, g, o) = BN(W_h h_{t-1}; γ_h) + BN(W_x x_t; γ_x) + b
              c_t = σ(f) ⊙ c_{t-1} + σ(i) ⊙ tanh(g),   h_t = σ(o) ⊙ tanh(BN(c_t; γ_c, β_c))
    bn-rnn    h_t = tanh(BN(W_hh h_{t-1}; γ_h) + BN(W_xh x_t; γ_x) + b)       (BN-tanh-RNN)

γ starts at 0.1 (option ``gamma``), β_h = β_x = 0 (b carries the bias), and the cell update c_t is
not normalised. Because BN divides by σ_t, which grows with γ, γ's effect on gradient flow depends on
the set-up: with W_h = I and constant input (Cooijmans et al.'s sequential-MNIST case) each unit
follows h → tanh(γ(h − μ)/σ) and the per-step factor tends to 2γ/sinh(2γ) (0.55 at γ = 1, 0.993 at
γ = 0.1); with an orthogonal W_h and a normalised input term γ largely cancels.
Statistics are kept **per time step**: population means/variances are arrays
``(max_length, features)``; step t ≥ max_length reuses the last row. Defaults are mean 0, var 1
(PyTorch's initial running statistics).

Training vs inference. Training-mode BN normalises with the statistics of the current batch, which
couples the examples of a batch: the step is then not a map of one example's state. A BN cell's
``step`` is therefore always the *inference-mode* map (population statistics held fixed), and
`training_rollout` runs the batch-coupled training mode. `collect_statistics` runs a batch in
training mode and returns a cell whose per-step population statistics are that batch's statistics;
in inference mode that cell reproduces the training-mode outputs on the batch exactly. The
gradient-flow diagnostics analyse BN cells in inference mode: with statistics fixed, ∂h_t/∂h_k is
a property of one sequence (the Jacobian the trained network applies at test time), and BN's
Jacobian is the diagonal ``γ/sqrt(var_t + eps)``. The extra training-mode terms through the batch
statistics are O(1/B) cross-example couplings, not gradient flow along time.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from gradscope import _random, norms
from gradscope._errors import ShapeError, bad_value
from gradscope.cells import _activations
from gradscope.cells._activations import sig
from gradscope.cells._base import Array, Aux, Jacobians, SizedCell, State, pytree_cell, static, uniform_init
from gradscope.cells._normalized_common import _check_common, _lstm_jacobian, _lstm_weights
from gradscope.cells._registry import Init, registrar
from gradscope.cells.elman import recurrent_matrix

register = registrar("normalized")  # every cell this module registers is of the normalized family

if TYPE_CHECKING:
    from jaxtyping import Float

#: ``norm(u, key)``: u normalised with the statistics named ``key`` (without the gain).
_Norm = Callable[[Array, str], Array]
_BNC = TypeVar("_BNC", bound="_BNCell")


class _BNCell(SizedCell):
    """Shared machinery: per-step population statistics, inference-mode ``step``, training mode.

    ``_forward(x, state, norm)`` computes the step with ``norm(u, key)`` = (u − mean)/sqrt(var + eps)
    without the gain; ``_stat_keys`` names the normalised quantities (``mean_<key>``, ``var_<key>``).
    """

    _stat_keys: tuple[str, ...] = ()
    eps: float  # a field of every BN cell (declared for the checker; no class attribute)

    if TYPE_CHECKING:

        def _forward(self, x: Array, state: State, norm: _Norm) -> tuple[State, Aux]: ...

    @property
    def max_length(self) -> int:
        return getattr(self, f"mean_{self._stat_keys[0]}").shape[0]

    def _population(self, t):
        k = jnp.minimum(jnp.asarray(t), self.max_length - 1)  # steps beyond T_max reuse the last

        def norm(u, key):
            mu, var = getattr(self, f"mean_{key}")[k], getattr(self, f"var_{key}")[k]
            return (u - mu) / jnp.sqrt(var + self.eps)

        return norm, k

    def step(self, x: Array, state: Sequence[Array], t: Any) -> tuple[State, Aux]:
        return self._forward(x, tuple(state), self._population(t)[0])

    def __call__(self, x: Array, state: State) -> tuple[State, Aux]:
        return self.step(x, state, 0)

    def _scale(self, key, t):
        """Diagonal of ∂BN/∂u in inference mode: 1/sqrt(var_t + eps) (times γ by the caller)."""
        _, k = self._population(t)
        return 1 / jnp.sqrt(getattr(self, f"var_{key}")[k] + self.eps)


@pytree_cell
class BNLSTM(_BNCell):
    """BN-LSTM (Cooijmans et al. 2016); gate blocks i, f, g, o (PyTorch order)."""

    weight_ih: jax.Array  # (4n, m)
    weight_hh: jax.Array  # (4n, n)
    bias: jax.Array  # (4n,)
    gamma_hh: jax.Array  # (4n,)
    gamma_ih: jax.Array  # (4n,)
    gamma_c: jax.Array  # (n,)
    beta_c: jax.Array  # (n,)
    mean_hh: jax.Array  # (T_max, 4n) population statistics per time step
    var_hh: jax.Array
    mean_ih: jax.Array  # (T_max, 4n)
    var_ih: jax.Array
    mean_c: jax.Array  # (T_max, n)
    var_c: jax.Array
    eps: float = static(default=norms.EPS)

    @property
    def name(self) -> str:
        return "bn-lstm"

    blocks = ("h", "c")
    _stat_keys = ("hh", "ih", "c")

    def _forward(self, x, state, norm):
        # written for x (m,) or (B, m) so that training mode can run it on a batch
        h, c = state
        n = self.hidden_size
        uh, ux = h @ self.weight_hh.T, x @ self.weight_ih.T
        z = self.gamma_hh * norm(uh, "hh") + self.gamma_ih * norm(ux, "ih") + self.bias
        i, f, g, o = sig(z[..., :n]), sig(z[..., n : 2 * n]), jnp.tanh(z[..., 2 * n : 3 * n]), sig(z[..., 3 * n :])
        c2 = f * c + i * g
        h2 = o * jnp.tanh(self.beta_c + self.gamma_c * norm(c2, "c"))
        return (h2, c2), {"pre": z, "i": i, "f": f, "g": g, "o": o}

    direct_block = "c"

    def direct_path(self, x: Array, state: State, t: Any = 0) -> Array:
        """The forget-gate highway ``f_t`` = ∂c_t/∂c_{t-1} (the cell update is not normalised)."""
        return self.step(x, state, t)[1]["f"]

    def jacobian(self, x: Array, state: State, t: Any = 0) -> Jacobians:
        h, c = state
        n = self.hidden_size
        (_, c2), aux = self.step(x, state, t)
        i, f, g, o = aux["i"], aux["f"], aux["g"], aux["o"]
        sc = self.gamma_c * self._scale("c", t)
        tc = jnp.tanh(self.beta_c + sc * (c2 - self.mean_c[self._population(t)[1]]))
        Dz = jnp.concatenate(
            [
                (self.gamma_hh * self._scale("hh", t))[:, None] * self.weight_hh,
                (self.gamma_ih * self._scale("ih", t))[:, None] * self.weight_ih,
            ],
            axis=1,
        )
        return _lstm_jacobian(Dz, c, i, f, g, o, tc, lambda M: sc[:, None] * M, n)


@pytree_cell
class BNRNN(_BNCell):
    """BN-tanh-RNN: ``h_t = φ(BN(W_hh h_{t-1}; γ_h) + BN(W_ih x_t; γ_x) + b)`` with per-step statistics."""

    weight_ih: jax.Array  # (n, m)
    weight_hh: jax.Array  # (n, n)
    bias: jax.Array  # (n,)
    gamma_hh: jax.Array
    gamma_ih: jax.Array
    mean_hh: jax.Array  # (T_max, n)
    var_hh: jax.Array
    mean_ih: jax.Array
    var_ih: jax.Array
    activation: str = static(default="tanh")
    eps: float = static(default=norms.EPS)

    @property
    def name(self) -> str:
        return "bn-rnn"

    _stat_keys = ("hh", "ih")

    def _forward(self, x, state, norm):
        (h,) = state
        a = (
            self.gamma_hh * norm(h @ self.weight_hh.T, "hh")
            + self.gamma_ih * norm(x @ self.weight_ih.T, "ih")
            + self.bias
        )
        return (_activations.get(self.activation).fn(a),), {"a": a}

    def jacobian(self, x: Array, state: State, t: Any = 0) -> Jacobians:
        _, aux = self.step(x, state, t)
        d = _activations.get(self.activation).deriv(aux["a"])
        return (
            (d * self.gamma_hh * self._scale("hh", t))[:, None] * self.weight_hh,
            (d * self.gamma_ih * self._scale("ih", t))[:, None] * self.weight_ih,
        )


def training_rollout(
    cell: _BNCell, xs: Float[ArrayLike, "B T m"], state0: Sequence[ArrayLike] | None = None
) -> tuple[State, dict[str, Float[Array, "T F"]]]:
    """Run a BN cell over a batch ``xs (B, T, m)`` in training mode (batch statistics per step).

    Returns ``(states, stats)``: ``states`` a tuple of ``(B, T+1, d_b)`` arrays (S_0..S_T per block),
    ``stats`` a dict ``{"mean_<key>": (T, F), "var_<key>": (T, F)}`` of the batch statistics used.
    """
    if not isinstance(cell, _BNCell):
        raise bad_value("cell", type(cell).__name__, "a batch-normalised cell (bn-lstm, bn-rnn)")
    xs = jnp.asarray(xs, cell.dtype)
    if xs.ndim != 3 or xs.shape[-1] != cell.input_size or xs.shape[0] < 2 or xs.shape[1] < 1:
        raise ShapeError(
            f"xs has shape {tuple(xs.shape)}: expected (B, T, {cell.input_size}) with B >= 2 "
            "(batch statistics need at least two examples)"
        )
    B = xs.shape[0]
    if state0 is None:
        S0 = tuple(jnp.zeros((B, n), cell.dtype) for n in cell.block_sizes)
    else:
        S0 = tuple(jnp.asarray(s, cell.dtype) for s in state0)
        if len(S0) != len(cell.blocks) or any(s.shape != (B, n) for s, n in zip(S0, cell.block_sizes)):
            raise ShapeError(f"state0 must be a tuple of arrays of shapes {[(B, n) for n in cell.block_sizes]}")

    def body(S: State, x: Array) -> tuple[State, tuple[State, dict[str, Array]]]:
        stats: dict[str, Array] = {}

        def norm(u: Array, key: str) -> Array:
            y, mu, var = norms.batch_norm(u, eps=cell.eps)
            stats[f"mean_{key}"], stats[f"var_{key}"] = mu, var
            return y

        S2, _ = cell._forward(x, S, norm)
        return S2, (S2, stats)

    _, (ss, stats) = jax.lax.scan(body, S0, jnp.swapaxes(xs, 0, 1))
    states = tuple(jnp.concatenate([s0[:, None], jnp.swapaxes(s, 0, 1)], axis=1) for s0, s in zip(S0, ss))
    return states, stats


def collect_statistics(
    cell: _BNC, xs_batch: Float[ArrayLike, "B T m"], state0: Sequence[ArrayLike] | None = None
) -> _BNC:
    """A copy of the BN ``cell`` whose per-step population statistics are the training-mode batch
    statistics of ``xs_batch (B, T, m)`` (so ``max_length`` becomes T). In inference mode the new cell
    reproduces the training-mode outputs on that batch."""
    _, stats = training_rollout(cell, xs_batch, state0)
    return dataclasses.replace(cell, **stats)


def _check_bn(gamma, max_length, eps, n):
    _check_common(n, eps)
    if not (isinstance(gamma, (int, float)) and math.isfinite(gamma) and gamma > 0):
        raise bad_value("gamma", gamma, "expected a positive number (Cooijmans et al. use 0.1)")
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
        raise bad_value("max_length", max_length, "expected a positive integer (steps with own statistics)")


def _stats(T, F, dtype):
    return jnp.zeros((T, F), dtype), jnp.ones((T, F), dtype)


@register(
    "bn-lstm",
    "Recurrent batch-normalised LSTM (Cooijmans et al. 2016), per-step statistics, γ=0.1",
    equation="z = BN(W_h h; γ_h) + BN(W_x x; γ_x) + b, c_t = f⊙c_{t-1} + i⊙g, h_t = o⊙tanh(BN(c_t; γ_c, β_c))",
)
def build_bn_lstm(
    init: Init, *, gamma: float = 0.1, max_length: int = 100, forget_bias: float | None = None, eps: float = norms.EPS
) -> BNLSTM:
    input_size, hidden_size, key, dtype = init
    n = hidden_size
    _check_bn(gamma, max_length, eps, n)
    w_ih, w_hh, b = _lstm_weights(key, n, input_size, dtype, forget_bias)
    g4, g1 = jnp.full((4 * n,), gamma, dtype), jnp.full((n,), gamma, dtype)
    return BNLSTM(
        w_ih,
        w_hh,
        b,
        g4,
        g4,
        g1,
        jnp.zeros((n,), dtype),
        *_stats(max_length, 4 * n, dtype),
        *_stats(max_length, 4 * n, dtype),
        *_stats(max_length, n, dtype),
        **init.sizes,
        eps=float(eps),
    )


@register(
    "bn-rnn",
    "Batch-normalised tanh RNN (BN on W_hh h and W_xh x separately, per-step statistics)",
    equation="h_t = tanh(BN(W_hh h_{t-1}; γ) + BN(W_xh x_t; γ) + b)",
)
def build_bn_rnn(
    init: Init,
    *,
    gamma: float = 0.1,
    max_length: int = 100,
    activation: str = "tanh",
    recurrent_init: str = "orthogonal",
    gain: float = 1.0,
    eps: float = norms.EPS,
) -> BNRNN:
    input_size, hidden_size, key, dtype = init
    n = hidden_size
    _check_bn(gamma, max_length, eps, n)
    _activations.get(activation)
    k1, k2 = _random.split_keys(key)
    g = jnp.full((n,), gamma, dtype)
    return BNRNN(
        uniform_init(k1, (n, input_size), 1 / math.sqrt(n), dtype),
        recurrent_matrix(k2, n, recurrent_init, gain, dtype),
        jnp.zeros((n,), dtype),
        g,
        g,
        *_stats(max_length, n, dtype),
        *_stats(max_length, n, dtype),
        **init.sizes,
        activation=activation,
        eps=float(eps),
    )
