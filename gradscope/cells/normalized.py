"""Normalised recurrent cells: layer-, group-, "instance"- and batch-normalised RNNs, LSTMs and GRUs.

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

Every cell has an analytic ``jacobian``; the LN/GN factor is
``∂LN(a)/∂a = diag(g/σ)(I − 11ᵀ/n − â âᵀ/n)`` (`gradscope.norms.group_norm_jacobian`).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from gradscope import norms
from gradscope._errors import ConfigError, ShapeError, bad_value
from gradscope.cells import _activations
from gradscope.cells._base import Cell, pytree_cell, static, uniform_init
from gradscope.cells._registry import register
from gradscope.cells.elman import recurrent_matrix

sig = jax.nn.sigmoid


def _dsig(s):
    return s * (1 - s)


def _lstm_jacobian(Dz, c, i, f, g, o, tc, norm_c_times, n):
    """Step Jacobian of ``c' = f c + i g``, ``h' = o tanh(N(c'))`` given ``Dz = ∂z/∂[h, x]`` (4n × (n+m),
    blocks i, f, g, o) and ``norm_c_times(M) = (∂N/∂c') M``."""
    Di, Df, Dg, Do = Dz[:n], Dz[n : 2 * n], Dz[2 * n : 3 * n], Dz[3 * n :]
    dc = (c * _dsig(f))[:, None] * Df + (g * _dsig(i))[:, None] * Di + (i * (1 - g**2))[:, None] * Dg
    out = (o * (1 - tc**2))[:, None]
    dh = (tc * _dsig(o))[:, None] * Do + out * norm_c_times(dc)
    dh_dc = out * norm_c_times(jnp.diag(f))
    J = jnp.block([[dh[:, :n], dh_dc], [dc[:, :n], jnp.diag(f)]])
    return J, jnp.concatenate([dh[:, n:], dc[:, n:]], axis=0)


def _lstm_gates(z, n):
    return sig(z[:n]), sig(z[n : 2 * n]), jnp.tanh(z[2 * n : 3 * n]), sig(z[3 * n :])


# ---------------------------------------------------------------------------------------------
# Layer-normalised cells
# ---------------------------------------------------------------------------------------------


@pytree_cell
class LNRNN(Cell):
    """LN-RNN (Ba et al. eq. 4): ``h_t = φ(LN(W_hh h_{t-1} + W_ih x_t; g, b))``."""

    weight_ih: jax.Array  # (n, m)
    weight_hh: jax.Array  # (n, n)
    ln_gain: jax.Array  # (n,)
    ln_bias: jax.Array  # (n,)
    input_size: int = static(0)
    hidden_size: int = static(0)
    activation: str = static("tanh")
    eps: float = static(norms.EPS)

    name = "ln-rnn"

    def _pre(self, x, h):
        a = self.weight_hh @ h + self.weight_ih @ x
        return a, norms.layer_norm(a, self.ln_gain, self.ln_bias, eps=self.eps)

    def __call__(self, x, state):
        (h,) = state
        a, y = self._pre(x, h)
        return (_activations.get(self.activation).fn(y),), {"a": a, "y": y}

    def jacobian(self, x, state, t=None):
        (h,) = state
        a, y = self._pre(x, h)
        d = _activations.get(self.activation).deriv(y)[:, None]
        W = jnp.concatenate([self.weight_hh, self.weight_ih], axis=1)
        D = d * norms.layer_norm_jacobian(a, self.ln_gain, eps=self.eps, right=W)
        n = self.hidden_size
        return D[:, :n], D[:, n:]


@pytree_cell
class NormLSTM(Cell):
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
    input_size: int = static(0)
    hidden_size: int = static(0)
    norm: str = static("layer")  # "layer" | "group" | "instance"
    groups: int = static(1)  # groups of the 4n pre-activations
    eps: float = static(norms.EPS)

    blocks = ("h", "c")

    @property
    def name(self):  # type: ignore[override]
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

    def __call__(self, x, state):
        h, c = state
        _, _, z, i, f, g, o, c2, tc = self._forward(x, h, c)
        return (o * tc, c2), {"pre": z, "i": i, "f": f, "g": g, "o": o}

    direct_block = "c"

    def direct_path(self, x, state, t=None):
        """The forget-gate highway ``f_t`` = ∂c_t/∂c_{t-1} (c is not normalised in the update)."""
        return self._forward(x, state[0], state[1])[4]

    def jacobian(self, x, state, t=None):
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
class LNGRU(Cell):
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
    input_size: int = static(0)
    hidden_size: int = static(0)
    eps: float = static(norms.EPS)

    name = "ln-gru"

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

    def __call__(self, x, state):
        (h,) = state
        _, _, r, z, _, hc = self._forward(x, h)
        return ((1 - z) * h + z * hc,), {"r": r, "z": z, "n": hc}

    def direct_path(self, x, state, t=None):
        """The gate-highway diagonal ``1 − σ(z)`` of ∂h'/∂h (the whole Jacobian when W_hh = 0)."""
        return 1 - self._forward(x, state[0])[3]

    def jacobian(self, x, state, t=None):
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
        Dr, Dz = _dsig(r)[:, None] * Drz[:n], _dsig(z)[:, None] * Drz[n:]
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


# ---------------------------------------------------------------------------------------------
# Recurrent batch norm
# ---------------------------------------------------------------------------------------------


class _BNCell(Cell):
    """Shared machinery: per-step population statistics, inference-mode ``step``, training mode.

    ``_forward(x, state, norm)`` computes the step with ``norm(u, key)`` = (u − mean)/sqrt(var + eps)
    without the gain; ``_stat_keys`` names the normalised quantities (``mean_<key>``, ``var_<key>``).
    """

    _stat_keys: tuple = ()

    @property
    def max_length(self) -> int:
        return getattr(self, f"mean_{self._stat_keys[0]}").shape[0]

    def _population(self, t):
        k = jnp.minimum(jnp.asarray(t), self.max_length - 1)  # steps beyond T_max reuse the last

        def norm(u, key):
            mu, var = getattr(self, f"mean_{key}")[k], getattr(self, f"var_{key}")[k]
            return (u - mu) / jnp.sqrt(var + self.eps)

        return norm, k

    def step(self, x, state, t):
        return self._forward(x, tuple(state), self._population(t)[0])

    def __call__(self, x, state):
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
    input_size: int = static(0)
    hidden_size: int = static(0)
    eps: float = static(norms.EPS)

    name = "bn-lstm"
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

    def direct_path(self, x, state, t=0):
        """The forget-gate highway ``f_t`` = ∂c_t/∂c_{t-1} (the cell update is not normalised)."""
        return self.step(x, state, t)[1]["f"]

    def jacobian(self, x, state, t=0):
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
    input_size: int = static(0)
    hidden_size: int = static(0)
    activation: str = static("tanh")
    eps: float = static(norms.EPS)

    name = "bn-rnn"
    _stat_keys = ("hh", "ih")

    def _forward(self, x, state, norm):
        (h,) = state
        a = (
            self.gamma_hh * norm(h @ self.weight_hh.T, "hh")
            + self.gamma_ih * norm(x @ self.weight_ih.T, "ih")
            + self.bias
        )
        return (_activations.get(self.activation).fn(a),), {"a": a}

    def jacobian(self, x, state, t=0):
        _, aux = self.step(x, state, t)
        d = _activations.get(self.activation).deriv(aux["a"])
        return (
            (d * self.gamma_hh * self._scale("hh", t))[:, None] * self.weight_hh,
            (d * self.gamma_ih * self._scale("ih", t))[:, None] * self.weight_ih,
        )


def training_rollout(cell, xs, state0=None):
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
        state0 = tuple(jnp.zeros((B, n), cell.dtype) for n in cell.block_sizes)
    else:
        state0 = tuple(jnp.asarray(s, cell.dtype) for s in state0)
        if len(state0) != len(cell.blocks) or any(s.shape != (B, n) for s, n in zip(state0, cell.block_sizes)):
            raise ShapeError(f"state0 must be a tuple of arrays of shapes {[(B, n) for n in cell.block_sizes]}")

    def body(S, x):
        stats = {}

        def norm(u, key):
            y, mu, var = norms.batch_norm(u, eps=cell.eps)
            stats[f"mean_{key}"], stats[f"var_{key}"] = mu, var
            return y

        S2, _ = cell._forward(x, S, norm)
        return S2, (S2, stats)

    _, (ss, stats) = jax.lax.scan(body, state0, jnp.swapaxes(xs, 0, 1))
    states = tuple(jnp.concatenate([s0[:, None], jnp.swapaxes(s, 0, 1)], axis=1) for s0, s in zip(state0, ss))
    return states, stats


def collect_statistics(cell, xs_batch, state0=None):
    """A copy of the BN ``cell`` whose per-step population statistics are the training-mode batch
    statistics of ``xs_batch (B, T, m)`` (so ``max_length`` becomes T). In inference mode the new cell
    reproduces the training-mode outputs on that batch."""
    _, stats = training_rollout(cell, xs_batch, state0)
    return dataclasses.replace(cell, **stats)


# ---------------------------------------------------------------------------------------------
# Builders
# ---------------------------------------------------------------------------------------------


def _check_common(hidden_size, eps):
    if hidden_size < 2:
        raise ConfigError(
            f"hidden_size={hidden_size} is not allowed for a normalised cell: "
            "normalising a single unit is degenerate; use hidden_size >= 2"
        )
    if not (isinstance(eps, (int, float)) and eps > 0):
        raise bad_value("eps", eps, "expected a positive number (e.g. 1e-5)")


def _lstm_weights(key, n, m, dtype, forget_bias):
    k1, k2 = jax.random.split(key)
    bound = 1 / math.sqrt(n)
    bias = jnp.zeros((4 * n,), dtype)
    if forget_bias is not None:
        bias = bias.at[n : 2 * n].set(float(forget_bias))
    return uniform_init(k1, (4 * n, m), bound, dtype), uniform_init(k2, (4 * n, n), bound, dtype), bias


def _norm_lstm(input_size, n, key, dtype, forget_bias, eps, norm, groups):
    _check_common(n, eps)
    w_ih, w_hh, b = _lstm_weights(key, n, input_size, dtype, forget_bias)
    one4, zero4 = jnp.ones((4 * n,), dtype), jnp.zeros((4 * n,), dtype)
    return NormLSTM(
        w_ih,
        w_hh,
        b,
        one4,
        zero4,
        one4,
        zero4,
        jnp.ones((n,), dtype),
        jnp.zeros((n,), dtype),
        input_size=input_size,
        hidden_size=n,
        norm=norm,
        groups=groups,
        eps=float(eps),
    )


@register(
    "ln-rnn",
    "Layer-normalised Elman RNN (Ba et al. 2016 eq. 4)",
    family="normalized",
    equation="h_t = φ(LN(W_hh h_{t-1} + W_xh x_t; g, b))",
)
def build_ln_rnn(
    input_size,
    hidden_size,
    *,
    key,
    dtype=jnp.float32,
    activation="tanh",
    recurrent_init="uniform",
    gain=1.0,
    eps=norms.EPS,
):
    _check_common(hidden_size, eps)
    _activations.get(activation)
    k1, k2 = jax.random.split(key)
    n = hidden_size
    return LNRNN(
        uniform_init(k1, (n, input_size), 1 / math.sqrt(n), dtype),
        recurrent_matrix(k2, n, recurrent_init, gain, dtype),
        jnp.ones((n,), dtype),
        jnp.zeros((n,), dtype),
        input_size=input_size,
        hidden_size=n,
        activation=activation,
        eps=float(eps),
    )


@register(
    "ln-lstm",
    "Layer-normalised LSTM (Ba et al. 2016 eqs. 20-22; gates i,f,g,o)",
    family="normalized",
    equation="z = LN(W_h h) + LN(W_x x) + b, c_t = f⊙c_{t-1} + i⊙g, h_t = o⊙tanh(LN(c_t))",
)
def build_ln_lstm(input_size, hidden_size, *, key, dtype=jnp.float32, forget_bias=None, eps=norms.EPS):
    return _norm_lstm(input_size, hidden_size, key, dtype, forget_bias, eps, "layer", 1)


@register(
    "gn-lstm",
    "Group-normalised LSTM: GN with `groups` groups of the 4n pre-activations",
    family="normalized",
    equation="z = GN_G(W_h h) + GN_G(W_x x) + b, c_t = f⊙c_{t-1} + i⊙g, h_t = o⊙tanh(LN(c_t))",
)
def build_gn_lstm(input_size, hidden_size, *, key, dtype=jnp.float32, groups=2, forget_bias=None, eps=norms.EPS):
    four_n = 4 * hidden_size
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1 or four_n % groups or four_n // groups < 2:
        raise bad_value(
            "groups",
            groups,
            f"expected a divisor of 4*hidden_size={four_n} leaving at least "
            "2 units per group (1 = ln-lstm, 4 = one group per gate = in-lstm)",
        )
    return _norm_lstm(input_size, hidden_size, key, dtype, forget_bias, eps, "group", groups)


@register(
    "in-lstm",
    "'Instance'-normalised LSTM: each gate block normalised on its own (GN with 4 groups)",
    family="normalized",
    equation="z_gate = IN(W_h h)_gate + IN(W_x x)_gate + b, c_t = f⊙c_{t-1} + i⊙g, h_t = o⊙tanh(LN(c_t))",
)
def build_in_lstm(input_size, hidden_size, *, key, dtype=jnp.float32, forget_bias=None, eps=norms.EPS):
    return _norm_lstm(input_size, hidden_size, key, dtype, forget_bias, eps, "instance", 4)


@register(
    "ln-gru",
    "Layer-normalised GRU (Ba et al. 2016 eqs. 23-28; z means write)",
    family="normalized",
    equation="(r,z) = LN(W_h h) + LN(W_x x), ĥ = tanh(LN(W x) + σ(r)⊙LN(U h)), h_t = (1−σ(z))⊙h + σ(z)⊙ĥ",
)
def build_ln_gru(input_size, hidden_size, *, key, dtype=jnp.float32, eps=norms.EPS):
    _check_common(hidden_size, eps)
    n = hidden_size
    k1, k2 = jax.random.split(key)
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
        input_size=input_size,
        hidden_size=n,
        eps=float(eps),
    )


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
    family="normalized",
    equation="z = BN(W_h h; γ_h) + BN(W_x x; γ_x) + b, c_t = f⊙c_{t-1} + i⊙g, h_t = o⊙tanh(BN(c_t; γ_c, β_c))",
)
def build_bn_lstm(
    input_size, hidden_size, *, key, dtype=jnp.float32, gamma=0.1, max_length=100, forget_bias=None, eps=norms.EPS
):
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
        input_size=input_size,
        hidden_size=n,
        eps=float(eps),
    )


@register(
    "bn-rnn",
    "Batch-normalised tanh RNN (BN on W_hh h and W_xh x separately, per-step statistics)",
    family="normalized",
    equation="h_t = tanh(BN(W_hh h_{t-1}; γ) + BN(W_xh x_t; γ) + b)",
)
def build_bn_rnn(
    input_size,
    hidden_size,
    *,
    key,
    dtype=jnp.float32,
    gamma=0.1,
    max_length=100,
    activation="tanh",
    recurrent_init="orthogonal",
    gain=1.0,
    eps=norms.EPS,
):
    n = hidden_size
    _check_bn(gamma, max_length, eps, n)
    _activations.get(activation)
    k1, k2 = jax.random.split(key)
    g = jnp.full((n,), gamma, dtype)
    return BNRNN(
        uniform_init(k1, (n, input_size), 1 / math.sqrt(n), dtype),
        recurrent_matrix(k2, n, recurrent_init, gain, dtype),
        jnp.zeros((n,), dtype),
        g,
        g,
        *_stats(max_length, n, dtype),
        *_stats(max_length, n, dtype),
        input_size=input_size,
        hidden_size=n,
        activation=activation,
        eps=float(eps),
    )
