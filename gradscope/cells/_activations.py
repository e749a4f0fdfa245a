"""Elementwise activations with their derivatives and the bound γ = sup |φ'|.

The bound is what Pascanu et al. (2013, §2.1) multiply with σ_max(W): γ = 1 for tanh, 1/4 for the
logistic sigmoid, 1 for relu/leaky-relu/elu/linear.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradscope._errors import bad_value

LEAKY_SLOPE = 0.01
ELU_ALPHA = 1.0


class Activation(NamedTuple):
    fn: Callable
    deriv: Callable  # derivative as a function of the pre-activation a
    gamma: float  # sup |φ'|


sig = jax.nn.sigmoid


def dsig(s):
    """The logistic sigmoid's derivative from its output ``s = σ(a)``: σ′(a) = s(1 − s) (what gates reuse)."""
    return s * (1 - s)


def _sig_d(a):
    return dsig(sig(a))


ACTIVATIONS: dict[str, Activation] = {
    "tanh": Activation(jnp.tanh, lambda a: 1 - jnp.tanh(a) ** 2, 1.0),
    "sigmoid": Activation(jax.nn.sigmoid, _sig_d, 0.25),
    "relu": Activation(jax.nn.relu, lambda a: (a > 0).astype(a.dtype), 1.0),
    "leaky-relu": Activation(
        lambda a: jnp.where(a > 0, a, LEAKY_SLOPE * a),
        lambda a: jnp.where(a > 0, 1.0, LEAKY_SLOPE).astype(a.dtype),
        1.0,
    ),
    "elu": Activation(
        lambda a: jnp.where(a > 0, a, ELU_ALPHA * jnp.expm1(jnp.minimum(a, 0))),
        lambda a: jnp.where(a > 0, 1.0, ELU_ALPHA * jnp.exp(jnp.minimum(a, 0))).astype(a.dtype),
        1.0,
    ),
    "linear": Activation(lambda a: a, lambda a: jnp.ones_like(a), 1.0),
}


def get(name: str) -> Activation:
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise bad_value("activation", name, "one of " + ", ".join(sorted(ACTIVATIONS))) from None
