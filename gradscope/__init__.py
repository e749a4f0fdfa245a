"""gradscope: gradient-flow diagnostics for recurrent neural networks, on JAX.

    import gradscope as gs
    cell = gs.cells.make("lstm", 8, 64, key=jax.random.key(0), forget_bias=1.0)
    traj = gs.rollout(cell, xs)
"""

from gradscope import cells
from gradscope._errors import ConfigError, GradscopeError, NonFiniteError, ShapeError, UnknownNameError
from gradscope.nets import Bidirectional, Stack, bidirectional, stack
from gradscope.rollout import Trajectory, rollout

__version__ = "0.1.0"

__all__ = [
    "cells", "rollout", "Trajectory", "Stack", "Bidirectional", "stack", "bidirectional",
    "GradscopeError", "ConfigError", "ShapeError", "UnknownNameError", "NonFiniteError",
    "__version__",
]
