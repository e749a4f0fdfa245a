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
# # 1. Depth before time: vanishing gradients in a deep feed-forward net
#
# A recurrent net unrolled in time is a deep net whose layers share weights, so the problem is
# easiest to see first in depth. For a feed-forward net $h_l = \varphi(W_l h_{l-1} + b_l)$ the
# gradient that reaches layer $l$ from the output layer $L$ is carried by the Jacobian product
#
# $$\frac{\partial h_L}{\partial h_l} = \prod_{j=l+1}^{L} \operatorname{diag}\big(\varphi'(a_j)\big)\, W_j ,
# \qquad \Big\|\frac{\partial h_L}{\partial h_l}\Big\|_2 \le \prod_{j=l+1}^{L} \gamma\, \sigma_{\max}(W_j),
# \quad \gamma = \sup|\varphi'| .$$
#
# For the logistic sigmoid $\gamma = 1/4$, so unless the weights are large every layer shrinks the
# gradient by a constant factor and the norm falls *geometrically* with depth. gradscope's MLP treats
# depth as time (layer $l$ is step $t = l-1$), so the same engine that analyses RNNs measures it.

# %% tags=["parameters"]
import os

FAST = os.environ.get("GRADSCOPE_FAST") == "1"  # CI: smaller nets, same claims
WIDTH = 32 if FAST else 128  # units per layer
DEPTH = 24 if FAST else 64  # number of layers
BATCH = 4 if FAST else 16  # input vectors averaged over
SEED = 0

# %%
# %matplotlib inline
import jax
import matplotlib.pyplot as plt
import numpy as np

import gradscope as gs
from gradscope.mlp import collect_statistics, make_mlp, mlp_inputs

key = jax.random.key(SEED)
x0 = jax.random.normal(jax.random.key(SEED + 1), (BATCH, WIDTH))
layers = np.arange(DEPTH)  # k = 0..L-1: the gradient reaching the input of layer k+1


def per_layer_norm(mlp, inputs=x0):
    """log10 ||dh_L/dh_k||_2 for k = 0..L-1, averaged (in log space) over the batch."""
    xs, state0 = mlp_inputs(mlp, inputs)
    return np.asarray(gs.lag_profile(mlp, xs, state0).log10_spectral).mean(axis=0)


# %% [markdown]
# ## Five activations
#
# Each net uses the initialisation usually paired with its activation: $W \sim \mathcal N(0, \sigma_w^2/n)$
# with $\sigma_w = 1$ for sigmoid, tanh and elu and $\sigma_w = \sqrt 2$ (He) for relu and leaky relu.
# The dashed line is the bound $\sum_j \log_{10}(\gamma\,\sigma_{\max}(W_j))$ for the sigmoid net.

# %%
GAINS = {"sigmoid": 1.0, "tanh": 1.0, "relu": 2**0.5, "leaky-relu": 2**0.5, "elu": 1.0}
nets = {act: make_mlp(WIDTH, DEPTH, key=key, activation=act, gain=g) for act, g in GAINS.items()}
profiles = {act: per_layer_norm(m) for act, m in nets.items()}

sigma_max = np.array([np.linalg.norm(np.asarray(W, np.float64), 2) for W in nets["sigmoid"].weights])
step_bound = np.log10(0.25 * sigma_max)  # per layer, gamma = 1/4
sigmoid_bound = np.cumsum(step_bound[::-1])[::-1]  # sum over layers j > k  (layer j+1 = weights[j])

fig, ax = plt.subplots(figsize=(8, 4.5))
for act, prof in profiles.items():
    ax.plot(layers, prof, marker=".", label=act)
ax.plot(layers, sigmoid_bound, "k--", lw=1, label=r"sigmoid bound $\prod\,\sigma_{\max}(W_j)/4$")
ax.set_xlabel("layer k (gradient measured at the input of layer k+1)")
ax.set_ylabel(r"$\log_{10}\|\partial h_L/\partial h_k\|_2$")
ax.set_title(f"Gradient norm against depth ({DEPTH} layers of {WIDTH})")
ax.grid(alpha=0.3)
ax.legend()
plt.show()

# %% [markdown]
# The sigmoid curve is a straight line on the log scale: a constant factor lost per layer, always below
# the bound. tanh, relu, leaky relu and elu nets at their usual initialisation stay within a decade or two
# of 1. Their derivative is close to 1 near zero (tanh, elu) or exactly 1 on the active half (relu), so $\gamma\,\sigma_w \approx 1$.

# %% [markdown]
# ## Batch norm and residual connections rescue the sigmoid net
#
# Batch norm divides each pre-activation by its standard deviation over the batch, so the layer's Jacobian
# gains the factor $\operatorname{diag}(\gamma_{BN}/\sigma_l)$. This undoes whatever scale $W_l$ gives the
# pre-activations. Here the statistics are collected on a batch and then held fixed, as at inference.
# A residual connection $h_l = h_{l-1} + \varphi(a_l)$ adds the identity:
# $\partial h_l/\partial h_{l-1} = I + \operatorname{diag}(\varphi')W_l$, so the product
# cannot collapse to zero.

