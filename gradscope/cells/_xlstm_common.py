"""What the xLSTM cells (`gradscope.cells.xlstm`) share: the forget-gate forms, the stabiliser
recurrence ``m_t = max(log f_t + m_{t-1}, ĩ_t)`` (Beck et al. 2024 §2.2), the per-head layer norm of the
output (the reference package's MultiHeadLayerNorm), and the builders' option checks."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from gradscope._errors import ConfigError, check_number, check_positive_int
from gradscope.cells._activations import sig
from gradscope.cells._base import Array, Cell

FORGET_GATES = ("sigmoid", "exp")


def _log_forget(kind, f_pre):
    """(log f, d log f / d f̃)."""
    if kind == "exp":
        return f_pre, jnp.ones_like(f_pre)
    return jax.nn.log_sigmoid(f_pre), sig(-f_pre)


def _x_cols(w, d):
    """A tangent matrix over [S; x] for a quantity linear in x: ``[0 (rows, d) | w]``."""
    return jnp.concatenate([jnp.zeros((w.shape[0], d), w.dtype), w], axis=1)


class _HeadNormReadout(Cell):
    """The optional per-head layer norm on the output (the package's MultiHeadLayerNorm)."""

    # fields of sLSTM and mLSTM (declared for the checker; no class attributes)
    norm_scale: jax.Array | None
    num_heads: int
    norm_eps: float

    def _head_norm(self, h: Array) -> tuple[Array, Array]:
        """``(ŷ (heads, D), σ (heads, 1))``: ŷ = (h − μ)/σ per head, σ = √(var + eps)."""
        hh = h.reshape(self.num_heads, -1)
        mu = hh.mean(axis=1, keepdims=True)
        sd = jnp.sqrt(((hh - mu) ** 2).mean(axis=1, keepdims=True) + self.norm_eps)
        return (hh - mu) / sd, sd

    def readout(self, state: Sequence[Array], x: Array) -> Array:
        h = state[0]
        if self.norm_scale is None:
            return h
        return self.norm_scale * self._head_norm(h)[0].reshape(-1)

    def readout_jacobian(self, state: Sequence[Array], x: Array) -> tuple[Array, Array]:
        """(∂y/∂S, ∂y/∂x); per head ∂ŷ/∂h = (I − 11ᵀ/D − ŷŷᵀ/D)/σ, y = γ ⊙ ŷ."""
        h, n, d = state[0], self.hidden_size, self.state_size
        if self.norm_scale is None:
            Jh = jnp.eye(n, dtype=h.dtype)
        else:
            H = self.num_heads
            D = n // H
            y, sd = self._head_norm(h)
            blk = (jnp.eye(D, dtype=h.dtype) - 1.0 / D - y[:, :, None] * y[:, None, :] / D) / sd[:, :, None]
            Jh = self.norm_scale[:, None] * jax.scipy.linalg.block_diag(*[blk[k] for k in range(H)])
        JS = jnp.zeros((n, d), h.dtype).at[:, :n].set(Jh)
        return JS, jnp.zeros((n, self.input_size), h.dtype)


def _stabilise(kind: str, f_pre: Array, i_pre: Array, m: Array, reset: bool | Array = False):
    """(log f, ∂log f/∂f̃, m_t, i′, f′, input branch taken) of the stabiliser recurrence."""
    logf, dlogf = _log_forget(kind, f_pre)
    a = logf + m
    sel = i_pre > a  # the input branch of max(log f + m, ĩ)
    m2 = jnp.where(reset, i_pre, jnp.maximum(a, i_pre))
    return logf, dlogf, m2, jnp.exp(jnp.minimum(i_pre - m2, 0.0)), jnp.exp(jnp.minimum(a - m2, 0.0)), sel | reset


def _check_forget_gate(forget_gate):
    if forget_gate not in FORGET_GATES:
        raise ConfigError(f"forget_gate={forget_gate!r} is not allowed: use one of {', '.join(FORGET_GATES)}")


def _heads(hidden_size, num_heads, option="num_heads"):
    num_heads = check_positive_int(option, num_heads)
    if hidden_size % num_heads:
        raise ConfigError(f"{option}={num_heads!r} is not allowed: it must divide hidden_size={hidden_size}")
    return num_heads


def _forget_bias(forget_bias, units, heads, dtype):
    """None: linspace(3, 6) over each head's units (the package's "small_init"); a number: constant."""
    if forget_bias is None:
        return jnp.tile(jnp.linspace(3.0, 6.0, units, dtype=dtype), heads)
    return jnp.full((units * heads,), check_number("forget_bias", forget_bias), dtype)
