"""minimalRNN (Chen 2017, arXiv 1711.06788; Chen, Pennington & Schoenholz, ICML 2018).

    z_t = Φ(x_t) = tanh(W_x x_t + b_z)                  input embedding, no recurrence
    u_t = σ(U_h h_{t-1} + U_z z_t + b_u)                update gate
    h_t = u_t ⊙ h_{t-1} + (1 − u_t) ⊙ z_t

The step Jacobian is ``∂h_t/∂h_{t-1} = diag(u_t) + diag((h_{t-1} − z_t) ⊙ σ'(·)) U_h``: the gate
highway ``diag(u_t)`` (`direct_path`) plus one rank-limited correction through the gate. Chen et al.
show that the gate bias μ_b, which pushes u → 1, gives long memory and the broad trainable region of
gated nets (Chen, Pennington & Schoenholz 2018; see docs/references.md); the option ``gate_bias`` adds μ_b to ``b_u``.

Layout (gradscope's own): ``weight_x (n, m)``, ``weight_uh (n, n)``, ``weight_uz (n, n)``,
``bias_z (n,)``, ``bias_u (n,)``; everything initialised U(±1/√n), then ``b_u += gate_bias``.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from gradscope import _random
from gradscope._errors import bad_value
from gradscope.cells._activations import sig
from gradscope.cells._base import Array, Aux, Jacobians, SizedCell, State, pytree_cell, uniform_init
from gradscope.cells._registry import Init, registrar

register = registrar("minimal")  # every cell this module registers is of the minimal family


@pytree_cell
class MinimalRNN(SizedCell):
    weight_x: jax.Array  # (n, m)   W_x
    weight_uh: jax.Array  # (n, n)  U_h
    weight_uz: jax.Array  # (n, n)  U_z
    bias_z: jax.Array  # (n,)
    bias_u: jax.Array  # (n,)

    def _forward(self, x, h):
        z = jnp.tanh(self.weight_x @ x + self.bias_z)
        pre_u = self.weight_uh @ h + self.weight_uz @ z + self.bias_u
        return z, pre_u, sig(pre_u)

    def __call__(self, x: Array, state: State) -> tuple[State, Aux]:
        (h,) = state
        z, pre_u, u = self._forward(x, h)
        return (u * h + (1 - u) * z,), {"z": z, "pre_u": pre_u, "u": u}

    def direct_path(self, x: Array, state: State, t: Any = None) -> Array:
        """The gate-highway diagonal of ∂h'/∂h: ``u``."""
        (h,) = state
        return self._forward(x, h)[2]

    def jacobian(self, x: Array, state: State, t: Any = None) -> Jacobians:
        (h,) = state
        z, _, u = self._forward(x, h)
        # dh' = u dh + (h - z) σ'(pre_u) dpre_u + (1 - u) dz,  dpre_u = U_h dh + U_z dz
        a = ((h - z) * u * (1 - u))[:, None]
        Jh = jnp.diag(u) + a * self.weight_uh
        dz_dx = (1 - z**2)[:, None] * self.weight_x
        Jx = (a * self.weight_uz) @ dz_dx + (1 - u)[:, None] * dz_dx
        return Jh, Jx


@register(
    "minimalrnn",
    "minimalRNN (Chen et al. 2018): z = tanh(W_x x), one update gate u; gate_bias pushes u → 1",
    equation="z = tanh(W_x x + b_z), u = σ(U_h h + U_z z + b_u), h_t = u⊙h_{t-1} + (1−u)⊙z",
)
def build_minimalrnn(init: Init, *, gate_bias: float = 0.0) -> MinimalRNN:
    input_size, hidden_size, key, dtype = init
    if isinstance(gate_bias, bool) or not isinstance(gate_bias, (int, float)) or not math.isfinite(gate_bias):
        raise bad_value("gate_bias", gate_bias, "expected a finite number (μ_b added to the update-gate bias)")
    n = hidden_size
    k1, k2, k3, k4, k5 = _random.split_keys(key, 5)
    bound = 1 / math.sqrt(n)
    return MinimalRNN(
        weight_x=uniform_init(k1, (n, input_size), bound, dtype),
        weight_uh=uniform_init(k2, (n, n), bound, dtype),
        weight_uz=uniform_init(k3, (n, n), bound, dtype),
        bias_z=uniform_init(k4, (n,), bound, dtype),
        bias_u=uniform_init(k5, (n,), bound, dtype) + jnp.asarray(gate_bias, dtype),
        **init.sizes,
    )
