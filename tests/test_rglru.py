"""RG-LRU (De et al. 2024, Griffin) against independent references.

* the cell against a float64 NumPy loop of the paper's equations (§2.4), block-diagonal gates, with and
  without the input projection, with and without the first-step reset;
* parity with Google DeepMind's ``recurrentgemma.jax.layers.RGLRU`` (tiny random init, random biases):
  float64 (the reference's scan accumulator switched to float64 through ``linear_scan``'s own
  ``acc_float_dtype``) to 1e-12, and float32 as shipped (float32 accumulator) to rtol 1e-5; a continuation
  (``segment_pos`` ≥ 1, cache h_0) against the default cell, a segment start (``segment_pos`` = 0, 1, …)
  against ``reset_at_start=True``; the param tree imported by `gradscope.io.rglru` ("/" keys, nested tree,
  and the PyTorch port's "." state dict);
* the Jacobian of the reference's one-step map (``jax.jacrev``) equals the cell's `jacobian`;
* the initialisation: exp(−softplus(Λ)) on [0.9, 0.999];
* importer errors (missing tensor, wrong shape, NaN, several layers, complex variant) name the tensor; options;
* the lag profile equals NumPy norms of ``jax.jacrev`` of the unrolled map for the cell, a 2-layer Stack
  and a Bidirectional (1e-10); Lyapunov spectrum, triangle and attribution run and are finite;
* closed form: ‖∂h_T/∂h_k‖₂ = max_n ∏_{j=k+1..T} a_{n,j} with a from NumPy gates; Lyapunov = mean log a.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _engine_ref import block_ranges, inputs, oracle

import gradscope as gs
from gradscope import engine
from gradscope._errors import ConfigError, GradscopeError
from gradscope.io import rglru as io_rglru
from gradscope.nets import Bidirectional, Stack

layers = pytest.importorskip("recurrentgemma.jax.layers")
scan = pytest.importorskip("recurrentgemma.jax.scan")
traverse_util = pytest.importorskip("flax.traverse_util")

ATOL = 1e-10


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def _np_gates(cell, xs):
    """``(x̂, a, β, i)`` per step in NumPy float64 from the cell's weights (block-diagonal by loops)."""
    xs = np.asarray(xs, np.float64)
    if cell.weight_in is not None:
        xs = xs @ np.asarray(cell.weight_in).T + np.asarray(cell.bias_in)
    H, k = cell.num_heads, cell.hidden_size // cell.num_heads

    def block(w, b, x):
        w, b = np.asarray(w, np.float64), np.asarray(b, np.float64)
        return np.concatenate([x[h * k : (h + 1) * k] @ w[h] + b[h] for h in range(H)])

    i = np.stack([_sigmoid(block(cell.input_gate_w, cell.input_gate_b, x)) for x in xs])
    r = np.stack([_sigmoid(block(cell.a_gate_w, cell.a_gate_b, x)) for x in xs])
    a = np.exp(-cell.c * np.log1p(np.exp(np.asarray(cell.a_param, np.float64))) * r)
    return xs, a, np.sqrt(1 - a**2), i


def _np_states(cell, xs, h0):
    xh, a, beta, i = _np_gates(cell, xs)
    if cell.reset_at_start:
        a, beta = a.copy(), beta.copy()
        a[0], beta[0] = 0.0, 1.0
    hs = [np.asarray(h0, np.float64)]
    for t in range(len(xs)):
        hs.append(a[t] * hs[-1] + beta[t] * i[t] * xh[t])
    return np.stack(hs)


def _cell(m=4, n=4, seed=0, **opts):
    """A float64 cell with nonzero gate biases (the builder zeros them)."""
    cell = gs.cells.make("rglru", m, n, key=jax.random.key(seed), dtype=jnp.float64, **opts)
    rng = np.random.default_rng(seed + 10)
    rep = {f: jnp.asarray(rng.normal(0, 0.5, getattr(cell, f).shape)) for f in ("input_gate_b", "a_gate_b")}
    if cell.bias_in is not None:
        rep["bias_in"] = jnp.asarray(rng.normal(0, 0.5, n))
    return dataclasses.replace(cell, **rep)


@pytest.mark.parametrize("m,heads,reset", [(4, 2, False), (4, 1, True), (3, 2, False)])
def test_matches_numpy_equations(m, heads, reset):
    cell = _cell(m, 4, num_heads=heads, reset_at_start=reset)
    assert (cell.weight_in is not None) == (m != 4)
    xs, h0 = inputs(8, m, seed=3), np.random.default_rng(4).normal(size=4)
    tr = gs.rollout(cell, xs, (jnp.asarray(h0),))
    np.testing.assert_allclose(tr.states[0], _np_states(cell, xs, h0), rtol=1e-12, atol=1e-13)


