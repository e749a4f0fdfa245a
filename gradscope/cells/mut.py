"""MUT1, MUT2, MUT3: the three architectures evolved by Jozefowicz, Zaremba & Sutskever (2015).

"An Empirical Exploration of Recurrent Network Architectures" (ICML 2015), page 7; equations as
re-implemented by theanets and RecurrentLayers.jl (see docs/references.md)::

    MUT1:  z  = σ(W_xz x + b_z)
           r  = σ(W_xr x + W_hr h + b_r)
           h' = tanh(W_hh (r ⊙ h) + tanh(W_xh x) + b_h) ⊙ z + h ⊙ (1 − z)

    MUT2:  z  = σ(W_xz x + W_hz h + b_z)
           r  = σ(W_xr x + W_hr h + b_r)
           h' = tanh(W_hh (r ⊙ h) + W_xh x + b_h) ⊙ z + h ⊙ (1 − z)

    MUT3:  z  = σ(W_xz x + W_hz tanh(h) + b_z)
           r  = σ(W_xr x + W_hr h + b_r)
           h' = tanh(W_hh (r ⊙ h) + W_xh x + b_h) ⊙ z + h ⊙ (1 − z)

**Inserted weight matrices.** As printed, MUT1 uses ``tanh(x_t)`` and MUT2's reset gate uses ``x_t``
with no weight matrix, which only type-checks when input size = hidden size. Following the
implementations (theanets: ``tanh(x W_xh)``), gradscope inserts a learnable matrix there by default:
``tanh(W_xh x)`` in MUT1 and ``W_xr x`` in MUT2's r gate. The option ``printed=True`` (allowed only
when input_size == hidden_size) uses the identity instead, i.e. the equations exactly as printed;
the corresponding field (MUT1 ``weight_xh``, MUT2 ``weight_xr``) is then ``None``.

In all three z plays the "write" role (as in Chung's GRU), so ``∂h'/∂h ⊃ diag(1 − z)``
(`direct_path`). In MUT1 z depends on x only, so with W_hh = W_hr = 0 the Jacobian is exactly
``diag(1 − z)`` (Jozefowicz et al. 2015; see docs/references.md).

Layout (gradscope's own; no framework ships MUT): ``weight_x* (n, m)``, ``weight_h* (n, n)``,
biases ``bias_z, bias_r, bias_h (n,)``. Every weight and bias is initialised U(±1/√n), as PyTorch
does for its gated cells.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

import jax
import jax.numpy as jnp

from gradscope import _random
from gradscope._errors import ConfigError, bad_value
from gradscope.cells._activations import dsig, sig
from gradscope.cells._base import Array, Aux, Jacobians, SizedCell, State, pytree_cell, uniform_init
from gradscope.cells._registry import Init, registrar

register = registrar("mut")  # every cell this module registers is of the mut family


def _matvec(w, x):
    """``w @ x``, with ``w = None`` meaning the identity (the printed, matrix-free form)."""
    return x if w is None else w @ x


def _matrix(w, n, dtype):
    return jnp.eye(n, dtype=dtype) if w is None else w


class _MUT(SizedCell):
    """The shared update ``h' = tanh(a) ⊙ z + h ⊙ (1 − z)`` with ``a = W_hh (r ⊙ h) + u(x) + b_h``.

    Subclasses define the z pre-activation and the input term u(x), with their derivatives.
    """

    # fields of the subclasses used here (declared for the checker; no class attributes)
    weight_xh: jax.Array | None  # None (MUT1 printed=True): tanh(x), the matrix-free form
    weight_xr: jax.Array | None  # None (MUT2 printed=True): x
    weight_hr: jax.Array
    weight_hh: jax.Array
    bias_r: jax.Array
    bias_h: jax.Array

    # --- hooks ---------------------------------------------------------------------------
    def _pre_z(self, x, h):  # pragma: no cover - abstract
        raise NotImplementedError

    def _dpre_z(self, x, h):  # -> (∂pre_z/∂h (n, n) or None, ∂pre_z/∂x (n, m))
        raise NotImplementedError  # pragma: no cover

    def _input_term(self, x):
        return _matvec(self.weight_xh, x)

    def _dinput_term(self, x):
        return _matrix(self.weight_xh, self.input_size, x.dtype)

    def _weight_xr(self):
        return self.weight_xr

    # --- the step --------------------------------------------------------------------------
    def _forward(self, x, h):
        pre_z = self._pre_z(x, h)
        pre_r = _matvec(self._weight_xr(), x) + self.weight_hr @ h + self.bias_r
        z, r = sig(pre_z), sig(pre_r)
        pre_h = self.weight_hh @ (r * h) + self._input_term(x) + self.bias_h
        return pre_z, pre_r, pre_h, z, r, jnp.tanh(pre_h)

    def __call__(self, x: Array, state: State) -> tuple[State, Aux]:
        (h,) = state
        pre_z, pre_r, pre_h, z, r, c = self._forward(x, h)
        h2 = c * z + h * (1 - z)
        return (h2,), {"pre_z": pre_z, "pre_r": pre_r, "pre_h": pre_h, "z": z, "r": r, "candidate": c}

    def direct_path(self, x: Array, state: State, t: Any = None) -> Array:
        """The gate-highway diagonal of ∂h'/∂h: ``1 − z``."""
        (h,) = state
        return 1 - sig(self._pre_z(x, h))

    def jacobian(self, x: Array, state: State, t: Any = None) -> Jacobians:
        (h,) = state
        _, _, _, z, r, c = self._forward(x, h)
        n = self.hidden_size
        # dh' = diag(1-z) dh + (c - h) σ'(z) dpre_z + z (1 - c²) dpre_h
        # dpre_h = W_hh (r ⊙ dh + h ⊙ σ'(r) dpre_r) + du
        a = (c - h) * dsig(z)
        bW = (z * (1 - c**2))[:, None] * self.weight_hh  # diag(z(1-c²)) W_hh
        hdr = (h * dsig(r))[:, None]
        dz_h, dz_x = self._dpre_z(x, h)
        Jh = jnp.diag(1 - z) + bW * r[None, :] + bW @ (hdr * self.weight_hr)
        if dz_h is not None:
            Jh = Jh + a[:, None] * dz_h
        Wxr = _matrix(self._weight_xr(), n, h.dtype)
        du = (z * (1 - c**2))[:, None] * self._dinput_term(x)
        Jx = a[:, None] * dz_x + bW @ (hdr * Wxr) + du
        return Jh, Jx