# %%
bn_net = collect_statistics(make_mlp(WIDTH, DEPTH, key=key, activation="sigmoid", batch_norm=True),
                            jax.random.normal(jax.random.key(SEED + 2), (256, WIDTH)))
res_net = make_mlp(WIDTH, DEPTH, key=key, activation="sigmoid", residual=True)
rescue = {"sigmoid": profiles["sigmoid"], "sigmoid + batch norm": per_layer_norm(bn_net),
          "sigmoid + residual": per_layer_norm(res_net)}

fig, ax = plt.subplots(figsize=(8, 4.5))
for name, prof in rescue.items():
    ax.plot(layers, prof, marker=".", label=name)
ax.set_xlabel("layer k")
ax.set_ylabel(r"$\log_{10}\|\partial h_L/\partial h_k\|_2$")
ax.set_title("The same sigmoid net with batch norm or residual connections")
ax.grid(alpha=0.3)
ax.legend()
plt.show()

# %% [markdown]
# ## Dynamical isometry: the whole spectrum, not just the norm
#
# A norm of order 1 is not enough. Pennington, Schoenholz & Ganguli (2017) ask for *all* singular values of
# the input-output Jacobian $J = \partial h_L/\partial h_0$ to be close to 1. For linear nets with orthogonal
# $W_l$ this holds exactly. With Gaussian $W_l$ ($\sigma_w = 1$) the mean of the squared singular values is
# still 1, but their spread grows with depth (variance $\approx L$). A tanh net with orthogonal weights and
# small pre-activations ($\tanh' \approx 1$) is close to isometric. A relu net cannot be: each layer switches off
# about half of its units, so $J$ loses rank.

# %%
iso_inputs = 0.05 * x0  # small pre-activations: the q* -> 0 regime of the theory
spectra = {}
for act, init in [("linear", "orthogonal"), ("linear", "gaussian"), ("tanh", "orthogonal"),
                  ("tanh", "gaussian"), ("relu", "orthogonal")]:
    m = make_mlp(WIDTH, DEPTH, key=key, activation=act, init=init, gain=2**0.5 if act == "relu" else 1.0)
    xs, state0 = mlp_inputs(m, iso_inputs)
    sv = np.asarray(gs.singular_values(m, xs, state0, ks=[0]).log10_sv)[:, 0, :]  # (batch, width)
    spectra[f"{act}, {init}"] = sv[0]  # first input vector

FLOOR = -12  # exactly zero singular values (log10 = -inf) are drawn here
fig, ax = plt.subplots(figsize=(8, 4.5))
for name, sv in spectra.items():
    ax.plot(np.arange(1, WIDTH + 1), np.maximum(sv, FLOOR), marker=".", label=name,
            ls="--" if name.startswith("linear") else "-", lw=3 if name == "linear, orthogonal" else 1.5)
ax.axhline(0, color="0.5", ls=":")
ax.set_xlabel("index i (descending)")
ax.set_ylabel(r"$\log_{10}\sigma_i(\partial h_L/\partial h_0)$")
ax.set_title(f"Singular values of the input-output Jacobian ({DEPTH} layers; zeros drawn at {FLOOR})")
ax.grid(alpha=0.3)
ax.legend()
plt.show()

# %% [markdown]
# Orthogonal nets (linear, and tanh in its near-linear regime) keep every singular value at 1, a flat line.
# Gaussian nets keep a few directions at order 1 and crush the rest by many decades. In the relu net
# many singular values are zero up to float32 round-off
# (the floor of the plot).

# %% [markdown]
# ## The claims, checked on the numbers above

# %%
slope_sigmoid = np.polyfit(DEPTH - layers, profiles["sigmoid"], 1)[0]
assert np.all(profiles["sigmoid"] <= sigmoid_bound + 1e-3), "the sigmoid net exceeds its bound"
assert slope_sigmoid < np.log10(0.5), f"sigmoid should lose more than half per layer, slope {slope_sigmoid:.2f}"
for act in ("tanh", "relu", "leaky-relu", "elu"):
    assert abs(profiles[act][0]) < 2, f"{act} at its usual init should neither vanish nor explode"
assert profiles["sigmoid"][0] < -5
for name in ("sigmoid + batch norm", "sigmoid + residual"):
    assert rescue[name][0] > profiles["sigmoid"][0] + 5 and abs(rescue[name][0]) < 3, name
assert np.abs(spectra["linear, orthogonal"]).max() < 1e-3  # exact isometry
assert np.abs(spectra["tanh, orthogonal"]).max() < 0.5  # near isometry
for name in ("linear, gaussian", "tanh, gaussian"):
    assert spectra[name].max() - spectra[name].min() > 3, f"{name}: spread should span > 3 decades"
assert np.mean(spectra["relu, orthogonal"] < -6) > 0.25, "relu: many (near-)zero singular values"
print("all claims hold")
