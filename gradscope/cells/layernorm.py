"""Layer-, group- and "instance"-normalised cells: ln-rnn, ln-lstm, gn-lstm, in-lstm, ln-gru.

Layer norm (Ba, Kiros & Hinton 2016, arXiv 1607.06450; see docs/references.md), with
``LN(z; g, b) = g ⊙ (z − μ)/σ + b`` over the units of one vector, ``σ = sqrt(var + eps)``::

    ln-rnn  (eq. 4)        a_t = W_hh h_{t-1} + W_xh x_t,   h_t = φ(LN(a_t; g, b))
    ln-lstm (eqs. 20-22)   (i, f, g, o) = LN(W_h h_{t-1}) + LN(W_x x_t) + b
                           c_t = σ(f) ⊙ c_{t-1} + σ(i) ⊙ tanh(g),   h_t = σ(o) ⊙ tanh(LN(c_t))
    ln-gru  (eqs. 23-28)   (r, z) = LN(W_h h_{t-1}) + LN(W_x x_t)
                           ĥ_t = tanh(LN(W x_t) + σ(r) ⊙ LN(U h_{t-1}))
                           h_t = (1 − σ(z)) ⊙ h_{t-1} + σ(z) ⊙ ĥ_t      (z means "write", as in Ba/Cho)

Gains start at 1 and biases at 0 (Ba et al. main text). Statistics are per example and per step,
so the cells are ordinary step maps. Weights use PyTorch's stacking: LSTM gate blocks i, f, g, o
(LN over all 4n units is blind to the order), GRU blocks r, z, n in ``weight_ih (3n, m)`` /
``weight_hh (3n, n)`` with LN over the 2n (r, z) units jointly and separately over the n candidate
units (W = weight_ih[2n:], U = weight_hh[2n:]).

Group norm (Wu & He 2018): ``gn-lstm`` replaces the LN of W_h h and W_x x by group norm with
``groups`` contiguous groups of the 4n pre-activations (default 2; ``groups=1`` is ``ln-lstm``);
c_t keeps its layer norm, so only the gate normalisation changes. ``in-lstm``: instance norm
normalises each channel over its positions; a hidden vector has none (IN over one unit outputs the
bias; Ulyanov et al. 2016 define it over spatial positions), so gradscope treats each *gate block*
as a channel and its n units as positions —
group norm with one group per gate (G = 4; identical to ``gn-lstm`` with ``groups=4``).

Every cell has an analytic ``jacobian``; the LN/GN factor is
``∂LN(a)/∂a = diag(g/σ)(I − 11ᵀ/n − â âᵀ/n)`` (`gradscope.norms.group_norm_jacobian`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradscope import _random, norms
from gradscope._errors import bad_value
from gradscope.cells import _activations
from gradscope.cells._activations import dsig, sig
from gradscope.cells._base import Array, Aux, Jacobians, SizedCell, State, pytree_cell, static, uniform_init
from gradscope.cells._normalized_common import _check_common, _lstm_gates, _lstm_jacobian, _lstm_weights
from gradscope.cells._registry import Init, registrar
from gradscope.cells.elman import recurrent_matrix

register = registrar("normalized")  # every cell this module registers is of the normalized family


@pytree_cell
class LNRNN(SizedCell):
    """LN-RNN (Ba et al. eq. 4): ``h_t = φ(LN(W_hh h_{t-1} + W_ih x_t; g, b))``."""

    weight_ih: jax.Array  # (n, m)
    weight_hh: jax.Array  # (n, n)
    ln_gain: jax.Array  # (n,)
    ln_bias: jax.Array  # (n,)
    activation: str = static(default="tanh")
    eps: float = static(default=norms.EPS)

    @property
    def name(self) -> str:
        return "ln-rnn"

    def _pre(self, x, h):
        a = self.weight_hh @ h + self.weight_ih @ x
        return a, norms.layer_norm(a, self.ln_gain, self.ln_bias, eps=self.eps)

    def __call__(self, x: Array, state: State) -> tuple[State, Aux]:
        (h,) = state
        a, y = self._pre(x, h)
        return (_activations.get(self.activation).fn(y),), {"a": a, "y": y}

    def jacobian(self, x: Array, state: State, t: Any = None) -> Jacobians:
        (h,) = state
        a, y = self._pre(x, h)
        d = _activations.get(self.activation).deriv(y)[:, None]
        W = jnp.concatenate([self.weight_hh, self.weight_ih], axis=1)
        D = d * norms.layer_norm_jacobian(a, self.ln_gain, eps=self.eps, right=W)
        n = self.hidden_size
        return D[:, :n], D[:, n:]


@pytree_cell
class NormLSTM(SizedCell):
    """LSTM with the recurrent and input pre-activations normalised separately (LN, GN or per-gate
    "IN") and a layer-normalised cell state in the output (Ba et al. eqs. 20-22)."""

    weight_ih: jax.Array  # (4n, m), blocks i, f, g, o
    weight_hh: jax.Array  # (4n, n)
    bias: jax.Array  # (4n,)
    hh_gain: jax.Array  # (4n,)  α1, β1 of LN(W_h h)
    hh_bias: jax.Array
    ih_gain: jax.Array  # (4n,)  α2, β2 of LN(W_x x)
    ih_bias: jax.Array
    c_gain: jax.Array  # (n,)   α3, β3 of LN(c_t)
    c_bias: jax.Array
    norm: str = static(default="layer")  # "layer" | "group" | "instance"
    groups: int = static(default=1)  # groups of the 4n pre-activations
    eps: float = static(default=norms.EPS)

    blocks = ("h", "c")

    @property
    def name(self) -> str:
        return {"layer": "ln-lstm", "group": "gn-lstm", "instance": "in-lstm"}[self.norm]

    def _forward(self, x, h, c):
        G, e = self.groups, self.eps
        uh, ux = self.weight_hh @ h, self.weight_ih @ x
        z = (
            norms.group_norm(uh, G, self.hh_gain, self.hh_bias, eps=e)
            + norms.group_norm(ux, G, self.ih_gain, self.ih_bias, eps=e)
            + self.bias
        )
        i, f, g, o = _lstm_gates(z, self.hidden_size)
        c2 = f * c + i * g
        tc = jnp.tanh(norms.layer_norm(c2, self.c_gain, self.c_bias, eps=e))
        return uh, ux, z, i, f, g, o, c2, tc

    def __call__(self, x: Array, state: State) -> tuple[State, Aux]:
        h, c = state
        _, _, z, i, f, g, o, c2, tc = self._forward(x, h, c)
        return (o * tc, c2), {"pre": z, "i": i, "f": f, "g": g, "o": o}

    direct_block = "c"

    def direct_path(self, x: Array, state: State, t: Any = None) -> Array:
        """The forget-gate highway ``f_t`` = ∂c_t/∂c_{t-1} (c is not normalised in the update)."""
        return self._forward(x, state[0], state[1])[4]

    def jacobian(self, x: Array, state: State, t: Any = None) -> Jacobians:
        h, c = state
        G, e, n = self.groups, self.eps, self.hidden_size
        uh, ux, z, i, f, g, o, c2, tc = self._forward(x, h, c)
        Dz = jnp.concatenate(
            [
                norms.group_norm_jacobian(uh, G, self.hh_gain, eps=e, right=self.weight_hh),
                norms.group_norm_jacobian(ux, G, self.ih_gain, eps=e, right=self.weight_ih),
            ],
            axis=1,
        )
        return _lstm_jacobian(
            Dz, c, i, f, g, o, tc, lambda M: norms.layer_norm_jacobian(c2, self.c_gain, eps=e, right=M), n
        )


@pytree_cell
class LNGRU(SizedCell):
    """LN-GRU (Ba et al. supplementary eqs. 23-28); layout r, z, n as PyTorch, z means "write"."""

    weight_ih: jax.Array  # (3n, m): W_x for (r, z), then W for the candidate
    weight_hh: jax.Array  # (3n, n): W_h for (r, z), then U for the candidate
    rz_hh_gain: jax.Array  # (2n,)  α1, β1
    rz_hh_bias: jax.Array
    rz_ih_gain: jax.Array  # (2n,)  α2, β2
    rz_ih_bias: jax.Array
    n_ih_gain: jax.Array  # (n,)   α3, β3 of LN(W x)
    n_ih_bias: jax.Array
    n_hh_gain: jax.Array  # (n,)   α4, β4 of LN(U h)
    n_hh_bias: jax.Array
    eps: float = static(default=norms.EPS)

    @property
    def name(self) -> str:
        return "ln-gru"

    def _forward(self, x, h):
        n, e = self.hidden_size, self.eps
        gi, gh = self.weight_ih @ x, self.weight_hh @ h
        rz = norms.layer_norm(gh[: 2 * n], self.rz_hh_gain, self.rz_hh_bias, eps=e) + norms.layer_norm(
            gi[: 2 * n], self.rz_ih_gain, self.rz_ih_bias, eps=e
        )
        r, z = sig(rz[:n]), sig(rz[n:])
        lu = norms.layer_norm(gh[2 * n :], self.n_hh_gain, self.n_hh_bias, eps=e)
        hc = jnp.tanh(norms.layer_norm(gi[2 * n :], self.n_ih_gain, self.n_ih_bias, eps=e) + r * lu)
        return gi, gh, r, z, lu, hc

    def __call__(self, x: Array, state: State) -> tuple[State, Aux]:
        (h,) = state
        _, _, r, z, _, hc = self._forward(x, h)
        return ((1 - z) * h + z * hc,), {"r": r, "z": z, "n": hc}

    def direct_path(self, x: Array, state: State, t: Any = None) -> Array:
        """The gate-highway diagonal ``1 − σ(z)`` of ∂h'/∂h (the whole Jacobian when W_hh = 0)."""
        return 1 - self._forward(x, state[0])[3]

    def jacobian(self, x: Array, state: State, t: Any = None) -> Jacobians:
        (h,) = state
        n, e = self.hidden_size, self.eps
        gi, gh, r, z, lu, hc = self._forward(x, h)
        m = self.input_size
        Wh, Wx = self.weight_hh, self.weight_ih
        # d(r, z)/d[h, x]
        Drz = jnp.concatenate(
            [
                norms.layer_norm_jacobian(gh[: 2 * n], self.rz_hh_gain, eps=e, right=Wh[: 2 * n]),
                norms.layer_norm_jacobian(gi[: 2 * n], self.rz_ih_gain, eps=e, right=Wx[: 2 * n]),
            ],
            axis=1,
        )
        Dr, Dz = dsig(r)[:, None] * Drz[:n], dsig(z)[:, None] * Drz[n:]
        Du = jnp.concatenate(
            [
                norms.layer_norm_jacobian(gh[2 * n :], self.n_hh_gain, eps=e, right=Wh[2 * n :]),
                jnp.zeros((n, m), h.dtype),
            ],
            axis=1,
        )
        Dw = jnp.concatenate(
            [
                jnp.zeros((n, n), h.dtype),
                norms.layer_norm_jacobian(gi[2 * n :], self.n_ih_gain, eps=e, right=Wx[2 * n :]),
            ],
            axis=1,
        )
        Dhc = (1 - hc**2)[:, None] * (Dw + lu[:, None] * Dr + r[:, None] * Du)
        D = (hc - h)[:, None] * Dz + z[:, None] * Dhc
        return D[:, :n] + jnp.diag(1 - z), D[:, n:]


