"""Batch, layer, instance and group normalisation as pure functions, with their Jacobians.

Axis convention: **channels (features) are always the last axis.** Activations are ``(B, C)``
(feed-forward), sequences ``(B, T, C)`` or ``(T, C)``; ``gain`` (γ) and ``bias`` (β) have shape
``(C,)`` and broadcast over the leading axes. All variances are the biased estimator
``mean((x − μ)²)`` and ``σ = sqrt(var + eps)`` with ``eps = 1e-5`` by default (PyTorch's).

=================  ==================================================  =====================================
function           statistics are taken over                            source
=================  ==================================================  =====================================
`batch_norm`       the batch axis (``axes=(0,)``): per feature and,     Ioffe & Szegedy 2015; Cooijmans et al.
                   for ``(B, T, C)``, per time step (recurrent BN)      2016 (docs/references.md)
`layer_norm`       the C features of one example at one step            Ba et al. 2016 eq. 3
`group_norm`       each of G contiguous groups of C/G features          Wu & He 2018; PyTorch GroupNorm
                   (plus optional extra ``axes``, e.g. time)
`instance_norm`    one feature of one example over the *time* axis      Ulyanov et al. 2016
=================  ==================================================  =====================================

Identities (PyTorch semantics): ``group_norm(x, 1) == layer_norm(x)``; with the spatial axes passed
as ``axes``, ``group_norm(x, C, axes=...) == instance_norm(x, ...)``.

Instance norm for recurrent nets. IN normalises each channel of each example over its spatial
positions. A recurrent hidden vector has no spatial axis, so IN "over a single feature" is
degenerate: (x − x)/σ = 0 and the output is just β. gradscope therefore defines `instance_norm` on
*sequences* — each feature of each example normalised over the time axis (the 1-D analogue of the
spatial axes; it is non-causal: it needs the whole sequence). Inside a step-wise cell, where the
time axis is not available, the "instance-norm" cell (``in-lstm`` in `gradscope.cells.normalized`)
treats each gate block as a channel and its hidden units as the positions: group norm with one
group per gate.

`group_norm_jacobian` gives ∂GN(a)/∂a for one vector a. For one group of n units with
``â = (a − μ)/σ`` (Ba et al.'s LN, differentiated; exact with eps because σ includes it)::

    ∂y/∂a = diag(g/σ) (I − 11ᵀ/n − â âᵀ/n)

Batch norm with fixed (population) statistics is the affine map ``y = γ(x − μ)/σ + β``: its
Jacobian is ``diag(γ/σ)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import jax.numpy as jnp
from jax.typing import ArrayLike

from gradscope._errors import ShapeError, bad_value

if TYPE_CHECKING:
    from jaxtyping import Array, Float

EPS = 1e-5


def _affine(y: Array, gain: ArrayLike | None, bias: ArrayLike | None) -> Array:
    if gain is not None:
        y = y * gain
    if bias is not None:
        y = y + bias
    return y


def _moments(x: Array, axes: tuple[int, ...]) -> tuple[Array, Array]:
    mean = jnp.mean(x, axis=axes, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=axes, keepdims=True)  # two-pass: no cancellation
    return mean, var


def _norm_axes(x: Array, axes: Sequence[object], name: str) -> tuple[int, ...]:
    out: list[int] = []
    for a in axes:
        if not isinstance(a, int) or not -x.ndim <= a < x.ndim:
            raise bad_value(name, tuple(axes), f"axes of an array of shape {tuple(x.shape)}", ShapeError)
        out.append(a % x.ndim)
    return tuple(sorted(set(out)))


def batch_norm(
    x: ArrayLike,
    gain: ArrayLike | None = None,
    bias: ArrayLike | None = None,
    *,
    mean: ArrayLike | None = None,
    var: ArrayLike | None = None,
    axes: Sequence[int] = (0,),
    eps: float = EPS,
) -> tuple[Array, Array, Array]:
    """Batch normalisation ``y = γ ⊙ (x − μ)/sqrt(var + eps) + β``; returns ``(y, mean, var)``.

    Training mode (``mean`` and ``var`` not given): μ and var are the biased batch statistics over
    ``axes`` (default the batch axis 0 — for a sequence ``(B, T, C)`` that is one set of statistics
    *per time step*, as in recurrent BN; pass ``axes=(0, 1)`` to pool over time as well). The
    returned statistics have the reduced axes removed: ``(C,)`` or ``(T, C)``.

    Inference mode (``mean`` and ``var`` given, e.g. population statistics): they are used as they
    are (broadcast against ``x`` with the reduced axes removed) and returned unchanged.
    """
    x = jnp.asarray(x)
    axes = _norm_axes(x, axes, "axes")
    if (mean is None) != (var is None):
        raise bad_value("mean/var", (mean is None, var is None), "give both population statistics or neither")
    if mean is None:
        m, v = _moments(x, axes)
        mean, var = jnp.squeeze(m, axes), jnp.squeeze(v, axes)
    else:
        mean, var = jnp.asarray(mean, x.dtype), jnp.asarray(var, x.dtype)
        m, v = jnp.expand_dims(mean, axes), jnp.expand_dims(var, axes)
    y = (x - m) / jnp.sqrt(v + eps)
    return _affine(y, gain, bias), mean, var


def layer_norm(
    x: ArrayLike, gain: ArrayLike | None = None, bias: ArrayLike | None = None, *, eps: float = EPS
) -> Float[Array, "... C"]:
    """Layer normalisation over the last (feature) axis, per example and per step (Ba et al. eq. 3)."""
    return group_norm(x, 1, gain, bias, eps=eps)


def group_norm(
    x: ArrayLike,
    groups: int,
    gain: ArrayLike | None = None,
    bias: ArrayLike | None = None,
    *,
    axes: Sequence[int] = (),
    eps: float = EPS,
) -> Float[Array, "... C"]:
    """Group normalisation: the C features (last axis) split into ``groups`` contiguous groups of
    C/G; statistics per group, per example and per step, and also over the extra ``axes`` if given
    (PyTorch's GroupNorm on ``(B, C, L)`` pools over L: pass ``axes=(-2,)`` for ``(B, T, C)``).
    """
    x = jnp.asarray(x)
    if x.ndim < 1:
        raise ShapeError(f"x has shape {tuple(x.shape)}: expected at least one (feature) axis")
    C = x.shape[-1]
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1 or C % groups:
        raise bad_value("groups", groups, f"expected a positive divisor of the feature size C={C}")
    extra = _norm_axes(x, axes, "axes")
    if x.ndim - 1 in extra:
        raise bad_value("axes", tuple(axes), "the feature axis (last) is always reduced within groups", ShapeError)
    xg = x.reshape(x.shape[:-1] + (groups, C // groups))
    m, v = _moments(xg, extra + (xg.ndim - 1,))
    y = ((xg - m) / jnp.sqrt(v + eps)).reshape(x.shape)
    return _affine(y, gain, bias)


def instance_norm(
    x: ArrayLike, gain: ArrayLike | None = None, bias: ArrayLike | None = None, *, time_axis: int = -2, eps: float = EPS
) -> Float[Array, "... T C"]:
    """Instance normalisation of a sequence ``(..., T, C)``: each feature of each example normalised
    over the time axis (Ulyanov et al.'s spatial axes; see the module docstring for why a single
    hidden vector has no meaningful instance norm).
    """
    x = jnp.asarray(x)
    if x.ndim < 2:
        raise ShapeError(
            f"x has shape {tuple(x.shape)}: instance norm needs a sequence (..., T, C) — over one "
            "feature vector it is degenerate (the output would be the bias)"
        )
    ta = _norm_axes(x, (time_axis,), "time_axis")
    if ta[0] == x.ndim - 1:
        raise bad_value("time_axis", time_axis, "an axis other than the last (feature) axis", ShapeError)
    m, v = _moments(x, ta)
    return _affine((x - m) / jnp.sqrt(v + eps), gain, bias)


# --- Jacobians of the per-vector normalisations (used by the normalised cells) -------------------------


def group_norm_jacobian(
    a: Float[ArrayLike, " C"],
    groups: int = 1,
    gain: Float[ArrayLike, " C"] | None = None,
    *,
    eps: float = EPS,
    right: Float[ArrayLike, "C k"] | None = None,
) -> Float[Array, "C k"]:
    """``∂GN(a)/∂a`` for one vector ``a`` of C features, or its product ``(∂GN/∂a) @ right``.

    Block diagonal over the groups; within a group of n units
    ``diag(g/σ)(I − 11ᵀ/n − â âᵀ/n)``. With ``right`` (shape ``(C, k)``) the product is formed
    without the C×C matrix: ``(g/σ) ⊙ (R − mean_group(R) − â ⊙ mean_group(â ⊙ R))``.
    """
    a = jnp.asarray(a)
    C = a.shape[-1]
    R = jnp.eye(C, dtype=a.dtype) if right is None else jnp.asarray(right)
    n = C // groups
    ag = a.reshape(groups, n)
    mu = jnp.mean(ag, axis=1, keepdims=True)
    sd = jnp.sqrt(jnp.mean(jnp.square(ag - mu), axis=1, keepdims=True) + eps)
    ahat = (ag - mu) / sd  # (G, n)
    Rg = R.reshape(groups, n, -1)
    out = (
        Rg
        - jnp.mean(Rg, axis=1, keepdims=True)
        - ahat[..., None] * jnp.mean(ahat[..., None] * Rg, axis=1, keepdims=True)
    )
    out = (out / sd[..., None]).reshape(C, -1)
    if gain is not None:
        out = jnp.asarray(gain)[:, None] * out
    return out


def layer_norm_jacobian(
    a: Float[ArrayLike, " C"],
    gain: Float[ArrayLike, " C"] | None = None,
    *,
    eps: float = EPS,
    right: Float[ArrayLike, "C k"] | None = None,
) -> Float[Array, "C k"]:
    """``∂LN(a)/∂a = diag(g/σ)(I − 11ᵀ/n − â âᵀ/n)`` (or its product with ``right``)."""
    return group_norm_jacobian(a, 1, gain, eps=eps, right=right)
