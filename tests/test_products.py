"""Lag profiles and triangles against NumPy norms of jax.jacrev products; overflow-proofing at T = 5000
in float32 against float64; memory of the compiled lag profile at T = 5000, d = 512."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _engine_ref import block_ranges, build, inputs, oracle

import gradscope as gs
from gradscope import engine
from gradscope.cells import make
from gradscope.nets import Bidirectional, Stack, stack

ATOL = 1e-9


def _models():
    return {
        "rnn-tanh": lambda: build("rnn-tanh", 3, 4),
        "lstm": lambda: build("lstm", 3, 3),
        "stack-2-lstm": lambda: Stack((build("lstm", 3, 3, seed=1), build("lstm", 3, 2, seed=2))),
        "stack-3-lstm": lambda: stack("lstm", 3, 2, 3, key=jax.random.key(3), dtype=jnp.float64),
        "bidirectional": lambda: Bidirectional(build("gru", 3, 3, seed=4), build("rnn-tanh", 3, 2, seed=5)),
    }


MODELS = _models()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_lag_profile_matches_jacrev_norms(name):
    model = MODELS[name]()
    T = 6
    xs = inputs(T, model.input_size, seed=2)
    lp = engine.lag_profile(model, xs)
    _, _, P, _, _ = oracle(model, xs)
    assert lp.length == T and lp.log10_spectral.shape == (T,)
    rng = block_ranges(model)
    if len(rng) <= 4:
        pairs = [(f"{b}→{a}", ra, rb, ca, cb) for a, ra, rb in rng for b, ca, cb in rng]
    else:  # deep stacks: only the diagonal pairs
        pairs = [(f"{a}→{a}", r0, r1, r0, r1) for a, r0, r1 in rng]
    if model.structure == "diagonal":
        pairs = [(f"{a}→{a}", r0, r1, r0, r1) for a, r0, r1 in rng]
    assert set(lp.blocks) == {p[0] for p in pairs}
    for k in range(T):
        M = P[T, k]
        np.testing.assert_allclose(float(lp.log10_spectral[k]), np.log10(np.linalg.norm(M, 2)), atol=ATOL)
        np.testing.assert_allclose(float(lp.log10_frobenius[k]), np.log10(np.linalg.norm(M)), atol=ATOL)
        for key, r0, r1, c0, c1 in pairs:
            sub = M[r0:r1, c0:c1]
            np.testing.assert_allclose(
                float(lp.blocks[key]["log10_spectral"][k]),
                np.log10(np.linalg.norm(sub, 2)),
                atol=ATOL,
                err_msg=f"{key} k={k}",
            )
            np.testing.assert_allclose(
                float(lp.blocks[key]["log10_frobenius"][k]),
                np.log10(np.linalg.norm(sub)),
                atol=ATOL,
                err_msg=f"{key} k={k}",
            )


@pytest.mark.parametrize("name", sorted(MODELS))
def test_lag_profile_without_blocks_matches_jacrev_norms(name):
    """``blocks=False``: no block pairs, the full state's norms those of the jacrev product, from the
    model and from materialised step Jacobians alike."""
    model = MODELS[name]()
    T = 6
    xs = inputs(T, model.input_size, seed=2)
    _, _, P, _, _ = oracle(model, xs)
    for lp in (
        engine.lag_profile(model, xs, blocks=False),
        engine.lag_profile_of(model, engine.trajectory_steps(model, xs), blocks=False),
    ):
        assert lp.blocks == {}
        for k in range(T):
            np.testing.assert_allclose(float(lp.log10_spectral[k]), np.log10(np.linalg.norm(P[T, k], 2)), atol=ATOL)
            np.testing.assert_allclose(float(lp.log10_frobenius[k]), np.log10(np.linalg.norm(P[T, k])), atol=ATOL)
    with pytest.raises(gs.ConfigError, match="blocks"):
        engine.lag_profile(model, xs, blocks="no")


def test_lag_profile_block_names_refer_to_the_right_derivative():
    # "c→h" is ∂h_T/∂c_k: with W_hh = 0 and T = 1, ∂c_1/∂h_0 = 0 exactly while ∂h_1/∂c_0 ≠ 0
    cell = build("lstm", 3, 3)
    cell = dataclasses.replace(cell, weight_hh=jnp.zeros_like(cell.weight_hh))
    lp = engine.lag_profile(cell, inputs(1, 3))
    assert np.isneginf(float(lp.blocks["h→c"]["log10_frobenius"][0]))
    assert np.isfinite(float(lp.blocks["c→h"]["log10_frobenius"][0]))


def test_lag_profile_batched_equals_per_sequence():
    model = build("gru", 3, 4)
    xs = inputs(5, 3, B=3, seed=4)
    lp = engine.lag_profile(model, xs)
    assert lp.log10_spectral.shape == (3, 5)
    for b in range(3):
        one = engine.lag_profile(model, xs[b])
        np.testing.assert_allclose(np.asarray(lp.log10_spectral[b]), np.asarray(one.log10_spectral), atol=1e-12)
        np.testing.assert_allclose(
            np.asarray(lp.blocks["h→h"]["log10_frobenius"][b]),
            np.asarray(one.blocks["h→h"]["log10_frobenius"]),
            atol=1e-12,
        )


@pytest.mark.parametrize(
    "name,chunk,T",
    # chunk 5 of T = 17: a chunk's first steps run in phases of widths 1..5, the last chunk ends early
    [("lstm", None, 6), ("lstm", 2, 6), ("rnn-tanh", 4, 6), ("stack-2-lstm", 5, 17)],
)
def test_triangle_matches_jacrev_for_every_pair(name, chunk, T):
    model = MODELS[name]()
    xs = inputs(T, model.input_size, seed=3)
    tri = engine.triangle(model, xs, spectral=True, chunk=chunk)
    _, _, P, _, _ = oracle(model, xs)
    d = model.state_size
    F, Sg = np.asarray(tri.log10_frobenius), np.asarray(tri.log10_spectral)
    assert F.shape == (T + 1, T + 1)
    for t in range(T + 1):
        for k in range(T + 1):
            if k > t:
                assert np.isnan(F[t, k]) and np.isnan(Sg[t, k])
            elif k == t:  # ∂S_t/∂S_t = I
                np.testing.assert_allclose(F[t, k], 0.5 * np.log10(d), atol=1e-12)
                np.testing.assert_allclose(Sg[t, k], 0.0, atol=1e-12)
            else:
                np.testing.assert_allclose(F[t, k], np.log10(np.linalg.norm(P[t, k])), atol=ATOL)
                np.testing.assert_allclose(Sg[t, k], np.log10(np.linalg.norm(P[t, k], 2)), atol=ATOL)
    # row T of the triangle is the lag profile
    lp = engine.lag_profile(model, xs)
    np.testing.assert_allclose(F[T, :T], np.asarray(lp.log10_frobenius), atol=ATOL)


# --- overflow: T = 5000 in float32 against float64 (README: numbers are honest) -----------------------------------


def _orth_elman(act, gain, dtype):
    return make(f"rnn-{act}", 2, 16, key=jax.random.key(7), dtype=dtype, recurrent_init="orthogonal", gain=gain)


@pytest.mark.parametrize("act,gain", [("linear", 1.2), ("linear", 0.8), ("tanh", 1.2), ("tanh", 0.8)])
def test_long_float32_products_are_finite_and_match_float64(act, gain):
    T = 5000
    cell32 = _orth_elman(act, gain, jnp.float32)
    cell64 = jax.tree.map(lambda a: a.astype(jnp.float64), cell32)
    xs = inputs(T, 2, seed=8, scale=0.5)
    xs32 = np.asarray(xs, np.float32)
    lp32, lp64 = engine.lag_profile(cell32, xs32), engine.lag_profile(cell64, np.asarray(xs32, np.float64))
    assert lp32.log10_spectral.dtype == jnp.float32
    for f in ("log10_spectral", "log10_frobenius"):
        a, b = np.asarray(getattr(lp32, f), np.float64), np.asarray(getattr(lp64, f))
        assert np.all(np.isfinite(a)), f
        np.testing.assert_allclose(a, b, atol=1e-3, err_msg=f)
    # the profile really is exploding / vanishing: ~ (T−k) log10(gain) for the linear net (W is the
    # float32-rounded gain·orthogonal matrix, so only up to T·1e-7)
    if act == "linear":
        np.testing.assert_allclose(np.asarray(lp64.log10_spectral), np.arange(T, 0, -1) * np.log10(gain), atol=1e-3)
    if act == "linear":  # constant Jacobian: the exponents add nothing over the profile
        return
    ly32 = engine.lyapunov_spectrum(cell32, xs32)
    ly64 = engine.lyapunov_spectrum(cell64, np.asarray(xs32, np.float64))
    assert np.all(np.isfinite(np.asarray(ly32.exponents)))
    np.testing.assert_allclose(np.asarray(ly32.exponents, np.float64), np.asarray(ly64.exponents), atol=1e-3)


# --- memory: the compiled lag profile never holds T·d² numbers (README: O(d²) memory) -------------------------


def test_lag_profile_memory_is_independent_of_T():
    T, d = 5000, 512
    cell = make("rnn-tanh", 4, d, key=jax.random.key(0), dtype=jnp.float32)
    xs = jax.ShapeDtypeStruct((T, 4), jnp.float32)

    def profile(cell, xs):
        lp = engine.lag_profile(cell, xs)
        return lp.log10_spectral, lp.log10_frobenius

    compiled = jax.jit(profile).lower(cell, xs).compile()
    full = T * d * d * 4  # bytes of all T step Jacobians in float32: 5.2 GB
    mem = compiled.memory_analysis()
    if mem is not None:
        assert mem.temp_size_in_bytes < full / 100, mem.temp_size_in_bytes
        assert mem.output_size_in_bytes < full / 100
    # and no intermediate in the jaxpr has T·d² elements
    jaxpr = jax.make_jaxpr(profile)(cell, xs)
    big = []

    def walk(jx):
        for eqn in jx.eqns:
            for v in eqn.outvars:
                if hasattr(v.aval, "shape") and np.prod(v.aval.shape, dtype=np.int64) >= T * d * d:
                    big.append((eqn.primitive, v.aval.shape))
            for sub in jax.core.subjaxprs(eqn) if hasattr(jax.core, "subjaxprs") else _subjaxprs(eqn):
                walk(sub)

    walk(jaxpr.jaxpr)
    assert not big, big


def _subjaxprs(eqn):
    for p in eqn.params.values():
        for q in p if isinstance(p, (tuple, list)) else (p,):
            if hasattr(q, "jaxpr") and hasattr(q.jaxpr, "eqns"):
                yield q.jaxpr
            elif hasattr(q, "eqns"):
                yield q


# --- norm invariances of LN/BN cells at the level of the lag profile (Ba et al. 2016, Table 1) ---


def _scaled(cell, c, fields):
    return dataclasses.replace(cell, **{f: c * getattr(cell, f) for f in fields})


def _profiles_equal(a, b, atol=1e-9):
    np.testing.assert_allclose(np.asarray(a.log10_spectral), np.asarray(b.log10_spectral), atol=atol)
    np.testing.assert_allclose(np.asarray(a.log10_frobenius), np.asarray(b.log10_frobenius), atol=atol)
    for key in a.blocks:
        for f in ("log10_spectral", "log10_frobenius"):
            np.testing.assert_allclose(np.asarray(a.blocks[key][f]), np.asarray(b.blocks[key][f]), atol=atol)


# cell name -> weight fields whose joint scaling by c > 0 leaves the step map unchanged
INVARIANT = {
    "ln-rnn": ("weight_hh", "weight_ih"),  # LN(W_hh h + W_xh x): scale both together
    "ln-lstm": ("weight_hh",),  # LN(W_h h) and LN(W_x x) separately
    "gn-lstm": ("weight_hh",),
    "in-lstm": ("weight_hh",),
    "ln-gru": ("weight_hh",),  # LN(W_h h) and LN(U h)
}


@pytest.mark.parametrize("name", sorted(INVARIANT))
def test_layer_norm_cells_are_invariant_to_weight_scaling(name):
    from gradscope.cells import names

    if name not in names():
        pytest.skip(f"{name} is not registered")
    # eps tiny so that 'invariant up to ε' is exact to test precision; a random non-zero start state
    # (at h = 0, W_h h = 0 and LN's σ is √ε)
    cell = build(name, 3, 4, seed=3, eps=1e-14)
    state0 = tuple(np.random.default_rng(0).normal(size=(n,)) for n in cell.block_sizes)
    xs = inputs(8, 3, seed=5)
    ref = engine.lag_profile(cell, xs, state0)
    for c in (0.25, 7.0):
        _profiles_equal(ref, engine.lag_profile(_scaled(cell, c, INVARIANT[name]), xs, state0))
    # not vacuous: scaling an LN gain does change the profile
    if name == "ln-lstm":
        other = engine.lag_profile(_scaled(cell, 3.0, ("hh_gain",)), xs, state0)
        assert np.max(np.abs(np.asarray(other.log10_spectral) - np.asarray(ref.log10_spectral))) > 1e-3


@pytest.mark.parametrize("name", ["bn-lstm", "bn-rnn"])
def test_batch_norm_cells_are_invariant_to_recurrent_weight_scaling(name):
    from gradscope.cells import names

    if name not in names():
        pytest.skip(f"{name} is not registered")
    from gradscope.cells.normalized import collect_statistics

    cell = build(name, 3, 4, seed=4, eps=1e-14)
    xs = inputs(6, 3, B=4, seed=6)
    rng = np.random.default_rng(1)
    state0 = tuple(rng.normal(size=(4, n)) for n in cell.block_sizes)
    # population statistics = the training batch's; W_h → c W_h rescales them and nothing else
    a = collect_statistics(cell, xs, state0)
    b = collect_statistics(_scaled(cell, 5.0, ("weight_hh",)), xs, state0)
    s0 = tuple(s[0] for s in state0)
    _profiles_equal(engine.lag_profile(a, xs[0], s0), engine.lag_profile(b, xs[0], s0), atol=1e-8)


def test_iterative_spectral_norms_of_wide_blocks_match_exact_svd():
    """Blocks wider than EXACT_MAX use warm-started subspace iteration; compare with spectral='exact'
    (an SVD per lag) on a gated cell whose c→c block is near-diagonal and whose top unit changes."""
    from gradscope.engine.products import EXACT_MAX

    cell = gs.cells.make("lstm", 2, 2 * EXACT_MAX, key=jax.random.key(3), dtype=jnp.float64)
    cell = dataclasses.replace(cell, weight_hh=0.05 * cell.weight_hh)
    xs = jax.random.normal(jax.random.key(4), (2, 40, 2), jnp.float64)
    it, ex = gs.lag_profile(cell, xs), gs.lag_profile(cell, xs, spectral="exact")
    # the documented accuracy: within 1e-3 log10 everywhere (close top singular values converge slowly),
    # and the Ritz value never exceeds the true norm; typically far closer
    err = np.asarray(ex.log10_spectral) - np.asarray(it.log10_spectral)
    assert err.min() > -1e-10 and err.max() < 1e-3 and np.median(err) < 1e-8
    for name in ex.blocks:
        e = np.asarray(ex.blocks[name]["log10_spectral"]) - np.asarray(it.blocks[name]["log10_spectral"])
        assert e.min() > -1e-10 and e.max() < 1e-3 and np.median(e) < 1e-8, name
    with pytest.raises(gs.ConfigError, match="spectral"):
        gs.lag_profile(cell, xs, spectral="svd")


def test_float32_subspace_iteration_meets_its_residual_bound():
    """`products._tol`: in float32 the iteration stops at a relative residual of 1e-4, which puts σ² within
    1e-4 relative of an eigenvalue of MᵀM, so the estimate is within 2.2e-5 log10 of a singular value of M
    (and, a Ritz value, never above the largest). Checked against NumPy's float64 SVD from a cold start,
    on spectra with the top two singular values apart and 1e-3 apart; and a looser stop fails the bound."""
    from gradscope.engine import products

    rng = np.random.default_rng(0)
    d = 48
    V0 = products._init_block(d, products.SUBSPACE_RANK, jnp.float32)
    assert products._tol(jnp.float32) == 1e-4

    def worst(tol):
        errs = []
        for gap in (0.5, 1e-3):
            U, _ = np.linalg.qr(rng.standard_normal((d, d)))
            W, _ = np.linalg.qr(rng.standard_normal((d, d)))
            s = np.concatenate([[1.0, 1.0 - gap], np.geomspace(0.45, 1e-3, d - 2)])
            M = (U * s) @ W.T
            sig, _ = products.top_singular_value(jnp.asarray(M, jnp.float32), V0, tol)
            assert float(sig) <= s[0] * (1 + 1e-6)
            errs.append(np.min(np.abs(np.log10(float(sig)) - np.log10(s))))
        return max(errs)

    assert worst(products._tol(jnp.float32)) <= 2.2e-5 + 1e-6
    assert worst(0.5) > 2.2e-5  # the test can fail: a stop at ρ = 0.5 is not within the bound


@pytest.mark.slow
def test_large_batch_lag_profile_returns_on_a_small_cpu():
    """Regression: on 2 cores with jaxlib 0.10, a lag profile with a batch of 128 wedged XLA's CPU thread
    pool (batched LAPACK kernels waiting on the pool that runs them) and never returned. `import gradscope`
    turns XLA's concurrency scheduler off before JAX starts; a fresh process must finish, and a user's own
    XLA_FLAGS setting of that flag is left alone."""
    import os
    import subprocess
    import sys

    code = (
        "import os, jax, gradscope as gs; "
        "cell = gs.cells.make('lstm', 2, 64, key=jax.random.key(0)); "
        "xs = jax.random.normal(jax.random.key(1), (128, 5, 2)); "
        "jax.block_until_ready(gs.lag_profile(cell, xs).log10_spectral); print(os.environ.get('XLA_FLAGS'))"
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("XLA_FLAGS", "JAX_ENABLE_X64", "JAX_DISABLE_MOST_OPTIMIZATIONS")
    }
    env["JAX_PLATFORMS"] = "cpu"
    res = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=240, check=False
    )
    assert res.returncode == 0, res.stderr[-2000:]
    from importlib import metadata

    if metadata.version("jaxlib").startswith("0.10."):
        assert "--xla_cpu_enable_concurrency_optimized_scheduler=false" in res.stdout
    own = dict(env, XLA_FLAGS="--xla_cpu_enable_concurrency_optimized_scheduler=true")
    out = subprocess.run(
        [sys.executable, "-c", "import os, gradscope; print(os.environ['XLA_FLAGS'])"],
        env=own,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert out.strip() == "--xla_cpu_enable_concurrency_optimized_scheduler=true"


# --- the diagonal fast path (real and complex diagonal) against the dense path and jax.jacrev ---------

from gradscope.cells._base import Cell, pytree_cell, static  # noqa: E402
from gradscope.engine._prep import structure  # noqa: E402


@pytree_cell
class GatedComplex(Cell):
    """A test-local complex-diagonal cell whose multipliers depend on the input (so every step differs):

        λ_t = σ(W_r x_t + b_r) · exp(i (θ + W_θ x_t)),     h_t = λ_t ⊙ h_{t−1} + (B_re + i B_im) x_t,

    carried as S = [Re h, Im h]."""

    W_r: jax.Array
    b_r: jax.Array
    theta: jax.Array
    W_t: jax.Array
    B_re: jax.Array
    B_im: jax.Array
    input_size: int = static()
    hidden_size: int = static()

    blocks = ("re", "im")
    structure = "complex-diagonal"

    def lam(self, x):
        r = jax.nn.sigmoid(self.W_r @ x + self.b_r)
        th = self.theta + self.W_t @ x
        return r * jnp.cos(th), r * jnp.sin(th)

    def __call__(self, x, state):
        re, im = state
        lr, li = self.lam(x)
        return (lr * re - li * im + self.B_re @ x, li * re + lr * im + self.B_im @ x), {}

    def jacobian_diag(self, x, state, t=None):
        lr, li = self.lam(x)
        s = jnp.concatenate(state)
        jx = jax.jacfwd(lambda x: jnp.concatenate(self(x, (s[: self.hidden_size], s[self.hidden_size :]))[0]))(x)
        return jax.lax.complex(lr, li), jx

    def jacobian(self, x, state, t=None):
        lr, li = self.lam(x)
        J = jnp.block([[jnp.diag(lr), -jnp.diag(li)], [jnp.diag(li), jnp.diag(lr)]])
        return J, self.jacobian_diag(x, state, t)[1]


def gated_complex(m=3, n=3, seed=0, dtype=jnp.float64):
    k = jax.random.split(jax.random.key(seed), 6)
    g = lambda i, *s: jax.random.normal(k[i], s, dtype)  # noqa: E731
    return GatedComplex(
        g(0, n, m), 1.5 + g(1, n), 3.0 * g(2, n), g(3, n, m), g(4, n, m), g(5, n, m), input_size=m, hidden_size=n
    )


_DENSE = {}


def dense_twin(cell):
    """The same cell declaring ``structure = "dense"``: the engine then takes its dense path."""
    cls = type(cell)
    if cls not in _DENSE:
        _DENSE[cls] = pytree_cell(type("Dense" + cls.__name__, (cls,), {"structure": "dense"}))
    return _DENSE[cls](**{f.name: getattr(cell, f.name) for f in dataclasses.fields(cell)})


DIAG_MODELS = {
    "indrnn": lambda: build("indrnn", 3, 4, activation="tanh", u_min=0.5, u_max=1.3),
    "gated-complex": lambda: gated_complex(),
    "lru": lambda: build("lru", 3, 3, r_min=0.6, r_max=1.0),
}


def _numpy_benettin(J):
    """Lyapunov exponents of the step Jacobians J (T, d, d) by NumPy QR from the identity frame, sorted."""
    Q, acc = np.eye(J.shape[-1]), 0.0
    for Jt in J:
        Q, R = np.linalg.qr(Jt @ Q)
        acc = acc + np.log(np.abs(np.diag(R)))
    return np.sort(acc / len(J))[::-1]


@pytest.mark.parametrize("name", sorted(DIAG_MODELS))
def test_diagonal_fast_path_equals_dense_path_and_jacrev(name):
    from gradscope.cells import names

    if name not in names() and name != "gated-complex":
        pytest.skip(f"{name} is not registered")
    model = DIAG_MODELS[name]()
    dense = dense_twin(model)
    assert structure(model) != "dense" and structure(dense) == "dense"
    T = 6
    xs = inputs(T, model.input_size, seed=11)
    _, _, P, J, _ = oracle(model, xs)
    d = model.state_size
    fast_lp, dense_lp = engine.lag_profile(model, xs), engine.lag_profile(dense, xs)
    # every block pair of the state (a real diagonal's cross-block pairs are exactly 0, so not reported)
    rng = block_ranges(model)
    pairs = [(f"{b}→{a}", ra, rb, ca, cb) for a, ra, rb in rng for b, ca, cb in rng]
    if structure(model) == "diagonal":
        pairs = [p for p in pairs if p[1:3] == p[3:5]]
    assert set(fast_lp.blocks) == {p[0] for p in pairs} == set(dense_lp.blocks)
    for k in range(T):
        M = P[T, k]
        for lp in (fast_lp, dense_lp):
            np.testing.assert_allclose(float(lp.log10_spectral[k]), np.log10(np.linalg.norm(M, 2)), atol=1e-10)
            np.testing.assert_allclose(float(lp.log10_frobenius[k]), np.log10(np.linalg.norm(M)), atol=1e-10)
            for key, r0, r1, c0, c1 in pairs:
                sub = M[r0:r1, c0:c1]
                for f, o in (("log10_spectral", 2), ("log10_frobenius", None)):
                    np.testing.assert_allclose(
                        float(lp.blocks[key][f][k]),
                        np.log10(np.linalg.norm(sub, o)),
                        atol=1e-10,
                        err_msg=f"{key} {f} k={k}",
                    )
    # triangle: every (t, k), spectral and Frobenius, fast == dense == jacrev
    fast_tri, dense_tri = engine.triangle(model, xs, spectral=True), engine.triangle(dense, xs, spectral=True)
    for tri in (fast_tri, dense_tri):
        F, Sg = np.asarray(tri.log10_frobenius), np.asarray(tri.log10_spectral)
        for t in range(T + 1):
            for k in range(T + 1):
                if k > t:
                    assert np.isnan(F[t, k]) and np.isnan(Sg[t, k])
                else:
                    M = np.eye(d) if k == t else P[t, k]
                    np.testing.assert_allclose(F[t, k], np.log10(np.linalg.norm(M)), atol=1e-10)
                    np.testing.assert_allclose(Sg[t, k], np.log10(np.linalg.norm(M, 2)), atol=1e-10)
    # singular values at every start index: a diagonal product's are the sorted |∏ a|
    ks = list(range(T))
    for sp in (engine.singular_values(model, xs, ks=ks), engine.singular_values(dense, xs, ks=ks)):
        for i, k in enumerate(ks):
            np.testing.assert_allclose(
                np.asarray(sp.log10_sv[i]), np.log10(np.linalg.svd(P[T, k], compute_uv=False)), atol=1e-10
            )
    top = engine.singular_values(model, xs, ks=[2], top_k=2)
    np.testing.assert_allclose(
        np.asarray(top.log10_sv[0]), np.log10(np.linalg.svd(P[T, 2], compute_uv=False)[:2]), atol=1e-10
    )
    for ts, sv in (engine.step_singular_values(model, xs), engine.step_singular_values(dense, xs)):
        np.testing.assert_allclose(
            np.asarray(sv), np.log10(np.linalg.svd(J[np.asarray(ts)], compute_uv=False)), atol=1e-10
        )
    # Lyapunov: QR of the autodiff step Jacobians in NumPy, and the closed form (time-averaged log|a|)
    expect = _numpy_benettin(J)
    if structure(model) == "complex-diagonal":
        n = d // 2
        lam_abs = np.hypot(np.diagonal(J[:, :n, :n], axis1=1, axis2=2), np.diagonal(J[:, n:, :n], axis1=1, axis2=2))
        closed = np.repeat(np.mean(np.log(lam_abs), axis=0), 2)
    else:
        closed = np.mean(np.log(np.abs(np.diagonal(J, axis1=1, axis2=2))), axis=0)
    np.testing.assert_allclose(expect, np.sort(closed)[::-1], atol=1e-10)
    for ly in (engine.lyapunov_spectrum(model, xs), engine.lyapunov_spectrum(dense, xs)):
        np.testing.assert_allclose(np.asarray(ly.exponents), expect, atol=1e-10)
    # the fast path gives the k largest exactly (the dense frame only converges to them)
    np.testing.assert_allclose(np.asarray(engine.lyapunov_spectrum(model, xs, k=2).exponents), expect[:2], atol=1e-12)


def test_networks_of_diagonal_cells_are_dense():
    cell = gated_complex()
    assert structure(cell) == "complex-diagonal"
    assert structure(Stack((cell, gated_complex(3, 3, seed=1)))) == "dense"
    assert structure(Bidirectional(cell, gated_complex(seed=2))) == "dense"
    assert structure(dense_twin(build("indrnn"))) == "dense"


def test_diagonal_fast_path_with_exact_zeros_and_batches():
    # relu units switched off give exactly zero factors: −inf, never NaN, and the same on the dense path
    cell = build("indrnn", 3, 4, u_min=0.5, u_max=1.2)
    cell = dataclasses.replace(cell, bias=jnp.asarray([0.5, -50.0, 0.5, 0.5]))  # unit 1 is always off
    xs = inputs(5, 3, B=2, seed=3)
    fast, dense = engine.lag_profile(cell, xs), engine.lag_profile(dense_twin(cell), xs)
    assert fast.log10_spectral.shape == (2, 5)
    np.testing.assert_allclose(np.asarray(fast.log10_frobenius), np.asarray(dense.log10_frobenius), atol=1e-10)
    ft, dt = engine.triangle(cell, xs), engine.triangle(dense_twin(cell), xs)
    np.testing.assert_array_equal(np.isnan(np.asarray(ft.log10_frobenius)), np.isnan(np.asarray(dt.log10_frobenius)))
    np.testing.assert_allclose(np.asarray(ft.log10_frobenius), np.asarray(dt.log10_frobenius), atol=1e-10)
    # exponents: time means of log|u_n 1[a_n > 0]| from the rollout's pre-activations (NumPy)
    a = np.asarray(gs.rollout(cell, xs).aux["a"])
    with np.errstate(divide="ignore"):
        closed = np.mean(np.log(np.abs(np.asarray(cell.weight_hh_diag)) * (a > 0)), axis=1)
    ly = np.asarray(engine.lyapunov_spectrum(cell, xs).exponents)
    assert np.isneginf(ly[:, -1]).all() and not np.isnan(ly).any()
    np.testing.assert_allclose(ly, -np.sort(-closed, axis=-1), atol=1e-12)


def test_complex_diagonal_float32_long_run_matches_closed_form():
    """A fixed-λ complex diagonal over T = 5000 steps in float32: spectral norm at lag τ is τ·log10 max|λ|
    and the Frobenius norm log10 (2 Σ_n |λ_n|^{2τ})^{1/2} (closed forms, float64 NumPy)."""
    cell = gated_complex(2, 4, seed=5, dtype=jnp.float32)
    cell = dataclasses.replace(
        cell,
        W_r=jnp.zeros_like(cell.W_r),
        W_t=jnp.zeros_like(cell.W_t),
        b_r=jnp.asarray([8.0, 6.0, 3.0, -1.0], jnp.float32),
    )  # λ constant in time
    T = 5000
    lp = engine.lag_profile(cell, np.asarray(inputs(T, 2, seed=6), np.float32))
    assert lp.log10_spectral.dtype == jnp.float32
    r = 1 / (1 + np.exp(-np.asarray(cell.b_r, np.float64)))
    lags = np.arange(T, 0, -1)[:, None]
    np.testing.assert_allclose(np.asarray(lp.log10_spectral, np.float64), lags[:, 0] * np.log10(r.max()), atol=1e-3)
    frob = 0.5 * (np.log(2) + np.logaddexp.reduce(2 * lags * np.log(r), axis=1)) / np.log(10)
    np.testing.assert_allclose(np.asarray(lp.log10_frobenius, np.float64), frob, atol=1e-3)


def test_update_wide_equals_numpy_products_also_where_squares_underflow():
    """`logspace.update_wide` (the triangle's step: C products side by side, one GEMM) against float64 NumPy
    ``J @ P_c``: log ‖J P_c‖_F and the unit-norm matrix, for a normal product, one whose squared entries
    underflow float32 (entries ~1e-26: the 2^50-scaled sum of squares takes over) and an exactly zero one."""
    rng = np.random.default_rng(0)
    d, C = 6, 3
    P = rng.normal(size=(C, d, d)) * np.array([1.0, 1e-25, 0.0])[:, None, None]
    J = 3.0 * rng.normal(size=(d, d))
    carry = engine.logspace.LogProduct(  # the products stored as their transposes, (C, d, d)
        jnp.asarray(np.swapaxes(P, 1, 2), jnp.float32), jnp.zeros((C,), jnp.float32), jnp.zeros((C,), jnp.float32)
    )
    out = engine.logspace.update_wide(carry, jnp.asarray(J, jnp.float32))
    N = np.einsum("ij,cjk->cik", J, P)
    for c in range(2):
        f = np.linalg.norm(N[c])
        np.testing.assert_allclose(float(engine.logspace.log_scale(out)[c]), np.log(f), rtol=1e-6, atol=1e-5)
        np.testing.assert_allclose(np.asarray(out.matrix[c], np.float64), N[c].T / f, atol=1e-6)
    assert np.isneginf(float(engine.logspace.log_scale(out)[2])) and not np.any(np.asarray(out.matrix[2]))
