"""LSTM cells: the modern LSTM (forget gate), the 1997 cell without forget gate, and peepholes.

Modern LSTM (Gers et al. 2000; PyTorch ``nn.LSTM``; gate blocks stacked i, f, g, o)::

    (i, f, g, o) = (σ, σ, tanh, σ)(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)
    c_t = f ⊙ c_{t-1} + i ⊙ g
    h_t = o ⊙ tanh(c_t)                 (h_t = W_hr (o ⊙ tanh c_t) with ``proj_size`` > 0)

State blocks ``("h", "c")``. The cell-state Jacobian contains the forget-gate highway
``∂c_t/∂c_{t-1} = diag(f_t)`` (exactly, when W_hh = 0).

1997 LSTM (Hochreiter & Schmidhuber): no forget gate, the constant error carousel
``c_t = c_{t-1} + i ⊙ g``; gate blocks stacked i, g, o (3n rows).

Peephole LSTM (Gers & Schmidhuber 2000, as written by Sak et al. 2014): diagonal peepholes
``w_ci, w_cf`` read c_{t-1} into i and f, ``w_co`` reads the *new* c_t into o.

Initialisation follows PyTorch (U(±1/√n)); ``forget_bias=b`` sets the total forget bias
b_ih[f] + b_hh[f] to b (Jozefowicz et al. 2015 recommend 1); ``chrono=T_max`` draws
b_f ~ log U[1, T_max − 1] and sets b_i = −b_f (Tallec & Ollivier 2018).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from gradscope import _random
from gradscope._errors import ConfigError, check_number
from gradscope.cells._activations import dsig, sig
from gradscope.cells._base import Array, Aux, Jacobians, SizedCell, State, pytree_cell, static, uniform_init, with_rows
from gradscope.cells._registry import Init, registrar

register = registrar("lstm")  # every cell this module registers is of the lstm family


@pytree_cell
class LSTM(SizedCell):
    weight_ih: jax.Array  # (4n, m), blocks i, f, g, o
    weight_hh: jax.Array  # (4n, p) with p = proj_size or n
    bias_ih: jax.Array
    bias_hh: jax.Array
    weight_hr: jax.Array | None = None  # (p, n) when proj_size > 0
    proj_size: int = static(default=0)

    blocks = ("h", "c")

    @property
    def block_sizes(self) -> tuple[int, ...]:
        return (self.proj_size or self.hidden_size, self.hidden_size)

    def _gates(self, x, h):
        n = self.hidden_size
        z = self.weight_ih @ x + self.bias_ih + self.weight_hh @ h + self.bias_hh
        return z, sig(z[:n]), sig(z[n : 2 * n]), jnp.tanh(z[2 * n : 3 * n]), sig(z[3 * n :])

    def __call__(self, x: Array, state: State) -> tuple[State, Aux]:
        h, c = state
        z, i, f, g, o = self._gates(x, h)
        c2 = f * c + i * g
        m = o * jnp.tanh(c2)
        h2 = m if self.weight_hr is None else self.weight_hr @ m
        return (h2, c2), {"pre": z, "i": i, "f": f, "g": g, "o": o}

    direct_block = "c"

    def direct_path(self, x: Array, state: State, t: Any = None) -> Array:
        """The forget-gate highway: the diagonal ``f_t`` of ``∂c_t/∂c_{t-1}`` along the cell state."""
        return self._gates(x, state[0])[2]

    def jacobian(self, x: Array, state: State, t: Any = None) -> Jacobians:
        h, c = state
        n = self.hidden_size
        z, i, f, g, o = self._gates(x, h)
        c2 = f * c + i * g
        tc = jnp.tanh(c2)
        W = jnp.concatenate([self.weight_hh, self.weight_ih], axis=1)  # d z / d [h, x]
        Wi, Wf, Wg, Wo = W[:n], W[n : 2 * n], W[2 * n : 3 * n], W[3 * n :]
        dc = (c * dsig(f))[:, None] * Wf + (g * dsig(i))[:, None] * Wi + (i * (1 - g**2))[:, None] * Wg
        dm = (tc * dsig(o))[:, None] * Wo + (o * (1 - tc**2))[:, None] * dc
        dm_dc = jnp.diag(o * (1 - tc**2) * f)
        if self.weight_hr is not None:
            dm, dm_dc = self.weight_hr @ dm, self.weight_hr @ dm_dc
        p = h.shape[0]
        J = jnp.block([[dm[:, :p], dm_dc], [dc[:, :p], jnp.diag(f)]])
        return J, jnp.concatenate([dm[:, p:], dc[:, p:]], axis=0)


@pytree_cell
class LSTMNoForget(SizedCell):
    """The 1997 LSTM: c_t = c_{t-1} + i ⊙ g (the CEC, self-weight fixed at 1); gates i, g, o."""

    weight_ih: jax.Array  # (3n, m), blocks i, g, o
    weight_hh: jax.Array  # (3n, n)
    bias_ih: jax.Array
    bias_hh: jax.Array

    blocks = ("h", "c")

    def _gates(self, x, h):
        n = self.hidden_size
        z = self.weight_ih @ x + self.bias_ih + self.weight_hh @ h + self.bias_hh
        return z, sig(z[:n]), jnp.tanh(z[n : 2 * n]), sig(z[2 * n :])

    def __call__(self, x: Array, state: State) -> tuple[State, Aux]:
        h, c = state
        z, i, g, o = self._gates(x, h)
        c2 = c + i * g
        return (o * jnp.tanh(c2), c2), {"pre": z, "i": i, "g": g, "o": o}

    direct_block = "c"

    def direct_path(self, x: Array, state: State, t: Any = None) -> Array:
        """The constant error carousel: ∂c_t/∂c_{t-1} ⊃ I (no forget gate)."""
        return jnp.ones_like(state[1])

    def jacobian(self, x: Array, state: State, t: Any = None) -> Jacobians:
        h, c = state
        n = self.hidden_size
        z, i, g, o = self._gates(x, h)
        tc = jnp.tanh(c + i * g)
        W = jnp.concatenate([self.weight_hh, self.weight_ih], axis=1)
        Wi, Wg, Wo = W[:n], W[n : 2 * n], W[2 * n :]
        dc = (g * dsig(i))[:, None] * Wi + (i * (1 - g**2))[:, None] * Wg
        dh = (tc * dsig(o))[:, None] * Wo + (o * (1 - tc**2))[:, None] * dc
        J = jnp.block([[dh[:, :n], jnp.diag(o * (1 - tc**2))], [dc[:, :n], jnp.eye(n, dtype=dc.dtype)]])
        return J, jnp.concatenate([dh[:, n:], dc[:, n:]], axis=0)


@pytree_cell
class PeepholeLSTM(SizedCell):
    """LSTM with diagonal peepholes (Gers & Schmidhuber 2000; Sak et al. 2014 eqs.)."""

    weight_ih: jax.Array  # (4n, m), blocks i, f, g, o
    weight_hh: jax.Array  # (4n, n)
    bias_ih: jax.Array
    bias_hh: jax.Array
    weight_ci: jax.Array  # (n,)
    weight_cf: jax.Array  # (n,)
    weight_co: jax.Array  # (n,)

    blocks = ("h", "c")

    def _forward(self, x, h, c):
        n = self.hidden_size
        z = self.weight_ih @ x + self.bias_ih + self.weight_hh @ h + self.bias_hh
        i = sig(z[:n] + self.weight_ci * c)
        f = sig(z[n : 2 * n] + self.weight_cf * c)
        g = jnp.tanh(z[2 * n : 3 * n])
        c2 = f * c + i * g
        o = sig(z[3 * n :] + self.weight_co * c2)
        return z, i, f, g, o, c2

    def __call__(self, x: Array, state: State) -> tuple[State, Aux]:
        h, c = state
        z, i, f, g, o, c2 = self._forward(x, h, c)
        return (o * jnp.tanh(c2), c2), {"pre": z, "i": i, "f": f, "g": g, "o": o}

    direct_block = "c"

    def direct_path(self, x: Array, state: State, t: Any = None) -> Array:
        """The forget-gate highway diag(f_t) (peephole terms count as 'other paths')."""
        return self._forward(x, state[0], state[1])[2]

    def jacobian(self, x: Array, state: State, t: Any = None) -> Jacobians:
        h, c = state
        n = self.hidden_size
        z, i, f, g, o, c2 = self._forward(x, h, c)
        tc = jnp.tanh(c2)
        W = jnp.concatenate([self.weight_hh, self.weight_ih], axis=1)
        Wi, Wf, Wg, Wo = W[:n], W[n : 2 * n], W[2 * n : 3 * n], W[3 * n :]
        dsi, dsf, dso = dsig(i), dsig(f), dsig(o)
        dc = (c * dsf)[:, None] * Wf + (g * dsi)[:, None] * Wi + (i * (1 - g**2))[:, None] * Wg
        dc_dc = f + c * dsf * self.weight_cf + g * dsi * self.weight_ci
        # o reads the new c: do = σ'_o (dz_o + w_co dc)
        a = tc * dso
        b = o * (1 - tc**2) + a * self.weight_co
        dh = a[:, None] * Wo + b[:, None] * dc
        J = jnp.block([[dh[:, :n], jnp.diag(b * dc_dc)], [dc[:, :n], jnp.diag(dc_dc)]])
        return J, jnp.concatenate([dh[:, n:], dc[:, n:]], axis=0)


def _gate_biases(key, n, gates, dtype, forget_bias, chrono, f_index, i_index):
    """PyTorch-style biases, then the forget-bias / chrono overrides on the total bias."""
    k1, k2, k3 = _random.split_keys(key, 3)
    bound = 1 / math.sqrt(n)
    b_ih = uniform_init(k1, (gates * n,), bound, dtype)
    b_hh = uniform_init(k2, (gates * n,), bound, dtype)
    if forget_bias is not None and chrono is not None:
        raise ConfigError("forget_bias and chrono cannot both be set: chrono initialises the forget bias itself")
    fs = slice(f_index * n, (f_index + 1) * n)
    if forget_bias is not None:
        forget_bias = check_number("forget_bias", forget_bias)  # not a bool: forget_bias=True is a mistake
        b_ih, b_hh = with_rows(b_ih, (fs, forget_bias)), with_rows(b_hh, (fs, 0.0))
    if chrono is not None:
        if not (isinstance(chrono, (int, float)) and math.isfinite(chrono) and chrono > 2):
            raise ConfigError(f"chrono={chrono!r} is not allowed: expected T_max > 2 (the longest dependency)")
        bf = jnp.log(_random.uniform(k3, (n,), dtype, 1.0, chrono - 1.0))
        is_ = slice(i_index * n, (i_index + 1) * n)
        b_ih, b_hh = with_rows(b_ih, (fs, bf), (is_, -bf)), with_rows(b_hh, (fs, 0.0), (is_, 0.0))
    return b_ih, b_hh


def _weights(key, rows, m, n, dtype):
    k1, k2 = _random.split_keys(key)
    bound = 1 / math.sqrt(n)
    return uniform_init(k1, (rows, m), bound, dtype), uniform_init(k2, (rows, n), bound, dtype)


@register(
    "lstm",
    "LSTM with forget gate (PyTorch nn.LSTM layout, gates i,f,g,o); forget_bias, chrono, proj_size",
    equation="c_t = f⊙c_{t-1} + i⊙g,  h_t = o⊙tanh(c_t)",
)
def build_lstm(
    init: Init, *, forget_bias: float | None = None, chrono: float | None = None, proj_size: int = 0
) -> LSTM:
    input_size, hidden_size, key, dtype = init
    n = hidden_size
    if not (isinstance(proj_size, int) and 0 <= proj_size < n):
        raise ConfigError(f"proj_size={proj_size!r} is not allowed: expected 0 <= proj_size < hidden_size={n}")
    kw, kb, kr = _random.split_keys(key, 3)
    p = proj_size or n
    w_ih, w_hh = _weights(kw, 4 * n, input_size, n, dtype)
    w_hh = w_hh[:, :p]
    b_ih, b_hh = _gate_biases(kb, n, 4, dtype, forget_bias, chrono, f_index=1, i_index=0)
    w_hr = uniform_init(kr, (p, n), 1 / math.sqrt(p), dtype) if proj_size else None
    return LSTM(w_ih, w_hh, b_ih, b_hh, w_hr, **init.sizes, proj_size=proj_size)


@register(
    "lstm-nofg",
    "1997 LSTM without forget gate: constant error carousel (gates i,g,o)",
    equation="c_t = c_{t-1} + i⊙g,  h_t = o⊙tanh(c_t)",
)
def build_lstm_nofg(init: Init) -> LSTMNoForget:
    input_size, hidden_size, key, dtype = init
    n = hidden_size
    kw, kb = _random.split_keys(key)
    w_ih, w_hh = _weights(kw, 3 * n, input_size, n, dtype)
    b_ih, b_hh = _gate_biases(kb, n, 3, dtype, None, None, f_index=0, i_index=0)
    return LSTMNoForget(w_ih, w_hh, b_ih, b_hh, **init.sizes)


@register(
    "lstm-peephole",
    "LSTM with diagonal peepholes c→i,f (c_{t-1}) and c→o (c_t) (Gers & Schmidhuber 2000)",
    equation="i,f = σ(… + w_c{i,f}⊙c_{t-1}), o = σ(… + w_co⊙c_t), c_t = f⊙c_{t-1} + i⊙g",
)
def build_lstm_peephole(init: Init, *, forget_bias: float | None = None, chrono: float | None = None) -> PeepholeLSTM:
    input_size, hidden_size, key, dtype = init
    n = hidden_size
    kw, kb, kp = _random.split_keys(key, 3)
    w_ih, w_hh = _weights(kw, 4 * n, input_size, n, dtype)
    b_ih, b_hh = _gate_biases(kb, n, 4, dtype, forget_bias, chrono, f_index=1, i_index=0)
    wc = uniform_init(kp, (3, n), 1 / math.sqrt(n), dtype)
    return PeepholeLSTM(w_ih, w_hh, b_ih, b_hh, wc[0], wc[1], wc[2], **init.sizes)
