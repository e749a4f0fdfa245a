"""A feed-forward MLP for depth-wise gradient diagnostics, written as a "cell" whose time is depth.

Layer l = 1..L (``t = l − 1`` in the cell protocol), all of width n::

    a_l = W_l h_{l-1} + b_l                                   (optionally a_l ← BN(a_l; γ_l, β_l))
    h_l = φ_l(a_l)            or, with ``residual=True``,    h_l = h_{l-1} + φ_l(a_l)

    ∂h_l/∂h_{l-1} = diag(φ_l'(a_l)) diag(γ_l/σ_l) W_l  (+ I with residual; the BN factor only with BN)

This is the first derivation of the vanishing-gradient documents: ∂h_L/∂h_0 = ∏ D_l W_l, whose
2-norm is bounded by ∏ γ_φ σ_max(W_l) (γ_φ = 1/4 for the sigmoid), and whose spectrum is the
object of dynamical isometry (Pennington, Schoenholz & Ganguli 2017; Saxe et al. 2014; see
docs/references.md): for orthogonal linear nets
every singular value is 1; for Gaussian W ~ N(0, σ_w²/n) the mean eigenvalue of JJᵀ is
(σ_w² μ₁)^L (= 1 for linear nets with σ_w = 1).

Protocol mapping (so that `rollout` and the engine analyse it unchanged): the state is ``("h",)``
of width n, the input at each "step" is empty (``x`` of shape ``(0,)``), ``step(x, state, t)``
applies layer t+1, and S_0 = the network input. `mlp_inputs` builds ``(xs, state0)``; then
``rollout(mlp, xs, state0)`` holds the activations of every layer. Steps t ≥ L are not defined.

Batch norm uses fixed (population) statistics per layer, as at inference; `collect_statistics`
sets them from a batch (then the network reproduces training-mode outputs on that batch). As for
the recurrent BN cells, the diagnostics analyse the inference-mode map: with the statistics held
fixed the Jacobian belongs to one example and BN contributes the diagonal γ/σ.

Initialisations: ``"gaussian"`` W ~ N(0, gain²/n) (σ_w = gain), ``"orthogonal"`` gain·Q (Haar),
``"pytorch"`` nn.Linear's default U(±1/√n) for weights and biases (times gain). Biases are zero for
the first two unless ``bias_std`` > 0 (N(0, bias_std²)).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp

from gradscope import _random, norms
from gradscope._errors import ConfigError, ShapeError, bad_value, check_positive_int
from gradscope.cells import _activations
from gradscope.cells._base import Array, Aux, Cell, Jacobians, State, pytree_cell, static, uniform_init

if TYPE_CHECKING:
    from jaxtyping import Float

INITS = ("gaussian", "orthogonal", "pytorch")


@pytree_cell
class MLP(Cell):
    """L layers of width n; depth plays the role of time (see the module docstring)."""

    weights: jax.Array  # (L, n, n): W_l = weights[l-1], rows = outputs (PyTorch nn.Linear layout)
    biases: jax.Array  # (L, n)
    bn_gamma: jax.Array | None = None  # (L, n) when batch norm is on
    bn_beta: jax.Array | None = None
    bn_mean: jax.Array | None = None  # (L, n) population statistics
    bn_var: jax.Array | None = None
    activations: tuple = static(default=("tanh",))  # one name per layer
    residual: bool = static(default=False)
    eps: float = static(default=norms.EPS)

    @property
    def name(self) -> str:
        return "mlp"

    def __post_init__(self) -> None:
        # pytree unflattening may pass placeholders for the weights: check shapes only on arrays
        L = getattr(self.weights, "shape", (None,))[0]
        if L is not None and len(self.activations) != L:
            raise ConfigError(f"activations has {len(self.activations)} entries but the MLP has {L} layers")
        for a in self.activations:
            _activations.get(a)

    # --- sizes ---------------------------------------------------------------------------
    @property
    def depth(self) -> int:
        return self.weights.shape[0]

    @property
    def width(self) -> int:
        return self.weights.shape[-1]

    @property
    def hidden_size(self) -> int:  # pyright: ignore[reportIncompatibleVariableOverride]  # read-only, computed
        return self.width

    @property
    def input_size(self) -> int:  # pyright: ignore[reportIncompatibleVariableOverride]  # read-only, constant
        return 0  # each "step" (layer) reads no external input

    @property
    def batch_norm(self) -> bool:
        return self.bn_gamma is not None

    # --- one layer ---------------------------------------------------------------------------
    def _act(self, t: Any, which: str) -> Callable[[Array], Array]:
        """φ_t or φ_t' for layer index t (a Python int, or traced under scan: then `lax.switch`)."""
        if isinstance(t, int) or len(set(self.activations)) == 1:
            name = self.activations[t if isinstance(t, int) else 0]
            return getattr(_activations.get(name), which)
        names = sorted(set(self.activations))
        idx = jnp.asarray([names.index(a) for a in self.activations])[t]
        fns = [getattr(_activations.get(nm), which) for nm in names]
        return lambda a: jax.lax.switch(idx, fns, a)

    def _pre(self, h: Array, t: Any) -> tuple[Array, Array]:
        a = h @ self.weights[t].T + self.biases[t]  # works for h (n,) and (B, n)
        if self.bn_gamma is None or self.bn_beta is None or self.bn_mean is None or self.bn_var is None:
            return a, a
        an = (a - self.bn_mean[t]) / jnp.sqrt(self.bn_var[t] + self.eps)
        return a, self.bn_gamma[t] * an + self.bn_beta[t]

    def step(self, x: Array, state: Sequence[Array], t: Any) -> tuple[State, Aux]:
        (h,) = tuple(state)
        a, z = self._pre(h, t)
        y = self._act(t, "fn")(z)
        return ((h + y) if self.residual else y,), {"a": z}

    def __call__(self, x: Array, state: State) -> tuple[State, Aux]:
        return self.step(x, state, 0)

    def jacobian(self, x: Array, state: Sequence[Array], t: Any = 0) -> Jacobians:
        (h,) = tuple(state)
        _, z = self._pre(h, t)
        d = self._act(t, "deriv")(z)
        if self.bn_gamma is not None and self.bn_var is not None:
            d = d * self.bn_gamma[t] / jnp.sqrt(self.bn_var[t] + self.eps)
        J = d[:, None] * self.weights[t]
        if self.residual:
            J = J + jnp.eye(self.width, dtype=J.dtype)
        return J, jnp.zeros((self.width, 0), J.dtype)

    def describe(self) -> dict[str, Any]:
        return {
            "cell": "mlp",
            "width": self.width,
            "depth": self.depth,
            "activations": list(self.activations),
            "batch_norm": self.batch_norm,
            "residual": self.residual,
        }


