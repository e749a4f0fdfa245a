"""S4D (Gu et al. 2022): the per-channel recurrence against a complex float64 NumPy reference, the zero-order
hold against scipy.linalg.expm of the continuous system, the S4D-Lin initialisation, the closed form
‖∂S_T/∂S_k‖₂ = max |Λ̄|^(T−k), and the engine against jax.jacrev of the unrolled map (cell, Stack,
Bidirectional)."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from _engine_ref import assert_lag_profile_matches_jacrev, build, inputs

import gradscope as gs
from gradscope import engine
from gradscope._errors import ConfigError
from gradscope.cells._base import autodiff_jacobians
from gradscope.nets import Bidirectional, Stack, stack

H, N, T = 3, 2, 8  # channels, complex modes per channel, steps
ATOL = 1e-10


def _randomised(seed=0, h=H, n=N):
    """An S4D cell with generic (trained-looking) parameters: Re Λ < 0 spread out, complex B, larger steps."""
    cell = build("s4d", h, n, seed=seed)
    rng = np.random.default_rng(seed + 10)
    f = lambda *shape: jnp.asarray(rng.normal(size=shape))  # noqa: E731
    return dataclasses.replace(
        cell,
        Lambda_re=-jnp.asarray(rng.uniform(0.05, 2.0, (h, n))),
        Lambda_im=f(h, n) * 3,
        B_re=f(h, n),
        B_im=f(h, n),
        log_step=jnp.asarray(rng.uniform(np.log(0.05), np.log(1.0), h)),
    )


def _np_params(cell):
    g = lambda name: np.asarray(getattr(cell, name), np.float64)  # noqa: E731
    lam = g("Lambda_re") + 1j * g("Lambda_im")
    return lam, g("B_re") + 1j * g("B_im"), g("C_re") + 1j * g("C_im"), g("D"), np.exp(g("log_step"))


def _np_rollout(cell, us, x0):
    """x_k = Λ̄⊙x_{k−1} + B̄ u_k[h],  y_k[h] = Re Σ_n C_hn x_hn + D_h u_k[h]  in complex128, Λ̄ = exp(ΛΔ),
    B̄ = (Λ̄ − 1)/Λ·B."""
    lam, B, C, D, step = _np_params(cell)
    lam_bar = np.exp(lam * step[:, None])
    b_bar = (lam_bar - 1) / lam * B
    x, xs, ys = x0.astype(np.complex128), [], []
    for u in us:
        x = lam_bar * x + b_bar * u[:, None]
        xs.append(x.reshape(-1))
        ys.append((C * x).sum(axis=1).real + D * u)
    return np.array(xs), np.array(ys)


@pytest.mark.parametrize("randomised", [False, True])
def test_recurrence_and_readout_match_complex_numpy_reference(randomised):
    cell = _randomised(1) if randomised else build("s4d", H, N, seed=1)
    rng = np.random.default_rng(0)
    us = rng.normal(size=(T, H))
    x0 = rng.normal(size=(H, N)) + 1j * rng.normal(size=(H, N))
    xs, ys = _np_rollout(cell, us, x0)
    d = H * N
    assert cell.blocks == ("re", "im") and cell.block_sizes == (d, d) and cell.output_size == H
    tr = gs.rollout(cell, us, (jnp.asarray(x0.real.reshape(-1)), jnp.asarray(x0.imag.reshape(-1))))
    np.testing.assert_allclose(np.asarray(tr.flat[1:, :d]), xs.real, rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.asarray(tr.flat[1:, d:]), xs.imag, rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.asarray(tr.aux["y"]), ys, rtol=0, atol=1e-12)
    state = (tr.flat[T, :d], tr.flat[T, d:])
    np.testing.assert_allclose(np.asarray(cell.readout(state, jnp.asarray(us[-1]))), ys[-1], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(cell.output(state), state[0])


def test_zero_order_hold_equals_expm_of_the_continuous_system():
    # per channel h, the continuous system of its N modes on [Re x, Im x]: A = [[Re Λ, −Im Λ], [Im Λ, Re Λ]],
    # b = [Re B; Im B]; ZOH: expm([[A, b], [0, 0]]·Δ) = [[Ā, b̄], [0, 1]] (Van Loan)
    cell = _randomised(2)
    lam, B, _, _, step = _np_params(cell)
    rng = np.random.default_rng(1)
    u, state = jnp.asarray(rng.normal(size=H)), tuple(jnp.asarray(rng.normal(size=H * N)) for _ in range(2))
    J, X = (np.asarray(a) for a in cell.jacobian(u, state))
    lam_bar, Xd = cell.jacobian_diag(u, state)
    np.testing.assert_array_equal(Xd, X)
    d = H * N
    want_J, want_X = np.zeros((2 * d, 2 * d)), np.zeros((2 * d, H))
    for h in range(H):
        A = np.block([[np.diag(lam[h].real), -np.diag(lam[h].imag)], [np.diag(lam[h].imag), np.diag(lam[h].real)]])
        b = np.concatenate([B[h].real, B[h].imag])[:, None]
        E = scipy.linalg.expm(np.block([[A, b], [np.zeros((1, 2 * N + 1))]]) * step[h])
        rows = np.r_[h * N : (h + 1) * N, d + h * N : d + (h + 1) * N]  # channel h's re and im entries
        want_J[np.ix_(rows, rows)] = E[: 2 * N, : 2 * N]
        want_X[rows, h] = E[: 2 * N, 2 * N]
        np.testing.assert_allclose(np.asarray(lam_bar).reshape(H, N)[h], np.exp(lam[h] * step[h]), rtol=1e-13)
    np.testing.assert_allclose(J, want_J, rtol=0, atol=1e-12)
    np.testing.assert_allclose(X, want_X, rtol=0, atol=1e-12)
    Ja, Xa = autodiff_jacobians(cell, u, state, 0)
    np.testing.assert_allclose(J, Ja, rtol=0, atol=1e-12)
    np.testing.assert_allclose(X, Xa, rtol=0, atol=1e-12)


def test_readout_jacobian_matches_autodiff():
    cell = _randomised(3)
    rng = np.random.default_rng(2)
    u, s = jnp.asarray(rng.normal(size=H)), jnp.asarray(rng.normal(size=2 * H * N))
    Ry, Ru = cell.readout_jacobian((s[: H * N], s[H * N :]), u)
    Ra, Rua = jax.jacfwd(lambda s, u: cell.readout((s[: H * N], s[H * N :]), u), argnums=(0, 1))(s, u)
    np.testing.assert_allclose(Ry, Ra, rtol=0, atol=1e-12)
    np.testing.assert_allclose(Ru, Rua, rtol=0, atol=1e-12)


def test_s4d_lin_initialisation():
    Hn, Nn = 4, 16
    cell = gs.cells.make("s4d", Hn, Nn, key=jax.random.key(0), dtype=jnp.float64, dt_min=0.01, dt_max=0.5)
    lam, B, C, D, step = _np_params(cell)
    np.testing.assert_array_equal(lam, np.broadcast_to(-0.5 + 1j * math.pi * np.arange(Nn), (Hn, Nn)))
    np.testing.assert_array_equal(B, np.ones((Hn, Nn)))
    assert np.all((0.01 <= step) & (step <= 0.5)) and C.shape == (Hn, Nn) and D.shape == (Hn,)
    assert gs.cells.options("s4d") == {"dt_min": 0.001, "dt_max": 0.1}
    assert cell.state_size == 2 * Hn * Nn


@pytest.mark.parametrize(
    "opts, word",
    [({"dt_min": 0.0}, "dt_min"), ({"dt_max": -1.0}, "dt_max"), ({"dt_min": 0.5, "dt_max": 0.1}, "dt_min")],
)
def test_bad_options_raise_config_errors_naming_them(opts, word):
    with pytest.raises(ConfigError, match=word):
        gs.cells.make("s4d", H, N, key=jax.random.key(0), **opts)


def test_lag_profile_spectral_norm_is_max_abs_lambda_bar_to_the_lag():
    # ∂S_T/∂S_k = real form of diag(Λ̄^(T−k)): spectral norm max |Λ̄|^τ = max exp(Re Λ·Δ·τ), state-independent
    cell = _randomised(4)
    lam, _, _, _, step = _np_params(cell)
    lam_bar = np.exp(lam * step[:, None]).reshape(-1)
    tau = np.arange(T, 0, -1)
    rng = np.random.default_rng(3)
    for scale in (0.1, 10.0):
        lp = engine.lag_profile(
            cell, scale * rng.normal(size=(T, H)), tuple(jnp.asarray(scale * rng.normal(size=H * N)) for _ in range(2))
        )
        np.testing.assert_allclose(
            np.asarray(lp.log10_spectral), tau * np.log10(np.abs(lam_bar).max()), rtol=0, atol=ATOL
        )
        np.testing.assert_allclose(
            np.asarray(lp.log10_frobenius),
            0.5 * np.log10(2 * np.sum(np.abs(lam_bar[None]) ** (2 * tau[:, None]), axis=1)),
            rtol=0,
            atol=ATOL,
        )


def _models():
    return {
        "cell": lambda: _randomised(5),
        # generic parameters: at S4D-Lin init the N modes of a channel share |Λ̄|, and the top singular values of
        # a 24-wide product cluster so tightly that the engine's subspace iteration (documented) stops ~1e-9 low
        "stack": lambda: Stack((_randomised(1), _randomised(2))),
        "stack-built": lambda: stack("s4d", H, N, 2, key=jax.random.key(1), dtype=jnp.float64),
        # 2 channels: 16 states, an exact SVD in the engine. (A complex-diagonal product has every singular value
        # twice and its top ones cluster; wider than 16, the engine's subspace iteration can stop ~1e-8 low at
        # lag 1 for this model: a documented engine tolerance, not the cell's.)
        "bidirectional": lambda: Bidirectional(_randomised(7, h=2), _randomised(8, h=2)),
    }


@pytest.mark.parametrize("name", ["cell", "stack", "bidirectional"])
def test_lag_profile_matches_jacrev_norms(name):
    assert_lag_profile_matches_jacrev(_models()[name](), T=6, atol=ATOL)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["stack-built", "bidirectional"])
def test_network_jacobians_match_autodiff(name):
    model = _models()[name]()
    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.normal(size=model.input_size))
    x = jnp.concatenate([x, x[::-1]]) if name == "bidirectional" else x
    state = tuple(jnp.asarray(rng.normal(size=k)) for k in model.block_sizes)
    J, X = model.jacobian(x, state, 0)
    Ja, Xa = autodiff_jacobians(model, x, state, 0)
    np.testing.assert_allclose(J, Ja, rtol=0, atol=1e-12)
    np.testing.assert_allclose(X, Xa, rtol=0, atol=1e-12)


@pytest.mark.slow
def test_lyapunov_triangle_attribution_run_and_are_finite():
    cell = _randomised(9)
    lam, _, _, _, step = _np_params(cell)
    xs = inputs(T, H, seed=3, B=2)
    ly = engine.lyapunov_spectrum(cell, xs)
    # constant step Jacobian with orthogonal columns of norms |Λ̄| (each twice): exponents Re Λ·Δ exactly
    want = np.sort(np.repeat((lam.real * step[:, None]).reshape(-1), 2))[::-1]
    np.testing.assert_allclose(np.asarray(ly.exponents), np.broadcast_to(want, (2, 2 * H * N)), rtol=0, atol=1e-12)
    tri = np.asarray(engine.triangle(cell, xs).log10_frobenius)
    r, c = np.tril_indices(T + 1)
    assert np.all(np.isfinite(tri[:, r, c]))
    at = engine.attribution(cell, xs, key=jax.random.key(0))
    assert np.all(np.isfinite(np.asarray(at.log10_total)))
    bt = np.asarray(at.log10_block_time)
    # the default loss reads output(S_t) = Re x_t: ∂E/∂(Im x_T) = 0 exactly (−∞); every other entry is finite
    assert np.all(np.isfinite(bt[:, :T])) and np.all(np.isfinite(bt[:, T, 0])) and np.all(np.isneginf(bt[:, T, 1]))
