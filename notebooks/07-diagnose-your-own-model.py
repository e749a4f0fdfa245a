# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 7. Diagnose your own model: a PyTorch LSTM, imported and analysed
#
# gradscope reads PyTorch's `nn.RNN` / `nn.LSTM` / `nn.GRU` weights from pickle-free files (`.safetensors`, `.npz`)
# and builds the same model in JAX, with PyTorch's parameter layout (LSTM gate blocks $i, f, g, o$). This notebook
# trains a small `nn.LSTM` for a few steps on the adding problem, saves its state dict with safetensors, loads it
# with `gs.io.from_torch`, checks that the import reproduces PyTorch's outputs, and runs `gs.analyse` on it.
# Without PyTorch it skips the training and round-trips a gradscope LSTM through the same file format instead.

# %% tags=["parameters"]
import os

FAST = os.environ.get("GRADSCOPE_FAST") == "1"
HIDDEN = 16 if FAST else 64
LENGTH = 50 if FAST else 200  # adding-problem length
TRAIN_STEPS = 20 if FAST else 300
BATCH = 16 if FAST else 64
SEED = 0

# %%
# %matplotlib inline
import pathlib
import tempfile

import jax
import numpy as np

import gradscope as gs
from gradscope.report import figures

try:
    import torch
    from safetensors.torch import save_file
except ImportError:  # the notebook still runs, on a gradscope-made LSTM
    torch = None
print("PyTorch:", torch.__version__ if torch is not None else "not installed, using the fallback")

task = gs.tasks.make("adding", length=LENGTH)
xs, ys = (np.array(a, np.float32) for a in task.sample(jax.random.key(SEED), batch=BATCH))
print("inputs", xs.shape, "targets", ys.shape)
workdir = pathlib.Path(tempfile.mkdtemp())
weights = workdir / "lstm.safetensors"

# %% [markdown]
# ## Train in PyTorch and save the weights
#
# An `nn.LSTM` with a linear readout of the last hidden state, trained with Adam for a few steps. Only the
# LSTM's `state_dict()` is saved, in safetensors format (no pickle).

# %%
losses = []
if torch is not None:
    torch.manual_seed(SEED)
    lstm = torch.nn.LSTM(xs.shape[-1], HIDDEN, batch_first=True)
    readout = torch.nn.Linear(HIDDEN, 1)
    opt = torch.optim.Adam([*lstm.parameters(), *readout.parameters()], lr=1e-2)
    for step in range(TRAIN_STEPS):
        batch_xs, batch_ys = (torch.from_numpy(np.array(a, np.float32))
                              for a in task.sample(jax.random.key(SEED + 1 + step), batch=BATCH))
        out, _ = lstm(batch_xs)
        loss = torch.mean((readout(out[:, -1]).squeeze(-1) - batch_ys) ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    save_file({k: v.detach().contiguous() for k, v in lstm.state_dict().items()}, str(weights))
    print(f"loss {losses[0]:.3f} -> {losses[-1]:.3f} after {TRAIN_STEPS} steps (task baseline {task.baseline:.3f})")
else:
    gs.io.save_safetensors(gs.cells.make("lstm", xs.shape[-1], HIDDEN, key=jax.random.key(SEED)), weights)

# %% [markdown]
# ## Import and check against PyTorch
#
# `gs.io.from_torch` infers the kind (LSTM from the 4 gate blocks), the sizes and the number of layers from the
# names and shapes in the file. The hidden states of the imported model must match PyTorch's to float32 precision.

# %%
model = gs.io.from_torch(weights)
print(model.describe())
ours = np.asarray(gs.rollout(model, xs)["h"][:, 1:])  # h_1..h_T
if torch is not None:
    with torch.no_grad():
        theirs = lstm(torch.from_numpy(xs))[0].numpy()
    import_error = float(np.abs(ours - theirs).max())
    print(f"max |h_gradscope - h_torch| = {import_error:.1e}")

# %% [markdown]
# ## Analyse
#
# `gs.analyse` computes the lag profile $\log_{10}\|\partial S_T/\partial S_k\|_2$, the LSTM path split (the
# cell-state highway $\prod f$ against the rest), gate statistics and the Lyapunov spectrum. `summary` holds the
# headline numbers: the horizon is the longest lag at which the gradient norm stays above $10^{-3}$.

# %%
analysis = gs.analyse(model, xs[:8], name="torch LSTM (imported)")
report = analysis.to_dict()
for k, v in report["summary"].items():
    print(f"{k:>26}: {v}")

# %%
figures.lag_profiles(report)

# %%
figures.paths(report)

# %%
figures.gates(report)

# %% [markdown]
# If the horizon is shorter than the dependencies your task needs, the figures show where the gradient is lost:
# the highway closes (forget gates well below 1) or the gates saturate. The notebooks on the LSTM highway (3) and
# on gated cells (4) show what changes each of them.
#
# ## The claims, checked on the numbers above

# %%
if torch is not None:
    assert import_error < 1e-4, "the imported model must reproduce PyTorch's hidden states"
    assert len(losses) == TRAIN_STEPS and np.isfinite(losses).all()
assert model.describe()["cell"] == "LSTM" and model.describe()["hidden_size"] == HIDDEN
assert report["summary"]["finite"], "the lag profile must be finite"
assert report["summary"]["verdict"] in ("vanishing", "exploding", "stable")
assert 0 <= report["summary"]["horizon"] <= LENGTH
assert np.all(figures.series(report["paths"]["highway_log10_spectral"]) <= 1e-6), "forget gates < 1: the highway contracts"
print("all claims hold")