def _norm_lstm(init: Init, forget_bias, eps, norm, groups):
    input_size, n, key, dtype = init
    _check_common(n, eps)
    w_ih, w_hh, b = _lstm_weights(key, n, input_size, dtype, forget_bias)
    one4, zero4 = jax.device_put(np.ones((4 * n,), dtype)), jax.device_put(np.zeros((4 * n,), dtype))
    return NormLSTM(
        w_ih,
        w_hh,
        b,
        one4,
        zero4,
        one4,
        zero4,
        jax.device_put(np.ones((n,), dtype)),
        jax.device_put(np.zeros((n,), dtype)),
        **init.sizes,
        norm=norm,
        groups=groups,
        eps=float(eps),
    )


@register(
    "ln-rnn",
    "Layer-normalised Elman RNN (Ba et al. 2016 eq. 4)",
    equation="h_t = φ(LN(W_hh h_{t-1} + W_xh x_t; g, b))",
)
def build_ln_rnn(
    init: Init,
    *,
    activation: str = "tanh",
    recurrent_init: str | None = None,
    gain: float | None = None,
    eps: float = norms.EPS,
) -> LNRNN:
    """``recurrent_init`` and ``gain`` (the spectral radius of W_hh) as in the Elman RNN
    (`gradscope.cells.elman.recurrent_matrix`): PyTorch's init by default, a gain alone an orthogonal W_hh."""
    input_size, hidden_size, key, dtype = init
    _check_common(hidden_size, eps)
    _activations.get(activation)
    k1, k2 = _random.split_keys(key)
    n = hidden_size
    return LNRNN(
        uniform_init(k1, (n, input_size), 1 / math.sqrt(n), dtype),
        recurrent_matrix(k2, n, recurrent_init, gain, dtype),
        jnp.ones((n,), dtype),
        jnp.zeros((n,), dtype),
        **init.sizes,
        activation=activation,
        eps=float(eps),
    )


