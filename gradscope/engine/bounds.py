"""The documents' bounds, to draw next to the measurements.

Each model states its own bound (``gradient_bound()``, see `gradscope.cells.elman.Elman` and
`gradscope.cells.indrnn.IndRNN`); this module only turns it into log10 growth per step, so the bound at
lag τ is ``τ · log10_per_step``:

* Pascanu, Mikolov & Bengio (2013, "On the difficulty of training recurrent neural networks", §2.1):
  for ``h_t = φ(W h_{t−1} + …)`` with ``|φ'| ≤ γ``, ``‖∂h_t/∂h_k‖₂ ≤ (γ σ_max(W))^{t−k}``.
* Li, Li, Cook, Zhu & Gao (2018, "Independently recurrent neural network (IndRNN)", eq. 4): per neuron
  ``|∂h_{n,T}/∂h_{n,k}| ≤ (γ |u_n|)^{T−k}``, so the diagonal product's spectral norm is at most
  ``(γ max|u_n|)^{T−k}``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np


def bound(model: Any) -> dict | None:
    """``{"kind", "gamma", "sigma_max", "log10_per_step"}``, or None when the model states no bound
    (no ``gradient_bound`` method, or one that returns None)."""
    method: Callable[[], Mapping[str, Any] | None] | None = getattr(model, "gradient_bound", None)
    b = method() if callable(method) else None
    if b is None:
        return None
    g, s = float(b["gamma"]), float(b["sigma_max"])
    with np.errstate(divide="ignore"):
        per = float(np.log10(g * s))
    return {"kind": str(b["kind"]), "gamma": g, "sigma_max": s, "log10_per_step": per}
