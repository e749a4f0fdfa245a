"""minGRU and minLSTM (Feng, Tung, Ahmed, Bengio & Hajimirsadeghi 2024, "Were RNNs All We Needed?").

The gates read the input only, so the recurrence is elementwise-affine in h and the step Jacobian is
*diagonal*:

    minGRU   z = σ(W_z x + b_z),  h̃ = g(W_h x + b_h),  h_t = (1 − z) ⊙ h_{t−1} + z ⊙ h̃       (§3.1)
             ∂h_t/∂h_{t−1} = diag(1 − z_t)
    minLSTM  f = σ(W_f x + b_f),  i = σ(W_i x + b_i),  f′ = f/(f + i),  i′ = i/(f + i),
             h̃ = g(W_h x + b_h),  h_t = f′ ⊙ h_{t−1} + i′ ⊙ h̃                                 (§3.2)
             ∂h_t/∂h_{t−1} = diag(f′_t)

so ∂h_T/∂h_k = diag(∏_{j=k+1..T} (1 − z_j)) (resp. ∏ f′_j): the gradient over a lag never exceeds 1.

``g`` (option): ``"identity"`` is the paper's vanilla form h̃ = W_h x + b_h (§3); ``"log-space"`` is the
form of its log-space implementation (Appendix B.3), g(a) = a + 0.5 for a ≥ 0 and σ(a) otherwise, which
keeps h̃ > 0 so that the parallel scan runs on logarithms. The reference package ``mingru-pytorch``
applies g in both its sequential and its parallel mode: import its models with ``g="log-space"``.

``proj_out`` (option): the package's layers project the state back to the input width when the inner
width differs (``to_out``, no bias): the layer output fed to the next layer of a `Stack` is then
y = W_out h (`readout`); the state is still h.

Layout (gradscope's own; the package stacks ``[W_h; W_z]`` and ``[W_h; W_f; W_i]`` in one Linear without
bias, which `gradscope.io.mingru` splits): ``weight_h``, ``weight_z`` (minLSTM: ``weight_f``, ``weight_i``)
of shape ``(n, m)``, biases ``bias_*`` ``(n,)`` (initialised to zero), ``weight_out`` ``(m, n)`` or None.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from gradscope import _random
from gradscope._errors import ConfigError, check_bool
from gradscope.cells._base import Array, Aux, DiagonalCell, SizedCell, State, pytree_cell, static, uniform_init
from gradscope.cells._registry import Init, registrar

register = registrar("mingru")  # every cell this module registers is of the mingru family

G_CHOICES = ("identity", "log-space")


def candidate(a: Array, g: str) -> tuple[Array, Array]:
    """``(h̃, dh̃/da)``: h̃ = a, or the log-space g(a) = a + 0.5 (a ≥ 0), σ(a) (a < 0) (App. B.3)."""
    if g == "identity":
        return a, jnp.ones_like(a)
    s = jax.nn.sigmoid(a)
    # a ≥ 0 takes the linear branch at a = 0 as the package's torch.where(x >= 0, ...) does
    return jnp.where(a >= 0, a + 0.5, s), jnp.where(a >= 0, 1.0, s * (1.0 - s))


@pytree_cell
class _MinRNN(DiagonalCell, SizedCell):
    """What minGRU and minLSTM share: the candidate, the optional output projection, the Jacobian form."""

    weight_h: jax.Array = dataclasses.field(kw_only=True)  # (n, m) candidate
    bias_h: jax.Array = dataclasses.field(kw_only=True)
    weight_out: jax.Array | None = dataclasses.field(default=None, kw_only=True)  # (o, n) with proj_out
    g: str = static(default="identity", kw_only=True)

    @property
    def output_size(self) -> int:
        return self.hidden_size if self.weight_out is None else self.weight_out.shape[0]

    def readout(self, state: Sequence[Array], x: Array) -> Array:
        """The layer output y = W_out h with ``proj_out``, else h."""
        del x
        h = state[0]
        return h if self.weight_out is None else self.weight_out @ h

    def readout_jacobian(self, state: Sequence[Array], x: Array) -> tuple[Array, Array]:
        """``(∂y/∂h, ∂y/∂x)`` = ``(W_out or I, 0)``."""
        n = self.hidden_size
        Ry = jnp.eye(n, dtype=state[0].dtype) if self.weight_out is None else self.weight_out
        return Ry, jnp.zeros((Ry.shape[0], x.shape[0]), Ry.dtype)

    def _candidate(self, x: Array) -> tuple[Array, Array, Array]:
        """``(a_h, h̃, dh̃/da_h)`` with a_h = W_h x + b_h: the candidate both cells mix into the state."""
        a_h = self.weight_h @ x + self.bias_h
        return a_h, *candidate(a_h, self.g)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "proj_out": self.weight_out is not None}


@pytree_cell
class MinGRU(_MinRNN):
    weight_z: jax.Array
    bias_z: jax.Array

    def _gates(self, x):
        a_h, h_tilde, dh_tilde = self._candidate(x)
        a_z = self.weight_z @ x + self.bias_z
        return a_h, a_z, h_tilde, dh_tilde, jax.nn.sigmoid(a_z)

    def __call__(self, x: Array, state: State) -> tuple[State, Aux]:
        (h,) = state
        a_h, a_z, h_tilde, _, z = self._gates(x)
        return ((1.0 - z) * h + z * h_tilde,), {"z": z, "h_tilde": h_tilde, "a_z": a_z, "a_h": a_h}

    def jacobian_diag(self, x: Array, state: State, t: Any = None) -> tuple[Array, Array]:
        """``(1 − z, ∂h_t/∂x_t)`` with ∂h_t/∂x = diag(z(1−z)(h̃ − h)) W_z + diag(z g′(a_h)) W_h."""
        (h,) = state
        _, _, h_tilde, dh_tilde, z = self._gates(x)
        jx = (z * (1.0 - z) * (h_tilde - h))[:, None] * self.weight_z + (z * dh_tilde)[:, None] * self.weight_h
        return 1.0 - z, jx


@pytree_cell
class MinLSTM(_MinRNN):
    weight_f: jax.Array
    weight_i: jax.Array
    bias_f: jax.Array
    bias_i: jax.Array

    def _gates(self, x):
        a_h, h_tilde, dh_tilde = self._candidate(x)
        a_f = self.weight_f @ x + self.bias_f
        a_i = self.weight_i @ x + self.bias_i
        f, i = jax.nn.sigmoid(a_f), jax.nn.sigmoid(a_i)
        # f′ = f/(f+i) = σ(log f − log i) = σ(softplus(−a_i) − softplus(−a_f)): no 0/0 when both gates vanish
        f_prime = jax.nn.sigmoid(jax.nn.softplus(-a_i) - jax.nn.softplus(-a_f))
        return a_h, h_tilde, dh_tilde, f, i, f_prime

    def __call__(self, x: Array, state: State) -> tuple[State, Aux]:
        (h,) = state
        a_h, h_tilde, _, f, i, f_prime = self._gates(x)
        i_prime = 1.0 - f_prime
        new = f_prime * h + i_prime * h_tilde
        return (new,), {"f": f, "i": i, "f_prime": f_prime, "i_prime": i_prime, "h_tilde": h_tilde, "a_h": a_h}

    def jacobian_diag(self, x: Array, state: State, t: Any = None) -> tuple[Array, Array]:
        """``(f′, ∂h_t/∂x_t)``: with ∂f′/∂a_f = f′i′(1 − f), ∂f′/∂a_i = −f′i′(1 − i) and i′ = 1 − f′,
        ∂h_t/∂x = diag((h − h̃) f′i′) (diag(1 − f) W_f − diag(1 − i) W_i) + diag(i′ g′(a_h)) W_h."""
        (h,) = state
        _, h_tilde, dh_tilde, f, i, f_prime = self._gates(x)
        i_prime = 1.0 - f_prime
        c = (h - h_tilde) * f_prime * i_prime
        jx = (
            (c * (1.0 - f))[:, None] * self.weight_f
            - (c * (1.0 - i))[:, None] * self.weight_i
            + (i_prime * dh_tilde)[:, None] * self.weight_h
        )
        return f_prime, jx


def _check_options(g, proj_out):
    if g not in G_CHOICES:
        raise ConfigError(
            f"g={g!r} is not allowed: use 'identity' (h̃ = W_h x + b, the paper's §3) or "
            "'log-space' (g(a) = a + 0.5 for a ≥ 0, σ(a) otherwise; mingru-pytorch's form)"
        )
    return check_bool("proj_out", proj_out)


def _weights(key, k, input_size, hidden_size, proj_out, dtype):
    """``k`` input matrices U(±1/√m) (PyTorch's Linear init, as in the package) and W_out U(±1/√n)."""
    keys = _random.split_keys(key, k + 1)
    ws = [uniform_init(kk, (hidden_size, input_size), 1 / math.sqrt(input_size), dtype) for kk in keys[:k]]
    w_out = uniform_init(keys[k], (input_size, hidden_size), 1 / math.sqrt(hidden_size), dtype) if proj_out else None
    return ws, w_out


@register(
    "mingru",
    "minGRU (Feng et al. 2024): gates from x only, diagonal Jacobian 1 − z; g='log-space' as mingru-pytorch",
    equation="z = σ(W_z x + b_z), h̃ = g(W_h x + b_h), h_t = (1−z)⊙h_{t-1} + z⊙h̃",
)
def build_mingru(init: Init, *, g: str = "identity", proj_out: bool = False) -> MinGRU:
    """``g``: "identity" (the paper's h̃ = W_h x + b) or "log-space" (h̃ = g(W_h x + b), App. B.3).
    ``proj_out``: the layer output is W_out h (width input_size), as the package's ``to_out``."""
    input_size, hidden_size, key, dtype = init
    proj_out = _check_options(g, proj_out)
    (w_h, w_z), w_out = _weights(key, 2, input_size, hidden_size, proj_out, dtype)
    zeros = jnp.zeros((hidden_size,), dtype)
    return MinGRU(w_z, zeros, weight_h=w_h, bias_h=zeros, weight_out=w_out, g=g, **init.sizes)


@register(
    "minlstm",
    "minLSTM (Feng et al. 2024): normalised gates f′ = f/(f+i) from x only, diagonal Jacobian f′",
    equation="f′ = f/(f+i), i′ = i/(f+i), h̃ = g(W_h x + b_h), h_t = f′⊙h_{t-1} + i′⊙h̃",
)
def build_minlstm(init: Init, *, g: str = "identity", proj_out: bool = False) -> MinLSTM:
    """Options as for ``mingru``."""
    input_size, hidden_size, key, dtype = init
    proj_out = _check_options(g, proj_out)
    (w_h, w_f, w_i), w_out = _weights(key, 3, input_size, hidden_size, proj_out, dtype)
    zeros = jnp.zeros((hidden_size,), dtype)
    return MinLSTM(
        w_f,
        w_i,
        zeros,
        zeros,
        weight_h=w_h,
        bias_h=zeros,
        weight_out=w_out,
        g=g,
        **init.sizes,
    )
