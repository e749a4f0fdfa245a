"""Selective state-space cores: Mamba (S6) and Mamba-2.

Mamba — Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces" (Alg. 2,
§3.5.2), on D channels with N states each; u_t ∈ ℝᴰ is the SSM's input (see "What the cell covers")::

    [δ_t, B_t, C_t] = W_x u_t                       δ ∈ ℝᴿ (R = dt_rank), B_t, C_t ∈ ℝᴺ
    Δ_t  = softplus(W_Δ δ_t + b_Δ)                  ∈ ℝᴰ   (W_Δ W_x[:R] is the low-rank Δ projection)
    A    = −exp(A_log)                              (D, N), input-independent
    h_t  = exp(Δ_t A) ⊙ h_{t−1} + (Δ_t ⊙ u_t) B_tᵀ  (D, N)  (zero-order hold on A, Euler on B)
    y_t  = h_t C_t + D ⊙ u_t                        ∈ ℝᴰ   (the layer output, `readout`)

Mamba-2 — Dao & Gu 2024, "Transformers are SSMs: Generalized Models and Efficient Algorithms Through
Structured State Space Duality" (§7, the SSD layer): H heads of P channels (D = H·P), G groups of N states,
head h reading group g(h) = h ÷ (H/G); one *scalar* decay per head::

    Δ_{t,h} = clip(softplus(dt_{t,h} + dt_bias_h), time_step_limit),   A_h = −exp(A_log_h)
    h_{t,h} = exp(Δ_{t,h} A_h) · h_{t−1,h} + Δ_{t,h} x_{t,h} B_{t,g(h)}ᵀ     (P, N) per head
    y_{t,h} = h_{t,h} C_{t,g(h)} + D_h x_{t,h}                                ∈ ℝᴾ

Both step Jacobians are exactly diagonal (``structure = "diagonal"``, `jacobian_diag`): ∂h_t/∂h_{t−1} =
diag(exp(Δ_t A)) (Mamba) and exp(Δ_{t,h} A_h)·I per head (Mamba-2). Δ_t depends on the input only, never on
the state, so ∂h_T/∂h_k = diag(exp(Σ_{j=k+1..T} Δ_j A)): forgetting is input-dependent and state-independent.

What the cell covers (both cells). The reference mixer block (transformers' ``MambaMixer`` /
``Mamba2Mixer``) is ``in_proj → short causal depthwise conv1d (kernel K) → SiLU → SSM → output gate →
out_proj``. The cell is the SSM core only, from u_t (the conv1d + SiLU output) to y_t. The conv, the SiLU,
the gate y ⊙ SiLU(z_t) (z_t a slice of in_proj(x_t)) and, in Mamba-2, the gated grouped RMSNorm
``norm(y ⊙ SiLU(z))`` are the block's *input map* and *output map*: they read the block inputs
x_{t−K+1..t} and y_t, never h. For ONE block, then, ∂h_t/∂h_k is exactly the product of the diagonals
above, whatever the conv and the gate do. The true recurrent state of the whole block is h plus the conv's
window of the last K−1 in_proj outputs (a shift register); the window only enters through u_t, so it adds
paths from *inputs* to h but no h → h path. Caveat for stacks: in a real L-layer Mamba, layer l+1's u_t
reads layer l's outputs at steps t−K+1..t through its conv, so the exact ∂S_t/∂S_k of the whole network
also runs through the conv windows (K−1 steps of extra memory per layer) and through gate, out_proj,
RMSNorm and residual. A gradscope `Stack` of these cores chains y_l → u_{l+1} directly: its per-layer h → h
blocks have the same diagonal form, but its cross-layer paths are those of that simpler network, not of the
reference model (analyse a trained model layer by layer on each layer's own u, see `gradscope.io.mamba`).

Sizes: ``input_size`` = the channels that u_t carries, ``hidden_size`` = N (``state_size`` of the
reference config), ``output_size`` = D; the state is one block ``h`` of D·N.

Layout (transformers' parameter names, dots → underscores). Mamba: ``A_log (D, N)``, ``D (D,)``,
``x_proj_weight (R + 2N, D)`` (rows δ, B, C), ``dt_proj_weight (D, R)``, ``dt_proj_bias (D,)``; flat state
``h[d·N + n]`` (the reference's ``ssm_state[d, n]``). Mamba-2: ``A_log (H,)``, ``D (H,)``, ``dt_bias (H,)``;
input u = [x (H·P), B (G·N), C (G·N), dt (H)], the reference's conv output ``hidden_states_B_C`` followed by
the raw ``dt`` slice of in_proj; flat state ``h[(h·P + p)·N + n]`` (``ssm_state[h, p, n]``). The registry's
``mamba2`` needs an input of any width, so it adds ``in_proj_weight (D + 2GN + H, D)``: u = [SiLU(W_xBC x),
W_dt x], the reference mixer with a width-1 conv folded into in_proj (``in_proj_weight = None``: u is given).

Initialisation as the reference: A_log = log(1..N) per channel (Mamba) / log(1..H) (Mamba-2), D = 1,
dt = exp(U(log dt_min, log dt_max)) floored at dt_floor and stored as its inverse softplus; Mamba's
W_Δ ~ U(±dt_scale/√R) (``dt_init="random"``) or constant dt_scale/√R, W_x and in_proj ~ U(±1/√fan_in).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike

from gradscope import _random
from gradscope._errors import ConfigError, bad_value, check_clip_range, check_number, check_positive_int
from gradscope.cells._base import Array, Aux, DiagonalCell, SizedCell, State, pytree_cell, static, uniform_init
from gradscope.cells._registry import Init, registrar

register = registrar("mamba")  # every cell this module registers is of the mamba family


def _silu(z):
    return z * jax.nn.sigmoid(z)


def _dsilu(z):
    s = jax.nn.sigmoid(z)
    return s * (1 + z * (1 - s))


def _cell_diag_rows(C, rows):
    """``(rows, rows·N)``: row r holds C[r] at columns r·N..r·N+N−1 (∂(h C)/∂h for a flat (rows, N) h)."""
    return (jnp.eye(rows, dtype=C.dtype)[:, :, None] * C[:, None, :]).reshape(rows, -1)


class _SelectiveSSM(DiagonalCell, SizedCell):
    """What both cores share: ``channels`` of ``hidden_size`` (N) states each, the flat state h (channels·N),
    and the layer output y_t of width ``channels`` (`readout`)."""

    @property
    def channels(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def block_sizes(self) -> tuple[int, ...]:
        return (self.channels * self.hidden_size,)

    @property
    def output_size(self) -> int:
        """The width of y_t = h_t C_t + D ⊙ u_t: the channels."""
        return self.channels


@pytree_cell
class Mamba(_SelectiveSSM):
    """The Mamba (S6) selective SSM core; see the module docstring."""

    A_log: jax.Array
    D: jax.Array
    x_proj_weight: jax.Array
    dt_proj_weight: jax.Array
    dt_proj_bias: jax.Array
    dt_rank: int = static()

    @property
    def channels(self) -> int:
        """The D channels of u_t (``input_size``)."""
        return self.input_size

    def _select(self, u):
        """The input-dependent ("selective") parameters: Δ's pre-activation, Δ, exp(ΔA), B, C."""
        R, N = self.dt_rank, self.hidden_size
        p = self.x_proj_weight @ u
        pre = self.dt_proj_weight @ p[:R] + self.dt_proj_bias
        dt = jax.nn.softplus(pre)
        a = jnp.exp(dt[:, None] * -jnp.exp(self.A_log))
        return pre, dt, a, p[R : R + N], p[R + N :]

    def __call__(self, x: Array, state: State) -> tuple[State, Aux]:
        (h,) = state
        _, dt, a, B, C = self._select(x)
        h2 = a * h.reshape(a.shape) + (dt * x)[:, None] * B[None, :]
        return (h2.reshape(-1),), {"dt": dt, "B": B, "C": C}

    def readout(self, state: Sequence[Array], x: Array) -> Array:
        """y = h C + D ⊙ u (D,): the SSM output before the block's gate."""
        (h,) = state
        C = self.x_proj_weight[self.dt_rank + self.hidden_size :] @ x
        return h.reshape(self.input_size, self.hidden_size) @ C + self.D * x

    def readout_jacobian(self, state: Sequence[Array], x: Array) -> tuple[Array, Array]:
        """``(∂y/∂h = I_D ⊗ C_tᵀ (D, D·N), ∂y/∂u = h W_C + diag(D) (D, D))``."""
        (h,) = state
        WC = self.x_proj_weight[self.dt_rank + self.hidden_size :]
        C = jnp.broadcast_to(WC @ x, (self.input_size, self.hidden_size))
        return _cell_diag_rows(C, self.input_size), h.reshape(C.shape) @ WC + jnp.diag(self.D)

    def jacobian_diag(self, x: Array, state: State, t: Any = None) -> tuple[Array, Array]:
        """``(exp(Δ_t A) flat (D·N,), ∂h_t/∂u_t (D·N, D))``.

        With h'_{dn} = exp(Δ_d A_dn) h_dn + Δ_d u_d B_n: ∂h'_{dn}/∂u_j = (A_dn e^{Δ_d A_dn} h_dn + u_d B_n)
        ∂Δ_d/∂u_j + Δ_d B_n [d = j] + Δ_d u_d ∂B_n/∂u_j, ∂Δ/∂u = diag(σ(pre)) W_Δ W_x[:R], ∂B/∂u = W_x[R:R+N].
        """
        (h,) = state
        R, N, Dn = self.dt_rank, self.hidden_size, self.input_size
        pre, dt, a, B, _ = self._select(x)
        A = -jnp.exp(self.A_log)
        ddt = jax.nn.sigmoid(pre)[:, None] * (self.dt_proj_weight @ self.x_proj_weight[:R])  # (D, D)
        coef = A * a * h.reshape(Dn, N) + x[:, None] * B[None, :]  # ∂h'/∂Δ (D, N)
        jx = coef[:, :, None] * ddt[:, None, :]
        jx = jx + (dt[:, None] * B[None, :])[:, :, None] * jnp.eye(Dn, dtype=x.dtype)[:, None, :]
        jx = jx + (dt * x)[:, None, None] * self.x_proj_weight[R : R + N][None, :, :]
        return a.reshape(-1), jx.reshape(Dn * N, Dn)


