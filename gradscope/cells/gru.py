"""GRU cells: PyTorch/cuDNN "reset-after" GRU and the Cho/Chung "reset-before" GRU.

PyTorch GRU (``nn.GRU`` / ``nn.GRUCell``; cuDNN; Keras ``reset_after=True``), class `GRU`::

    r  = σ(W_ir x + b_ir + W_hr h + b_hr)
    z  = σ(W_iz x + b_iz + W_hz h + b_hz)
    n  = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))      reset applied AFTER the recurrent matmul
    h' = (1 − z) ⊙ n + z ⊙ h                           z means "keep"

Cho et al. (2014) / Chung et al. (2014, arXiv 1412.3555) GRU, class `GRUChung`::

    r  = σ(W_ir x + b_ir + W_hr h + b_hr)
    z  = σ(W_iz x + b_iz + W_hz h + b_hz)
    h̃  = tanh(W_in x + b_in + W_hn (r ⊙ h) + b_hn)      reset applied BEFORE the recurrent matmul
    h' = (1 − z) ⊙ h + z ⊙ h̃                           z means "write"

Layout (both): PyTorch's — ``weight_ih (3n, m)``, ``weight_hh (3n, n)``, ``bias_ih (3n,)``,
``bias_hh (3n,)``, gate blocks stacked **r, z, n** along dim 0 (W_ir = weight_ih[:n], W_iz =
weight_ih[n:2n], W_in = weight_ih[2n:], likewise for weight_hh and the biases). In the Chung cell
b_hn sits outside the reset, so only b_in + b_hn matters there; it is kept separate so that both
cells share one layout (Keras ``reset_after=False`` has one bias: put it in ``bias_ih``).

The two cells have different step Jacobians. The direct (gate-highway) path is
``∂h'/∂h ⊃ diag(z)`` for PyTorch's GRU and ``diag(1 − z)`` for Chung's; with W_hh = 0 the whole
Jacobian equals that diagonal (Chung et al. 2014; PyTorch's torch.nn.GRU documentation; see
docs/references.md). `direct_path` returns it as a vector.

Initialisation follows PyTorch: every weight and bias U(±1/√n).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

import jax
import jax.numpy as jnp

from gradscope import _random
from gradscope._errors import bad_value
from gradscope.cells._activations import dsig, sig
from gradscope.cells._base import Array, Aux, Jacobians, SizedCell, State, pytree_cell, uniform_init
from gradscope.cells._registry import Init, registrar

register = registrar("gru")  # every cell this module registers is of the gru family


@pytree_cell
class _GRUBase(SizedCell):
    """Shared pieces: the one layout (fields), the r and z gates (identical in both variants)."""

    weight_ih: jax.Array  # (3n, m), blocks r, z, n
    weight_hh: jax.Array  # (3n, n)
    bias_ih: jax.Array  # (3n,)
    bias_hh: jax.Array  # (3n,)

    def _rz(self, x, h):
        n = self.hidden_size
        gi = self.weight_ih @ x + self.bias_ih  # (3n,) input part, blocks r, z, n
        gh = self.weight_hh @ h + self.bias_hh  # (3n,) recurrent part
        pre_r, pre_z = gi[:n] + gh[:n], gi[n : 2 * n] + gh[n : 2 * n]
        return gi, gh, pre_r, pre_z, sig(pre_r), sig(pre_z)

    def _blocks(self):
        n = self.hidden_size
        wi, wh = self.weight_ih, self.weight_hh
        return (wi[:n], wi[n : 2 * n], wi[2 * n :]), (wh[:n], wh[n : 2 * n], wh[2 * n :])


@pytree_cell
class GRU(_GRUBase):
    """PyTorch's GRU (reset after the recurrent matmul, z keeps the old state)."""

    def _forward(self, x, h):
        n = self.hidden_size
        gi, gh, pre_r, pre_z, r, z = self._rz(x, h)
        hn = gh[2 * n :]  # W_hn h + b_hn, the term the reset gate multiplies
        pre_n = gi[2 * n :] + r * hn
        return pre_r, pre_z, pre_n, r, z, jnp.tanh(pre_n), hn

    def __call__(self, x: Array, state: State) -> tuple[State, Aux]:
        (h,) = state
        pre_r, pre_z, pre_n, r, z, nn, _ = self._forward(x, h)
        h2 = (1 - z) * nn + z * h
        return (h2,), {"pre_r": pre_r, "pre_z": pre_z, "pre_n": pre_n, "r": r, "z": z, "n": nn}

    def direct_path(self, x: Array, state: State, t: Any = None) -> Array:
        """The gate-highway diagonal of ∂h'/∂h: ``z`` (the whole Jacobian when W_hh = 0)."""
        (h,) = state
        return self._forward(x, h)[4]

    def jacobian(self, x: Array, state: State, t: Any = None) -> Jacobians:
        (h,) = state
        _, _, _, r, z, nn, hn = self._forward(x, h)
        (Wir, Wiz, Win), (Whr, Whz, Whn) = self._blocks()
        dr, dz, dn = dsig(r), dsig(z), 1 - nn**2
        # h' = (1-z) n + z h:  dh' = diag(z) dh + (h - n) dz + (1 - z) dn
        # dn = (1 - n²) [dW_in x + r dW_hn h + hn dr]
        a = (h - nn) * dz  # coefficient on the z pre-activation
        b = (1 - z) * dn  # coefficient on the n pre-activation
        c = b * hn * dr  # coefficient on the r pre-activation (through hn ⊙ r)
        Jh = jnp.diag(z) + a[:, None] * Whz + (b * r)[:, None] * Whn + c[:, None] * Whr
        Jx = a[:, None] * Wiz + b[:, None] * Win + c[:, None] * Wir
        return Jh, Jx