def mlp_inputs(mlp: MLP, x0: Any) -> tuple[Float[Array, "*B L 0"], State]:
    """``(xs, state0)`` for ``rollout(mlp, xs, state0)``: empty inputs ``(L, 0)`` (or ``(B, L, 0)``)
    and the network input ``x0`` (``(n,)`` or ``(B, n)``) as the initial state."""
    x0 = jnp.asarray(x0, mlp.dtype)
    if x0.ndim not in (1, 2) or x0.shape[-1] != mlp.width:
        raise ShapeError(f"x0 has shape {tuple(x0.shape)}: expected ({mlp.width},) or (B, {mlp.width})")
    return jnp.zeros(x0.shape[:-1] + (mlp.depth, 0), mlp.dtype), (x0,)


def collect_statistics(mlp: MLP, x0_batch: Any) -> MLP:
    """A copy of a batch-normalised ``mlp`` whose per-layer population statistics are the
    training-mode batch statistics (biased variance) of ``x0_batch (B, n)`` propagated through it."""
    if mlp.bn_gamma is None or mlp.bn_beta is None:
        raise ConfigError("collect_statistics needs an MLP built with batch_norm=True")
    h = jnp.asarray(x0_batch, mlp.dtype)
    if h.ndim != 2 or h.shape[1] != mlp.width or h.shape[0] < 2:
        raise ShapeError(f"x0_batch has shape {tuple(h.shape)}: expected (B, {mlp.width}) with B >= 2")
    means: list[Array] = []
    variances: list[Array] = []
    for t in range(mlp.depth):
        a = h @ mlp.weights[t].T + mlp.biases[t]
        an, mu, var = norms.batch_norm(a, eps=mlp.eps)
        means.append(mu)
        variances.append(var)
        y = _activations.get(mlp.activations[t]).fn(mlp.bn_gamma[t] * an + mlp.bn_beta[t])
        h = h + y if mlp.residual else y
    return dataclasses.replace(mlp, bn_mean=jnp.stack(means), bn_var=jnp.stack(variances))


