"""Normalised recurrent cells: layer-, group-, "instance"- and batch-normalised RNNs, LSTMs and GRUs.

The family, registered in this order:

* `gradscope.cells.layernorm` — ``ln-rnn``, ``ln-lstm``, ``in-lstm``, ``gn-lstm``, ``ln-gru``: layer norm
  (Ba, Kiros & Hinton 2016), e.g. ``h_t = φ(LN(W_hh h_{t-1} + W_xh x_t; g, b))``, with group norm
  (Wu & He 2018) and per-gate "instance" norm variants of the LSTM. Statistics are per example and step.
* `gradscope.cells.batchnorm` — ``bn-lstm``, ``bn-rnn``: recurrent batch norm (Cooijmans et al. 2016),
  ``BN(u; γ, β) = β + γ ⊙ (u − E[u])/sqrt(Var[u] + eps)`` with population statistics per time step;
  ``step`` is the inference-mode map, `training_rollout` the batch-coupled training mode and
  `collect_statistics` sets the statistics from a batch. With W_h = I and constant input the BN-RNN's
  per-step factor tends to 2γ/sinh(2γ) (derived in `gradscope.cells.batchnorm`).

This module re-exports both, so ``gradscope.cells.normalized.collect_statistics`` and the class names
keep working. See docs/references.md for the papers.
"""

from __future__ import annotations

from gradscope.cells.layernorm import (
    LNGRU,
    LNRNN,
    NormLSTM,
    build_gn_lstm,
    build_in_lstm,
    build_ln_gru,
    build_ln_lstm,
    build_ln_rnn,
)

from gradscope.cells.batchnorm import (  # isort: skip  (registration order: layer norm first)
    BNLSTM,
    BNRNN,
    build_bn_lstm,
    build_bn_rnn,
    collect_statistics,
    training_rollout,
)

__all__ = [
    "LNRNN",
    "NormLSTM",
    "LNGRU",
    "BNLSTM",
    "BNRNN",
    "training_rollout",
    "collect_statistics",
    "build_ln_rnn",
    "build_ln_lstm",
    "build_gn_lstm",
    "build_in_lstm",
    "build_ln_gru",
    "build_bn_lstm",
    "build_bn_rnn",
]
