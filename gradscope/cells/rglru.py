"""RG-LRU, the Real-Gated Linear Recurrent Unit of Griffin (De et al. 2024, "Griffin: Mixing Gated Linear
Recurrences with Local Attention for Efficient Language Models", §2.4):

    r_t = σ(W_a x_t + b_a)                       recurrence gate
    i_t = σ(W_x x_t + b_x)                       input gate
    log a_t = −c · softplus(Λ) ⊙ r_t             c = 8
    h_t = a_t ⊙ h_{t−1} + √(1 − a_t²) ⊙ (i_t ⊙ x_t)

The recurrence is elementwise in x (h and x have the same width) and the step Jacobian is *diagonal*,
∂h_t/∂h_{t−1} = diag(a_t) with 0 < a_t < 1, so ‖∂h_T/∂h_k‖₂ = max_n ∏_{j=k+1..T} a_{n,j}.
W_a and W_x are block-diagonal over ``num_heads`` heads, as in the reference implementation
(``recurrentgemma``'s ``BlockDiagonalLinear``: y[h, j] = Σ_i x[h, i] w[h, i, j] + b[h, j]). Writing
â = exp(−softplus(Λ)) (so a_t = â^{c r_t}), Λ is initialised as in the reference code
(``rnn_real_param_init``): â² uniform on [min_rad², max_rad²] = [0.9², 0.999²] ("uniform on a ring").

First step. The reference resets the recurrence at the start of every segment (``segment_pos == 0``): a_t is
replaced by 0 and the normaliser √(1 − a_t²) by 1, so that h = i ⊙ x whatever the previous state. With
``reset_at_start=True`` this cell does the same at t = 0 (the first step of `rollout`; then ∂h_1/∂h_0 = 0,
a lag profile entry of −∞ at k = 0). By default (False) every step is the plain recurrence above, which is
what the reference computes at every position with ``segment_pos ≥ 1`` (a continuation from its cache);
from h_0 = 0 the two differ only in the normaliser of step 1, which scales h_1 (and so its share of every
later state).
``__call__`` (no time index) never resets. The reference also clips the *gradient* of √u at 1000 (u < 2.5e−7)
in its backward pass; `jacobian` is the exact derivative.

Input width. Since the unit is elementwise in x, it needs ``input_size == hidden_size``. For other sizes the
builder (``projection=None``, the default) inserts the input projection of Griffin's recurrent block, x̂ =
W_in x + b_in (the reference's ``linear_x``, §2.3), and the gates and the recurrence read x̂; ``projection=False``
refuses, ``projection=True`` always inserts it.

Layout (the reference's parameter tree): ``a_param`` Λ ``(n,)``; ``input_gate_w``, ``a_gate_w``
``(H, n/H, n/H)``; ``input_gate_b``, ``a_gate_b`` ``(H, n/H)``; ``weight_in`` ``(n, m)`` and ``bias_in``
``(n,)`` or None.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from gradscope import _random
from gradscope._errors import ConfigError, check_bool, check_number, check_positive_int
from gradscope.cells._base import Array, Aux, DiagonalCell, SizedCell, State, pytree_cell, static, uniform_init
from gradscope.cells._registry import Init, registrar

if TYPE_CHECKING:
    from jaxtyping import Float

register = registrar("rglru")  # every cell this module registers is of the rglru family


def block_diagonal(w: Float[Array, "H k k"]) -> Float[Array, "n n"]:
    """The dense ``(n, n)`` matrix of a block-diagonal ``(H, k, k)`` weight acting as y[h,j] = Σ_i x[h,i] w[h,i,j]."""
    H, k, _ = w.shape
    return jnp.einsum("hg,hij->hjgi", jnp.eye(H, dtype=w.dtype), w).reshape(H * k, H * k)


def _block_apply(w, b, x):
    H, k, _ = w.shape
    return (jnp.einsum("hi,hij->hj", x.reshape(H, k), w) + b).reshape(H * k)


@pytree_cell
class RGLRU(DiagonalCell, SizedCell):
    a_param: jax.Array
    input_gate_w: jax.Array
    input_gate_b: jax.Array
    a_gate_w: jax.Array
    a_gate_b: jax.Array
    weight_in: jax.Array | None = None  # (n, m): Griffin's input projection when input_size != hidden_size
    bias_in: jax.Array | None = None
    num_heads: int = static(default=1)
    c: float = static(default=8.0)
    reset_at_start: bool = static(default=False)

    def _project(self, x):
        return x if self.weight_in is None else self.weight_in @ x + self.bias_in

    def _reset(self, t):
        """Whether this step starts a segment (the reference's ``segment_pos == 0``)."""
        if not self.reset_at_start or t is None:
            return None
        return jnp.asarray(t) == 0

    def _gates(self, x, reset):
        xh = self._project(x)
        a_i = _block_apply(self.input_gate_w, self.input_gate_b, xh)
        a_r = _block_apply(self.a_gate_w, self.a_gate_b, xh)
        i, r = jax.nn.sigmoid(a_i), jax.nn.sigmoid(a_r)
        log_a = -self.c * jax.nn.softplus(self.a_param) * r
        # a and a² from log a, as the reference computes them
        a, beta = jnp.exp(log_a), jnp.sqrt(1.0 - jnp.exp(2.0 * log_a))
        if reset is not None:
            a, beta = jnp.where(reset, 0.0, a), jnp.where(reset, 1.0, beta)
        return xh, a_i, a_r, i, r, log_a, a, beta

    def _step(self, x, state, reset):
        (h,) = state
        xh, a_i, a_r, i, r, log_a, a, beta = self._gates(x, reset)
        new = a * h + beta * (i * xh)
        return (new,), {"r": r, "i": i, "a": a, "a_r": a_r, "a_i": a_i, "log_a": log_a}

    def __call__(self, x: Array, state: State) -> tuple[State, Aux]:
        return self._step(x, tuple(state), None)

    def step(self, x: Array, state: Sequence[Array], t: Any) -> tuple[State, Aux]:
        return self._step(x, tuple(state), self._reset(t))

    def jacobian_diag(self, x: Array, state: State, t: Any = None) -> tuple[Array, Array]:
        """``(a_t, ∂h_t/∂x_t)``. With u = i⊙x̂, ∂a/∂(W_a x̂) = −c softplus(Λ) a r(1−r) and ∂β/∂a = −a/β:
        ∂h_t/∂x̂ = diag(β i) + diag(β x̂ i(1−i)) W_x + diag((h − (a/β) u) ∂a/∂(W_a x̂)) W_a,
        times W_in with the projection; at a reset (a = 0, β = 1) the last term vanishes."""
        (h,) = state
        reset = self._reset(t)
        xh, _, _, i, r, _, a, beta = self._gates(x, reset)
        da = -self.c * jax.nn.softplus(self.a_param) * a * r * (1.0 - r)
        coef_a = (h - a / beta * i * xh) * da
        if reset is not None:
            coef_a = jnp.where(reset, 0.0, coef_a)
        jx = (
            jnp.diag(beta * i)
            + (beta * xh * i * (1.0 - i))[:, None] * block_diagonal(self.input_gate_w)
            + coef_a[:, None] * block_diagonal(self.a_gate_w)
        )
        if self.weight_in is not None:
            jx = jx @ self.weight_in
        return a, jx

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "projection": self.weight_in is not None}