def test_initialisation_on_the_ring():
    cell = gs.cells.make("rglru", 64, 64, key=jax.random.key(1), num_heads=4)
    base = np.exp(-np.log1p(np.exp(np.asarray(cell.a_param, np.float64))))
    assert base.min() >= 0.9 - 1e-6 and base.max() <= 0.999 + 1e-6
    assert base.max() - base.min() > 0.05  # spread over the ring, not one value
    np.testing.assert_array_equal(cell.input_gate_b, 0.0)


# ------------------------------------------------------------------------------ the reference (JAX, Flax)
@pytest.fixture
def float64_accumulator(monkeypatch):
    """The reference accumulates its scan in ``acc_float_dtype`` (float32 by default): ask it for float64."""
    monkeypatch.setattr(scan, "linear_scan", functools.partial(scan.linear_scan, acc_float_dtype=jnp.float64))


@functools.cache
def _reference(width=4, heads=2, T=6, dtype=jnp.float64, seed=0):
    mod = layers.RGLRU(width=width, num_heads=heads, param_dtype=dtype, dtype=dtype)
    # jitted: one compilation instead of many op-by-op ones
    params = jax.jit(mod.init)(jax.random.key(seed), jnp.zeros((1, T, width), dtype), jnp.arange(T)[None])
    rng = np.random.default_rng(seed)
    # random biases too (the reference initialises them to zero)
    params = jax.tree_util.tree_map(
        lambda a: (a + rng.normal(0, 0.5, a.shape)).astype(dtype) if a.ndim == 2 else a, params
    )
    return mod, params