@pytree_cell
class MUT1(_MUT):
    """MUT1: z reads the input only; the input enters the candidate through tanh(W_xh x)."""

    weight_xz: jax.Array  # (n, m)
    weight_xr: jax.Array  # (n, m)
    weight_hr: jax.Array  # (n, n)
    weight_hh: jax.Array  # (n, n)
    weight_xh: jax.Array | None  # (n, m); None with printed=True: tanh(x) as printed
    bias_z: jax.Array
    bias_r: jax.Array
    bias_h: jax.Array

    def _pre_z(self, x, h):
        return self.weight_xz @ x + self.bias_z

    def _dpre_z(self, x, h):
        return None, self.weight_xz

    def _input_term(self, x):
        return jnp.tanh(_matvec(self.weight_xh, x))

    def _dinput_term(self, x):
        u = jnp.tanh(_matvec(self.weight_xh, x))
        return (1 - u**2)[:, None] * _matrix(self.weight_xh, self.input_size, x.dtype)


@pytree_cell
class _MUTWithHz(_MUT):
    """The layout of MUT2 and MUT3, whose z gate reads the state through W_hz."""

    weight_xz: jax.Array  # (n, m)
    weight_hz: jax.Array  # (n, n)
    weight_xr: jax.Array | None  # (n, m); None with MUT2's printed=True: x as printed
    weight_hr: jax.Array  # (n, n)
    weight_hh: jax.Array  # (n, n)
    weight_xh: jax.Array  # (n, m)
    bias_z: jax.Array
    bias_r: jax.Array
    bias_h: jax.Array


