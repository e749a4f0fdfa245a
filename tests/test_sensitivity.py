"""Parameter sensitivity ``log10 ‖∂S_t/∂θ‖_F`` (Zucchet & Orvieto 2024, "Recurrent neural networks:
vanishing and exploding gradients are not the end of the story", NeurIPS 2024) against independent truth:
`jax.jacrev` of the unrolled map with respect to every parameter leaf, closed forms derived below and
checked by Monte Carlo, and float64 for a float32 network whose sensitivities pass 10^38."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _engine_ref import build, inputs

from gradscope._errors import ConfigError, NonFiniteError, ShapeError
from gradscope.cells import make
from gradscope.cells._base import flatten_state, unflatten_state
from gradscope.engine import sensitivity as sens_mod
from gradscope.engine.sensitivity import parameter_sensitivity
from gradscope.nets import Bidirectional, Stack

ATOL = 1e-10


# --- (1) against jax.jacrev of the unrolled map -------------------------------------------------


def _fields(cell, prefix=""):
    """``{name: getter}`` for the array fields of a cell, written out from the dataclass (not the engine)."""
    out = {}
    for f in dataclasses.fields(cell):
        if not f.metadata.get("static", False) and getattr(cell, f.name) is not None:
            out[prefix + f.name] = (lambda name: lambda tree: getattr(tree, name))(f.name)
    return out


def _leaves_of(model):
    if isinstance(model, Stack):
        out = {}
        for l, c in enumerate(model.layers):
            for n, g in _fields(c, f"layer{l}.").items():
                out[n] = (lambda l, g: lambda tree: g(tree.layers[l]))(l, g)
        return out
    if isinstance(model, Bidirectional):
        out = {}
        for side, attr in (("fwd.", "forward"), ("bwd.", "backward")):
            for n, g in _fields(getattr(model, attr), side).items():
                out[n] = (lambda a, g: lambda tree: g(getattr(tree, a)))(attr, g)
        return out
    return _fields(model)


@jax.jit
def _jacrev_states(model, pxs, s0):
    """``∂S_t/∂θ`` for t = 1..T as a model-shaped pytree (leaves ``(T, d) + shape``) and the states
    S_1..S_T: reverse-mode autodiff of a plain scan of ``model.step`` (no engine code)."""

    def run(m):
        def body(s, xj):
            x, j = xj
            s2 = flatten_state(m.step(x, unflatten_state(m, s), j)[0])
            return s2, s2

        ss = jax.lax.scan(body, s0, (pxs, jnp.arange(pxs.shape[0])))[1]
        return ss, ss

    return jax.jacrev(run, has_aux=True)(model)


def _reference(model, xs, state0=None):
    """``({name: log10 ‖∂S_t/∂θ_name‖_F}, log10 ‖S_t‖)`` for t = 0..T (NumPy float64; the sensitivity at
    t = 0 is −inf) for one sequence."""
    pxs = model.prepare_inputs(jnp.asarray(xs, model.dtype))
    s0 = (
        jnp.zeros((model.state_size,), model.dtype)
        if state0 is None
        else flatten_state(tuple(jnp.asarray(b) for b in state0))
    )
    D, ss = _jacrev_states(model, pxs, s0)
    out = {}
    with np.errstate(divide="ignore"):
        for name, get in _leaves_of(model).items():
            P = np.asarray(get(D), np.float64)
            norms = np.log10(np.sqrt(np.sum(P.reshape(P.shape[0], -1) ** 2, axis=1)))
            out[name] = np.concatenate([[-np.inf], norms])
        S = np.concatenate([np.asarray(s0, np.float64)[None], np.asarray(ss, np.float64)])
        state = np.log10(np.linalg.norm(S, axis=1))
    return out, state


MODELS = {
    "rnn-tanh": lambda: build("rnn-tanh", 3, 4),
    "lstm": lambda: build("lstm", 3, 4, forget_bias=1.0),
    "stack": lambda: Stack((build("lstm", 3, 4, seed=1), build("rnn-tanh", 4, 4, seed=2))),
    "bidirectional": lambda: Bidirectional(build("gru", 3, 4, seed=3), build("rnn-tanh", 3, 4, seed=4)),
}


def _assert_curves(a, b, msg):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, msg
    np.testing.assert_array_equal(np.isneginf(a), np.isneginf(b), err_msg=msg)
    ok = np.isfinite(b)
    np.testing.assert_allclose(a[ok], b[ok], atol=ATOL, rtol=0, err_msg=msg)


# the networks compile for ~10 s on one core (two programs each, no-optimisation XLA): marked slow
@pytest.mark.parametrize(
    "name",
    [
        "rnn-tanh",
        "lstm",
        pytest.param("stack", marks=pytest.mark.slow),
        pytest.param("bidirectional", marks=pytest.mark.slow),
    ],
)
def test_sensitivity_equals_jacrev_of_the_unrolled_map(name):
    model = MODELS[name]()
    T, B = 6, 2
    xs = inputs(T, model.input_size, seed=5, B=B)
    rng = np.random.default_rng(9)
    state0 = tuple(rng.normal(size=(B, n)) * 0.3 for n in model.block_sizes)
    expected_names = set(_leaves_of(model))

    one = parameter_sensitivity(model, xs[0])  # unbatched, zero initial state
    assert set(one.by_parameter) == expected_names and one.length == T
    ref, state = _reference(model, xs[0])
    for n in expected_names:
        assert one.by_parameter[n].shape == (T + 1,)
        _assert_curves(one.by_parameter[n], ref[n], f"{name} {n}")
    _assert_curves(one.log10_state, state, f"{name} state")

    batched = parameter_sensitivity(model, xs, state0)  # batched, random initial states
    for b in range(B):
        ref, state = _reference(model, xs[b], tuple(s[b] for s in state0))
        _assert_curves(batched.log10_state[b], state, f"{name} state b={b}")
        for n in expected_names:
            assert batched.by_parameter[n].shape == (B, T + 1)
            _assert_curves(batched.by_parameter[n][b], ref[n], f"{name} {n} b={b}")
        # the total over all leaves: ‖∂S_t/∂θ‖_F² = Σ_leaves ‖∂S_t/∂θ_leaf‖_F²
        with np.errstate(divide="ignore"):
            tot = 0.5 * np.log10(sum(10 ** (2 * ref[n]) for n in expected_names))
        _assert_curves(batched.log10_total[b], tot, f"{name} total b={b}")


# --- (2) closed forms: the scalar linear recurrence and the curse of memory ----------------------


def _scalar(lam, dtype=jnp.float64):
    """``h_t = λ h_{t−1} + x_t`` as an ``rnn-linear`` cell of hidden size 1 (w_ih = 1, biases 0)."""
    c = make("rnn-linear", 1, 1, key=jax.random.key(0), dtype=dtype)
    return dataclasses.replace(
        c,
        weight_hh=jnp.full((1, 1), lam, dtype),
        weight_ih=jnp.ones((1, 1), dtype),
        bias_ih=jnp.zeros((1,), dtype),
        bias_hh=jnp.zeros((1,), dtype),
    )


def test_scalar_linear_recurrence_closed_forms_and_curse_of_memory(optimised):
    r"""Derivation. With h_0 = 0, ``h_t = Σ_{k=1}^t λ^{t−k} x_k``; for i.i.d. x_k of mean 0, variance σ²

        E[h_t²] = σ² Σ_{j=0}^{t−1} λ^{2j} = σ² (1 − λ^{2t}) / (1 − λ²).

    Differentiating the sum term by term, ``∂h_t/∂λ = Σ_{k=1}^t (t−k) λ^{t−k−1} x_k``, so

        E[(∂h_t/∂λ)²] = σ² Σ_{j=0}^{t−1} j² λ^{2(j−1)}  →  σ² (1 + λ²) / (1 − λ²)³   (t → ∞),

    using Σ_{j≥0} j² μ^j = μ(1 + μ)/(1 − μ)³ with μ = λ². Hence the RMS sensitivity relative to the RMS
    state tends to ``√(1 + λ²) / (1 − λ²)``: it grows like 1/(1 − λ²) as |λ| → 1 (between 1/(1−λ²) and
    √2/(1−λ²)) although the state stays normalised — the curse of memory. Deterministic parts, exact:
    ``∂h_t/∂b = Σ_{j<t} λ^j = (1 − λ^t)/(1 − λ)`` for either bias, and ``∂h_t/∂w_ih = h_t`` (w_ih = 1).

    Tolerance. x is Gaussian, so ∂h_t/∂λ and h_t are Gaussian; the mean of Y² over B sequences estimates
    E[Y²] with relative standard deviation √(2/B) (Var Y² = 2 (E Y²)²), 1.4 % for B = 10000. Each Monte
    Carlo comparison allows 5 of those (7 %): a false failure has probability ≈ 6e-7 per comparison, below
    2e-3 over the ~2000 (strongly correlated) comparisons, and the seed is fixed. The RMS ratio
    √(E Y²/E h²) has relative error at most half the sum of the two (≤ 1.4 % per σ), so 7 % holds it too.
    """
    B, T, sigma = 10000, 200, 0.5
    xs = sigma * np.random.default_rng(0).normal(size=(B, T, 1))
    t = np.arange(T + 1)
    ratios = {}
    for lam in (0.5, 0.8, 0.9, 0.95):
        r = parameter_sensitivity(_scalar(lam), xs)
        L = np.asarray(r.by_parameter["weight_hh"])  # log10 |∂h_t/∂λ|, (B, T+1)
        H = np.asarray(r.log10_state)  # log10 |h_t|
        assert np.isneginf(L[:, 0]).all() and np.isneginf(H[:, 0]).all()
        # exact, per sequence: the bias sensitivity is deterministic and the w_ih one is the state itself
        bias = np.log10((1 - lam ** t[1:]) / (1 - lam))
        for b in ("bias_ih", "bias_hh"):
            np.testing.assert_allclose(
                np.asarray(r.by_parameter[b])[:, 1:], np.broadcast_to(bias, (B, T)), atol=ATOL, rtol=0
            )
        # (compared as values: where h_t nearly cancels, a 1e-16 absolute rounding is large in log10)
        np.testing.assert_allclose(10 ** np.asarray(r.by_parameter["weight_ih"]), 10**H, rtol=1e-10, atol=1e-14)
        # Monte Carlo against the finite-t sums, t = 1..T
        j = np.arange(T)
        e_state = sigma**2 * (1 - lam ** (2 * t[1:])) / (1 - lam**2)
        e_sens = sigma**2 * np.cumsum(j**2 * lam ** (2.0 * (j - 1)))  # entry t−1: Σ_{j<t}
        mc_state = np.mean(10 ** (2 * H[:, 1:]), axis=0)
        mc_sens = np.mean(10 ** (2 * L[:, 1:]), axis=0)
        np.testing.assert_allclose(mc_state, e_state, rtol=0.07)
        np.testing.assert_allclose(mc_sens[1:], e_sens[1:], rtol=0.07)  # t = 1: ∂h_1/∂λ = 0 exactly
        assert np.isneginf(L[:, 1]).all()
        # the t → ∞ limits (the tail beyond T = 200 is below 1e-6 relative for |λ| ≤ 0.95)
        np.testing.assert_allclose(e_sens[-1], sigma**2 * (1 + lam**2) / (1 - lam**2) ** 3, rtol=1e-6)
        ratios[lam] = np.sqrt(mc_sens[-1] / mc_state[-1])
        np.testing.assert_allclose(ratios[lam], np.sqrt(1 + lam**2) / (1 - lam**2), rtol=0.07)
        # both saturate: growth rates over the second half ≈ 0 (the mean of log10 |·| is stationary)
        assert abs(float(np.mean(np.asarray(r.growth["weight_hh"])))) < 1e-3
    # the curse of memory: sensitivity / state ∝ 1/(1 − λ²) — the ratio grows ~9.5x from λ = 0.5 to 0.95
    # while (1 − λ²)·ratio stays within [1, √2] (up to the 7 % sampling tolerance)
    lams = sorted(ratios)
    assert all(ratios[a] < ratios[b] for a, b in zip(lams, lams[1:]))
    assert ratios[0.95] / ratios[0.5] > 6
    for lam in lams:
        assert 0.93 <= (1 - lam**2) * ratios[lam] <= np.sqrt(2) * 1.07


# --- (3) float32, T = 2000, exploding: finite and equal to float64 -------------------------------


def _exploding(dtype):
    """A linear net whose second unit has multiplier 1.05 but is never driven (row 1 of W_ih, W_hh[1, 0]
    and the biases are 0), so the state stays bounded while ∂h_t/∂θ grows like 1.05^t: ~10^42 at t = 2000,
    beyond float32's 3.4e38."""
    c = make("rnn-linear", 2, 2, key=jax.random.key(0), dtype=dtype)
    f = lambda a: jnp.asarray(np.asarray(a, np.float32), dtype)  # noqa: E731 - the same rounded weights in both
    return dataclasses.replace(
        c,
        weight_hh=f([[0.5, 0.3], [0.0, 1.05]]),
        weight_ih=f([[1.0, -0.5], [0.0, 0.0]]),
        bias_ih=f([0.1, 0.0]),
        bias_hh=f([0.2, 0.0]),
    )


