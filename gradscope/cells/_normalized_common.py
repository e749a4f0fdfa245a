"""What the normalised cells share: the LSTM step Jacobian with a normalised cell state, the
LSTM weights, and the checks of the builders (see `gradscope.cells.normalized` for the cells)."""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike

from gradscope import _random
from gradscope._errors import ConfigError, bad_value
from gradscope.cells._activations import dsig, sig
from gradscope.cells._base import Array, uniform_init


def _lstm_jacobian(
    Dz: Array,
    c: Array,
    i: Array,
    f: Array,
    g: Array,
    o: Array,
    tc: Array,
    norm_c_times: Callable[[Array], Array],
    n: int,
) -> tuple[Array, Array]:
    """Step Jacobian of ``c' = f c + i g``, ``h' = o tanh(N(c'))`` given ``Dz = ∂z/∂[h, x]`` (4n × (n+m),
    blocks i, f, g, o) and ``norm_c_times(M) = (∂N/∂c') M``."""
    Di, Df, Dg, Do = Dz[:n], Dz[n : 2 * n], Dz[2 * n : 3 * n], Dz[3 * n :]
    dc = (c * dsig(f))[:, None] * Df + (g * dsig(i))[:, None] * Di + (i * (1 - g**2))[:, None] * Dg
    out = (o * (1 - tc**2))[:, None]
    dh = (tc * dsig(o))[:, None] * Do + out * norm_c_times(dc)
    dh_dc = out * norm_c_times(jnp.diag(f))
    J = jnp.block([[dh[:, :n], dh_dc], [dc[:, :n], jnp.diag(f)]])
    return J, jnp.concatenate([dh[:, n:], dc[:, n:]], axis=0)


def _lstm_gates(z: Array, n: int) -> tuple[Array, Array, Array, Array]:
    return sig(z[:n]), sig(z[n : 2 * n]), jnp.tanh(z[2 * n : 3 * n]), sig(z[3 * n :])


def _check_common(hidden_size: int, eps: object) -> None:
    if hidden_size < 2:
        raise ConfigError(
            f"hidden_size={hidden_size} is not allowed for a normalised cell: "
            "normalising a single unit is degenerate; use hidden_size >= 2"
        )
    if not (isinstance(eps, (int, float)) and eps > 0):
        raise bad_value("eps", eps, "expected a positive number (e.g. 1e-5)")


def _lstm_weights(
    key: Array, n: int, m: int, dtype: DTypeLike, forget_bias: float | None
) -> tuple[Array, Array, Array]:
    k1, k2 = _random.split_keys(key)
    bound = 1 / math.sqrt(n)
    bias = np.zeros((4 * n,), dtype)  # on the host: no compiled program for a constant
    if forget_bias is not None:
        bias[n : 2 * n] = float(forget_bias)
    return uniform_init(k1, (4 * n, m), bound, dtype), uniform_init(k2, (4 * n, n), bound, dtype), jax.device_put(bias)
