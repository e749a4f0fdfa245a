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
# # 4. GRU, MUT and friends: direct paths and gate saturation
#
# Gated cells interpolate between the old state and a candidate. The old state therefore reaches the new one
# through a *direct path* that is a diagonal matrix, not a weight matrix:
#
# | cell | update | direct path of $\partial h_t/\partial h_{t-1}$ |
# |---|---|---|
# | GRU (PyTorch; $z$ = keep) | $h_t = (1-z_t)\odot n_t + z_t\odot h_{t-1}$ | $\operatorname{diag}(z_t)$ |
# | GRU (Cho/Chung; $z$ = write) | $h_t = (1-z_t)\odot h_{t-1} + z_t\odot \tilde h_t$ | $\operatorname{diag}(1-z_t)$ |
# | MUT1–3 (Jozefowicz et al. 2015) | $h_{t+1} = \tanh(\dots)\odot z + h_t\odot(1-z)$ | $\operatorname{diag}(1-z)$ |
# | minimalRNN (Chen et al. 2018) | $h_t = u_t\odot h_{t-1} + (1-u_t)\odot z_t$ | $\operatorname{diag}(u_t)$ |
#
# The rest of the Jacobian goes through the gates and the candidate, so it carries a weight matrix and
# gate derivatives $\sigma'(\cdot) = \sigma(1-\sigma) \le 1/4$. When a gate saturates ($\sigma' \approx 0$) that part
# goes quiet, and only the direct path is left.

# %% tags=["parameters"]
import os

FAST = os.environ.get("GRADSCOPE_FAST") == "1"
INPUT = 8
LENGTH = 60 if FAST else 200
BATCH = 4 if FAST else 16
# parameter-matched sizes of Chung et al. (2014): about the same number of weights per cell
SIZES = {"rnn-tanh": 100, "lstm": 36, "gru": 46, "gru-chung": 46, "mut1": 46, "minimalrnn": 46}
SEED = 0

# %%
# %matplotlib inline
import dataclasses

import jax
import matplotlib.pyplot as plt
import numpy as np

import gradscope as gs
from gradscope.report import figures

key = jax.random.key(SEED)
xs = jax.random.normal(jax.random.key(SEED + 1), (BATCH, LENGTH, INPUT))
gru = gs.cells.make("gru", INPUT, SIZES["gru"], key=key)

# %% [markdown]
# ## The direct path of a GRU
#
# `gs.path_split` separates $\prod_j \operatorname{diag}(z_j)$ from the rest of $\partial h_T/\partial h_k$.

# %%
fig = figures.paths(gs.analyse(gru, xs, name="gru (PyTorch)", lyapunov=False, spectra=False).to_dict())
for text in fig.axes[0].get_legend().get_texts():  # PyTorch's z means "keep": the direct path is diag(z)
    text.set_text(text.get_text().replace("diag(1−z)", "diag(z)"))
fig

# %% [markdown]
# An exact check: with the recurrent weights set to zero, $h_{t-1}$ enters $h_t$ only through the direct path,
# so the full Jacobian product must *equal* $\prod_j \operatorname{diag}(z_j)$.

# %%
gru_no_rec = dataclasses.replace(gru, weight_hh=0.0 * gru.weight_hh)
# Frobenius norms: computed exactly (the spectral norm of a long product is estimated by power iteration)
full = np.asarray(gs.lag_profile(gru_no_rec, xs).log10_frobenius)
direct = np.asarray(gs.path_split(gru_no_rec, xs).highway_log10_frobenius)
print("max |log10 full - log10 direct| =", float(np.abs(full - direct).max()))

# %% [markdown]
# ## Gate saturation
#
# Large inputs push gate pre-activations far from 0, where $\sigma' < 0.01$ ("saturated"). A saturated gate is
# stuck at 0 or 1, and almost no gradient passes through it to its weights or to $h_{t-1}$.
# `gs.gate_statistics` counts saturated gate values along a rollout. Here the same GRU is fed inputs scaled by $s$.

# %%
SCALES = (1, 2, 4, 8, 16, 32)
saturation = {"r": [], "z": []}
for s in SCALES:
    stats = gs.gate_statistics(gru, gs.rollout(gru, s * xs))
    for g in saturation:
        saturation[g].append(stats[g]["saturated_fraction"])
last = gs.gate_statistics(gru, gs.rollout(gru, SCALES[-1] * xs))

fig, ax = plt.subplots(figsize=(7, 4))
for g, frac in saturation.items():
    ax.semilogx(SCALES, frac, "o-", base=2, label=f"gate {g}")
ax.set_xlabel("input scale s")
ax.set_ylabel(r"fraction of gate values with $\sigma' < 0.01$")
ax.set_title("GRU gate saturation against input scale")
ax.grid(alpha=0.3)
ax.legend()
plt.show()
figures.gates({"name": f"gru, inputs x {SCALES[-1]}", "gates": last})

# %% [markdown]
# ## The Chung et al. and Jozefowicz et al. comparisons, at initialisation
#
# Chung et al. (2014) compared tanh units, LSTM and GRU at matched parameter counts and found the gated units
# better, with no clear winner between the two. Jozefowicz et al. (2015) searched over ten thousand
# architectures and found that "adding a bias of 1 to the LSTM's forget gate closes the gap between the LSTM and
# the GRU". Those are results *after training*. The gradient-flow horizon *at initialisation* (the longest lag
# with $\|\partial S_T/\partial S_k\|_2 \ge 10^{-3}$) separates only one of these choices: the forget bias.
# At PyTorch's default initialisation the gates sit near 0.5, so every direct path loses about half per step,
# much as the tanh RNN does. The forget bias of 1 opens the highway to $\sigma(1) = 0.73$ per step.

# %%
models = {name: gs.cells.make(name, INPUT, n, key=key) for name, n in SIZES.items()}
models["lstm, forget bias 1"] = gs.cells.make("lstm", INPUT, SIZES["lstm"], key=key, forget_bias=1.0)
summaries = {name: gs.analyse(m, xs, name=name, lyapunov=False, spectra=False, paths=False, gates=False).to_dict()
             for name, m in models.items()}
horizon = {name: a["summary"]["horizon"] for name, a in summaries.items()}

fig, ax = plt.subplots(figsize=(8, 4))
ax.bar(list(horizon), list(horizon.values()), color=[f"C{i}" for i in range(len(horizon))])
ax.bar_label(ax.containers[0])
ax.set_ylabel(r"horizon (steps with $\|\partial S_T/\partial S_k\| \geq 10^{-3}$)")
ax.set_title("Gradient-flow horizon at initialisation, parameter-matched cells")
ax.tick_params(axis="x", labelrotation=20)
plt.show()
figures.lag_profiles(list(summaries.values()), bounds=False)

# %% [markdown]
# ## The claims, checked on the numbers above

# %%
assert np.abs(full - direct).max() < 1e-3, "without recurrent weights the GRU Jacobian is its direct path"
for g, frac in saturation.items():
    assert frac[-1] > frac[0] + 0.1, f"gate {g} saturates with larger inputs"
assert horizon["lstm, forget bias 1"] >= 1.5 * horizon["lstm"], "forget bias 1 lengthens the horizon"
for name in ("lstm", "gru", "gru-chung", "mut1"):  # at init, gates near 0.5: no better than tanh by much
    assert horizon[name] <= 2 * horizon["rnn-tanh"] + 2, name
print("all claims hold")
