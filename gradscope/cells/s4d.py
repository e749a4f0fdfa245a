"""S4D, the diagonal state space layer (Gu, Goel, Gupta & Ré 2022, "On the Parameterization and
Initialization of Diagonal State Space Models", NeurIPS 2022).

Each of the H = ``input_size`` channels is its own single-input single-output SSM with N = ``hidden_size``
complex modes (the paper's layout: H × N states, one step size per channel). The continuous system
x'(t) = Λ x(t) + B u(t), y = Re(C x) + D u, discretised by zero-order hold with step Δ_h = exp(log_step_h)
(§3.1, eq. 5), is

    Λ̄   = exp(Λ Δ),   B̄ = Λ⁻¹ (Λ̄ − 1) B                    (elementwise: Λ, B, C are (H, N) complex)
    x_k = Λ̄ ⊙ x_{k−1} + B̄ ⊙ u_k                             (u_k[h] drives the N modes of channel h)
    y_k = Re(Σ_n C_{hn} x_{k,hn}) + D_h u_k[h]               (the layer output, y ∈ ℝᴴ)

S4D-Lin initialisation (§4): Λ_n = −1/2 + iπn (n = 0..N−1), B = 1, C ~ 𝒞𝒩(0, 1), D ~ N(0, 1),
Δ ~ log-uniform on [dt_min, dt_max] = [0.001, 0.1]. The paper's code keeps N/2 modes of a real
N-state system and returns 2·Re(C x) (conjugate pairs); here every mode is carried and the factor 2 is
part of C.

``∂x_k/∂x_{k−1} = diag(Λ̄)`` is constant in time and state: the gradient over a lag τ has spectral norm
max |Λ̄|^τ = max exp(Re Λ · Δ · τ).

Layout (the parameter names of S5, Smith, Warrington & Linderman 2023, split into real and imaginary
parts): ``Lambda_re, Lambda_im, B_re, B_im, C_re, C_im (H, N)``, ``D (H,)``, ``log_step (H,)``. The state
is two real blocks ``("re", "im")`` of size H·N each, channel-major (entry h·N + n is mode n of channel h);
the flat state is ``S = [Re x, Im x]`` and ``∂S'/∂S = [[diag Re Λ̄, −diag Im Λ̄], [diag Im Λ̄, diag Re Λ̄]]``
(``structure = "complex-diagonal"``). ``output(state)`` is Re x; ``readout(state, u)`` is the layer output y
that a `Stack` feeds forward (``output_size == input_size``). Λ is used as stored (no clipping of Re Λ);
Λ = 0 exactly makes B̄ undefined.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from gradscope import _random
from gradscope._errors import ConfigError, check_number
from gradscope.cells._base import Array, Aux, Jacobians, SizedCell, State, pytree_cell
from gradscope.cells._registry import Init, registrar

register = registrar("s4d")  # every cell this module registers is of the s4d family
from gradscope.cells.lru import rotation_scaling


@pytree_cell
class S4D(SizedCell):
    Lambda_re: jax.Array
    Lambda_im: jax.Array
    B_re: jax.Array
    B_im: jax.Array
    C_re: jax.Array
    C_im: jax.Array
    D: jax.Array
    log_step: jax.Array

    blocks = ("re", "im")
    structure = "complex-diagonal"

    @property
    def block_sizes(self) -> tuple[int, ...]:
        hn = self.input_size * self.hidden_size
        return (hn, hn)

    @property
    def output_size(self) -> int:
        """The width of y: one output per channel, the input's width."""
        return self.input_size

    # --- zero-order hold -------------------------------------------------------------------
    def discretise(self) -> tuple[Array, Array]:
        """``(Λ̄, B̄)``, complex ``(H, N)``: Λ̄ = exp(ΛΔ), B̄ = (Λ̄ − 1)/Λ · B (zero-order hold)."""
        lam = jax.lax.complex(self.Lambda_re, self.Lambda_im)
        step = jnp.exp(self.log_step)[:, None]
        lam_bar = jnp.exp(lam * step)
        return lam_bar, (lam_bar - 1.0) / lam * jax.lax.complex(self.B_re, self.B_im)

    def _input_matrix(self, b_bar):
        """∂S'/∂u ``(2HN, H)``: mode (h, n) reads channel h only."""
        H, N = self.input_size, self.hidden_size
        eye = jnp.eye(H, dtype=self.B_re.dtype)
        place = lambda b: (b[:, :, None] * eye[:, None, :]).reshape(H * N, H)  # noqa: E731
        return jnp.concatenate([place(b_bar.real), place(b_bar.imag)], axis=0)

    # --- the step --------------------------------------------------------------------------
    def __call__(self, x: Array, state: State) -> tuple[State, Aux]:
        re, im = state
        lam_bar, b_bar = self.discretise()
        lr, li = lam_bar.real.reshape(-1), lam_bar.imag.reshape(-1)
        bu = (b_bar * x[:, None]).reshape(-1)
        new = (lr * re - li * im + bu.real, li * re + lr * im + bu.imag)
        return new, {"bu_re": bu.real, "bu_im": bu.imag, "y": self.readout(new, x)}

    def readout(self, state: Sequence[Array], x: Array) -> Array:
        """y_h = Σ_n (C_re Re x − C_im Im x)_{hn} + D_h u_h."""
        H, N = self.input_size, self.hidden_size
        re, im = (s.reshape(H, N) for s in state)
        return jnp.sum(self.C_re * re - self.C_im * im, axis=1) + self.D * x

    def readout_jacobian(self, state: Sequence[Array], x: Array) -> tuple[Array, Array]:
        """``(∂y/∂S (H, 2HN), ∂y/∂u = diag(D))``: channel h reads its own N modes."""
        del state, x
        H, N = self.input_size, self.hidden_size
        eye = jnp.eye(H, dtype=self.C_re.dtype)
        place = lambda c: (eye[:, :, None] * c[None, :, :]).reshape(H, H * N)  # noqa: E731
        return jnp.concatenate([place(self.C_re), place(-self.C_im)], axis=1), jnp.diag(self.D)

    # --- Jacobians -------------------------------------------------------------------------
    def jacobian_diag(self, x: Array, state: State, t: Any = None) -> tuple[Array, Array]:
        """``(Λ̄ (HN,) complex, ∂S'/∂u (2HN, H))``; both constant in time and state."""
        lam_bar, b_bar = self.discretise()
        return lam_bar.reshape(-1), self._input_matrix(b_bar)

    def jacobian(self, x: Array, state: State, t: Any = None) -> Jacobians:
        lam_bar, b_bar = self.discretise()
        lam_bar = lam_bar.reshape(-1)
        return rotation_scaling(lam_bar.real, lam_bar.imag), self._input_matrix(b_bar)


