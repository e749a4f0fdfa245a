"""minGRU / minLSTM (Feng et al. 2024, "Were RNNs All We Needed?") against independent references.

* the cells against a float64 NumPy loop of the paper's equations (§3.1, §3.2), both candidate forms
  (identity, and the log-space g of App. B.3), with nonzero biases and a random h_0;
* parity with the reference package ``mingru-pytorch`` (float64 modules): its parallel (log-space scan) and
  sequential modes, with and without the ``to_out`` projection, imported through `gradscope.io.mingru`;
  several layers in an ``nn.Sequential`` give a Stack whose readout equals the Sequential's output;
* the Jacobian of the package's own one-step map (``torch.func.jacrev``) equals the cell's `jacobian`;
* importer errors (missing tensor, wrong shape, NaN, unrelated tensor) name the tensor; option errors;
* the lag profile equals NumPy norms of ``jax.jacrev`` of the unrolled map for the cell, a 2-layer Stack
  and a Bidirectional (1e-10, float64); Lyapunov spectrum, triangle and attribution run and are finite;
* closed forms for a diagonal recurrence: ‖∂h_T/∂h_k‖₂ = max_n ∏_{j=k+1..T} a_{n,j} with a = 1 − z
  (minGRU) or f′ (minLSTM) from NumPy gates, and the Lyapunov exponents are the time averages of log a_n.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _engine_ref import block_ranges, inputs, oracle

import gradscope as gs
from gradscope import engine
from gradscope._errors import ConfigError, GradscopeError
from gradscope.io import mingru as io_mingru
from gradscope.nets import Bidirectional, Stack

torch = pytest.importorskip("torch")
mg = pytest.importorskip("minGRU_pytorch.minGRU")
ml = pytest.importorskip("minGRU_pytorch.minLSTM")

KINDS = ("mingru", "minlstm")
ATOL = 1e-10


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def _np_gates(cell, xs):
    """``(retention a (T, n), candidate weight (T, n), h̃ (T, n))`` in NumPy float64 from the cell's weights."""
    P = {k: np.asarray(getattr(cell, k), np.float64) for k in ("weight_h", "bias_h")}
    xs = np.asarray(xs, np.float64)
    a_h = xs @ P["weight_h"].T + P["bias_h"]
    h_tilde = a_h if cell.g == "identity" else np.where(a_h >= 0, a_h + 0.5, _sigmoid(a_h))
    if isinstance(cell, gs.cells.mingru.MinGRU):
        z = _sigmoid(xs @ np.asarray(cell.weight_z).T + np.asarray(cell.bias_z))
        return 1.0 - z, z, h_tilde
    f = _sigmoid(xs @ np.asarray(cell.weight_f).T + np.asarray(cell.bias_f))
    i = _sigmoid(xs @ np.asarray(cell.weight_i).T + np.asarray(cell.bias_i))
    return f / (f + i), i / (f + i), h_tilde


def _np_states(cell, xs, h0):
    a, w, h_tilde = _np_gates(cell, xs)
    hs = [np.asarray(h0, np.float64)]
    for t in range(len(xs)):
        hs.append(a[t] * hs[-1] + w[t] * h_tilde[t])
    return np.stack(hs)


def _cell(kind, m=3, n=4, seed=0, **opts):
    """A float64 cell with nonzero biases (the builder zeros them)."""
    import dataclasses

    cell = gs.cells.make(kind, m, n, key=jax.random.key(seed), dtype=jnp.float64, **opts)
    rng = np.random.default_rng(seed + 10)
    rep = {f.name: jnp.asarray(rng.normal(0, 0.5, n)) for f in dataclasses.fields(cell) if f.name.startswith("bias_")}
    return dataclasses.replace(cell, **rep)


@pytest.mark.parametrize("g", ["identity", "log-space"])
@pytest.mark.parametrize("kind", KINDS)
def test_matches_numpy_equations(kind, g):
    cell = _cell(kind, g=g)
    xs, h0 = inputs(8, 3, seed=3), np.random.default_rng(4).normal(size=4)
    tr = gs.rollout(cell, xs, (jnp.asarray(h0),))
    np.testing.assert_allclose(tr.states[0], _np_states(cell, xs, h0), rtol=1e-12, atol=1e-13)


# ------------------------------------------------------------------------------ the reference package
def _torch_module(kind, dim, expansion, seed):
    torch.manual_seed(seed)
    cls = mg.minGRU if kind == "mingru" else ml.minLSTM
    return cls(dim, expansion_factor=expansion).double()


