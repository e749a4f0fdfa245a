"""Arrays from other frameworks as NumPy arrays: the one conversion every entry point applies to its inputs.

NumPy and JAX arrays pass through unchanged. A PyTorch tensor (recognised only when ``torch`` is already
imported, so torch is never imported here) is detached from the autograd graph, copied to the CPU, and
bfloat16 is widened to float32 (NumPy has no bfloat16); the user's tensor itself is not touched. Anything
else is returned as it is, for `np.asarray` and the shape checks of the caller.
"""

from __future__ import annotations

import sys
from typing import Any


def is_torch_tensor(x: Any) -> bool:
    """True for a ``torch.Tensor`` (False whenever torch has not been imported)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def to_array(x: Any) -> Any:
    """``x`` as an array NumPy/JAX can read: torch tensors → ``np.ndarray`` (detached, CPU, bf16 → f32)."""
    if not is_torch_tensor(x):
        return x
    t = x.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    if str(t.dtype) == "torch.bfloat16":
        t = t.float()
    if t.is_complex():
        t = t.resolve_conj()
    return t.resolve_neg().numpy()