@register(
    "s4d",
    "S4D (Gu et al. 2022): per-channel diagonal SSM, zero-order hold, S4D-Lin init Λ_n = −1/2 + iπn",
    equation="x_k = exp(ΛΔ)⊙x_{k-1} + Λ⁻¹(exp(ΛΔ)−1)B⊙u_k, y_k = Re(C x_k) + D⊙u_k",
)
def build_s4d(init: Init, *, dt_min: float = 0.001, dt_max: float = 0.1) -> S4D:
    """``input_size`` channels H, each with ``hidden_size`` complex modes N (state 2·H·N real numbers);
    the step Δ_h is log-uniform on ``[dt_min, dt_max]``."""
    input_size, hidden_size, key, dtype = init
    dt_min = check_number("dt_min", dt_min, positive=True)
    dt_max = check_number("dt_max", dt_max, positive=True)
    if not dt_min <= dt_max:
        raise ConfigError(f"dt_min={dt_min!r} is not allowed: it must not exceed dt_max={dt_max!r}")
    H, N = input_size, hidden_size
    kc1, kc2, kd, ks = _random.split_keys(key, 4)
    c_scale = math.sqrt(0.5)  # C ~ 𝒞𝒩(0, 1): variance 1/2 per real and imaginary part
    return S4D(
        Lambda_re=jnp.full((H, N), -0.5, dtype),
        Lambda_im=jnp.broadcast_to(math.pi * jnp.arange(N, dtype=dtype), (H, N)),
        B_re=jnp.ones((H, N), dtype),
        B_im=jnp.zeros((H, N), dtype),
        C_re=c_scale * jax.random.normal(kc1, (H, N), dtype),
        C_im=c_scale * jax.random.normal(kc2, (H, N), dtype),
        D=jax.random.normal(kd, (H,), dtype),
        log_step=_random.uniform(ks, (H,), dtype, math.log(dt_min), math.log(dt_max)),
        input_size=H,
        hidden_size=N,
    )
