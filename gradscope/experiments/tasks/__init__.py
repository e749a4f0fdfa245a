"""Training tasks: synthetic long-memory problems, sequential digits and character-level text.

    task = gradscope.experiments.tasks.make("adding", length=100)
    xs, ys = task.sample(jax.random.key(0), batch=32)     # xs (32, 100, 2), ys (32,)

Every task is a pure generator keyed by a `jax.random` key (see `gradscope.experiments.tasks._base` for the protocol);
``names()`` lists the registered tasks and ``options(name)`` their options.
"""

from gradscope.experiments.tasks import digits, synthetic, text  # noqa: F401  (registration)
from gradscope.experiments.tasks._base import Task, make, names, options
from gradscope.experiments.tasks.digits import Digits, MissingDependencyError
from gradscope.experiments.tasks.synthetic import Adding, Copy, TemporalOrder
from gradscope.experiments.tasks.text import Text

__all__ = [
    "Task",
    "make",
    "names",
    "options",
    "Adding",
    "Copy",
    "TemporalOrder",
    "Digits",
    "Text",
    "MissingDependencyError",
]