def test_float32_exploding_long_sequence_is_finite_and_matches_float64():
    T = 2000
    xs = np.asarray(inputs(T, 2, seed=3), np.float32)
    r32 = parameter_sensitivity(_exploding(jnp.float32), xs)
    r64 = parameter_sensitivity(_exploding(jnp.float64), np.asarray(xs, np.float64))
    assert r32.log10_total.dtype == jnp.float32
    for n in r64.by_parameter:
        a, b = np.asarray(r32.by_parameter[n], np.float64), np.asarray(r64.by_parameter[n])
        assert np.isneginf(a[0]) and np.all(np.isfinite(a[2:])), n
        assert b[-1] > 39, (n, b[-1])  # really beyond float32's range
        _ok = np.isfinite(b)
        np.testing.assert_allclose(a[_ok], b[_ok], atol=1e-3, rtol=0, err_msg=n)
        # the growth rate is the exploding multiplier's: log10 1.05 decades per step
        np.testing.assert_allclose(float(r32.growth[n]), np.log10(np.float32(1.05)), atol=1e-4, err_msg=n)
    np.testing.assert_allclose(np.asarray(r32.log10_total[1:], np.float64), np.asarray(r64.log10_total[1:]), atol=1e-3)
    np.testing.assert_allclose(np.asarray(r32.log10_state[1:], np.float64), np.asarray(r64.log10_state[1:]), atol=1e-3)
    # closed form for the biases, in float64 from the float32-rounded weights: ∂h_t/∂b = Σ_{j<t} W^j with
    # W = [[a, c], [0, λ]] upper triangular, W^j = [[a^j, c (λ^j − a^j)/(λ − a)], [0, λ^j]]
    a, c, lam = (float(np.float32(v)) for v in (0.5, 0.3, 1.05))
    t = np.arange(1, T + 1)
    sa, sl = (1 - a**t) / (1 - a), (lam**t - 1) / (lam - 1)
    frob = np.sqrt(sa**2 + (c * (sl - sa) / (lam - a)) ** 2 + sl**2)
    for b in ("bias_ih", "bias_hh"):
        np.testing.assert_allclose(np.asarray(r32.by_parameter[b][1:], np.float64), np.log10(frob), atol=1e-3)
        np.testing.assert_allclose(np.asarray(r64.by_parameter[b][1:]), np.log10(frob), atol=1e-10)


