"""LRU (Orvieto et al. 2023): the recurrence against a complex float64 NumPy reference, the initialisation of
the paper's Appendix A, the closed form ‖∂S_T/∂S_k‖₂ = max_n |λ_n|^(T−k), and the engine against jax.jacrev
of the unrolled map for the cell, a 2-layer Stack and a Bidirectional net."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _engine_ref import assert_lag_profile_matches_jacrev, build, inputs
from scipy import stats

import gradscope as gs
from gradscope import engine
from gradscope._errors import ConfigError
from gradscope.cells._base import autodiff_jacobians, readout_jacobians
from gradscope.nets import Bidirectional, Stack, stack

M, N, T = 3, 4, 8
ATOL = 1e-10


def _np_params(cell):
    p = {
        f.name: np.asarray(getattr(cell, f.name), np.float64)
        for f in dataclasses.fields(cell)
        if not f.metadata.get("static", False)
    }
    lam = np.exp(-np.exp(p["nu_log"]) + 1j * np.exp(p["theta_log"]))
    gamma = np.exp(p["gamma_log"]) if cell.normalise else np.ones(cell.hidden_size)
    B = (p["B_re"] + 1j * p["B_im"]) * gamma[:, None]
    C = p["C_re"] + 1j * p["C_im"]
    return lam, B, C, p["D"]


def _np_rollout(cell, xs, h0):
    """h_t = λ⊙h_{t−1} + γ⊙(B x_t), y_t = Re(C h_t) + D⊙x_t in complex128."""
    lam, B, C, D = _np_params(cell)
    h, hs, ys = h0.astype(np.complex128), [], []
    for x in xs:
        h = lam * h + B @ x
        hs.append(h)
        ys.append((C @ h).real + D * x)
    return np.array(hs), np.array(ys)


@pytest.mark.parametrize("normalise", [True, False])
def test_recurrence_and_readout_match_complex_numpy_reference(normalise):
    cell = build("lru", M, N, seed=3, normalise=normalise)
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(T, M))
    h0 = rng.normal(size=N) + 1j * rng.normal(size=N)
    hs, ys = _np_rollout(cell, xs, h0)
    tr = gs.rollout(cell, xs, (jnp.asarray(h0.real), jnp.asarray(h0.imag)))
    assert cell.blocks == ("re", "im") and cell.output_size == M and cell.state_size == 2 * N
    np.testing.assert_allclose(np.asarray(tr.flat[1:, :N]), hs.real, rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.asarray(tr.flat[1:, N:]), hs.imag, rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.asarray(tr.aux["y"]), ys, rtol=0, atol=1e-12)
    for t in (0, T - 1):
        state = (tr.flat[t + 1, :N], tr.flat[t + 1, N:])
        np.testing.assert_allclose(np.asarray(cell.readout(state, jnp.asarray(xs[t]))), ys[t], rtol=0, atol=1e-12)
        np.testing.assert_array_equal(cell.output(state), state[0])  # output() = Re h, the first block


def test_jacobians_are_the_complex_diagonal_and_match_autodiff():
    cell = build("lru", M, N, seed=4)
    lam, B, C, D = _np_params(cell)
    rng = np.random.default_rng(1)
    x, state = jnp.asarray(rng.normal(size=M)), tuple(jnp.asarray(rng.normal(size=N)) for _ in range(2))
    d_lam, jx_diag = cell.jacobian_diag(x, state)
    assert jnp.iscomplexobj(d_lam) and d_lam.shape == (N,)
    np.testing.assert_allclose(np.asarray(d_lam), lam, rtol=0, atol=1e-14)
    # the real form of h ↦ λ⊙h on [Re h, Im h], built here from NumPy's λ
    R = np.block([[np.diag(lam.real), -np.diag(lam.imag)], [np.diag(lam.imag), np.diag(lam.real)]])
    J, X = cell.jacobian(x, state)
    Ja, Xa = autodiff_jacobians(cell, x, state, 0)
    np.testing.assert_allclose(J, R, rtol=0, atol=1e-14)
    np.testing.assert_allclose(J, Ja, rtol=0, atol=1e-12)
    np.testing.assert_allclose(X, np.concatenate([B.real, B.imag]), rtol=0, atol=1e-14)
    np.testing.assert_allclose(X, Xa, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(jx_diag, X)
    # readout: y = C_re re − C_im im + D⊙x
    Ry, Rx = cell.readout_jacobian(state, x)
    s = jnp.concatenate(state)
    Ra, Rxa = jax.jacfwd(lambda s, x: cell.readout((s[:N], s[N:]), x), argnums=(0, 1))(s, x)
    np.testing.assert_allclose(Ry, np.concatenate([C.real, -C.imag], axis=1), rtol=0, atol=1e-14)
    np.testing.assert_allclose(Ry, Ra, rtol=0, atol=1e-12)
    np.testing.assert_allclose(Rx, np.diag(D), rtol=0, atol=1e-14)
    np.testing.assert_allclose(Rx, Rxa, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(readout_jacobians(cell, state, x)[0], Ry)


def test_initialisation_follows_appendix_a():
    n, m = 4000, 5
    r_min, r_max, max_phase = 0.4, 0.95, 3.0
    cell = gs.cells.make(
        "lru", m, n, key=jax.random.key(0), dtype=jnp.float64, r_min=r_min, r_max=r_max, max_phase=max_phase
    )
    lam, _, _, _ = _np_params(cell)
    r2, phase = np.abs(lam) ** 2, np.exp(np.asarray(cell.theta_log))
    assert r_min**2 <= r2.min() and r2.max() <= r_max**2 and 0 < phase.min() and phase.max() <= max_phase
    # |λ|² uniform on [r_min², r_max²] (λ uniform on the ring), phase uniform on [0, max_phase]
    assert stats.kstest(r2, stats.uniform(r_min**2, r_max**2 - r_min**2).cdf).pvalue > 1e-3
    assert stats.kstest(phase, stats.uniform(0, max_phase).cdf).pvalue > 1e-3
    # γ = √(1 − |λ|²) exactly at initialisation
    np.testing.assert_allclose(np.exp(np.asarray(cell.gamma_log)), np.sqrt(1 - np.abs(lam) ** 2), rtol=1e-12)
    # Glorot-like: B ~ N(0, 1/(2m)) per part, C ~ N(0, 1/n), D ~ N(0, 1)
    np.testing.assert_allclose(np.std(np.asarray(cell.B_re)), 1 / np.sqrt(2 * m), rtol=0.05)
    np.testing.assert_allclose(np.std(np.asarray(cell.B_im)), 1 / np.sqrt(2 * m), rtol=0.05)
    np.testing.assert_allclose(np.std(np.asarray(cell.C_im)), 1 / np.sqrt(n), rtol=0.05)
    # the defaults of the paper's code: r_min 0, r_max 1, max_phase 6.28; finite parameters
    assert gs.cells.options("lru") == {"r_min": 0.0, "r_max": 1.0, "max_phase": 6.28, "normalise": True}
    default = gs.cells.make("lru", m, n, key=jax.random.key(1), dtype=jnp.float64)
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree_util.tree_leaves(default))


@pytest.mark.parametrize(
    "opts, word",
    [
        ({"r_min": 0.9, "r_max": 0.5}, "r_min"),
        ({"r_max": 1.5}, "r_max"),
        ({"r_min": 1.0}, "r_min"),
        ({"r_min": -0.1}, "r_min"),
        ({"max_phase": 0.0}, "max_phase"),
        ({"normalise": "yes"}, "normalise"),
    ],
)
def test_bad_options_raise_config_errors_naming_them(opts, word):
    with pytest.raises(ConfigError, match=word):
        gs.cells.make("lru", M, N, key=jax.random.key(0), **opts)


def test_lag_profile_spectral_norm_is_max_abs_lambda_to_the_lag():
    # ∂S_T/∂S_k = real form of diag(λ^(T−k)): spectral norm max|λ|^τ, Frobenius √(2 Σ|λ|^(2τ)),
    # block re→re = diag(Re λ^τ), im→re = −diag(Im λ^τ): whatever the inputs and the initial state
    cell = build("lru", M, N, seed=5, r_min=0.5, r_max=0.99)
    lam, _, _, _ = _np_params(cell)
    tau = np.arange(T, 0, -1)
    pw = lam[None, :] ** tau[:, None]
    want = {
        "spec": tau * np.log10(np.abs(lam).max()),
        "frob": 0.5 * np.log10(2 * np.sum(np.abs(pw) ** 2, axis=1)),
        "re→re": np.log10(np.abs(pw.real).max(axis=1)),
        "im→re": np.log10(np.abs(pw.imag).max(axis=1)),
    }
    rng = np.random.default_rng(2)
    for scale in (0.1, 10.0):
        xs = scale * rng.normal(size=(2, T, M))
        s0 = tuple(jnp.asarray(scale * rng.normal(size=(2, N))) for _ in range(2))
        lp = engine.lag_profile(cell, xs, s0)
        for b in range(2):
            np.testing.assert_allclose(np.asarray(lp.log10_spectral[b]), want["spec"], rtol=0, atol=ATOL)
            np.testing.assert_allclose(np.asarray(lp.log10_frobenius[b]), want["frob"], rtol=0, atol=ATOL)
            for key in ("re→re", "im→re"):
                np.testing.assert_allclose(
                    np.asarray(lp.blocks[key]["log10_spectral"][b]), want[key], rtol=0, atol=ATOL
                )


def _models():
    return {
        "cell": lambda: build("lru", M, N, seed=0, r_min=0.3, r_max=0.95),
        "stack": lambda: stack("lru", M, N, 2, key=jax.random.key(1), dtype=jnp.float64),
        "bidirectional": lambda: Bidirectional(build("lru", M, N, seed=4), build("lru", M, 2, seed=5)),
    }


@pytest.mark.parametrize("name", ["cell", "stack", "bidirectional"])
def test_lag_profile_matches_jacrev_norms(name):
    assert_lag_profile_matches_jacrev(_models()[name](), T=6, atol=ATOL)


@pytest.mark.parametrize("name", ["stack"])  # Bidirectional: covered through its products in the test above
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


def test_lyapunov_triangle_attribution_run_and_are_finite():
    cell = build("lru", M, N, seed=6, r_min=0.5, r_max=0.99)
    xs = inputs(T, M, seed=3, B=2)
    lam, _, _, _ = _np_params(cell)
    ly = engine.lyapunov_spectrum(cell, xs)
    # the step Jacobian is constant and has orthogonal columns of norms |λ_n| (twice each): exact QR exponents
    np.testing.assert_allclose(
        np.asarray(ly.exponents),
        np.broadcast_to(np.sort(np.repeat(np.log(np.abs(lam)), 2))[::-1], (2, 2 * N)),
        rtol=0,
        atol=1e-12,
    )
    tri = engine.triangle(cell, xs)
    assert np.all(np.isfinite(np.asarray(tri.log10_frobenius)[:, np.tril_indices(T + 1)[0], np.tril_indices(T + 1)[1]]))
    at = engine.attribution(cell, xs, key=jax.random.key(0))
    assert np.all(np.isfinite(np.asarray(at.log10_total)))
    bt = np.asarray(at.log10_block_time)  # (B, T+1, blocks)
    # the default loss reads output(S_t) = Re h_t, so ∂E/∂(Im h_T) = 0 exactly (−∞); every other entry is finite
    assert np.all(np.isfinite(bt[:, :T])) and np.all(np.isfinite(bt[:, T, 0])) and np.all(np.isneginf(bt[:, T, 1]))


# --- importing trained models (gradscope.io.lru) ------------------------------------------------------------


def _appendix_a_params(n, m, seed):
    """A float64 parameter dict in the layout of the paper's Flax reference, initialised as its Appendix A."""
    rng = np.random.default_rng(seed)
    u1, u2 = rng.uniform(size=n), rng.uniform(size=n)
    r_min, r_max = 0.5, 0.99
    nu_log = np.log(-0.5 * np.log(u1 * (r_max**2 - r_min**2) + r_min**2))
    theta_log = np.log(6.28 * u2)
    lam = np.exp(-np.exp(nu_log) + 1j * np.exp(theta_log))
    return {
        "nu_log": nu_log,
        "theta_log": theta_log,
        "gamma_log": np.log(np.sqrt(1 - np.abs(lam) ** 2)),
        "B_re": rng.normal(size=(n, m)) / np.sqrt(2 * m),
        "B_im": rng.normal(size=(n, m)) / np.sqrt(2 * m),
        "C_re": rng.normal(size=(m, n)) / np.sqrt(n),
        "C_im": rng.normal(size=(m, n)) / np.sqrt(n),
        "D": rng.normal(size=m),
    }