def make_mlp(
    width: int,
    depth: int,
    *,
    key: Array,
    activation: str | Sequence[str] = "tanh",
    init: str = "gaussian",
    gain: float = 1.0,
    bias_std: float = 0.0,
    batch_norm: bool = False,
    residual: bool = False,
    dtype: Any = jnp.float32,
) -> MLP:
    """Build an `MLP` of ``depth`` layers of ``width`` units.

    ``activation`` is one name or a sequence of ``depth`` names (sigmoid, tanh, relu, leaky-relu,
    elu, linear); ``init`` one of gaussian (N(0, gain²/n)), orthogonal (gain·Q), pytorch.
    """
    n, L = check_positive_int("width", width), check_positive_int("depth", depth)
    acts = (activation,) * L if isinstance(activation, str) else tuple(activation)
    if len(acts) != L:
        raise bad_value("activation", activation, f"one name or a sequence of depth={L} names")
    for a in acts:
        _activations.get(a)
    if not (isinstance(gain, (int, float)) and math.isfinite(gain)):
        raise bad_value("gain", gain, "expected a finite number")
    if not (isinstance(bias_std, (int, float)) and bias_std >= 0):
        raise bad_value("bias_std", bias_std, "expected a number >= 0")
    if dtype not in (jnp.float32, jnp.float64, "float32", "float64"):
        raise bad_value("dtype", dtype, "use float32 or float64")
    dtype = jnp.dtype(dtype)
    kw, kb = _random.split_keys(key)
    wkeys = _random.split(kw, L)
    if init == "gaussian":
        W = gain * jax.vmap(lambda k: jax.random.normal(k, (n, n), dtype))(wkeys) / math.sqrt(n)
    elif init == "orthogonal":

        def orth(k: Array) -> Array:
            q, r = jnp.linalg.qr(jax.random.normal(k, (n, n), dtype))
            return q * jnp.sign(jnp.diagonal(r))[None, :]  # sign fix: Haar-distributed Q

        W = gain * jax.vmap(orth)(wkeys)
    elif init == "pytorch":
        W = gain * jax.vmap(lambda k: uniform_init(k, (n, n), 1 / math.sqrt(n), dtype))(wkeys)
    else:
        raise bad_value("init", init, "one of " + ", ".join(INITS))
    if init == "pytorch":
        b = gain * uniform_init(kb, (L, n), 1 / math.sqrt(n), dtype)
    else:
        b = bias_std * jax.random.normal(kb, (L, n), dtype)
    if batch_norm:
        one, zero = jnp.ones((L, n), dtype), jnp.zeros((L, n), dtype)
        return MLP(
            W, b, bn_gamma=one, bn_beta=zero, bn_mean=zero, bn_var=one, activations=acts, residual=bool(residual)
        )
    return MLP(W, b, activations=acts, residual=bool(residual))