@pytree_cell
class MUT2(_MUTWithHz):
    """MUT2: z reads h; the reset gate reads the input through W_xr x (x as printed)."""

    def _pre_z(self, x, h):
        return self.weight_xz @ x + self.weight_hz @ h + self.bias_z

    def _dpre_z(self, x, h):
        return self.weight_hz, self.weight_xz


@pytree_cell
class MUT3(_MUTWithHz):
    """MUT3: z reads tanh(h)."""

    def _pre_z(self, x, h):
        return self.weight_xz @ x + self.weight_hz @ jnp.tanh(h) + self.bias_z

    def _dpre_z(self, x, h):
        return self.weight_hz * (1 - jnp.tanh(h) ** 2)[None, :], self.weight_xz


def _check_printed(printed: object, m: int, n: int, field: str) -> str | None:
    """The field that ``printed=True`` replaces by the identity (None when ``printed`` is False)."""
    if not isinstance(printed, bool):
        raise bad_value("printed", printed, "expected True or False")
    if printed and m != n:
        raise ConfigError(
            f"printed=True is not allowed with input_size={m} != hidden_size={n}: the printed equations "
            "have no weight matrix there; use printed=False (the default) to insert one"
        )
    return field if printed else None


_C = TypeVar("_C", "MUT1", "MUT2", "MUT3")


def _build(cls: type[_C], init: Init, hs: str, printed: str | None) -> _C:
    """A MUT cell with U(±1/√n) weights ``weight_x{z,r,h}`` (n, m) and ``weight_h*`` (n, n) for the gates
    ``hs``, plus the three biases; ``printed`` names the inserted matrix replaced by the identity (None)."""
    m, n, key, dtype = init
    xs = "zrh"
    keys = _random.split_keys(key, len(xs) + len(hs) + 3)
    bound = 1 / math.sqrt(n)
    w: dict[str, Any] = {}
    for k, name in zip(keys, [f"weight_x{s}" for s in xs] + [f"weight_h{s}" for s in hs]):
        w[name] = uniform_init(k, (n, m if name.startswith("weight_x") else n), bound, dtype)
    for k, s in zip(keys[-3:], "zrh"):
        w[f"bias_{s}"] = uniform_init(k, (n,), bound, dtype)
    if printed is not None:
        w[printed] = None
    return cls(**w, **init.sizes)


def _h_eq(u):
    return f"h_t = tanh(W_hh (r⊙h_{{t-1}}) + {u} + b_h)⊙z + h_{{t-1}}⊙(1−z)"


def _printed_builder(cls: type[_C], hs: str, inserted: str) -> Callable[..., _C]:
    """The builder of MUT1 and MUT2, whose option ``printed`` replaces the matrix ``inserted`` by the identity."""

    def build(init: Init, *, printed: bool = False) -> _C:
        printed_field = _check_printed(printed, init.input_size, init.hidden_size, inserted)
        return _build(cls, init, hs, printed_field)

    return build


build_mut1 = register(
    "mut1",
    "MUT1 (Jozefowicz et al. 2015): z from x only; tanh(W_xh x) input term",
    equation="z = σ(W_xz x + b_z), r = σ(W_xr x + W_hr h + b_r), " + _h_eq("tanh(W_xh x)"),
)(_printed_builder(MUT1, "rh", "weight_xh"))
build_mut2 = register(
    "mut2",
    "MUT2 (Jozefowicz et al. 2015): z from x and h; W_xr x in the reset gate",
    equation="z = σ(W_xz x + W_hz h + b_z), r = σ(W_xr x + W_hr h + b_r), " + _h_eq("W_xh x"),
)(_printed_builder(MUT2, "zrh", "weight_xr"))


@register(
    "mut3",
    "MUT3 (Jozefowicz et al. 2015): z from x and tanh(h)",
    equation="z = σ(W_xz x + W_hz tanh(h) + b_z), r = σ(W_xr x + W_hr h + b_r), " + _h_eq("W_xh x"),
)
def build_mut3(init: Init) -> MUT3:
    return _build(MUT3, init, "zrh", None)