def test_import_flax_reference_layout_matches_its_recurrence():
    from gradscope.io import lru as io_lru

    p = _appendix_a_params(N, M, 0)
    tree = {"params": {"layers_0": p, "layers_1": _appendix_a_params(N + 1, M, 1)}}  # a nested Flax tree
    assert io_lru.recognise({f"params.layers_0.{k}" for k in p})
    model = io_lru.from_state_dict(tree)
    assert isinstance(model, Stack) and [c.hidden_size for c in model.layers] == [N, N + 1]
    cell = io_lru.from_state_dict(p)
    assert cell.dtype == jnp.float64 and cell.output_size == M
    # the reference recurrence, written from the tensors (not from the cell)
    lam = np.exp(-np.exp(p["nu_log"]) + 1j * np.exp(p["theta_log"]))
    B = (p["B_re"] + 1j * p["B_im"]) * np.exp(p["gamma_log"])[:, None]
    xs = inputs(T, M, seed=5)
    h, ys = np.zeros(N, complex), []
    for x in xs:
        h = lam * h + B @ x
        ys.append(((p["C_re"] + 1j * p["C_im"]) @ h).real + p["D"] * x)
    np.testing.assert_allclose(np.asarray(gs.rollout(cell, xs).aux["y"]), np.array(ys), rtol=0, atol=1e-12)


