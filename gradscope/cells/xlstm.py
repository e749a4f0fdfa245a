"""xLSTM cells (Beck et al. 2024, "xLSTM: Extended Long Short-Term Memory", NeurIPS): sLSTM and mLSTM.

Both use an exponential input gate i = exp(ĩ) and a forget gate f = σ(f̃) (``forget_gate="sigmoid"``,
the reference `xlstm` package: log f = logsigmoid(f̃)) or f = exp(f̃) (``"exp"``: log f = f̃). To keep
exp() finite, a stabiliser state m carries the running log-scale (paper §2.2)::

    m_t = max(log f_t + m_{t-1}, ĩ_t),   i′ = exp(ĩ_t − m_t),   f′ = exp(log f_t + m_{t-1} − m_t)

m cancels in h: (c, n, m) and (c·e^a, n·e^a, m − a) give the same output. The max is piecewise; the
analytic Jacobians differentiate the branch taken (at an exact tie ĩ = log f + m they are one-sided).

**sLSTM** (paper §2.2)::

    (ĩ, f̃, z̃, õ) = W x_t + R h_{t-1} + b          (R block-diagonal: one Dh×Dh block per head and gate)
    c_t = f′ c_{t-1} + i′ tanh(z̃),   n_t = f′ n_{t-1} + i′,   h_t = σ(õ) ⊙ c_t / n_t

State blocks ``("h", "c", "n", "m")``, each of size n = heads·Dh, as the package's state tensor.
Layout as the package's sLSTM cell: gate rows stacked i, f, z, o; inside a gate, head-major units.
``weight_ih (4n, m)``, ``weight_hh (4, heads, Dh_out, Dh_in)``, ``bias (4n,)``. As in the package's
vanilla backend, a step whose n_{t-1} is all zero (the zero initial state) sets m_t = ĩ_t (the package
tests the whole batch, gradscope each sequence: the same from a common zero state), and the rescaled
gates are clipped at 1 (exp(min(·, 0))): a no-op except at that first step.

**mLSTM** (paper §2.3), per head with Dh = head dim, as the package's recurrent step::

    q, k, v = W_q x + b_q, (W_k x + b_k)/√Dh, W_v x + b_v;   ĩ, f̃ = W_i x + b_i, W_f x + b_f (one per head)
    C_t = f′ C_{t-1} + i′ k vᵀ,   n_t = f′ n_{t-1} + i′ k
    h_t = o ⊙ (C_tᵀ q) / (max(|n_tᵀ q|, exp(−m_t)) + ε),   o = σ(W_o x + b_o) (or 1: ``output_gate=False``)

max(|nᵀq|, exp(−m)) is the paper's max(|nᵀq|, 1) in stabilised units; ε = 1e-6 is the package's.
State blocks ``("h", "C", "n", "m")`` of sizes (n, heads·Dh², n, heads); C is stored as the package
does, key index first (C[a, b] = Σ k_a v_b, i.e. the paper's C transposed), flattened row-major per head.
h_t reads x_t and C_t, n_t, m_t but not h_{t-1}, so the h columns of ∂S_t/∂S_{t-1} are zero. The
structure is "dense": the stabiliser couples m into C, n and h.

``readout``: the layer output is h, or, when ``norm_scale`` is set (imported layers), the package's
per-head layer norm γ ⊙ (h − μ)/√(var + 1e-5) (its MultiHeadLayerNorm). Ties and the branch rules are
the only non-smooth points; tests avoid exact ties.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from gradscope import _random
from gradscope._errors import ConfigError, check_bool, check_number
from gradscope.cells._activations import sig
from gradscope.cells._base import Array, Aux, Jacobians, SizedCell, State, pytree_cell, static, uniform_init
from gradscope.cells._registry import Init, registrar
from gradscope.cells._xlstm_common import (
    _check_forget_gate,
    _forget_bias,
    _HeadNormReadout,
    _heads,
    _stabilise,
    _x_cols,
)

register = registrar("xlstm")  # every cell this module registers is of the xlstm family


@pytree_cell
class SLSTM(_HeadNormReadout, SizedCell):
    weight_ih: jax.Array  # (4n, m), gate rows i, f, z, o
    weight_hh: jax.Array  # (4, heads, Dh, Dh): [gate, head, out unit, in unit]
    bias: jax.Array  # (4n,)
    norm_scale: jax.Array | None = None  # (n,) per-head layer norm scale of the readout, or None
    num_heads: int = static(default=1)
    forget_gate: str = static(default="sigmoid")
    norm_eps: float = static(default=1e-5)

    blocks = ("h", "c", "n", "m")

    def recurrent_matrix(self) -> Array:
        """The block-diagonal R (4n, n) with one Dh×Dh block per gate and head."""
        H = self.num_heads
        return jnp.einsum("gkjl,kq->gkjql", self.weight_hh, jnp.eye(H, dtype=self.weight_hh.dtype)).reshape(
            4 * self.hidden_size, self.hidden_size
        )

    def _step(self, x, state):
        h, c, n, m = state
        nh = self.hidden_size
        pre = self.weight_ih @ x + self.recurrent_matrix() @ h + self.bias
        i_, f_, z_, o_ = (pre[g * nh : (g + 1) * nh] for g in range(4))
        reset = jnp.all(n == 0)
        logf, dlogf, m2, ig, fg, sel = _stabilise(self.forget_gate, f_, i_, m, reset)
        g, o = jnp.tanh(z_), sig(o_)
        c2 = fg * c + ig * g
        n2 = fg * n + ig
        h2 = o * c2 / n2
        return (h2, c2, n2, m2), dict(pre=pre, i=ig, f=fg, z=g, o=o, logf=logf, dlogf=dlogf, sel=sel, reset=reset)

    def __call__(self, x: Array, state: State) -> tuple[State, Aux]:
        new, a = self._step(x, state)
        return new, {"pre": a["pre"], "i": a["i"], "f": a["f"], "z": a["z"], "o": a["o"]}

    direct_block = "c"

    def direct_path(self, x: Array, state: State, t: Any = None) -> Array:
        """The cell-state highway c_t = f′_t ⊙ c_{t−1} + … (as the LSTM's ∏ f): the diagonal f′_t of the
        direct path of ∂c_t/∂c_{t−1} (the gates held fixed)."""
        return self._step(x, state)[1]["f"]

    def jacobian(self, x: Array, state: State, t: Any = None) -> Jacobians:
        """Forward-mode tangents over [S; x] (columns), one row block per new state block."""
        h, c, n, m = state
        nh, d = self.hidden_size, 4 * self.hidden_size
        (h2, c2, n2, m2), a = self._step(x, state)
        P = d + self.input_size
        Dpre = jnp.concatenate([self.recurrent_matrix(), jnp.zeros((4 * nh, 3 * nh), h.dtype), self.weight_ih], 1)
        Di, Df, Dz, Do = (Dpre[g * nh : (g + 1) * nh] for g in range(4))
        Dc, Dn, Dm = (jnp.eye(nh, P, k=k * nh, dtype=h.dtype) for k in (1, 2, 3))
        Da = a["dlogf"][:, None] * Df + Dm  # d(log f + m)
        Dm2 = jnp.where(a["sel"][:, None], Di, Da)
        ig, fg, g, o = a["i"], a["f"], a["z"], a["o"]
        Dig = ig[:, None] * (Di - Dm2)
        clip = (a["logf"] + m - m2) > 0  # f′ = exp(min(·, 0)) is flat above 0 (only at a reset)
        Dfg = jnp.where(clip[:, None], 0.0, fg[:, None] * (Da - Dm2))
        Dc2 = Dfg * c[:, None] + fg[:, None] * Dc + Dig * g[:, None] + (ig * (1 - g * g))[:, None] * Dz
        Dn2 = Dfg * n[:, None] + fg[:, None] * Dn + Dig
        Dh2 = (o * (1 - o) * c2 / n2)[:, None] * Do + (o / n2)[:, None] * (Dc2 - (c2 / n2)[:, None] * Dn2)
        J = jnp.concatenate([Dh2, Dc2, Dn2, Dm2], axis=0)
        return J[:, :d], J[:, d:]


@pytree_cell
class MLSTM(_HeadNormReadout, SizedCell):
    weight_q: jax.Array  # (n, m)
    weight_k: jax.Array
    weight_v: jax.Array
    bias_q: jax.Array  # (n,)
    bias_k: jax.Array
    bias_v: jax.Array
    weight_i: jax.Array  # (heads, m)
    weight_f: jax.Array
    bias_i: jax.Array  # (heads,)
    bias_f: jax.Array
    weight_o: jax.Array | None = None  # (n, m) output gate, or None (o = 1, the package's cell)
    bias_o: jax.Array | None = None
    norm_scale: jax.Array | None = None
    num_heads: int = static(default=1)
    forget_gate: str = static(default="sigmoid")
    eps: float = static(default=1e-6)
    norm_eps: float = static(default=1e-5)

    blocks = ("h", "C", "n", "m")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def block_sizes(self) -> tuple[int, ...]:
        n, H = self.hidden_size, self.num_heads
        return (n, H * self.head_dim**2, n, H)

    def _step(self, x, state):
        _, C, n, m = state
        H, D = self.num_heads, self.head_dim
        C = C.reshape(H, D, D)
        n = n.reshape(H, D)
        q = (self.weight_q @ x + self.bias_q).reshape(H, D)
        k = (self.weight_k @ x + self.bias_k).reshape(H, D) / math.sqrt(D)
        v = (self.weight_v @ x + self.bias_v).reshape(H, D)
        i_, f_ = self.weight_i @ x + self.bias_i, self.weight_f @ x + self.bias_f
        logf, dlogf, m2, ig, fg, sel = _stabilise(self.forget_gate, f_, i_, m)
        C2 = fg[:, None, None] * C + ig[:, None, None] * k[:, :, None] * v[:, None, :]
        n2 = fg[:, None] * n + ig[:, None] * k
        num = jnp.einsum("ka,kab->kb", q, C2)
        s = jnp.sum(q * n2, axis=1)
        floor = jnp.exp(-m2)
        den = jnp.maximum(jnp.abs(s), floor) + self.eps
        ht = (num / den[:, None]).reshape(-1)
        o = jnp.ones_like(ht) if self.weight_o is None else sig(self.weight_o @ x + self.bias_o)
        new = (o * ht, C2.reshape(-1), n2.reshape(-1), m2)
        return new, dict(
            q=q,
            k=k,
            v=v,
            i_pre=i_,
            f_pre=f_,
            i=ig,
            f=fg,
            o=o,
            ht=ht,
            C=C,
            n=n,
            C2=C2,
            n2=n2,
            num=num,
            s=s,
            floor=floor,
            den=den,
            dlogf=dlogf,
            sel=sel,
        )

    def __call__(self, x: Array, state: State) -> tuple[State, Aux]:
        new, a = self._step(x, state)
        return new, {k: a[k] for k in ("i_pre", "f_pre", "i", "f", "o")}

    direct_block = "C"

    def direct_path(self, x: Array, state: State, t: Any = None) -> Array:
        """The matrix memory's highway C_t = f′_t C_{t−1} + …: one scalar f′ per head on its Dh² entries
        (the diagonal of the direct path of ∂C_t/∂C_{t−1}, the gates held fixed)."""
        D = self.head_dim
        return jnp.repeat(self._step(x, state)[1]["f"], D * D)

    def jacobian(self, x: Array, state: State, t: Any = None) -> Jacobians:
        """Forward-mode tangents over [S; x] (last axis), per head, then flattened to rows of S'."""
        new, a = self._step(x, state)
        n, H, D = self.hidden_size, self.num_heads, self.head_dim
        d = self.state_size
        P = d + self.input_size
        dt = x.dtype
        Dq = _x_cols(self.weight_q, d).reshape(H, D, P)
        Dk = _x_cols(self.weight_k, d).reshape(H, D, P) / math.sqrt(D)
        Dv = _x_cols(self.weight_v, d).reshape(H, D, P)
        Di, Df = _x_cols(self.weight_i, d), _x_cols(self.weight_f, d)
        oC, on, om = n, n + H * D * D, 2 * n + H * D * D
        DC = jnp.eye(H * D * D, P, k=oC, dtype=dt).reshape(H, D, D, P)
        Dn = jnp.eye(n, P, k=on, dtype=dt).reshape(H, D, P)
        Dm = jnp.eye(H, P, k=om, dtype=dt)
        Da = a["dlogf"][:, None] * Df + Dm
        Dm2 = jnp.where(a["sel"][:, None], Di, Da)
        fg, ig, q, k, v = a["f"], a["i"], a["q"], a["k"], a["v"]
        Dfg = fg[:, None] * (Da - Dm2)
        Dig = ig[:, None] * (Di - Dm2)
        kv = k[:, :, None] * v[:, None, :]
        Dkv = Dk[:, :, None, :] * v[:, None, :, None] + k[:, :, None, None] * Dv[:, None, :, :]  # d(k vᵀ)
        DC2 = (
            Dfg[:, None, None, :] * a["C"][..., None]
            + fg[:, None, None, None] * DC
            + Dig[:, None, None, :] * kv[..., None]
            + ig[:, None, None, None] * Dkv
        )
        Dn2 = (
            Dfg[:, None, :] * a["n"][..., None]
            + fg[:, None, None] * Dn
            + Dig[:, None, :] * k[..., None]
            + ig[:, None, None] * Dk
        )
        Dnum = jnp.einsum("kaP,kab->kbP", Dq, a["C2"]) + jnp.einsum("ka,kabP->kbP", q, DC2)
        Ds = jnp.einsum("kaP,ka->kP", Dq, a["n2"]) + jnp.einsum("ka,kaP->kP", q, Dn2)
        s, floor, den = a["s"], a["floor"], a["den"]
        Dden = jnp.where((jnp.abs(s) > floor)[:, None], jnp.sign(s)[:, None] * Ds, -floor[:, None] * Dm2)
        Dht = (Dnum / den[:, None, None] - (a["num"] / den[:, None] ** 2)[..., None] * Dden[:, None, :]).reshape(n, P)
        Dh = a["o"][:, None] * Dht
        if self.weight_o is not None:
            Dh = Dh + (a["o"] * (1 - a["o"]) * a["ht"])[:, None] * _x_cols(self.weight_o, d)
        J = jnp.concatenate([Dh, DC2.reshape(-1, P), Dn2.reshape(-1, P), Dm2], axis=0)
        return J[:, :d], J[:, d:]


@register(
    "slstm",
    "sLSTM (Beck et al. 2024): exponential input gate, normaliser n, stabiliser m, block-diagonal R per head",
    equation="m_t = max(log f + m_{t-1}, ĩ), c_t = f′c_{t-1} + i′tanh(z̃), n_t = f′n_{t-1} + i′, h_t = σ(õ)⊙c_t/n_t",
)
def build_slstm(
    init: Init, *, num_heads: int = 1, forget_gate: str = "sigmoid", forget_bias: float | None = None
) -> SLSTM:
    """W ~ U(±1/√m), R ~ U(±1/√n) (the package's "standard" recurrent init; its default is R = 0),
    b_i = b_z = b_o = 0, b_f = ``forget_bias`` (default linspace(3, 6) per head, the package's "small_init").
    ``num_heads`` must divide ``hidden_size``; ``forget_gate`` "sigmoid" (the package) or "exp"."""
    input_size, hidden_size, key, dtype = init
    H = _heads(hidden_size, num_heads)
    _check_forget_gate(forget_gate)
    D = hidden_size // H
    k1, k2 = _random.split_keys(key)
    bias = (
        jnp.zeros((4 * hidden_size,), dtype)
        .at[hidden_size : 2 * hidden_size]
        .set(_forget_bias(forget_bias, D, H, dtype))
    )
    return SLSTM(
        weight_ih=uniform_init(k1, (4 * hidden_size, input_size), 1 / math.sqrt(input_size), dtype),
        weight_hh=uniform_init(k2, (4, H, D, D), 1 / math.sqrt(hidden_size), dtype),
        bias=bias,
        **init.sizes,
        num_heads=H,
        forget_gate=forget_gate,
    )


@register(
    "mlstm",
    "mLSTM (Beck et al. 2024): matrix memory C per head, exponential input gate, stabiliser m",
    equation="C_t = f′C_{t-1} + i′k vᵀ, n_t = f′n_{t-1} + i′k, h_t = o⊙C_tᵀq/(max(|n_tᵀq|, e^(−m_t)) + ε)",
)
def build_mlstm(
    init: Init,
    *,
    num_heads: int | None = None,
    head_dim: int | None = None,
    forget_gate: str = "sigmoid",
    output_gate: bool = True,
    forget_bias: float | None = None,
    eps: float = 1e-06,
) -> MLSTM:
    """Heads of dimension Dh = hidden_size / num_heads; by default Dh = 2 (1 for an odd hidden_size), which
    keeps the state (n + heads·Dh² + n + heads) and its dense Jacobian small. Give ``num_heads`` or
    ``head_dim``. W_q, W_k, W_v, W_i, W_f, W_o ~ U(±1/√m) (the package zero-initialises W_i and W_f;
    random gate weights exercise the gates' input paths), b_i ~ N(0, 0.1²), b_f = ``forget_bias``
    (default linspace(3, 6) over the heads, as the package), other biases 0. ``output_gate=False``
    drops o (the package's cell). ``eps``: the ε of the denominator (the package's 1e-6)."""
    input_size, hidden_size, key, dtype = init
    if num_heads is None and head_dim is None:
        head_dim = 2 if hidden_size % 2 == 0 else 1
    if head_dim is not None:
        head_dim = _heads(hidden_size, head_dim, "head_dim")
        H = hidden_size // head_dim
        if num_heads is not None and num_heads != H:
            raise ConfigError(f"num_heads={num_heads!r} is not allowed: with head_dim={head_dim} it must be {H}")
    H = _heads(hidden_size, num_heads if head_dim is None else H)
    _check_forget_gate(forget_gate)
    check_bool("output_gate", output_gate)
    eps = check_number("eps", eps, nonnegative=True)
    ks = _random.split_keys(key, 7)
    n, m = hidden_size, input_size
    u = 1 / math.sqrt(m)
    fb = jnp.linspace(3.0, 6.0, H, dtype=dtype) if forget_bias is None else _forget_bias(forget_bias, 1, H, dtype)
    return MLSTM(
        weight_q=uniform_init(ks[0], (n, m), u, dtype),
        weight_k=uniform_init(ks[1], (n, m), u, dtype),
        weight_v=uniform_init(ks[2], (n, m), u, dtype),
        bias_q=jnp.zeros((n,), dtype),
        bias_k=jnp.zeros((n,), dtype),
        bias_v=jnp.zeros((n,), dtype),
        weight_i=uniform_init(ks[3], (H, m), u, dtype),
        weight_f=uniform_init(ks[4], (H, m), u, dtype),
        bias_i=0.1 * jax.random.normal(ks[5], (H,), dtype),
        bias_f=fb,
        weight_o=uniform_init(ks[6], (n, m), u, dtype) if output_gate else None,
        bias_o=jnp.zeros((n,), dtype) if output_gate else None,
        **init.sizes,
        num_heads=H,
        forget_gate=forget_gate,
        eps=eps,
    )
