"""What to change, and where it is explained: the fixed suggestion and reference of every finding id.

One table, so the rules (`gradscope.analysis.findings`, `gradscope.analysis.rules`) only compute what
they found and the numbers behind it, and the advice is written once. A rule may still pass a suggestion
of its own where the fix carries a number (IndRNN's clipping range).
"""

from __future__ import annotations

from typing import NamedTuple


class Advice(NamedTuple):
    severity: str
    suggestion: str
    reference: str


_LSTM_REF = "Gers, Schmidhuber & Cummins 2000 (Neural Computation), 'Learning to forget'"
_PASCANU = "Pascanu, Mikolov & Bengio 2013 (ICML), 'On the difficulty of training recurrent neural networks'"
_INDRNN = "Li, Li, Cook, Zhu & Gao 2018 (CVPR), 'Independently recurrent neural network (IndRNN)' §3.1"
_PATHS = (
    "Hochreiter & Schmidhuber 1997 (constant error carousel); Gers, Schmidhuber & Cummins 2000; "
    "Pascanu, Mikolov & Bengio 2013 §3.2 (clipping); notebooks/03-the-lstm-highway"
)

#: finding id → its severity, the concrete change and the paper/notebook that explains it
ADVICE: dict[str, Advice] = {
    "curse-of-memory": Advice(
        "warning",
        "parameterise the recurrence so that its eigenvalues λ are reached through a map whose derivative "
        "vanishes as |λ| → 1 (λ = exp(−exp(ν)), as the LRU) and keep the eigenvalue modulus away from 1 "
        "(lru: lower r_max); use an adaptive optimiser (Adam) or a smaller learning rate for the "
        "recurrent parameters",
        "Zucchet & Orvieto 2024 (NeurIPS), 'Recurrent neural networks: vanishing and exploding gradients are "
        "not the end of the story'; Orvieto et al. 2023 (LRU) §3.3-3.4; gs.parameter_sensitivity",
    ),
    "chaos": Advice(
        "warning",
        "bring the recurrent matrix's spectral radius below 1 (--gain < 1; for relu cells and IndRNN keep the "
        "recurrent weights |u| ≤ 1), initialise it orthogonally (--init orthogonal), and clip the gradient "
        "norm during training (Pascanu et al. 2013 §3.2)",
        f"{_PASCANU}; notebooks/02-the-rnn-product (the transition to chaos)",
    ),
    "dead-units": Advice(
        "warning",
        "give the units a small positive bias or use a leaky relu (rnn-leaky-relu), and centre or normalise "
        "the inputs so that each unit sees pre-activations of both signs",
        "Le, Jaitly & Hinton 2015 (IRNN); Li et al. 2018 (IndRNN); notebooks/01-depth-before-time "
        "(relu units switching off)",
    ),
    "forget-gate": Advice(
        "warning",
        "raise the forget-gate bias to 1 (--forget-bias 1; Gers et al. 2000, Jozefowicz et al. 2015) or use "
        "the chrono initialisation b_f ~ log U[1, T_max − 1] with T_max about the dependency length "
        "(--chrono T_max; Tallec & Ollivier 2018)",
        f"{_LSTM_REF}; Tallec & Ollivier 2018 (ICLR), 'Can recurrent neural networks warp time?'; "
        "notebooks/03-the-lstm-highway",
    ),
    "saturated-gates": Advice(
        "warning",
        "shrink the pre-activations of that gate: scale the inputs to unit variance, lower the input and "
        "recurrent weight scales or the gate bias, or normalise the gate pre-activations (layer-norm LSTM, "
        "lstm-ln)",
        f"{_LSTM_REF}; Ba, Kiros & Hinton 2016, 'Layer normalization'; notebooks/03-the-lstm-highway",
    ),
    "pascanu-bound": Advice(
        "warning",
        "raise the recurrent weights' scale so that σ_max(W)·γ ≥ 1 (an orthogonal W has σ_max = 1: "
        "--init orthogonal --gain 1), or use a gated cell (LSTM, GRU) whose additive path is not bound by it",
        f"{_PASCANU} §2.1; notebooks/02-the-rnn-product",
    ),
    "remainder-exploding": Advice(
        "warning",
        "lower the scale of the recurrent weights W_hh (they drive the gate paths), and clip the gradient "
        "norm during training (Pascanu et al. 2013 §3.2)",
        _PATHS,
    ),
    "highway-closed": Advice(
        "info",
        "open the highway: raise the forget-gate bias (--forget-bias 1) or use the chrono initialisation "
        "(--chrono T_max; Tallec & Ollivier 2018)",
        _PATHS,
    ),
    "indrnn-range": Advice("warning", "keep every |u_n| within the range of Li et al. 2018 §3.1", _INDRNN),
}
