"""The documents' bounds, to draw next to the measurements.

* Pascanu, Mikolov & Bengio (2013, §2.1): for ``h_t = φ(W h_{t−1} + …)`` with ``|φ'| ≤ γ``,
  ``‖∂h_t/∂h_k‖₂ ≤ (γ σ_max(W))^{t−k}``; γ = 1 for tanh, 1/4 for the sigmoid.
* IndRNN (Li et al. 2018, eq. 4): per neuron ``|∂h_{n,T}/∂h_{n,k}| ≤ |u_n|^{T−k} γ^{T−k}``; the spectral
  norm of the diagonal product is bounded by ``(γ max|u_n|)^{T−k}``.
Returned as log10 growth per step, so the bound at lag τ is ``τ · log10_per_step``.
"""

from __future__ import annotations

import numpy as np


def bound(model) -> dict | None:
    """``{"kind", "gamma", "sigma_max", "log10_per_step"}`` or None when no classical bound applies."""
    from gradscope.cells.elman import Elman
    from gradscope.cells.indrnn import IndRNN

    if isinstance(model, Elman):
        s = float(np.linalg.norm(np.asarray(model.weight_hh, np.float64), 2))
        kind, g = "pascanu", model.gamma
    elif isinstance(model, IndRNN):
        s = float(np.max(np.abs(np.asarray(model.weight_hh_diag, np.float64))))
        kind, g = "indrnn", model.gamma
    else:
        return None
    with np.errstate(divide="ignore"):
        per = float(np.log10(g * s))
    return {"kind": kind, "gamma": float(g), "sigma_max": s, "log10_per_step": per}
