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
# # 2. The RNN product: why vanilla RNNs vanish, explode, or turn chaotic
#
# For a vanilla (Elman) RNN $h_t = \varphi(W h_{t-1} + U x_t + b)$ the gradient that flows from step $t$
# back to step $k$ is a product of one-step Jacobians (Pascanu, Mikolov & Bengio 2013, eq. 5):
#
# $$\frac{\partial h_t}{\partial h_k} = \prod_{i=k+1}^{t} \operatorname{diag}\big(\varphi'(a_i)\big)\, W
# \qquad\Longrightarrow\qquad
# \Big\|\frac{\partial h_t}{\partial h_k}\Big\|_2 \le \big(\gamma\, \sigma_{\max}(W)\big)^{t-k},$$
#
# with $\gamma = \sup|\varphi'|$ ($1$ for tanh, $1/4$ for the sigmoid). So $\sigma_{\max}(W) < 1/\gamma$ is
# *sufficient* for vanishing gradients. In the linear case the long-run rate is set by the spectral radius
# $\rho(W)$ instead: $\rho < 1$ vanishes and only $\rho > 1$ can explode. This notebook measures the product, checks
# the bound, follows the transition to chaos, and shows what norm clipping does to an exploding gradient.

# %% tags=["parameters"]
import os

FAST = os.environ.get("GRADSCOPE_FAST") == "1"
HIDDEN = 32 if FAST else 128  # units
LENGTH = 60 if FAST else 200  # sequence length T
BATCH = 4 if FAST else 16
CHAOS_LENGTH = 300 if FAST else 2000  # steps for the Lyapunov exponents
SEED = 0

# %%
# %matplotlib inline
import dataclasses

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import gradscope as gs
from gradscope.report import figures

key = jax.random.key(SEED)
xs = jax.random.normal(jax.random.key(SEED + 1), (BATCH, LENGTH, 1))

# %% [markdown]
# ## The product of one-step Jacobians *is* the gradient
#
# `gs.step_jacobians` returns $J_t = \partial h_{t+1}/\partial h_t = \operatorname{diag}(\tanh'(a_{t+1}))W$.
# Multiplying them gives $\partial h_T/\partial h_0$. Here that product is compared with JAX's reverse-mode
# derivative of the unrolled network, an independent computation of the same quantity.

# %%
cell = gs.cells.make("rnn-tanh", 1, HIDDEN, key=key, recurrent_init="gaussian", gain=1.0)
x_one = xs[0, :20]
h0 = jnp.zeros(HIDDEN)
J = np.asarray(gs.step_jacobians(cell, x_one, (h0,)).jac, np.float64)  # (20, n, n)
product = np.eye(HIDDEN)
for Jt in J:
    product = Jt @ product
autodiff = np.asarray(jax.jacrev(lambda h: gs.rollout(cell, x_one, (h,))["h"][-1])(h0))
product_error = np.abs(product - autodiff).max() / np.abs(autodiff).max()
print(f"||prod J_t - jacrev|| / ||jacrev|| = {product_error:.1e}")

# %% [markdown]
# ## Spectral radius below, at and above 1
#
# A linear RNN makes the product exactly $W^{t-k}$. Its norm grows like $\rho(W)^{t-k}$ in the long run
# (dotted), while the bound $\sigma_{\max}(W)^{t-k}$ (dashed) is far looser: for a Gaussian $W$ with
# spectral radius $g$, $\sigma_{\max} \approx 2g$.

# %%
GAINS = (0.9, 1.0, 1.1)
linear = {g: gs.cells.make("rnn-linear", 1, HIDDEN, key=key, recurrent_init="gaussian", gain=g) for g in GAINS}
linear_an = {g: gs.analyse(linear[g], xs, name=f"linear, gain {g}", lyapunov=False, spectra=False).to_dict()
             for g in GAINS}
rho = {g: float(np.max(np.abs(np.linalg.eigvals(np.asarray(c.weight_hh, np.float64))))) for g, c in linear.items()}

