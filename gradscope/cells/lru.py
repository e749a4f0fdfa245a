"""LRU, the Linear Recurrent Unit (Orvieto, Smith, Gu, Fernando, Gulcehre, Pascanu & De 2023,
"Resurrecting Recurrent Neural Networks for Long Sequences", ICML 2023).

A complex diagonal linear recurrence with an exponential parameterisation of its eigenvalues and a
normalisation of its input:

    λ   = exp(−exp(ν_log) + i·exp(θ_log))                      (§3.3: |λ| = exp(−exp(ν_log)) < 1 always)
    γ   = exp(γ_log),  initialised to √(1 − |λ|²)               (§3.4: keeps E|h|² ≈ E|x|² at init)
    h_t = λ ⊙ h_{t−1} + γ ⊙ (B x_t),       B = B_re + i·B_im   (h ∈ ℂⁿ)
    y_t = Re(C h_t) + D ⊙ x_t,             C = C_re + i·C_im   (the layer output, y ∈ ℝᵐ)

``∂h_t/∂h_{t−1} = diag(λ)`` does not depend on the state or the input, so ∂h_T/∂h_k = diag(λ^{T−k}) and the
gradient over a lag τ has spectral norm max_n |λ_n|^τ exactly. With ``normalise=False`` (γ = 1) the input
is not scaled down as |λ| → 1: the "curse of memory" of Zucchet & Orvieto 2024 ("Recurrent neural networks:
vanishing and exploding gradients are not the end of the story", NeurIPS 2024).

Layout (the parameter names of the paper's Flax reference code, Appendix A):

* ``nu_log (n,)``, ``theta_log (n,)``, ``gamma_log (n,)``;
* ``B_re, B_im (n, m)``; ``C_re, C_im (p, n)``; ``D (m,)`` — a vector multiplying x elementwise, so the
  layer output has the input's width, p = m (the paper's LRU block, H → H, and what `make` builds). An
  imported model may instead carry a matrix ``D (p, m)`` (y = Re(C h) + D x, any output width p, as in the
  ``lru-pytorch`` package); ``output_size`` is p either way;
* state: two real blocks ``("re", "im")`` of size n each, ``re = Re h`` and ``im = Im h``; the flat state
  is ``S = [Re h, Im h]`` and ``∂S'/∂S = [[diag Re λ, −diag Im λ], [diag Im λ, diag Re λ]]``
  (``structure = "complex-diagonal"``).

``output(state)`` is the first block (Re h); the layer output y that a `Stack` feeds forward is
``readout(state, x)``, which also reads the step's input x.

Initialisation (Appendix A): |λ|² ~ U(r_min², r_max²) (λ uniform on the ring r_min ≤ |λ| ≤ r_max),
arg λ ~ U(0, max_phase); B ~ N(0, 1/(2m)) per real and imaginary part, C ~ N(0, 1/n), D ~ N(0, 1). The
defaults r_min = 0, r_max = 1, max_phase = 6.28 are those of the paper's code; its long-range experiments
use r_min = 0.9, r_max = 0.999 and a smaller max_phase.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from gradscope import _random
from gradscope._errors import ConfigError, check_bool, check_number
from gradscope.cells._base import Array, Aux, Jacobians, SizedCell, State, pytree_cell, static
from gradscope.cells._registry import Init, registrar

register = registrar("lru")  # every cell this module registers is of the lru family

if TYPE_CHECKING:
    from jaxtyping import Float


def rotation_scaling(lam_re: Float[Array, " n"], lam_im: Float[Array, " n"]) -> Float[Array, "2n 2n"]:
    """The real ``(2n, 2n)`` form ``[[diag Re λ, −diag Im λ], [diag Im λ, diag Re λ]]`` of ``h ↦ λ ⊙ h``
    acting on ``[Re h, Im h]``."""
    return jnp.block([[jnp.diag(lam_re), -jnp.diag(lam_im)], [jnp.diag(lam_im), jnp.diag(lam_re)]])


@pytree_cell
class LRU(SizedCell):
    nu_log: jax.Array
    theta_log: jax.Array
    gamma_log: jax.Array
    B_re: jax.Array
    B_im: jax.Array
    C_re: jax.Array
    C_im: jax.Array
    D: jax.Array
    normalise: bool = static(default=True)

    blocks = ("re", "im")
    structure = "complex-diagonal"

    @property
    def output_size(self) -> int:
        """The width p of y = Re(C h) + D x: the input's for a vector D (the LRU block maps H channels to H)."""
        return self.C_re.shape[0]

    # --- the parameterisation ------------------------------------------------------------
    def lam(self) -> tuple[Array, Array]:
        """``(Re λ, Im λ)``, each ``(n,)``: λ = exp(−exp(ν_log)) · e^{i·exp(θ_log)}."""
        mod = jnp.exp(-jnp.exp(self.nu_log))
        theta = jnp.exp(self.theta_log)
        return mod * jnp.cos(theta), mod * jnp.sin(theta)

    def gamma(self) -> Array:
        """The input normalisation γ (n,): exp(γ_log), or 1 with ``normalise=False``."""
        return jnp.exp(self.gamma_log) if self.normalise else jnp.ones_like(self.gamma_log)

    def _drive(self, x):
        g = self.gamma()
        return g * (self.B_re @ x), g * (self.B_im @ x)

    # --- the step --------------------------------------------------------------------------
    def __call__(self, x: Array, state: State) -> tuple[State, Aux]:
        re, im = state
        lr, li = self.lam()
        bre, bim = self._drive(x)
        # (lr + i li)(re + i im) + γ B x, in real arithmetic
        new = (lr * re - li * im + bre, li * re + lr * im + bim)
        return new, {"bx_re": bre, "bx_im": bim, "y": self.readout(new, x)}

    def readout(self, state: Sequence[Array], x: Array) -> Array:
        """y = Re(C h) + D ⊙ x = C_re Re h − C_im Im h + D ⊙ x (D x for a matrix D)."""
        re, im = state
        skip = self.D * x if self.D.ndim == 1 else self.D @ x
        return self.C_re @ re - self.C_im @ im + skip

    def readout_jacobian(self, state: Sequence[Array], x: Array) -> tuple[Array, Array]:
        """``(∂y/∂S = [C_re, −C_im] (p, 2n), ∂y/∂x = diag(D) or D (p, m))``."""
        del state, x
        dx = jnp.diag(self.D) if self.D.ndim == 1 else self.D
        return jnp.concatenate([self.C_re, -self.C_im], axis=1), dx

    # --- Jacobians -------------------------------------------------------------------------
    def jacobian_diag(self, x: Array, state: State, t: Any = None) -> tuple[Array, Array]:
        """``(λ (n,) complex, ∂S'/∂x = [γ⊙B_re; γ⊙B_im] (2n, m))``; both constant in time and state."""
        lr, li = self.lam()
        g = self.gamma()[:, None]
        return jax.lax.complex(lr, li), jnp.concatenate([g * self.B_re, g * self.B_im], axis=0)

    def jacobian(self, x: Array, state: State, t: Any = None) -> Jacobians:
        lr, li = self.lam()
        g = self.gamma()[:, None]
        return rotation_scaling(lr, li), jnp.concatenate([g * self.B_re, g * self.B_im], axis=0)


