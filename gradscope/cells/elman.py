"""Elman (vanilla) RNNs and IRNN.

    h_t = φ(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh),     φ ∈ {tanh, sigmoid, relu, leaky-relu, elu, linear}

PyTorch's ``nn.RNN`` layout (``weight_ih (n, m)``, ``weight_hh (n, n)``, two biases). The step Jacobian
is ``∂h_t/∂h_{t-1} = diag(φ'(a_t)) W_hh`` — the factor whose product Pascanu et al. (2013) bound by
``(γ σ_max(W_hh))^(t-k)``.

IRNN (Le, Jaitly & Hinton 2015): relu, ``W_hh = I`` (optionally scaled), zero biases, so with every
unit active ``∂h_t/∂h_k = I`` exactly.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike

from gradscope import _random
from gradscope._errors import bad_value, check_bool, check_number
from gradscope.cells import _activations
from gradscope.cells._base import Array, Aux, Jacobians, SizedCell, State, pytree_cell, static, uniform_init
from gradscope.cells._registry import Init, registrar

register = registrar("elman")  # every cell this module registers is of the elman family

RECURRENT_INITS = ("uniform", "gaussian", "orthogonal", "identity")


@pytree_cell
class Elman(SizedCell):
    weight_ih: jax.Array
    weight_hh: jax.Array
    bias_ih: jax.Array
    bias_hh: jax.Array
    activation: str = static(default="tanh")

    def __call__(self, x: Array, state: State) -> tuple[State, Aux]:
        (h,) = state
        a = self.weight_ih @ x + self.bias_ih + self.weight_hh @ h + self.bias_hh
        return (_activations.get(self.activation).fn(a),), {"a": a}

    def jacobian(self, x: Array, state: State, t: Any = None) -> Jacobians:
        (h,) = state
        a = self.weight_ih @ x + self.bias_ih + self.weight_hh @ h + self.bias_hh
        d = _activations.get(self.activation).deriv(a)[:, None]
        return d * self.weight_hh, d * self.weight_ih

    @property
    def gamma(self) -> float:
        """sup |φ'|, the γ of Pascanu's bound."""
        return _activations.get(self.activation).gamma

    def gradient_bound(self) -> dict:
        """Pascanu, Mikolov & Bengio (2013, §2.1): ``‖∂h_t/∂h_k‖₂ ≤ (γ σ_max(W_hh))^{t−k}`` with
        γ = sup|φ'|, since each step is ``diag(φ'(a_t)) W_hh``. Returns ``{"kind", "gamma", "sigma_max"}``
        (host NumPy: call it outside jit)."""
        import numpy as np

        s = float(np.linalg.norm(np.asarray(self.weight_hh, np.float64), 2))
        return {"kind": "pascanu", "gamma": float(self.gamma), "sigma_max": s}

    @property
    def recurrent_matrix(self) -> Array:
        return self.weight_hh


def resolve_recurrent_init(init: str | None, gain: float | None) -> tuple[str, float | None]:
    """The recurrent initialisation and spectral radius that ``recurrent_init`` and ``gain`` ask for.

    ``gain`` is the spectral radius ρ(W_hh). Neither given: PyTorch's ``nn.RNN`` init (``("uniform", None)``,
    U(±1/√n), ρ → 1/√3 ≈ 0.577). A gain without an init: an orthogonal W_hh of radius exactly ``gain``.
    An init without a gain: radius 1 (uniform: PyTorch's scale, as above).
    """
    if init is None:
        init = "uniform" if gain is None else "orthogonal"
    if init not in RECURRENT_INITS:
        raise bad_value("recurrent_init", init, "one of " + ", ".join(RECURRENT_INITS))
    if gain is not None:
        gain = float(check_number("gain", gain, nonnegative=True))
    return init, gain


def recurrent_matrix(key: Array, n: int, init: str | None, gain: float | None, dtype: DTypeLike) -> Array:
    """W_hh (n, n) whose spectral radius ρ is ``gain`` (`resolve_recurrent_init` for the defaults):

    * ``orthogonal``: g·Q, Q Haar-distributed orthogonal, so every eigenvalue has modulus g exactly;
    * ``identity``: g·I (ρ = g exactly);
    * ``gaussian``: entries N(0, g²/n): ρ → g as n → ∞ (the circular law, Tao & Vu 2010); random tanh networks
      of this kind turn chaotic at g ≈ 1 (Sompolinsky, Crisanti & Sommers 1988);
    * ``uniform``: entries U(±g·√(3/n)), of the same variance g²/n, so ρ → g as well; without a gain
      PyTorch's U(±1/√n) (variance 1/(3n), ρ → 1/√3).

    A gain of ``None`` with the other inits means 1.
    """
    init, g = resolve_recurrent_init(init, gain)
    if init == "uniform":
        bound = (1.0 if g is None else g * math.sqrt(3.0)) / math.sqrt(n)
        return uniform_init(key, (n, n), bound, dtype)
    g = 1.0 if g is None else g
    if init == "gaussian":  # N(0, g²/n): circular law, spectral radius → g
        return g * _random.normal(key, (n, n), dtype) / math.sqrt(n)
    if init == "orthogonal":  # Haar: Q from the QR of a Gaussian matrix, signs fixed by diag(R) (Mezzadri 2007)
        q, r = jnp.linalg.qr(_random.normal(key, (n, n), dtype))
        return g * q * jnp.sign(jnp.diagonal(r))[None, :]
    return g * jnp.eye(n, dtype=dtype)  # identity


def _build(init: Init, activation, recurrent_init, gain, bias):
    input_size, hidden_size, key, dtype = init
    check_bool("bias", bias)
    _activations.get(activation)
    k1, k2, k3, k4 = _random.split_keys(key, 4)
    bound = 1 / math.sqrt(hidden_size)
    if bias:
        b_ih = uniform_init(k3, (hidden_size,), bound, dtype)
        b_hh = uniform_init(k4, (hidden_size,), bound, dtype)
    else:
        b_ih = b_hh = jnp.zeros((hidden_size,), dtype)
    return Elman(
        weight_ih=uniform_init(k1, (hidden_size, input_size), bound, dtype),
        weight_hh=recurrent_matrix(k2, hidden_size, recurrent_init, gain, dtype),
        bias_ih=b_ih,
        bias_hh=b_hh,
        **init.sizes,
        activation=activation,
    )


_ACT_EQ = {
    "tanh": "h_t = tanh(W_ih x_t + W_hh h_{t-1} + b)",
    "sigmoid": "h_t = σ(W_ih x_t + W_hh h_{t-1} + b)",
    "relu": "h_t = max(0, W_ih x_t + W_hh h_{t-1} + b)",
    "leaky-relu": "h_t = leaky_relu_0.01(W_ih x_t + W_hh h_{t-1} + b)",
    "elu": "h_t = elu(W_ih x_t + W_hh h_{t-1} + b)",
    "linear": "h_t = W_ih x_t + W_hh h_{t-1} + b",
}


def _register_activation(act: str):
    @register(
        f"rnn-{act}",
        f"Elman RNN with {act} activation (PyTorch nn.RNN layout)",
        equation=_ACT_EQ[act],
    )
    def build(init: Init, *, recurrent_init=None, gain=None, bias=True):
        """``recurrent_init`` (uniform/gaussian/orthogonal/identity) and ``gain``, the spectral radius of
        W_hh: see `recurrent_matrix` (default: PyTorch's init; a gain alone: orthogonal of that radius)."""
        return _build(init, act, recurrent_init, gain, bias)

    return build


for _act in _activations.ACTIVATIONS:
    _register_activation(_act)


@register(
    "irnn",
    "IRNN (Le et al. 2015): relu, identity recurrent init, zero bias",
    equation="h_t = max(0, W_ih x_t + W_hh h_{t-1}),  W_hh = scale·I, b = 0",
)
def build_irnn(init: Init, *, scale: float = 1.0, input_std: float = 0.001) -> Elman:
    input_size, hidden_size, key, dtype = init
    check_number("scale", scale, positive=True)  # 1.0 = identity
    check_number("input_std", input_std, nonnegative=True)
    return Elman(
        weight_ih=input_std * _random.normal(key, (hidden_size, input_size), dtype),
        # constants made on the host: no compiled program each (jnp.eye is five)
        weight_hh=jax.device_put(np.eye(hidden_size, dtype=dtype) * np.asarray(scale, dtype)),
        bias_ih=jax.device_put(np.zeros((hidden_size,), dtype)),
        bias_hh=jax.device_put(np.zeros((hidden_size,), dtype)),
        **init.sizes,
        activation="relu",
    )
