"""IndRNN (Li et al. 2018): independently recurrent neurons.

    h_t = φ(W_ih x_t + u ⊙ h_{t-1} + b)                        (CVPR 2018, eq. 2)

The recurrent weight is a vector ``u`` (``weight_hh_diag``), so the step Jacobian is *diagonal*:
``∂h_{n,t}/∂h_{n,t-1} = u_n φ'(a_{n,t})`` and ``∂h_{n,T}/∂h_{n,k} = u_n^{T-k} ∏ φ'`` (eq. 4). With relu,
keeping ``|u_n| ≤ γ^{1/T}`` bounds the gradient over T steps by γ (§3.1); the official code uses γ = 2.

Layout (gradscope's own; no framework ships IndRNN): ``weight_ih (n, m)``, ``weight_hh_diag (n,)``,
``bias (n,)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradscope import _random
from gradscope._errors import ConfigError, check_number
from gradscope.cells import _activations
from gradscope.cells._base import Array, Aux, DiagonalCell, SizedCell, State, pytree_cell, static, uniform_init
from gradscope.cells._parallel import clip_affine_states, parallel_safe, wants_parallel
from gradscope.cells._registry import Init, registrar

register = registrar("indrnn")  # every cell this module registers is of the indrnn family

# activations that are a clip of their argument: the rollout can then run as a parallel scan
_CLIP_BOUNDS = {"relu": (0.0, float("inf")), "linear": (float("-inf"), float("inf"))}
SCANS = ("auto", "sequential", "parallel")


@pytree_cell
class IndRNN(DiagonalCell, SizedCell):
    weight_ih: jax.Array
    weight_hh_diag: jax.Array
    bias: jax.Array
    activation: str = static(default="relu")
    scan: str = static(default="auto")

    def __call__(self, x: Array, state: State) -> tuple[State, Aux]:
        (h,) = state
        a = self.weight_ih @ x + self.weight_hh_diag * h + self.bias
        return (_activations.get(self.activation).fn(a),), {"a": a}

    def jacobian_diag(self, x: Array, state: State, t: Any = None) -> tuple[Array, Array]:
        """(diagonal of ∂h_t/∂h_{t-1}, ∂h_t/∂x_t)."""
        (h,) = state
        a = self.weight_ih @ x + self.weight_hh_diag * h + self.bias
        d = _activations.get(self.activation).deriv(a)
        return d * self.weight_hh_diag, d[:, None] * self.weight_ih

    def parallel_rollout(self, xs: Array, state0: State, loop: Callable[[], tuple[State, Aux]]) -> tuple[State, Aux]:
        """States and aux of the whole sequence, ``(((T, n),), {"a": (T, n)})``: by an associative scan of
        the neurons' clip-affine maps (`gradscope.cells._parallel`) for relu and linear activations when
        ``scan`` asks for it and ∏|u| cannot overflow; otherwise by ``loop()``, the step-by-step scan."""
        if self.activation not in _CLIP_BOUNDS or not wants_parallel(self.scan):
            return loop()
        lo, hi = _CLIP_BOUNDS[self.activation]
        (h0,) = state0
        u = self.weight_hh_diag
        drive = xs @ self.weight_ih.T + self.bias

        def parallel():
            hs = clip_affine_states(drive, u, h0, lo, hi)
            prev = jnp.concatenate([h0[None], hs[:-1]], axis=0)
            return (hs,), {"a": drive + u * prev}

        return jax.lax.cond(parallel_safe(u, xs.shape[0]), parallel, loop)

    @property
    def gamma(self) -> float:
        return _activations.get(self.activation).gamma

    def gradient_bound(self) -> dict:
        """Li et al. (2018, eq. 4): ``|∂h_{n,T}/∂h_{n,k}| ≤ (γ |u_n|)^{T−k}`` with γ = sup|φ'|, so the
        spectral norm of the diagonal product is at most ``(γ max|u_n|)^{T−k}``. Returns
        ``{"kind", "gamma", "sigma_max"}`` with σ_max = max|u_n| (host NumPy: call it outside jit)."""
        import numpy as np

        s = float(np.max(np.abs(np.asarray(self.weight_hh_diag, np.float64))))
        return {"kind": "indrnn", "gamma": float(self.gamma), "sigma_max": s}


def recurrent_bound(length: int, gamma: float = 2.0) -> float:
    """The IndRNN bound |u| ≤ γ^{1/T}: the gradient over T steps then grows by at most γ (relu)."""
    if not (isinstance(length, int) and length > 0):
        raise ConfigError(f"length={length!r} is not allowed: expected a positive integer")
    gamma = check_number("gamma", gamma, positive=True)
    return gamma ** (1.0 / length)


def clip_recurrent(cell: IndRNN, max_abs: float) -> IndRNN:
    """Clip ``u`` to [−max_abs, max_abs] (IndRNN's constraint, applied after every update)."""
    import dataclasses

    max_abs = check_number("max_abs", max_abs, nonnegative=True)
    return dataclasses.replace(cell, weight_hh_diag=jnp.clip(cell.weight_hh_diag, -max_abs, max_abs))


@register(
    "indrnn",
    "IndRNN (Li et al. 2018): diagonal recurrence u⊙h, relu; u ~ U(u_min, γ^(1/T))",
    equation="h_t = relu(W_ih x_t + u⊙h_{t-1} + b)",
)
def build_indrnn(
    init: Init,
    *,
    activation: str = "relu",
    max_length: int | None = None,
    gamma: float = 2.0,
    u_min: float = 0.0,
    u_max: float | None = None,
    scan: str = "auto",
) -> IndRNN:
    """``u ~ U(u_min, u_max)``; ``u_max`` defaults to γ^(1/max_length) when ``max_length`` is given, else 1.

    For a last layer of a classification net the paper sets ``u_min = ε^(1/T)``. ``scan``: how a rollout
    runs — "sequential" (a T-step loop), "parallel" (an associative scan, relu and linear only) or "auto"
    (parallel on GPUs and TPUs, where a long loop is latency-bound; the loop on CPUs, where it is faster).
    """
    input_size, hidden_size, key, dtype = init
    _activations.get(activation)
    if scan not in SCANS:
        raise ConfigError(f"scan={scan!r} is not allowed: use one of {', '.join(SCANS)}")
    if max_length is not None and not (isinstance(max_length, int) and max_length > 0):
        # checked here so that the message names the option the user passed, not recurrent_bound's `length`
        raise ConfigError(
            f"max_length={max_length!r} is not allowed: expected a positive integer (the sequence length T)"
        )
    check_number("gamma", gamma, positive=True)
    u_min = check_number("u_min", u_min)
    if u_max is None:
        u_max = recurrent_bound(max_length, gamma) if max_length is not None else 1.0
    u_max = check_number("u_max", u_max)
    if not u_min <= u_max:
        raise ConfigError(f"u_min={u_min!r} is not allowed: it must not exceed u_max={u_max!r}")
    k1, k2, k3 = _random.split_keys(key, 3)
    return IndRNN(
        weight_ih=uniform_init(k1, (hidden_size, input_size), 1 / math.sqrt(input_size), dtype),
        weight_hh_diag=_random.uniform(k2, (hidden_size,), dtype, u_min, u_max),
        bias=jax.device_put(np.zeros((hidden_size,), dtype)),  # a host constant: no compiled program
        **init.sizes,
        activation=activation,
        scan=scan,
    )
