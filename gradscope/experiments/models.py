"""One way to build a model from a cell name, its options and a seed, shared by every command.

``gradscope analyse``, ``compare``, ``sweep`` and ``train`` all build their models with `build_model`, so a
cell name with the same options, sizes and seed has bitwise the same weights in every command, and the
same as the Python API's

    key = gradscope.experiments.models.model_key(seed)           # = jax.random.split(jax.random.key(seed))[0]
    cell = gs.cells.make(name, m, n, key=key, **layer_options(name, options, T, last=True))

(a `Stack` of L layers: layer l gets ``jax.random.split(key, L)[l]`` and ``layer_options(…, last=(l == L − 1))``).

What the commands add to the options (`command_options`, `layer_options`), and nothing else:

* ``indrnn`` without ``max_length``: ``max_length = T``, so |u| ≤ γ^(1/T) (Li et al. 2018, §3.1);
* ``indrnn``'s last layer without ``u_min`` or ``u_max``: ``u_min = (1/2)^(1/T)``, the official adding-problem
  init of Li et al. (2018), so |u|^T ∈ [1/2, γ]: the recurrent weights alone neither vanish nor explode over
  T steps (the registry default U(0, γ^(1/T)) is their first-layer init, under which most units forget within
  tens of steps).

The recurrent ``gain`` of the Elman family is the spectral radius of W_hh (`gradscope.cells.elman.recurrent_matrix`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: IndRNN's last layer starts with u ≥ INDRNN_LAST_LOW^(1/T) (Li et al. 2018, official adding-problem code)
INDRNN_LAST_LOW = 0.5


def model_key(seed: int) -> Any:
    """The key the weights of seed ``seed`` are drawn from: ``jax.random.split(jax.random.key(seed))[0]``
    (the other half draws the analysed inputs: `gradscope.experiments.sweep.config_keys`)."""
    from gradscope import _random

    return _random.split_keys(_random.key(int(seed)))[0]


def command_options(name: str, options: Mapping[str, Any], length: int) -> dict:
    """The options of cell ``name`` as the commands record them: IndRNN without ``max_length`` gets T."""
    opts = dict(options)
    if name == "indrnn" and opts.get("max_length") is None:
        opts["max_length"] = int(length)
    return opts


def layer_options(name: str, options: Mapping[str, Any], length: int, *, last: bool) -> dict:
    """The options layer ``l`` of a command's model is built with: `command_options`, and for IndRNN's last
    layer (a single cell is one) without ``u_min``/``u_max`` the adding-problem init u_min = (1/2)^(1/T)."""
    opts = command_options(name, options, length)
    if name == "indrnn" and last and "u_min" not in options and "u_max" not in options:
        opts["u_min"] = INDRNN_LAST_LOW ** (1.0 / opts["max_length"])
    return opts


def build_model(
    name: str,
    options: Mapping[str, Any],
    *,
    input_size: int,
    hidden: int,
    length: int,
    key: Any,
    layers: int = 1,
    residual: bool = False,
    dtype: Any = "float32",
) -> Any:
    """Cell ``name`` (``layers == 1`` and not residual) or a `Stack` of ``layers`` of them, weights from ``key``.

    Layer l of a stack is drawn from ``jax.random.split(key, layers)[l]`` with `layer_options`; the input
    size of a layer is the output size of the one below. Every command builds its models here.
    """
    import jax.numpy as jnp

    from gradscope import _random
    from gradscope._errors import check_positive_int
    from gradscope.cells import make
    from gradscope.nets import Stack

    dt = jnp.dtype(dtype)
    if layers == 1 and not residual:
        return make(name, input_size, hidden, key=key, dtype=dt, **layer_options(name, options, length, last=True))
    layers = check_positive_int("layers", layers)
    keys = _random.split_keys(key, layers)
    cells, m = [], input_size
    for l in range(layers):
        opts = layer_options(name, options, length, last=l == layers - 1)
        c = make(name, m, hidden, key=keys[l], dtype=dt, **opts)
        cells.append(c)
        m = c.output_size
    return Stack(tuple(cells), residual=residual)


def build_for_seed(name: str, options: Mapping[str, Any], seed: int, **sizes: Any) -> Any:
    """`build_model` with the weights of seed ``seed`` (`model_key`): what every command builds for that seed."""
    return build_model(name, options, key=model_key(seed), **sizes)