# --- memory, compilation, records, errors -------------------------------------------------------


def test_never_materialises_T_by_parameters_jacobians():
    T, n = 1000, 8
    cell = make("rnn-tanh", 4, n, key=jax.random.key(0), dtype=jnp.float32)
    P = sum(np.size(a) for a in jax.tree_util.tree_leaves(cell))
    xs = jax.ShapeDtypeStruct((T, 4), jnp.float32)
    jaxpr = jax.make_jaxpr(lambda c, x: parameter_sensitivity(c, x).log10_total)(cell, xs)
    big = []

    def walk(jx):
        for eqn in jx.eqns:
            for v in eqn.outvars:
                if hasattr(v.aval, "shape") and np.prod(v.aval.shape, dtype=np.int64) >= T * n * P // 4:
                    big.append((eqn.primitive, v.aval.shape))
            for p in eqn.params.values():
                for q in p if isinstance(p, (tuple, list)) else (p,):
                    inner = getattr(q, "jaxpr", None)
                    if inner is not None and hasattr(inner, "eqns"):
                        walk(inner)
                    elif hasattr(q, "eqns"):
                        walk(q)

    walk(jaxpr.jaxpr)
    assert not big, big


def test_compiled_once_per_shape_and_record_to_dict():
    before = sens_mod._sensitivity._cache_size()
    cell = build("rnn-tanh", 3, 4, seed=0)  # the shapes of the jacrev test: at most one compilation
    r1 = parameter_sensitivity(cell, inputs(6, 3, seed=0))
    r2 = parameter_sensitivity(build("rnn-tanh", 3, 4, seed=1), inputs(6, 3, seed=1))
    assert sens_mod._sensitivity._cache_size() - before <= 1
    assert not np.allclose(np.asarray(r1.log10_total[1:]), np.asarray(r2.log10_total[1:]))
    d = json.loads(json.dumps(r1.to_dict()))
    assert d["length"] == 6 and d["t"] == list(range(7))
    assert set(d["by_parameter"]) == set(r1.by_parameter) == set(_fields(cell))
    for n, v in d["by_parameter"].items():
        assert len(v) == 7 and v[0] is None and all(isinstance(x, float) for x in v[2:])  # t = 1: ∂h_1/∂W_hh = 0
        assert d["sizes"][n] == np.size(getattr(cell, n))
        assert isinstance(d["growth"][n], float)
    assert d["log10_state"][0] is None and isinstance(d["state_growth"], float)


def test_bad_input_raises_gradscope_errors():
    cell = build("rnn-tanh", 3, 4)
    with pytest.raises(ShapeError, match="input_size"):
        parameter_sensitivity(cell, np.zeros((6, 2)))
    with pytest.raises(ShapeError, match="shape"):
        parameter_sensitivity(cell, np.zeros((6,)))
    with pytest.raises(ShapeError, match="state0"):
        parameter_sensitivity(cell, np.zeros((6, 3)), (np.zeros(3),))
    bad = np.zeros((6, 3))
    bad[2, 1] = np.nan
    with pytest.raises(ConfigError, match=r"xs\[t=2, feature=1\] is nan"):  # refused at the door, with the position
        parameter_sensitivity(cell, bad)
    with pytest.raises(NonFiniteError, match="state0"):
        parameter_sensitivity(cell, np.zeros((6, 3)), (np.array([0, np.inf, 0, 0]),))
