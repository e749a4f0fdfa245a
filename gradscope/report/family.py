"""What kind of recurrence an analysis record describes, read from the record alone (no JAX): the
captions, the Diagnosis and the per-layer / per-unit views depend on it.

`Analysis.to_dict()` writes ``model.parts``: per leaf cell its state-block prefix, registry name, family,
Jacobian structure (dense, diagonal, complex-diagonal), whether it has a gated direct path and its
activation. A record written before that field existed falls back on its sections (a ``paths`` section
means a gated cell; otherwise a dense, ungated one).

Three kinds, because they lose their gradient for different reasons:

* ``dense``: an Elman-type cell, S_t = φ(W S_{t−1} + U x_t); the gradient is a product of W^T diag(φ′)
  (Pascanu, Mikolov & Bengio 2013);
* ``gated``: LSTM/GRU-type cells with an additive path (the cell state of an LSTM, GRU's (1 − z) term)
  whose Jacobian is the diagonal of the gates (Hochreiter & Schmidhuber 1997; Gers et al. 2000);
* ``diagonal``: cells whose state Jacobian is diagonal (IndRNN, LRU, S4D, Mamba, minGRU, RG-LRU): each
  unit keeps its own decay |λ_i| per step, a time constant τ_i = −1/ln|λ_i| (Li et al. 2018; Orvieto
  et al. 2023).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

#: readable names of the registry families
FAMILY_NAMES = {
    "elman": "Elman RNN",
    "lstm": "LSTM",
    "gru": "GRU",
    "mut": "MUT (evolved GRU variant)",
    "normalized": "normalised gated cell",
    "xlstm": "xLSTM cell",
    "minimal": "minimal gated cell",
    "indrnn": "IndRNN",
    "lru": "linear recurrent unit (LRU)",
    "s4d": "S4D state-space layer",
    "mamba": "Mamba selective state-space layer",
    "mingru": "minGRU/minLSTM",
    "rglru": "RG-LRU (Griffin)",
    "custom": "custom cell",
}


@dataclasses.dataclass(frozen=True)
class Family:
    """The recurrence of one analysis: ``kind`` (dense, gated or diagonal), a readable ``label``, the
    registry ``family`` and ``activation`` of its (first) cell, the layer prefixes of a stack."""

    kind: str
    label: str
    family: str
    activation: str | None
    layers: tuple[str, ...]
    complex: bool = False

    @property
    def relu(self) -> bool:
        return self.activation == "relu"


def _parts(a: Mapping) -> list[Mapping]:
    parts = (a.get("model") or {}).get("parts")
    return [p for p in parts if isinstance(p, Mapping)] if isinstance(parts, list) else []


def layer_prefixes(a: Mapping) -> tuple[str, ...]:
    """The prefixes of a stack's layers (``layer0.``, ``layer1.``, …) in block order; () for one cell."""
    prefixes = [str(p.get("prefix", "")) for p in _parts(a)]
    if not prefixes:  # an older record: the block names carry the prefix
        prefixes = list(dict.fromkeys(b.rsplit(".", 1)[0] + "." for b in a.get("blocks") or [] if "." in b))
    return tuple(prefixes) if len(prefixes) > 1 else ()


def family_of(a: Mapping) -> Family:
    """The `Family` of an analysis record (from ``model.parts``; older records from their sections)."""
    parts = _parts(a)
    layers = layer_prefixes(a)
    if parts:
        p = parts[0]
        fam = str(p.get("family") or "custom")
        structure = {str(q.get("structure", "dense")) for q in parts}
        if all(s != "dense" for s in structure):
            kind = "diagonal"
        elif all(q.get("gated") for q in parts):
            kind = "gated"
        else:
            kind = "dense"
        act = p.get("activation") if isinstance(p.get("activation"), str) else None
        complex_ = "complex-diagonal" in structure
    else:
        m = a.get("model") or {}
        fam = str(m.get("cell") or "custom")  # an older record: the cell's registry name stands for its family
        kind = "gated" if a.get("paths") else "dense"
        act = m.get("activation") if isinstance(m.get("activation"), str) else None
        complex_ = False
    label = FAMILY_NAMES.get(fam, fam)
    if act and kind != "gated":
        label += f", {act}"
    if layers:
        label = f"{len(layers)}-layer stack of {label}"
    return Family(kind, label, fam, act, layers, complex_)
