"""Watch gradient flow from inside any training loop: `Watcher`.

    import gradscope as gs
    with gs.watch.Watcher(xs, every=50, logdir="runs/lstm", backends=("tensorboard", "jsonl")) as w:
        for step in range(1000):
            ...                      # your training step (PyTorch, Flax/optax, Equinox, ...)
            w.step(model, step)

* `gradscope.watch.watcher` — the `Watcher` (``step``, ``close``, context manager);
* `gradscope.watch.convert` — PyTorch / Flax / Equinox models to gradscope models, touching nothing;
* `gradscope.watch.metrics` — the stages a watcher runs and the scalars it logs;
* backends, each imported only when used: `gradscope.watch.jsonl_backend` (``<logdir>/gradscope.jsonl``,
  always written; its format is documented there), `gradscope.watch.tensorboard_backend` and
  `gradscope.watch.mlflow_backend` (``pip install 'gradscope[watch]'``).
"""

from gradscope.watch.jsonl_backend import LOG_FILE, SCHEMA
from gradscope.watch.metrics import STAGES
from gradscope.watch.watcher import BACKENDS, Watcher

__all__ = ["BACKENDS", "LOG_FILE", "SCHEMA", "STAGES", "Watcher"]
