# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 3. The LSTM highway: the cell-state path and everything else
#
# In the LSTM ($c_t = f_t \odot c_{t-1} + i_t \odot g_t$, $h_t = o_t \odot \tanh c_t$) the gradient along the
# cell state has a path that never meets a weight matrix:
#
# $$\frac{\partial c_T}{\partial c_k} = \underbrace{\prod_{j=k+1}^{T} \operatorname{diag}(f_j)}_{\text{highway}}
# \;+\; \underbrace{\text{(every path that leaves } c \text{ through } h \text{ and the gates)}}_{\text{remainder}} .$$
#
# The highway's gain is a product of forget-gate values in $(0, 1)$. It vanishes like $\bar f^{\,T-k}$, and how fast
# is set by the forget bias $b_f$. `gs.path_split` computes the highway, the remainder and their sum exactly
# (remainder = total − highway), in log space.

# %% tags=["parameters"]
import os

FAST = os.environ.get("GRADSCOPE_FAST") == "1"
HIDDEN = 32 if FAST else 128
LENGTH = 100 if FAST else 400
BATCH = 4 if FAST else 16
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
xs = jax.random.normal(jax.random.key(SEED + 1), (BATCH, LENGTH, 1))
lag = np.arange(LENGTH, 0, -1)  # entry k of a profile is at lag T - k


def analyse(cell, name):
    return gs.analyse(cell, xs, name=name, lyapunov=False, spectra=False).to_dict()


def curve(a, key):
    return figures.series(a["paths"][key])


# %% [markdown]
# ## Highway and remainder of a standard LSTM
#
# PyTorch's initialisation ($b_f$ drawn around 0) plus the forget bias of 1 recommended by Jozefowicz et al. (2015).

# %%
lstm_fb1 = analyse(gs.cells.make("lstm", 1, HIDDEN, key=key, forget_bias=1.0), "lstm, forget bias 1")
figures.paths(lstm_fb1)

# %% [markdown]
# At lag 1 the remainder is zero up to round-off: $c_{t-1}$ reaches $c_t$ only through $f_t$, because the gates read
# $h_{t-1}$, not $c_{t-1}$. From lag 2 on, paths that leave through $h$ and come back into $c$ add up. At this
# initialisation they decay *more slowly* than the highway, so the total is carried by the remainder, not by $\prod f$.
# A highway is only a highway when $f$ is close to 1.
#
# ## Forget bias 0, 1 and chrono
#
# If the gate pre-activation is close to its bias, every step multiplies the highway by about $\sigma(b_f)$:
# $0.5$ for $b_f = 0$ ($-0.30$ decades per step) and $0.73$ for $b_f = 1$ ($-0.14$). The chrono initialisation of
# Tallec & Ollivier (2018) draws $b_f \sim \log\mathcal U[1, T_{\max}-1]$ (and $b_i = -b_f$). Its slowest units have
# $f \approx 1 - 1/T_{\max}$ and keep the highway open over the whole sequence: $(1-1/T)^T \approx e^{-1}$.
# Dashed lines: $\sigma(b_f)^{T-k}$ and $(1-1/T)^{T-k}$.

# %%
variants = {
    "forget bias 0": (dict(forget_bias=0.0), np.log10(0.5)),
    "forget bias 1": (dict(forget_bias=1.0), np.log10(1 / (1 + np.exp(-1.0)))),
    f"chrono (T_max = {LENGTH})": (dict(chrono=LENGTH), np.log10(1 - 1 / LENGTH)),
}
forget = {name: analyse(gs.cells.make("lstm", 1, HIDDEN, key=key, **opts), name) for name, (opts, _) in variants.items()}

fig, ax = plt.subplots(figsize=(8, 4.5))
for i, (name, (_, per_step)) in enumerate(variants.items()):
    ax.plot(lag, curve(forget[name], "highway_log10_spectral"), color=f"C{i}", lw=2, label=f"{name}: highway")
    ax.plot(lag, lag * per_step, color=f"C{i}", ls="--", lw=1,
            label="σ(b_f)^(T−k) or (1−1/T)^(T−k), zero input" if i == 0 else None)
ax.set_xlabel("lag T - k")
ax.set_ylabel(r"$\log_{10}\|\prod_j \mathrm{diag}(f_j)\|_2$")
ax.set_title("The cell-state highway under three forget-gate initialisations")
ax.grid(alpha=0.3)
ax.legend()
plt.show()

# %% [markdown]
# ## The 1997 cell: a constant error carousel, and a remainder that explodes
#
# Hochreiter & Schmidhuber's original cell has no forget gate: $c_t = c_{t-1} + i_t \odot g_t$. The
# self-connection has weight 1 and the identity as its activation, the "constant error carousel", so the
# highway is *exactly* the identity at every lag: $\log_{10}\|\cdot\| = 0$. The rest of the Jacobian is not tied
# to it, though. The cell state can grow without bound (the reason Gers et al. 2000 added the forget gate), and the
# paths through $h$ and the gates can amplify. A modern LSTM shows the same thing when its recurrent weights are large.
# Below, a chrono-initialised LSTM with $W_{hh}$ scaled by 6: the highway stays below 1, but the remainder grows.

# %%
nofg = analyse(gs.cells.make("lstm-nofg", 1, HIDDEN, key=key), "1997 LSTM (no forget gate)")
base = gs.cells.make("lstm", 1, HIDDEN, key=key, chrono=LENGTH)
strong = analyse(dataclasses.replace(base, weight_hh=6.0 * base.weight_hh), "chrono LSTM, 6 x W_hh")

fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
for ax, a in zip(axes, (nofg, strong)):
    ax.plot(lag, curve(a, "total_log10_spectral"), color="0.15", lw=2, label="total")
    ax.plot(lag, curve(a, "highway_log10_spectral"), color="C0", lw=2, label="highway")
    ax.plot(lag, curve(a, "remainder_log10_spectral"), color="C1", ls="--", lw=2, label="remainder")
    ax.axhline(0, color="0.5", ls=":")
    ax.set_ylim(-2, None)  # the remainder at lag 1 is round-off (exactly 0 in exact arithmetic)
    ax.set_title(a["name"])
    ax.set_xlabel("lag T - k")
    ax.grid(alpha=0.3)
    ax.legend()
axes[0].set_ylabel(r"$\log_{10}\|\partial c_T/\partial c_k\|_2$ (parts)")
plt.show()

# %% [markdown]
# ## The claims, checked on the numbers above

# %%
for name, (_, per_step) in list(variants.items())[:2]:
    slope = np.polyfit(lag, curve(forget[name], "highway_log10_spectral"), 1)[0]
    assert abs(slope - per_step) < 0.05, f"{name}: highway decays at {slope:.3f}/step, expected {per_step:.3f}"
hw = {name: curve(a, "highway_log10_spectral")[0] for name, a in forget.items()}  # at the longest lag
assert hw["forget bias 0"] < hw["forget bias 1"] < hw[f"chrono (T_max = {LENGTH})"], hw
assert hw[f"chrono (T_max = {LENGTH})"] > -1.0, "chrono keeps the highway open over T steps"
assert np.all(curve(nofg, "highway_log10_spectral") == 0.0), "the CEC is exactly the identity"
assert curve(nofg, "remainder_log10_spectral")[0] > 1.0, "the 1997 cell's remainder explodes"
assert np.all(curve(strong, "highway_log10_spectral") <= 0.0), "forget gates < 1 keep the highway contracting"
assert curve(strong, "remainder_log10_spectral")[0] > 1.0 > curve(strong, "highway_log10_spectral")[0] + 1.0
print("all claims hold")
