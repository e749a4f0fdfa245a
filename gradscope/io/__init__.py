"""Weight import and export, from pickle-free formats (see `gradscope.io.formats`).

* `from_torch` — ``nn.RNN`` / ``nn.LSTM`` (incl. ``proj_size``) / ``nn.GRU``, any ``num_layers``,
  bidirectional; and the modern recurrences recognised by `gradscope.io.modern` (transformers Mamba /
  Mamba-2, xlstm sLSTM / mLSTM, mingru-pytorch minGRU / minLSTM, lru-pytorch LRU, recurrentgemma RG-LRU);
  from a module, a state dict, ``.safetensors``, ``.npz`` or ``.pt`` (``weights_only=True``).
* `from_keras` — Keras 3 ``SimpleRNN`` / ``LSTM`` / ``GRU`` (``reset_after`` both ways).
* `from_flax` — Flax linen and NNX ``LSTMCell`` / ``OptimizedLSTMCell`` / ``GRUCell``; recurrentgemma's
  RG-LRU and the LRU paper's Flax layer.
* `from_equinox` — Equinox ``LSTMCell`` / ``GRUCell``.
* `to_torch_state_dict`, `save_safetensors`, `save_npz` — export back to PyTorch names.
* `inspect_file` — what a weight file holds and how it would be mapped.

None of the frameworks is needed to import gradscope; each is used only when its objects are passed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gradscope._lazy import lazy_getattr

if TYPE_CHECKING:
    from gradscope.io.deep_bidirectional import DeepBidirectional, DeepRollout
    from gradscope.io.equinox import from_equinox
    from gradscope.io.flax import from_flax
    from gradscope.io.formats import ImportFormatError, read_arrays
    from gradscope.io.inspect import inspect_file, load_model
    from gradscope.io.keras import from_keras
    from gradscope.io.torch import from_torch, save_npz, save_safetensors, to_torch_state_dict

# names are loaded on first use (PEP 562); the importers import JAX only to build a model, so `gradscope inspect`,
# which describes the importer's plan of it, reads and checks a file with NumPy alone
_LAZY = {
    "from_torch": "gradscope.io.torch",
    "from_keras": "gradscope.io.keras",
    "from_flax": "gradscope.io.flax",
    "from_equinox": "gradscope.io.equinox",
    "load_model": "gradscope.io.inspect",
    "to_torch_state_dict": "gradscope.io.torch",
    "save_safetensors": "gradscope.io.torch",
    "save_npz": "gradscope.io.torch",
    "inspect_file": "gradscope.io.inspect",
    "read_arrays": "gradscope.io.formats",
    "DeepBidirectional": "gradscope.io.deep_bidirectional",
    "DeepRollout": "gradscope.io.deep_bidirectional",
    "ImportFormatError": "gradscope.io.formats",
}

__all__ = [
    "from_torch",
    "from_keras",
    "from_flax",
    "from_equinox",
    "load_model",
    "to_torch_state_dict",
    "save_safetensors",
    "save_npz",
    "inspect_file",
    "read_arrays",
    "DeepBidirectional",
    "DeepRollout",
    "ImportFormatError",
]


__getattr__ = lazy_getattr("gradscope.io", _LAZY, globals())