def init_lambda(
    key: Array, n: int, r_min: float, r_max: float, max_phase: float, dtype: DTypeLike
) -> tuple[Array, Array]:
    """``(nu_log, theta_log)`` with |λ|² ~ U(r_min², r_max²) and arg λ ~ U(0, max_phase) (Appendix A)."""
    k1, k2 = _random.split_keys(key)
    # u > 0: u = 0 would give log(0) (an infinite nu_log with r_min = 0, or theta_log = −inf)
    tiny = float(jnp.finfo(dtype).eps)
    u1 = _random.uniform(k1, (n,), dtype, tiny, 1.0)
    u2 = _random.uniform(k2, (n,), dtype, tiny, 1.0)
    nu = -0.5 * jnp.log(u1 * (r_max**2 - r_min**2) + r_min**2)
    return jnp.log(nu), jnp.log(max_phase * u2)


def gamma_log_init(nu_log: Array) -> Array:
    """log √(1 − |λ|²) with |λ|² = exp(−2ν): ½ log(−expm1(−2ν)), accurate as |λ| → 1."""
    return 0.5 * jnp.log(-jnp.expm1(-2.0 * jnp.exp(nu_log)))


@register(
    "lru",
    "LRU (Orvieto et al. 2023): complex diagonal linear recurrence, λ on a ring, normalised input",
    equation="h_t = λ⊙h_{t-1} + γ⊙(B x_t), λ = exp(−exp(ν)+i·exp(θ)), y_t = Re(C h_t) + D⊙x_t",
)
def build_lru(
    init: Init, *, r_min: float = 0.0, r_max: float = 1.0, max_phase: float = 6.28, normalise: bool = True
) -> LRU:
    """λ uniform on the ring ``r_min ≤ |λ| ≤ r_max`` with phase in ``[0, max_phase]``; ``normalise=False``
    fixes γ = 1 (no input normalisation)."""
    input_size, hidden_size, key, dtype = init
    r_min = check_number("r_min", r_min, nonnegative=True)
    r_max = check_number("r_max", r_max, positive=True)
    max_phase = check_number("max_phase", max_phase, positive=True)
    check_bool("normalise", normalise)
    if r_max > 1.0:
        raise ConfigError(f"r_max={r_max!r} is not allowed: |λ| ≤ 1 (the parameterisation cannot exceed 1)")
    if not r_min <= r_max:
        raise ConfigError(f"r_min={r_min!r} is not allowed: it must not exceed r_max={r_max!r}")
    if r_min >= 1.0:
        raise ConfigError(f"r_min={r_min!r} is not allowed: use r_min < 1 (|λ| = 1 means ν = 0, log ν = −∞)")
    m, n = input_size, hidden_size
    kl, kb1, kb2, kc1, kc2, kd = _random.split_keys(key, 6)
    nu_log, theta_log = init_lambda(kl, n, r_min, r_max, max_phase, dtype)
    sb, sc = 1.0 / math.sqrt(2 * m), 1.0 / math.sqrt(n)
    return LRU(
        nu_log=nu_log,
        theta_log=theta_log,
        gamma_log=gamma_log_init(nu_log),
        B_re=sb * jax.random.normal(kb1, (n, m), dtype),
        B_im=sb * jax.random.normal(kb2, (n, m), dtype),
        C_re=sc * jax.random.normal(kc1, (m, n), dtype),
        C_im=sc * jax.random.normal(kc2, (m, n), dtype),
        D=jax.random.normal(kd, (m,), dtype),
        **init.sizes,
        normalise=normalise,
    )