@pytest.mark.parametrize("reset", [False, True])
def test_parity_with_recurrentgemma_float64(float64_accumulator, reset):
    mod, params = _reference()
    flat = traverse_util.flatten_dict(params, sep="/")
    assert set(flat) == {
        "params/a_param",
        "params/input_gate/w",
        "params/input_gate/b",
        "params/a_gate/w",
        "params/a_gate/b",
    }
    assert io_rglru.recognise(set(flat))
    cell = io_rglru.from_state_dict(flat, reset_at_start=reset)
    assert cell.num_heads == 2 and cell.hidden_size == cell.input_size == 4 and cell.dtype == jnp.float64
    rng = np.random.default_rng(5)
    xs, h0 = jnp.asarray(rng.normal(size=(6, 4))), jnp.asarray(rng.normal(size=4))
    # reset: a new segment starts at step 0 (the cache is ignored); else a continuation of the cache
    pos = jnp.arange(6)[None] + (0 if reset else 1)
    y, last = jax.jit(mod.apply)(params, xs[None], pos, cache=h0[None])
    tr = gs.rollout(cell, xs, (h0,))
    np.testing.assert_allclose(tr.states[0][1:], y[0], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(tr.states[0][-1], last[0], rtol=1e-12, atol=1e-14)
    # the nested tree imports the same
    same = io_rglru.from_state_dict(params, reset_at_start=reset)
    for f in io_rglru.PARAMS:
        np.testing.assert_array_equal(getattr(same, f), getattr(cell, f))


def test_parity_with_recurrentgemma_float32_as_shipped():
    mod, params = _reference(width=6, heads=3, T=8, dtype=jnp.float32, seed=1)
    cell = io_rglru.from_state_dict(traverse_util.flatten_dict(params, sep="/"), reset_at_start=True)
    assert cell.dtype == jnp.float32
    xs = jnp.asarray(np.random.default_rng(6).normal(size=(8, 6)), jnp.float32)
    y, _ = jax.jit(mod.apply)(params, xs[None], jnp.arange(8)[None])  # no cache: the training call
    tr = gs.rollout(cell, xs)
    np.testing.assert_allclose(tr.states[0][1:], y[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("reset", [False, True])
def test_jacobian_equals_jacrev_of_the_reference_step(float64_accumulator, reset):
    mod, params = _reference()
    cell = io_rglru.from_state_dict(params, reset_at_start=reset)
    rng = np.random.default_rng(7)
    x, h = jnp.asarray(rng.normal(size=4)), jnp.asarray(rng.normal(size=4))
    pos = jnp.asarray([[0 if reset else 3]])

    def step(h, x):  # one step in the reference's sampling mode
        return mod.apply(params, x[None, None], pos, cache=h[None])[1][0]

    Jh, Jx = jax.jit(jax.jacrev(step, argnums=(0, 1)))(h, x)
    J, X = cell.jacobian(x, (h,), 0)
    np.testing.assert_allclose(J, Jh, rtol=0, atol=1e-13)
    np.testing.assert_allclose(X, Jx, rtol=0, atol=1e-13)
    if reset:
        np.testing.assert_array_equal(J, 0.0)  # a segment start forgets h_0
        np.testing.assert_allclose(cell.jacobian(x, (h,), 1)[0], jnp.diag(_np_gates(cell, x[None])[1][0]), rtol=1e-13)


def test_torch_port_state_dict_imports_the_same():
    torch = pytest.importorskip("torch")
    tl = pytest.importorskip("recurrentgemma.torch.layers")
    torch.manual_seed(0)
    mod = tl.RGLRU(width=4, num_heads=2).double()
    with torch.no_grad():
        for b in (mod.input_gate.b, mod.a_gate.b):
            b.normal_(0, 0.5)
    sd = mod.state_dict()
    assert set(sd) == {"a_param", "input_gate.w", "input_gate.b", "a_gate.w", "a_gate.b"}
    assert io_rglru.recognise(set(sd))
    cell = io_rglru.from_state_dict(sd)
    x, h0 = torch.randn(1, 5, 4, dtype=torch.float64), torch.randn(1, 4, dtype=torch.float64)
    with torch.no_grad():
        # the port's cache and scan accumulator are float32 whatever the parameters' dtype
        y, _ = mod(x, torch.arange(1, 6)[None], cache=h0.float())
    tr = gs.rollout(cell, jnp.asarray(x[0].numpy()), (jnp.asarray(h0[0].float().double().numpy()),))
    np.testing.assert_allclose(tr.states[0][1:], y[0].numpy(), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------ importer and option errors
def _flat():
    _, params = _reference(seed=0)
    return {k: np.asarray(v).copy() for k, v in traverse_util.flatten_dict(params, sep="/").items()}


def _raises_naming(sd, tensor, **kw):
    with pytest.raises(GradscopeError) as e:
        io_rglru.from_state_dict(sd, **kw)
    assert tensor in str(e.value), str(e.value)
    return str(e.value)


def test_import_errors_name_the_tensor():
    sd = _flat()
    del sd["params/a_gate/b"]
    assert "missing" in _raises_naming(sd, "params/a_gate/b")
    sd = _flat()
    sd["params/input_gate/b"] = sd["params/input_gate/b"][:, :1]
    assert "shape" in _raises_naming(sd, "params/input_gate/b")
    sd = _flat()
    sd["params/input_gate/w"] = sd["params/input_gate/w"][:1]
    assert "shape" in _raises_naming(sd, "params/input_gate/w")
    sd = _flat()
    sd["params/a_param"][2] = np.nan
    assert "NaN" in _raises_naming(sd, "params/a_param")
    sd = _flat()
    sd["params/a_imag_param"] = np.zeros(2)
    _raises_naming(sd, "params/a_imag_param")
    # a Griffin-like tree: two RG-LRUs among other tensors needs prefix=
    griffin = {f"blocks.{b}/rg_lru/{k[len('params/') :]}": v for b in (0, 1) for k, v in _flat().items()}
    griffin["blocks.0/linear_x/kernel"] = np.zeros((4, 4))
    assert io_rglru.recognise(set(griffin))
    assert "prefix=" in _raises_naming(griffin, "blocks.1/rg_lru/")
    for prefix in ("blocks.1/rg_lru/", "blocks.1/rg_lru"):
        cell = io_rglru.from_state_dict(griffin, prefix=prefix)
        np.testing.assert_array_equal(cell.a_param, griffin["blocks.1/rg_lru/a_param"])
    _raises_naming(griffin, "blocks.2/rg_lru/a_param", prefix="blocks.2/rg_lru/")
    one = {k: v for k, v in griffin.items() if not k.startswith("blocks.1")}
    assert "prefix=" in _raises_naming(one, "blocks.0/linear_x/kernel")
    assert not io_rglru.recognise({"weight_ih_l0", "weight_hh_l0"})
    _raises_naming({"weight_ih_l0": np.zeros((4, 4))}, "a_param")


def test_option_errors():
    with pytest.raises(ConfigError, match=r"hidden_size=4 .*projection=False.*hidden_size=3"):
        gs.cells.make("rglru", 3, 4, key=jax.random.key(0), projection=False)
    with pytest.raises(ConfigError, match="num_heads=3"):
        gs.cells.make("rglru", 4, 4, key=jax.random.key(0), num_heads=3)
    with pytest.raises(ConfigError, match="max_rad"):
        gs.cells.make("rglru", 4, 4, key=jax.random.key(0), max_rad=1.5)
    with pytest.raises(ConfigError, match="reset_at_start"):
        gs.cells.make("rglru", 4, 4, key=jax.random.key(0), reset_at_start=1)
    assert gs.cells.make("rglru", 4, 4, key=jax.random.key(0), projection=True).weight_in.shape == (4, 4)


# ------------------------------------------------------------------------------ engine against jacrev
def assert_lag_profile_matches_jacrev(model, xs, state0=None):
    lp = engine.lag_profile(model, xs, state0)
    _, _, P, _, _ = oracle(model, xs, state0)
    T = xs.shape[0]
    rng = block_ranges(model)
    pairs = [(f"{b}→{a}", ra, rb, ca, cb) for a, ra, rb in rng for b, ca, cb in rng]
    if model.structure == "diagonal":
        pairs = [(f"{a}→{a}", r0, r1, r0, r1) for a, r0, r1 in rng]
    assert set(lp.blocks) == {p[0] for p in pairs}
    for k in range(T):
        M = P[T, k]
        # zero blocks (a Stack's ∂layer0/∂layer1, a reset's ∂S_T/∂S_0): log10 0 = −∞ on both sides
        with np.errstate(divide="ignore"):
            want = [np.log10(np.linalg.norm(M, 2)), np.log10(np.linalg.norm(M))]
            for _, r0, r1, c0, c1 in pairs:
                sub = M[r0:r1, c0:c1]
                want += [np.log10(np.linalg.norm(sub, 2)), np.log10(np.linalg.norm(sub))]
        got = [float(lp.log10_spectral[k]), float(lp.log10_frobenius[k])]
        for key, *_ in pairs:
            got += [float(lp.blocks[key]["log10_spectral"][k]), float(lp.blocks[key]["log10_frobenius"][k])]
        np.testing.assert_allclose(got, want, rtol=0, atol=ATOL, err_msg=f"k={k}")
    return lp


def _models():
    return {
        "rglru-projection": lambda: _cell(3, 4, num_heads=2),
        "rglru-reset": lambda: _cell(4, 4, reset_at_start=True),
        "stack": lambda: Stack((_cell(3, 4, seed=1), _cell(4, 4, seed=2, num_heads=2))),
        "bidirectional": lambda: Bidirectional(_cell(3, 3, seed=3), _cell(3, 2, seed=4, reset_at_start=True)),
    }


@pytest.mark.parametrize("name", sorted(_models()))
def test_lag_profile_matches_jacrev_and_analyses_run(name):
    model = _models()[name]()
    xs = inputs(6, model.input_size, seed=5)
    lp = assert_lag_profile_matches_jacrev(model, xs)
    if name == "rglru-reset":
        assert np.isneginf(float(lp.log10_spectral[0]))  # the reset at t = 0 forgets h_0: ∂h_T/∂h_0 = 0
        assert np.all(np.isfinite(np.asarray(lp.log10_spectral[1:])))
    if name != "rglru-projection":
        return
    ly = engine.lyapunov_spectrum(model, xs)
    tri = engine.triangle(model, xs)
    att = engine.attribution(model, xs, key=jax.random.key(0))
    assert np.all(np.isfinite(np.asarray(ly.exponents)))
    T = xs.shape[0]
    assert np.all(np.isfinite(np.asarray(tri.log10_frobenius)[np.tril_indices(T + 1)]))
    assert np.all(np.isfinite(np.asarray(att.log10_by_lag))) and np.isfinite(float(att.log10_total))


def test_closed_form_of_the_diagonal_recurrence():
    # ∂h_T/∂h_k = diag(∏_{j=k+1..T} a_j), a_j = exp(−8 softplus(Λ) σ(W_a x_j + b_a)) ∈ (0, 1) depends on x_j only:
    # its spectral norm is the largest product; the Lyapunov exponents are the per-unit means of log a
    # (the configuration of the lag-profile test above, whose compiled programs are then reused)
    cell = _cell(3, 4, seed=6, num_heads=2)
    T = 6
    xs = inputs(T, 3, seed=7, scale=2.0)
    _, a, _, _ = _np_gates(cell, xs)
    lp = engine.lag_profile(cell, xs)
    for k in range(T):
        np.testing.assert_allclose(
            float(lp.log10_spectral[k]), np.log10(np.max(np.prod(a[k:], axis=0))), rtol=0, atol=1e-12
        )
        np.testing.assert_allclose(
            float(lp.log10_frobenius[k]), np.log10(np.linalg.norm(np.prod(a[k:], axis=0))), rtol=0, atol=1e-12
        )
    ly = engine.lyapunov_spectrum(cell, xs)
    np.testing.assert_allclose(ly.exponents, np.sort(np.mean(np.log(a), axis=0))[::-1], rtol=0, atol=1e-12)