fig, ax = plt.subplots(figsize=(8, 4.5))
lag = np.arange(LENGTH, 0, -1)
for i, g in enumerate(GAINS):
    a = linear_an[g]
    ax.plot(lag, figures.series(a["lag_profile"]["log10_spectral"]), color=f"C{i}",
            label=rf"gain {g}: $\rho(W)$ = {rho[g]:.3f}")
    ax.plot(lag, lag * np.log10(rho[g]), color=f"C{i}", ls=":")
    ax.plot(lag, lag * a["bound"]["log10_per_step"], color=f"C{i}", ls="--", lw=0.8)
ax.set_ylim(-4, 6)
ax.set_xlabel("lag t - k")
ax.set_ylabel(r"$\log_{10}\|\partial h_T/\partial h_k\|_2$")
ax.set_title(r"Linear RNN: measured (solid), $\rho^{t-k}$ (dotted), bound $\sigma_{\max}^{t-k}$ (dashed)")
ax.grid(alpha=0.3)
ax.legend()
plt.show()

# %% [markdown]
# With tanh the bound $(\gamma\sigma_{\max})^{t-k}$ still holds ($\gamma = 1$). The measured norms fall
# below it because $\tanh' < 1$ away from zero: saturation takes away what a large $W$ would add.
# `figures.lag_profiles` draws each analysis with its bound (dashed).

# %%
tanh_an = [gs.analyse(gs.cells.make("rnn-tanh", 1, HIDDEN, key=key, recurrent_init="gaussian", gain=g), xs,
                      name=f"tanh, gain {g}", lyapunov=False, spectra=False).to_dict() for g in (0.5, 1.0, 2.0)]
fig = figures.lag_profiles(tanh_an)
fig.axes[0].set_ylim(-12, 12)
fig

# %% [markdown]
# ## The transition to chaos
#
# Without input, $h_{t+1} = \tanh(W h_t)$ with $W_{ij} \sim \mathcal N(0, g^2/n)$ has a stable fixed point at 0
# for $g < 1$: the largest Lyapunov exponent, the long-run growth rate of $\|\partial h_t/\partial h_0\|$, is
# $\lambda_{\max} = \log\rho(W) \approx \log g < 0$. It crosses 0 near $g = 1$, and above it the dynamics are chaotic
# ($\lambda_{\max} > 0$): gradients explode even though tanh saturates.