@pytree_cell
class Mamba2(_SelectiveSSM):
    """The Mamba-2 (SSD) SSM core, scalar decay per head; see the module docstring."""

    A_log: jax.Array
    D: jax.Array
    dt_bias: jax.Array
    in_proj_weight: jax.Array | None  # None: the input is u itself (an imported reference mixer)
    num_heads: int = static()
    head_dim: int = static()
    n_groups: int = static(default=1)
    time_step_limit: tuple | None = static(default=None)  # (lo, hi) clip of Δ; None: no clip (the reference's (0, ∞))

    @property
    def channels(self) -> int:
        """The H·P channels (heads × head_dim)."""
        return self.num_heads * self.head_dim

    def _groups(self):
        return np.arange(self.num_heads) // (self.num_heads // self.n_groups)  # g(h), static

    def _u(self, x):
        """``(u, ∂u/∂x or None)``: the SSM input, through the registry's in_proj + SiLU when present."""
        if self.in_proj_weight is None:
            return x, None
        cd = self.channels + 2 * self.n_groups * self.hidden_size
        z = self.in_proj_weight @ x
        u = jnp.concatenate([_silu(z[:cd]), z[cd:]])
        return u, jnp.concatenate([_dsilu(z[:cd])[:, None] * self.in_proj_weight[:cd], self.in_proj_weight[cd:]])

    def _split(self, u):
        """x (H, P), B and C per head (H, N), raw dt (H,)."""
        H, P, G, N = self.num_heads, self.head_dim, self.n_groups, self.hidden_size
        i = H * P
        g = self._groups()
        B = u[i : i + G * N].reshape(G, N)[g]
        C = u[i + G * N : i + 2 * G * N].reshape(G, N)[g]
        return u[:i].reshape(H, P), B, C, u[i + 2 * G * N :]

    def _dt(self, dt_raw):
        """``(Δ, ∂Δ/∂dt)`` per head: softplus then the optional clip (derivative 0 where clipped)."""
        pre = dt_raw + self.dt_bias
        dt = jax.nn.softplus(pre)
        d = jax.nn.sigmoid(pre)
        if self.time_step_limit is not None:
            lo, hi = self.time_step_limit
            d = jnp.where((dt >= lo) & (dt <= hi), d, 0.0)
            dt = jnp.clip(dt, lo, hi)
        return dt, d

    def __call__(self, x: Array, state: State) -> tuple[State, Aux]:
        (h,) = state
        u, _ = self._u(x)
        X, B, C, dt_raw = self._split(u)
        dt, _ = self._dt(dt_raw)
        a = jnp.exp(dt * -jnp.exp(self.A_log))
        hs = h.reshape(X.shape + (self.hidden_size,))
        h2 = a[:, None, None] * hs + (dt[:, None] * X)[:, :, None] * B[:, None, :]
        return (h2.reshape(-1),), {"dt": dt}

    def readout(self, state: Sequence[Array], x: Array) -> Array:
        """y_h = h_h C_{g(h)} + D_h x_h, flat (H·P,): the SSM output before the gated RMSNorm."""
        (h,) = state
        X, _, C, _ = self._split(self._u(x)[0])
        hs = h.reshape(X.shape + (self.hidden_size,))
        return (jnp.einsum("hpn,hn->hp", hs, C) + self.D[:, None] * X).reshape(-1)

    def readout_jacobian(self, state: Sequence[Array], x: Array) -> tuple[Array, Array]:
        """``(∂y/∂h (HP, HPN), ∂y/∂x)``: y reads x (through D) and C; B and dt enter only via the state."""
        (h,) = state
        H, P, G, N = self.num_heads, self.head_dim, self.n_groups, self.hidden_size
        u, du = self._u(x)
        X, _, C, _ = self._split(u)
        Ry = _cell_diag_rows(jnp.repeat(C, P, axis=0), H * P)
        hs = h.reshape(H, P, N)
        onehot = jnp.asarray(self._groups()[:, None] == np.arange(G)[None, :], x.dtype)  # (H, G)
        dC = jnp.einsum("hpn,hg,nm->hpgm", hs, onehot, jnp.eye(N, dtype=x.dtype)).reshape(H * P, G * N)
        dX = jnp.diag(jnp.repeat(self.D, P))
        Ru = jnp.concatenate([dX, jnp.zeros((H * P, G * N), x.dtype), dC, jnp.zeros((H * P, H), x.dtype)], 1)
        return Ry, Ru if du is None else Ru @ du

    def jacobian_diag(self, x: Array, state: State, t: Any = None) -> tuple[Array, Array]:
        """``(exp(Δ_h A_h) repeated over each head's P·N entries, ∂h_t/∂x_t)``.

        h'_{hpn} = e^{Δ_h A_h} h_{hpn} + Δ_h x_{hp} B_{g(h)n}: ∂/∂x_{hp} = Δ_h B_{g(h)n}, ∂/∂B_{gn} = Δ_h x_{hp}
        [g = g(h)], ∂/∂dt_h = ∂Δ_h/∂dt_h · (A_h e^{Δ_h A_h} h_{hpn} + x_{hp} B_{g(h)n}), ∂/∂C = 0.
        """
        (h,) = state
        H, P, G, N = self.num_heads, self.head_dim, self.n_groups, self.hidden_size
        u, du = self._u(x)
        X, B, _, dt_raw = self._split(u)
        dt, ddt = self._dt(dt_raw)
        A = -jnp.exp(self.A_log)
        a = jnp.exp(dt * A)
        hs = h.reshape(H, P, N)
        eH, eP, eN = (jnp.eye(k, dtype=x.dtype) for k in (H, P, N))
        onehot = jnp.asarray(self._groups()[:, None] == np.arange(G)[None, :], x.dtype)
        jX = jnp.einsum("h,hn,hk,pq->hpnkq", dt, B, eH, eP).reshape(H * P * N, H * P)
        jB = jnp.einsum("h,hp,hg,nm->hpngm", dt, X, onehot, eN).reshape(H * P * N, G * N)
        coef = A[:, None, None] * a[:, None, None] * hs + X[:, :, None] * B[:, None, :]
        jdt = (ddt[:, None, None, None] * coef[..., None] * eH[:, None, None, :]).reshape(H * P * N, H)
        jx = jnp.concatenate([jX, jB, jnp.zeros((H * P * N, G * N), x.dtype), jdt], axis=1)
        return jnp.repeat(a, P * N), jx if du is None else jx @ du