@pytest.mark.parametrize("expansion", [1.0, 2.0])
@pytest.mark.parametrize("kind", KINDS)
def test_parity_with_mingru_pytorch(kind, expansion):
    mod = _torch_module(kind, 3, expansion, seed=1)
    sd = mod.state_dict()
    assert io_mingru.recognise(set(sd))
    cell = io_mingru.from_state_dict(sd)
    assert cell.name == kind and cell.g == "log-space" and cell.input_size == 3
    assert cell.hidden_size == int(3 * expansion) and (cell.weight_out is not None) == (expansion != 1.0)
    x = torch.randn(1, 7, 3, dtype=torch.float64)
    xs = jnp.asarray(x[0].numpy())
    tr = gs.rollout(cell, xs)
    ys = jax.vmap(lambda h, x: cell.readout((h,), x))(tr.states[0][1:], xs)

    # parallel mode (the log-space Heinsen scan) from the zero state
    with torch.no_grad():
        out, last = mod(x, return_next_prev_hidden=True)
    np.testing.assert_allclose(ys, out[0].numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(tr.states[0][-1], last[0, 0].numpy(), rtol=1e-10, atol=1e-12)

    # sequential mode, one step at a time from a positive h_0 (the package needs h > 0 in log space)
    h = torch.rand(1, 1, cell.hidden_size, dtype=torch.float64) + 0.1
    tr = gs.rollout(cell, xs, (jnp.asarray(h[0, 0].numpy()),))
    with torch.no_grad():
        for t in range(7):
            y, h = mod(x[:, t : t + 1], h, return_next_prev_hidden=True)
            np.testing.assert_allclose(tr.states[0][t + 1], h[0, 0].numpy(), rtol=1e-12, atol=1e-13)
            np.testing.assert_allclose(
                cell.readout((tr.states[0][t + 1],), xs[t]), y[0, 0].numpy(), rtol=1e-12, atol=1e-13
            )


@pytest.mark.parametrize("kind", KINDS)
def test_jacobian_equals_jacrev_of_the_package_step(kind):
    mod = _torch_module(kind, 3, 2.0, seed=2)
    cell = io_mingru.from_state_dict(mod.state_dict())
    x = torch.randn(3, dtype=torch.float64) * 2  # both branches of g
    h = torch.rand(cell.hidden_size, dtype=torch.float64) + 0.1

    def step(h, x):
        return mod(x[None, None], h[None, None], return_next_prev_hidden=True)[1][0, 0]

    Jh, Jx = (j.detach() for j in torch.func.jacrev(step, argnums=(0, 1))(h, x))
    J, X = cell.jacobian(jnp.asarray(x.numpy()), (jnp.asarray(h.numpy()),))
    np.testing.assert_allclose(J, Jh.numpy(), rtol=0, atol=1e-13)
    np.testing.assert_allclose(X, Jx.numpy(), rtol=0, atol=1e-13)
    diag, X2 = cell.jacobian_diag(jnp.asarray(x.numpy()), (jnp.asarray(h.numpy()),))
    np.testing.assert_allclose(jnp.diag(diag), Jh.numpy(), rtol=0, atol=1e-13)
    np.testing.assert_allclose(X2, X, rtol=0, atol=0)


def test_sequential_of_layers_imports_as_a_stack():
    torch.manual_seed(3)
    seq = torch.nn.Sequential(mg.minGRU(3, expansion_factor=2.0), ml.minLSTM(3, expansion_factor=1.0)).double()
    sd = seq.state_dict()
    assert set(sd) == {"0.to_hidden_and_gate.weight", "0.to_out.weight", "1.to_hidden_and_f_i_gate.weight"}
    assert io_mingru.recognise(set(sd))
    model = io_mingru.from_state_dict(sd)
    assert isinstance(model, Stack) and model.blocks == ("layer0.h", "layer1.h")
    x = torch.randn(1, 6, 3, dtype=torch.float64)
    with torch.no_grad():
        out = seq(x)[0].numpy()
    xs = jnp.asarray(x[0].numpy())
    tr = gs.rollout(model, xs)
    S = jax.vmap(lambda s: gs.cells.unflatten_state(model, s))(tr.flat[1:])
    ys = jax.vmap(model.readout)(S, xs)
    np.testing.assert_allclose(ys, out, rtol=1e-10, atol=1e-12)
    # one layer of it by prefix
    one = io_mingru.from_state_dict(sd, prefix="1.")
    assert one.name == "minlstm" and one.weight_out is None
    np.testing.assert_array_equal(io_mingru.from_state_dict(sd, prefix="1").weight_f, one.weight_f)
    assert one.describe()["proj_out"] is False and model.layers[0].describe()["proj_out"] is True


# ------------------------------------------------------------------------------ importer errors
def _sd():
    torch.manual_seed(4)
    seq = torch.nn.Sequential(mg.minGRU(3, expansion_factor=2.0), mg.minGRU(3, expansion_factor=2.0))
    return {k: v.detach().numpy().copy() for k, v in seq.state_dict().items()}


def _raises_naming(sd, tensor, **kw):
    with pytest.raises(GradscopeError) as e:
        io_mingru.from_state_dict(sd, **kw)
    assert tensor in str(e.value), str(e.value)
    return str(e.value)


def test_import_errors_name_the_tensor():
    sd = _sd()
    del sd["1.to_hidden_and_gate.weight"]
    assert "missing" in _raises_naming(sd, "1.to_hidden_and_gate.weight")
    sd = _sd()
    sd["0.to_out.weight"] = sd["0.to_out.weight"][:, :5]
    assert "shape" in _raises_naming(sd, "0.to_out.weight")
    sd = _sd()
    sd["0.to_hidden_and_gate.weight"] = sd["0.to_hidden_and_gate.weight"][:11]  # not 2·n rows
    assert "shape" in _raises_naming(sd, "0.to_hidden_and_gate.weight")
    sd = _sd()
    sd["1.to_out.weight"][0, 1] = np.nan
    assert "NaN" in _raises_naming(sd, "1.to_out.weight")
    sd = _sd()
    sd["norm.weight"] = np.ones(3, np.float32)
    assert not io_mingru.recognise(set(sd))
    assert "prefix=" in _raises_naming(sd, "norm.weight")
    assert io_mingru.from_state_dict(sd, prefix="0.").hidden_size == 6
    _raises_naming(sd, "2.", prefix="2.")
    lstm = torch.nn.LSTM(3, 4).state_dict()
    assert not io_mingru.recognise(set(lstm))
    _raises_naming(lstm, "to_hidden_and_gate.weight")


def test_option_errors():
    for kind in KINDS:
        with pytest.raises(ConfigError, match="g='tanh'"):
            gs.cells.make(kind, 3, 4, key=jax.random.key(0), g="tanh")
        with pytest.raises(ConfigError, match="proj_out"):
            gs.cells.make(kind, 3, 4, key=jax.random.key(0), proj_out="yes")


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
        np.testing.assert_allclose(float(lp.log10_spectral[k]), np.log10(np.linalg.norm(M, 2)), atol=ATOL)
        # a Stack's upper blocks (∂layer0_T/∂layer1_k) are exactly zero: log10 0 = −∞ on both sides
        np.testing.assert_allclose(float(lp.log10_frobenius[k]), np.log10(np.linalg.norm(M)), atol=ATOL)
        for key, r0, r1, c0, c1 in pairs:
            sub = M[r0:r1, c0:c1]
            with np.errstate(divide="ignore"):
                want = np.log10(np.linalg.norm(sub, 2)), np.log10(np.linalg.norm(sub))
            np.testing.assert_allclose(
                float(lp.blocks[key]["log10_spectral"][k]), want[0], atol=ATOL, err_msg=f"{key} k={k}"
            )
            np.testing.assert_allclose(
                float(lp.blocks[key]["log10_frobenius"][k]), want[1], atol=ATOL, err_msg=f"{key} k={k}"
            )
    return lp


def _models():
    return {
        "mingru": lambda: _cell("mingru", g="log-space"),
        "minlstm": lambda: _cell("minlstm", proj_out=True),
        "stack": lambda: Stack((_cell("mingru", 3, 4, seed=1, proj_out=True), _cell("minlstm", 3, 2, seed=2))),
        "bidirectional": lambda: Bidirectional(_cell("mingru", 3, 3, seed=3), _cell("minlstm", 3, 2, seed=4)),
    }


@pytest.mark.parametrize("name", sorted(_models()))
def test_lag_profile_matches_jacrev_and_analyses_run(name):
    model = _models()[name]()
    xs = inputs(6, model.input_size, seed=5)
    assert_lag_profile_matches_jacrev(model, xs)
    if name in ("stack", "bidirectional"):
        return
    ly = engine.lyapunov_spectrum(model, xs)
    tri = engine.triangle(model, xs)
    att = engine.attribution(model, xs, key=jax.random.key(0))
    assert np.all(np.isfinite(np.asarray(ly.exponents)))
    T = xs.shape[0]
    assert np.all(np.isfinite(np.asarray(tri.log10_frobenius)[np.tril_indices(T + 1)]))
    assert np.all(np.isfinite(np.asarray(att.log10_by_lag))) and np.isfinite(float(att.log10_total))


@pytest.mark.parametrize("kind", KINDS)
def test_closed_form_of_a_diagonal_recurrence(kind):
    # ∂h_T/∂h_k = diag(∏_{j=k+1..T} a_j) with a_j = 1 − z_j (minGRU) or f′_j (minLSTM), gates of x_j only:
    # its spectral norm is the largest product; the Lyapunov exponents are the per-unit means of log a
    # (the configurations of the lag-profile test above, whose compiled programs are then reused)
    cell = _cell(kind, seed=6, **({"g": "log-space"} if kind == "mingru" else {"proj_out": True}))
    T = 6
    xs = inputs(T, 3, seed=7, scale=2.0)
    a, _, _ = _np_gates(cell, xs)
    lp = engine.lag_profile(cell, xs)
    for k in range(T):
        want = np.log10(np.max(np.prod(np.abs(a[k:]), axis=0)))
        np.testing.assert_allclose(float(lp.log10_spectral[k]), want, rtol=0, atol=1e-12)
        np.testing.assert_allclose(
            float(lp.log10_frobenius[k]), np.log10(np.linalg.norm(np.prod(a[k:], axis=0))), rtol=0, atol=1e-12
        )
    ly = engine.lyapunov_spectrum(cell, xs)
    np.testing.assert_allclose(ly.exponents, np.sort(np.mean(np.log(a), axis=0))[::-1], rtol=0, atol=1e-12)