# %%
CHAOS_GAINS = np.round(np.linspace(0.5, 3.0, 11), 2)
zeros = jnp.zeros((CHAOS_LENGTH, 1))
lyap = []
for g in CHAOS_GAINS:
    c = gs.cells.make("rnn-tanh", 1, HIDDEN, key=key, recurrent_init="gaussian", gain=float(g), bias=False)
    h_init = (jax.random.normal(jax.random.key(SEED + 2), (HIDDEN,)),)
    ly = gs.lyapunov_spectrum(c, zeros, h_init, k=1, warmup=CHAOS_LENGTH // 4)
    lyap.append(float(np.asarray(ly.exponents)[0]))
lyap = np.array(lyap)

fig, ax = plt.subplots(figsize=(7, 4))
ax.plot(CHAOS_GAINS, lyap, "o-", label=r"measured $\lambda_{\max}$")
ax.plot(CHAOS_GAINS[CHAOS_GAINS <= 1], np.log(CHAOS_GAINS[CHAOS_GAINS <= 1]), "k--", label=r"$\log g$ (fixed point at 0)")
ax.axhline(0, color="0.5", ls=":")
ax.axvline(1, color="0.5", ls=":")
ax.set_xlabel("gain g (spectral radius of W)")
ax.set_ylabel(r"$\lambda_{\max}$ (nats per step)")
ax.set_title(r"Largest Lyapunov exponent of $h_{t+1} = \tanh(W h_t)$")
ax.grid(alpha=0.3)
ax.legend()
plt.show()

# %% [markdown]
# ## What clipping does to an exploding gradient
#
# In the chaotic regime the gradient of a loss at step $t$, $L_t = \tfrac12\|h_t - y\|^2$, with respect to $W$
# grows exponentially with $t$. Norm clipping (Pascanu et al. 2013, Algorithm 1) rescales it:
# $\hat g \leftarrow \theta\,\hat g/\|\hat g\|$ if $\|\hat g\| \ge \theta$. The step length is capped at $\theta$ and the
# direction is kept. A "wall" in the loss surface then sends the parameters a bounded distance instead of far away.

# %%
THETA = 1.0
chaotic = gs.cells.make("rnn-tanh", 1, HIDDEN, key=key, recurrent_init="gaussian", gain=2.0)
y = jax.random.normal(jax.random.key(SEED + 3), (HIDDEN,)) * 0.5


def losses(weight_hh, x):
    hs = gs.rollout(dataclasses.replace(chaotic, weight_hh=weight_hh), x)["h"][1:]
    return 0.5 * jnp.sum((hs - y) ** 2, axis=-1)  # L_t for t = 1..T


grads = jax.vmap(jax.jacrev(losses), in_axes=(None, 0))(chaotic.weight_hh, xs)  # (B, T, n, n)
# L_1 does not depend on W (h_0 = 0), so its gradient is exactly zero: start at t = 2
norms = np.asarray(jnp.linalg.norm(grads.reshape(BATCH, LENGTH, -1), axis=-1), np.float64)[:, 1:]
clipped = np.minimum(norms, THETA)  # ||clip(g)|| = min(||g||, theta)
g_flat = np.asarray(grads[:, 1:].reshape(BATCH * (LENGTH - 1), -1), np.float64)
g_clip = g_flat * np.minimum(1.0, THETA / np.linalg.norm(g_flat, axis=1, keepdims=True))
cosine = np.sum(g_flat * g_clip, axis=1) / (np.linalg.norm(g_flat, axis=1) * np.linalg.norm(g_clip, axis=1))

fig, ax = plt.subplots(figsize=(8, 4.5))
t = np.arange(2, LENGTH + 1)
ax.semilogy(t, np.exp(np.log(norms).mean(0)), label=r"$\|\partial L_t/\partial W\|$ (geometric mean over the batch)")
ax.semilogy(t, np.exp(np.log(clipped).mean(0)), label=rf"after clipping at $\theta$ = {THETA}")
ax.axhline(THETA, color="0.5", ls=":")
ax.set_xlabel("step t of the loss")
ax.set_ylabel("gradient norm")
ax.set_title("Chaotic tanh RNN (gain 2): exploding gradient and its clipped version")
ax.grid(alpha=0.3, which="both")
ax.legend()
plt.show()

# %% [markdown]
# ## The claims, checked on the numbers above

# %%
assert product_error < 1e-4, "the product of step Jacobians must equal the autodiff Jacobian"
for a in tanh_an + list(linear_an.values()):
    prof, per_step = figures.series(a["lag_profile"]["log10_spectral"]), a["bound"]["log10_per_step"]
    assert np.all(prof <= lag * per_step + 1e-3), f"{a['name']}: Pascanu's bound is violated"
slopes = {g: np.polyfit(lag[lag > LENGTH // 2], figures.series(a["lag_profile"]["log10_spectral"])[lag > LENGTH // 2], 1)[0]
          for g, a in linear_an.items()}
for g in GAINS:  # the long-run rate follows rho, not sigma_max
    assert abs(slopes[g] - np.log10(rho[g])) < 0.02, (g, slopes[g], np.log10(rho[g]))
below, above = lyap[CHAOS_GAINS < 0.9], lyap[CHAOS_GAINS > 1.5]
assert np.all(below < 0) and np.all(above > 0), "order -> chaos transition near g = 1"
assert np.all(np.abs(below - np.log(CHAOS_GAINS[CHAOS_GAINS < 0.9])) < 0.15), "lambda_max ~ log g below 1"
assert norms[:, -1].mean() > 1e3 * norms[:, 0].mean(), "the gradient explodes with t"
assert np.all(clipped <= THETA) and np.allclose(cosine, 1.0, atol=1e-6), "clipping caps the norm, keeps the direction"
print("all claims hold")
