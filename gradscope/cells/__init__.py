"""Recurrent cells, one module per family, and the registry of their stable names.

``make(name, input_size, hidden_size, key=key, **options)`` builds any of them; ``names()`` lists them.
"""

# modern recurrences (linear/diagonal recurrences, state-space models, xLSTM)
from gradscope.cells import elman, gru, indrnn, lru, lstm, mamba, mingru, minimal, mut, normalized, rglru, s4d, xlstm  # noqa: F401  (registration)
from gradscope.cells._base import Cell, State, block_slices, flatten_state, pytree_cell, static, unflatten_state
from gradscope.cells._registry import entries, entry, make, names, options
from gradscope.cells.elman import Elman
from gradscope.cells.indrnn import IndRNN, clip_recurrent, recurrent_bound
from gradscope.cells.lstm import LSTM, LSTMNoForget, PeepholeLSTM

__all__ = [
    "Cell",
    "State",
    "block_slices",
    "flatten_state",
    "unflatten_state",
    "pytree_cell",
    "static",
    "make",
    "names",
    "entries",
    "entry",
    "options",
    "Elman",
    "IndRNN",
    "LSTM",
    "LSTMNoForget",
    "PeepholeLSTM",
    "clip_recurrent",
    "recurrent_bound",
]