def a_param_init(key: Array, n: int, min_rad: float, max_rad: float, dtype: DTypeLike, eps: float = 1e-8) -> Array:
    """Λ with exp(−softplus(Λ)) ∈ [min_rad, max_rad], uniform by area of the ring (the reference's init)."""
    u = _random.uniform(key, (n,), jnp.float64 if dtype == jnp.float64 else jnp.float32)
    a_real = 0.5 * jnp.log(u * (max_rad**2 - min_rad**2) + min_rad**2 + eps)
    return jnp.log(jnp.expm1(-a_real)).astype(dtype)  # softplus⁻¹(−log a)


@register(
    "rglru",
    "RG-LRU (De et al. 2024, Griffin): input-gated diagonal decay a = exp(−8·softplus(Λ)·r), √(1−a²) normaliser",
    equation="log a_t = −8·softplus(Λ)⊙σ(W_a x_t + b_a), h_t = a_t⊙h_{t-1} + √(1−a_t²)⊙(σ(W_x x_t + b_x)⊙x_t)",
)
def build_rglru(
    init: Init,
    *,
    num_heads: int = 1,
    min_rad: float = 0.9,
    max_rad: float = 0.999,
    c: float = 8.0,
    reset_at_start: bool = False,
    projection: bool | None = None,
) -> RGLRU:
    """Gate weights ~ N(0, 1/(n/H)) per head (the reference's fan-in variance scaling), biases 0; Λ as
    `a_param_init`. ``projection``: None inserts x̂ = W_in x + b_in only when input_size != hidden_size,
    True always, False never (then the sizes must match). ``reset_at_start``: see the module docstring."""
    input_size, hidden_size, key, dtype = init
    num_heads = check_positive_int("num_heads", num_heads)
    if hidden_size % num_heads:
        raise ConfigError(f"num_heads={num_heads!r} is not allowed: it must divide hidden_size={hidden_size}")
    min_rad = check_number("min_rad", min_rad, positive=True)
    max_rad = check_number("max_rad", max_rad, positive=True)
    if not min_rad <= max_rad < 1:
        raise ConfigError(f"max_rad={max_rad!r} is not allowed: need min_rad={min_rad!r} <= max_rad < 1")
    c = check_number("c", c, positive=True)
    reset_at_start = check_bool("reset_at_start", reset_at_start)
    if projection is not None:
        projection = check_bool("projection", projection)
    if projection is False and input_size != hidden_size:
        raise ConfigError(
            f"hidden_size={hidden_size} is not allowed with projection=False: the RG-LRU is elementwise in x, so "
            f"hidden_size must equal input_size={input_size}; pass hidden_size={input_size}, or projection=None "
            "to insert Griffin's input projection x̂ = W_in x + b_in"
        )
    if projection is None:
        projection = input_size != hidden_size
    k = hidden_size // num_heads
    k_a, k_i, k_g, k_p = _random.split_keys(key, 4)
    std = 1.0 / math.sqrt(k)
    zeros = jnp.zeros((num_heads, k), dtype)
    w_in = uniform_init(k_p, (hidden_size, input_size), 1 / math.sqrt(input_size), dtype) if projection else None
    return RGLRU(
        a_param=a_param_init(k_a, hidden_size, min_rad, max_rad, dtype),
        input_gate_w=std * jax.random.normal(k_i, (num_heads, k, k), dtype),
        input_gate_b=zeros,
        a_gate_w=std * jax.random.normal(k_g, (num_heads, k, k), dtype),
        a_gate_b=zeros,
        weight_in=w_in,
        bias_in=jnp.zeros((hidden_size,), dtype) if projection else None,
        **init.sizes,
        num_heads=num_heads,
        c=c,
        reset_at_start=reset_at_start,
    )