def _fixed_norm_builder(norm: str, groups: int) -> Callable[..., NormLSTM]:
    """The builder of a NormLSTM whose normalisation has a fixed number of groups (ln-lstm, in-lstm)."""

    def build(init: Init, *, forget_bias: float | None = None, eps: float = norms.EPS) -> NormLSTM:
        return _norm_lstm(init, forget_bias, eps, norm, groups)

    return build


# LN-LSTM and IN-LSTM are GN-LSTMs with the number of groups fixed: 1 group, and one group per gate block
_FIXED_GROUPS = {
    "ln-lstm": (
        "layer",
        1,
        "Layer-normalised LSTM (Ba et al. 2016 eqs. 20-22; gates i,f,g,o)",
        "z = LN(W_h h) + LN(W_x x) + b, c_t = f⊙c_{t-1} + i⊙g, h_t = o⊙tanh(LN(c_t))",
    ),
    "in-lstm": (
        "instance",
        4,
        "'Instance'-normalised LSTM: each gate block normalised on its own (GN with 4 groups)",
        "z_gate = IN(W_h h)_gate + IN(W_x x)_gate + b, c_t = f⊙c_{t-1} + i⊙g, h_t = o⊙tanh(LN(c_t))",
    ),
}
build_ln_lstm, build_in_lstm = (
    register(name, description, equation=equation)(_fixed_norm_builder(norm, groups))
    for name, (norm, groups, description, equation) in _FIXED_GROUPS.items()
)


