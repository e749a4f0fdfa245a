"""Training tasks: synthetic long-memory problems, sequential digits and character-level text.

    task = gradscope.tasks.make("adding", length=100)
    xs, ys = task.sample(jax.random.key(0), batch=32)     # xs (32, 100, 2), ys (32,)

Every task is a pure generator keyed by a `jax.random` key (see `gradscope.tasks._base` for the protocol);
``names()`` lists the registered tasks and ``options(name)`` their options.
"""

from gradscope.tasks import digits, synthetic, text  # noqa: F401  (registration)
from gradscope.tasks._base import Task, make, names, options
from gradscope.tasks.digits import Digits, MissingDependencyError
from gradscope.tasks.synthetic import Adding, Copy, TemporalOrder
from gradscope.tasks.text import Text

__all__ = ["Task", "make", "names", "options", "Adding", "Copy", "TemporalOrder", "Digits", "Text",
           "MissingDependencyError"]