# ----------------------------------------------------------------------------------- builders
def dt_bias_init(key: Array, n: int, dt_min: float, dt_max: float, dt_floor: float, dtype: DTypeLike) -> Array:
    """The reference's Δ bias: dt = exp(U(log dt_min, log dt_max)), floored, as its inverse softplus
    dt + log(−expm1(−dt)), so that softplus(bias) = dt at init."""
    r = _random.uniform(key, (n,), dtype)
    dt = jnp.maximum(jnp.exp(r * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)), dt_floor)
    return dt + jnp.log(-jnp.expm1(-dt))


def _check_dt(dt_min, dt_max, dt_floor):
    dt_min = check_number("dt_min", dt_min, positive=True)
    dt_max = check_number("dt_max", dt_max, positive=True)
    check_number("dt_floor", dt_floor, nonnegative=True)
    if not dt_min <= dt_max:
        raise ConfigError(f"dt_min={dt_min!r} is not allowed: it must not exceed dt_max={dt_max!r}")


@register(
    "mamba",
    "Mamba selective SSM core (Gu & Dao 2023): input-dependent diagonal decay exp(Δ_t A), N states per channel",
    equation="Δ_t = softplus(W_Δ u_t + b), h_t = exp(Δ_t A)⊙h_{t−1} + Δ_t u_t B_tᵀ, y_t = h_t C_t + D⊙u_t",
)
def build_mamba(
    init: Init,
    *,
    dt_rank: int | None = None,
    dt_min: float = 0.001,
    dt_max: float = 0.1,
    dt_floor: float = 0.0001,
    dt_scale: float = 1.0,
    dt_init: str = "random",
) -> Mamba:
    """D = ``input_size`` channels, N = ``hidden_size`` states each. ``dt_rank`` (R) defaults to ⌈D/32⌉, the
    reference's ⌈d_model/16⌉ with its expansion D = 2·d_model; ``dt_init`` "random" or "constant" (W_Δ)."""
    input_size, hidden_size, key, dtype = init
    Dn, N = input_size, hidden_size
    R = max(1, math.ceil(Dn / 32)) if dt_rank is None else check_positive_int("dt_rank", dt_rank)
    _check_dt(dt_min, dt_max, dt_floor)
    dt_scale = check_number("dt_scale", dt_scale, positive=True)
    if dt_init not in ("random", "constant"):
        raise bad_value("dt_init", dt_init, "use 'random' or 'constant'")
    kx, kw, kb = _random.split_keys(key, 3)
    std = dt_scale / math.sqrt(R)
    w_dt = uniform_init(kw, (Dn, R), std, dtype) if dt_init == "random" else jnp.full((Dn, R), std, dtype)
    return Mamba(
        A_log=jnp.log(jnp.broadcast_to(jnp.arange(1, N + 1, dtype=dtype), (Dn, N))),
        D=jnp.ones((Dn,), dtype),
        x_proj_weight=uniform_init(kx, (R + 2 * N, Dn), 1 / math.sqrt(Dn), dtype),
        dt_proj_weight=w_dt,
        dt_proj_bias=dt_bias_init(kb, Dn, dt_min, dt_max, dt_floor, dtype),
        input_size=Dn,
        hidden_size=N,
        dt_rank=R,
    )