@pytest.fixture
def torch_lru():
    torch = pytest.importorskip("torch")
    LRU_pytorch = pytest.importorskip("LRU_pytorch")
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # the package builds its state and outputs in the default dtype
    try:
        torch.manual_seed(0)
        yield torch, LRU_pytorch.LRU(M, 2, N, rmin=0.5, rmax=0.99)  # in 3, out 2, 4 states: a matrix D
    finally:
        torch.set_default_dtype(before)


def test_import_lru_pytorch_matches_its_forward_and_jacobians(torch_lru):
    torch, ref = torch_lru
    from gradscope.io import lru as io_lru

    sd = ref.state_dict()
    assert io_lru.recognise(set(sd)) and not io_lru.recognise(set(sd) | {"other.weight"})
    cell = io_lru.from_state_dict(sd)
    assert (cell.input_size, cell.hidden_size, cell.output_size) == (M, N, 2) and cell.dtype == jnp.float64
    xs = inputs(T, M, seed=6)
    with torch.no_grad():
        want = ref(torch.from_numpy(xs)).numpy()
    np.testing.assert_allclose(np.asarray(gs.rollout(cell, xs).aux["y"]), want, rtol=0, atol=1e-12)
    # Jacobians of the package's one-step output y_1(S_0, x_1) (torch autograd) == the chain of the cell's
    # analytic ones: ∂y/∂S_0 = (∂y/∂S_1)(∂S_1/∂S_0), ∂y/∂x = (∂y/∂S_1)(∂S_1/∂x) + ∂y/∂x|_S
    rng = np.random.default_rng(7)
    s0, x = rng.normal(size=2 * N), rng.normal(size=M)

    def y_of(s, x):
        return ref(x[None], state=torch.complex(s[:N], s[N:]))[0]

    Jy_s, Jy_x = torch.autograd.functional.jacobian(y_of, (torch.from_numpy(s0), torch.from_numpy(x)))
    state = (jnp.asarray(s0[:N]), jnp.asarray(s0[N:]))
    J, X = cell.jacobian(jnp.asarray(x), state)
    new, _ = cell(jnp.asarray(x), state)
    Ry, Rx = cell.readout_jacobian(new, jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(Ry @ J), Jy_s.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.asarray(Ry @ X + Rx), Jy_x.numpy(), rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "bad, word", [("missing", "'gamma_log'"), ("shape", "'C'"), ("nan", "'B'"), ("extra", "'head.weight'")]
)
def test_import_errors_name_the_tensor(torch_lru, bad, word):
    torch, ref = torch_lru
    from gradscope.io import lru as io_lru
    from gradscope.io.formats import ImportFormatError

    sd = {k: v.clone() for k, v in ref.state_dict().items()}
    if bad == "missing":
        del sd["gamma_log"]
    elif bad == "shape":
        sd["C"] = sd["C"][:, :-1]
    elif bad == "nan":
        sd["B"][0, 0] = complex(float("nan"), 0.0)
    else:
        sd["head.weight"] = torch.zeros(2, 2)
    with pytest.raises(ImportFormatError, match=word) as err:
        io_lru.from_state_dict(sd)
    assert isinstance(err.value, gs.GradscopeError) and "\n" not in str(err.value)
