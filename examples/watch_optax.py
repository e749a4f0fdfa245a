"""Watch gradient flow while a Flax GRU trains with optax (a JAX training loop of your own).

    python examples/watch_optax.py [--logdir runs/watch-optax] [--steps 200]

Task: predict the sum of a (B, T, 2) sequence's first feature at the end of the sequence. Every 25 steps
the watcher analyses the GRU's current weights on a fixed batch and appends one line to
``<logdir>/gradscope.jsonl`` (add "tensorboard" to ``backends`` for TensorBoard event files). Afterwards
``gradscope history <logdir>`` draws the horizon and the lag profile over training.
"""

from __future__ import annotations

import argparse
from typing import cast

import jax
import jax.numpy as jnp
import optax
from flax import linen as nn

from gradscope.watch import Watcher


class Model(nn.Module):
    hidden: int = 32

    @nn.compact
    def __call__(self, xs):  # (B, T, 2) -> (B,)
        hs = cast(jax.Array, nn.RNN(nn.GRUCell(features=self.hidden))(xs))  # (B, T, hidden)
        return nn.Dense(1)(hs[:, -1])[:, 0]


def batch(key, B=32, T=40):
    xs = jax.random.normal(key, (B, T, 2))
    return xs, xs[..., 0].sum(axis=1)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Watch a Flax GRU trained with optax.")
    ap.add_argument("--logdir", default="runs/watch-optax")
    ap.add_argument("--steps", type=int, default=200)
    args = ap.parse_args(argv)

    model, opt = Model(), optax.adam(3e-3)
    key, k0, k1 = jax.random.split(jax.random.key(0), 3)
    params = model.init(k0, jnp.zeros((1, 40, 2)))
    state = opt.init(params)

    @jax.jit
    def update(params, state, xs, ys):
        loss, grads = jax.value_and_grad(lambda p: jnp.mean((model.apply(p, xs) - ys) ** 2))(params)
        updates, state = opt.update(grads, state)
        return optax.apply_updates(params, updates), state, loss

    probe, _ = batch(k1, B=8)  # the fixed inputs the watcher analyses on
    with Watcher(probe, every=25, logdir=args.logdir, name="flax-gru") as watcher:
        for step in range(args.steps):
            key, sub = jax.random.split(key)
            params, state, loss = update(params, state, *batch(sub))
            a = watcher.step(params, step)  # the linen parameter tree; None except every 25th step
            if a is not None:
                s = a.summary
                print(f"step {step:4d}  loss {float(loss):8.4f}  horizon {s['horizon']:3d}  verdict {s['verdict']}")
    print(f"log: {args.logdir}/gradscope.jsonl")


if __name__ == "__main__":
    main()