@register(
    "mamba2",
    "Mamba-2 SSD core (Dao & Gu 2024): one scalar decay exp(Δ_t A_h) per head, N states per channel",
    equation="Δ_t = softplus(dt_t + b), h_{t,h} = exp(Δ_{t,h} A_h)·h_{t−1,h} + Δ_{t,h} x_{t,h} B_tᵀ, "
    "y_{t,h} = h_{t,h} C_t + D_h x_{t,h}",
)
def build_mamba2(
    init: Init,
    *,
    heads: int = 1,
    groups: int = 1,
    dt_min: float = 0.001,
    dt_max: float = 0.1,
    dt_floor: float = 0.0001,
    time_step_limit: tuple[float, float] | None = None,
) -> Mamba2:
    """D = ``input_size`` channels in ``heads`` heads (P = D/heads), N = ``hidden_size`` states, ``groups``
    groups of B, C; the input x ∈ ℝᴰ is mapped to u by ``in_proj_weight`` (+ SiLU on x, B, C)."""
    input_size, hidden_size, key, dtype = init
    Dn, N = input_size, hidden_size
    H = check_positive_int("heads", heads)
    G = check_positive_int("groups", groups)
    if Dn % H:
        raise bad_value("heads", heads, f"expected a divisor of input_size={Dn} (the channels split into heads)")
    if H % G:
        raise bad_value("groups", groups, f"expected a divisor of heads={H}")
    _check_dt(dt_min, dt_max, dt_floor)
    limit = check_clip_range("time_step_limit", time_step_limit)
    kp, kb = _random.split_keys(key)
    return Mamba2(
        A_log=jnp.log(jnp.arange(1, H + 1, dtype=dtype)),
        D=jnp.ones((H,), dtype),
        dt_bias=dt_bias_init(kb, H, dt_min, dt_max, dt_floor, dtype),
        in_proj_weight=uniform_init(kp, (Dn + 2 * G * N + H, Dn), 1 / math.sqrt(Dn), dtype),
        input_size=Dn,
        hidden_size=N,
        num_heads=H,
        head_dim=Dn // H,
        n_groups=G,
        time_step_limit=limit,
    )