@pytree_cell
class GRUChung(_GRUBase):
    """Cho/Chung GRU (reset before the recurrent matmul, z writes the candidate)."""

    def _forward(self, x, h):
        n = self.hidden_size
        gi, _, pre_r, pre_z, r, z = self._rz(x, h)
        Whn = self.weight_hh[2 * n :]
        pre_n = gi[2 * n :] + Whn @ (r * h) + self.bias_hh[2 * n :]
        return pre_r, pre_z, pre_n, r, z, jnp.tanh(pre_n)

    def __call__(self, x: Array, state: State) -> tuple[State, Aux]:
        (h,) = state
        pre_r, pre_z, pre_n, r, z, hc = self._forward(x, h)
        h2 = (1 - z) * h + z * hc
        return (h2,), {"pre_r": pre_r, "pre_z": pre_z, "pre_n": pre_n, "r": r, "z": z, "n": hc}

    def direct_path(self, x: Array, state: State, t: Any = None) -> Array:
        """The gate-highway diagonal of ∂h'/∂h: ``1 − z`` (the whole Jacobian when W_hh = 0)."""
        (h,) = state
        return 1 - self._forward(x, h)[4]

    def jacobian(self, x: Array, state: State, t: Any = None) -> Jacobians:
        (h,) = state
        _, _, _, r, z, hc = self._forward(x, h)
        (Wir, Wiz, Win), (Whr, Whz, Whn) = self._blocks()
        # h' = (1-z) h + z h̃:  dh' = diag(1-z) dh + (h̃ - h) dz + z dh̃
        # dh̃ = (1 - h̃²) [W_in dx + W_hn (r ⊙ dh + h ⊙ dr)]
        a = (hc - h) * dsig(z)
        b = z * (1 - hc**2)
        bW = b[:, None] * Whn  # diag(b) W_hn
        dr_pre = (h * dsig(r))[:, None]  # h ⊙ σ'(r): maps the r pre-activation into r ⊙ h
        Jh = jnp.diag(1 - z) + a[:, None] * Whz + bW * r[None, :] + bW @ (dr_pre * Whr)
        Jx = a[:, None] * Wiz + b[:, None] * Win + bW @ (dr_pre * Wir)
        return Jh, Jx


_G = TypeVar("_G", "GRU", "GRUChung")


def _builder(cls: type[_G]) -> Callable[..., _G]:
    """The builder of both GRU forms: one layout, PyTorch's initialisation U(±1/√n)."""

    def build(init: Init, *, bias: bool = True) -> _G:
        input_size, n, key, dtype = init
        if not isinstance(bias, bool):
            raise bad_value("bias", bias, "expected True or False")
        k1, k2, k3, k4 = _random.split_keys(key, 4)
        bound = 1 / math.sqrt(n)
        if bias:
            b_ih = uniform_init(k3, (3 * n,), bound, dtype)
            b_hh = uniform_init(k4, (3 * n,), bound, dtype)
        else:
            b_ih = b_hh = jnp.zeros((3 * n,), dtype)
        return cls(
            weight_ih=uniform_init(k1, (3 * n, input_size), bound, dtype),
            weight_hh=uniform_init(k2, (3 * n, n), bound, dtype),
            bias_ih=b_ih,
            bias_hh=b_hh,
            **init.sizes,
        )

    return build


build_gru = register(
    "gru",
    "GRU, PyTorch/cuDNN form (reset after the matmul; gates r,z,n; z keeps h)",
    equation="n = tanh(W_in x + b_in + r⊙(W_hn h + b_hn)),  h_t = (1−z)⊙n + z⊙h_{t-1}",
)(_builder(GRU))
build_gru_chung = register(
    "gru-chung",
    "GRU, Cho/Chung 2014 form (reset before the matmul; z writes the candidate)",
    equation="h̃ = tanh(W_in x + W_hn (r⊙h_{t-1}) + b),  h_t = (1−z)⊙h_{t-1} + z⊙h̃",
)(_builder(GRUChung))