@register(
    "gn-lstm",
    "Group-normalised LSTM: GN with `groups` groups of the 4n pre-activations",
    equation="z = GN_G(W_h h) + GN_G(W_x x) + b, c_t = f⊙c_{t-1} + i⊙g, h_t = o⊙tanh(LN(c_t))",
)
def build_gn_lstm(init: Init, *, groups: int = 2, forget_bias: float | None = None, eps: float = norms.EPS) -> NormLSTM:
    four_n = 4 * init.hidden_size
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1 or four_n % groups or four_n // groups < 2:
        raise bad_value(
            "groups",
            groups,
            f"expected a divisor of 4*hidden_size={four_n} leaving at least "
            "2 units per group (1 = ln-lstm, 4 = one group per gate = in-lstm)",
        )
    return _norm_lstm(init, forget_bias, eps, "group", groups)


@register(
    "ln-gru",
    "Layer-normalised GRU (Ba et al. 2016 eqs. 23-28; z means write)",
    equation="(r,z) = LN(W_h h) + LN(W_x x), ĥ = tanh(LN(W x) + σ(r)⊙LN(U h)), h_t = (1−σ(z))⊙h + σ(z)⊙ĥ",
)
def build_ln_gru(init: Init, *, eps: float = norms.EPS) -> LNGRU:
    input_size, hidden_size, key, dtype = init
    _check_common(hidden_size, eps)
    n = hidden_size
    k1, k2 = _random.split_keys(key)
    bound = 1 / math.sqrt(n)
    o2, z2, o1, z1 = (
        jnp.ones((2 * n,), dtype),
        jnp.zeros((2 * n,), dtype),
        jnp.ones((n,), dtype),
        jnp.zeros((n,), dtype),
    )
    return LNGRU(
        uniform_init(k1, (3 * n, input_size), bound, dtype),
        uniform_init(k2, (3 * n, n), bound, dtype),
        o2,
        z2,
        o2,
        z2,
        o1,
        z1,
        o1,
        z1,
        **init.sizes,
        eps=float(eps),
    )
