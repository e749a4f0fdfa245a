"""Path split (highway + remainder == total) against jax.jacrev and gate values from the rollout;
closed forms with zero recurrent weights (Gers et al. 2000; Chung et al. 2014); gate statistics vs NumPy."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _engine_ref import build, inputs, oracle

from gradscope import engine
from gradscope._errors import ConfigError
from gradscope._rollout import rollout


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def _highway_factor(name, aux):
    """The per-step direct-path diagonal, read from the rollout's gate values (not from the engine)."""
    if name in ("lstm", "lstm-peephole"):
        return np.asarray(aux["f"])
    if name == "lstm-nofg":
        return np.ones_like(np.asarray(aux["i"]))
    if name == "gru":  # PyTorch: h' = (1 − z) n + z h
        return np.asarray(aux["z"])
    if name == "gru-chung":  # Cho/Chung: h' = (1 − z) h + z h̃
        return 1 - np.asarray(aux["z"])
    raise KeyError(name)


@pytest.mark.parametrize("name", ["lstm", "lstm-peephole", "lstm-nofg", "gru", "gru-chung"])
def test_highway_plus_remainder_is_total(name):
    n, T = 6, 8
    model = build(name, 3, n, seed=2)
    xs = inputs(T, 3, seed=4)
    ps = engine.path_split(model, xs)
    _, _, P, _, _ = oracle(model, xs)
    aux = rollout(model, xs).aux
    f = _highway_factor(name, aux)  # (T, n): factor of step t+1
    r0 = model.block_sizes[0] if ps.block == "c" else 0
    assert ps.block == ("c" if "lstm" in name else "h")
    for k in range(T):
        total = P[T, k][r0 : r0 + n, r0 : r0 + n]
        hw = np.prod(f[k:], axis=0)
        rem = total - np.diag(hw)
        scale = np.linalg.norm(total)
        for attr, M in (("total", total), ("highway", np.diag(hw)), ("remainder", rem)):
            for norm, ord_ in (("frobenius", None), ("spectral", 2)):
                got, ref = float(getattr(ps, f"{attr}_log10_{norm}")[k]), np.linalg.norm(M, ord_)
                if ref < 1e-10 * scale:  # exactly 0 (lag 1 of an LSTM: ∂c/∂c = diag(f)): rounding noise
                    assert got < np.log10(scale) - 10, (attr, norm, k)
                else:
                    np.testing.assert_allclose(got, np.log10(ref), atol=1e-8, err_msg=f"{attr} {norm} k={k}")


def test_lstm_without_recurrent_weights_is_the_forget_highway():
    # Gers et al. 2000 forget gate: W_hh = 0 ⇒ ∂c_t/∂c_{t−1} = diag(σ(f̃_t)) and the remainder of the split is 0
    n, m, T = 4, 3, 10
    cell = build("lstm", m, n)
    cell = dataclasses.replace(cell, weight_hh=jnp.zeros_like(cell.weight_hh))
    xs = inputs(T, m, seed=3)
    Wif = np.asarray(cell.weight_ih)[n : 2 * n]
    b = np.asarray(cell.bias_ih + cell.bias_hh)[n : 2 * n]
    f = sigmoid(xs @ Wif.T + b)  # (T, n), NumPy
    J = np.asarray(engine.step_jacobians(cell, xs).jac)
    for t in range(T):
        np.testing.assert_allclose(J[t, n:, n:], np.diag(f[t]), rtol=1e-13, atol=1e-15)
        np.testing.assert_array_equal(J[t, n:, :n], 0.0)  # c does not see h
    ps = engine.path_split(cell, xs)
    for k in range(T):
        hw = np.prod(f[k:], axis=0)
        np.testing.assert_allclose(float(ps.highway_log10_spectral[k]), np.log10(hw.max()), atol=1e-12)
        np.testing.assert_allclose(float(ps.total_log10_spectral[k]), float(ps.highway_log10_spectral[k]), atol=1e-12)
        np.testing.assert_allclose(float(ps.total_log10_frobenius[k]), float(ps.highway_log10_frobenius[k]), atol=1e-12)
        # remainder exactly 0, or rounding noise ≥ 12 orders below the total
        assert float(ps.remainder_log10_frobenius[k]) < float(ps.total_log10_frobenius[k]) - 12


def test_forget_bias_one_zero_input_gives_sigmoid_one_per_step():
    # Jozefowicz et al. 2015: b_f = 1, zero input, W_h = 0 ⇒ per-step factor σ(1) = 0.7311; 100 steps → 2.48e−14
    n = 3
    cell = build("lstm", 2, n, forget_bias=1.0)
    cell = dataclasses.replace(cell, weight_hh=jnp.zeros_like(cell.weight_hh), bias_hh=jnp.zeros_like(cell.bias_hh))
    assert np.allclose(np.asarray(cell.bias_ih)[n : 2 * n], 1.0)
    ps = engine.path_split(cell, np.zeros((100, 2)))
    np.testing.assert_allclose(10 ** float(ps.highway_log10_spectral[0]), sigmoid(1.0) ** 100, rtol=1e-10)
    np.testing.assert_allclose(10 ** float(ps.total_log10_spectral[0]), 2.48e-14, rtol=2e-3)


@pytest.mark.parametrize("name", ["gru", "gru-chung"])
def test_gru_without_recurrent_weights_is_the_direct_path(name):
    # torch.nn.GRU and Chung et al. 2014: W_hh = 0 ⇒ PyTorch GRU ∂h_t/∂h_{t−1} = diag(z_t), Cho/Chung diag(1 − z_t)
    n, m, T = 4, 3, 6
    cell = build(name, m, n)
    cell = dataclasses.replace(cell, weight_hh=jnp.zeros_like(cell.weight_hh))
    xs = inputs(T, m, seed=5)
    Wiz = np.asarray(cell.weight_ih)[n : 2 * n]
    b = np.asarray(cell.bias_ih)[n : 2 * n] + np.asarray(cell.bias_hh)[n : 2 * n]
    z = sigmoid(xs @ Wiz.T + b)
    direct = z if name == "gru" else 1 - z
    J = np.asarray(engine.step_jacobians(cell, xs).jac)
    for t in range(T):
        np.testing.assert_allclose(J[t], np.diag(direct[t]), rtol=1e-13, atol=1e-15)
    ps = engine.path_split(cell, xs)
    for k in range(T):
        np.testing.assert_allclose(
            float(ps.highway_log10_frobenius[k]), np.log10(np.linalg.norm(np.prod(direct[k:], axis=0))), atol=1e-12
        )
        assert float(ps.remainder_log10_frobenius[k]) < float(ps.total_log10_frobenius[k]) - 12


def test_path_split_needs_a_gated_cell():
    with pytest.raises(ConfigError, match="direct path"):
        engine.path_split(build("rnn-tanh"), inputs(3, 3))


def test_gate_statistics_match_numpy():
    model = build("lstm", 3, 4)
    xs = inputs(20, 3, B=2, seed=6)
    tr = rollout(model, xs)
    st = engine.gate_statistics(model, tr, saturation=0.1, forget_open=0.5, bins=5)
    for g in ("i", "f", "o"):
        v = np.asarray(tr.aux[g])
        assert st[g]["mean"] == pytest.approx(v.mean(), abs=1e-12)
        assert st[g]["saturated_fraction"] == pytest.approx(float((v * (1 - v) < 0.1).mean()))
        assert st[g]["histogram"] == np.histogram(v, bins=np.linspace(0, 1, 6))[0].tolist()
    assert st["f"]["open_fraction"] == pytest.approx(float((np.asarray(tr.aux["f"]) > 0.5).mean()))
    # relu: inactive / dead fractions
    irnn = build("irnn", 3, 4)
    irnn = dataclasses.replace(
        irnn, weight_ih=jnp.asarray(np.array([[1.0, 0, 0], [-1.0, 0, 0], [0, 0, 0], [0, 1.0, 0]]))
    )
    xs = np.abs(inputs(5, 3, seed=1)) + 0.1
    st = engine.gate_statistics(irnn, rollout(irnn, xs))
    # unit 0 and 3 active throughout; unit 1 negative pre-activation; unit 2 exactly 0 (inactive)
    assert st["relu"]["inactive_fraction"] == pytest.approx(0.5)
    assert st["relu"]["dead_fraction"] == pytest.approx(0.5)


def test_path_split_float32_matches_float64_over_long_sequences():
    """Compensated log-scales: T = 3000 in float32 stays within 1e-3 (log10) of float64."""
    import gradscope as gs

    m64 = gs.cells.make("lstm", 2, 8, key=jax.random.key(0), dtype=jnp.float64, forget_bias=3.0)
    m32 = jax.tree_util.tree_map(lambda a: a.astype(jnp.float32), m64)
    xs = jax.random.uniform(jax.random.key(1), (3000, 2), jnp.float64)
    p64 = gs.path_split(m64, xs)
    p32 = gs.path_split(m32, xs.astype(jnp.float32))
    for name in ("total_log10_frobenius", "highway_log10_frobenius", "highway_log10_spectral"):
        a, b = np.asarray(getattr(p64, name)), np.asarray(getattr(p32, name), np.float64)
        assert np.all(np.isfinite(a)) and np.min(a) < -5, name  # a real long-range decay
        np.testing.assert_allclose(b, a, atol=1e-3, err_msg=name)


@pytest.mark.parametrize("name", ["slstm", "mlstm"])
def test_xlstm_memory_highway_plus_remainder_is_total(name):
    """xLSTM (Beck et al. 2024): c_t = f′ c_{t−1} + … (sLSTM) and C_t = f′ C_{t−1} + … (mLSTM, one f′ per head on
    its Dh² entries). The highway ∏ f′ from the rollout's gate values, the total block from jax.jacrev of the
    unrolled map, and the remainder = total − highway, against the engine's split."""
    T = 6
    model = build(name, 3, 4, seed=2)
    xs = inputs(T, 3, seed=4)
    ps = engine.path_split(model, xs)
    _, _, P, _, _ = oracle(model, xs)
    f = np.asarray(rollout(model, xs).aux["f"])  # (T, n) or (T, heads)
    size = model.block_sizes[1]
    f = np.repeat(f, size // f.shape[1], axis=1)  # one f′ per head → its Dh² entries of C
    r0 = model.block_sizes[0]
    assert ps.block == model.blocks[1]
    for k in range(T):
        total = P[T, k][r0 : r0 + size, r0 : r0 + size]
        hw = np.diag(np.prod(f[k:], axis=0))
        for attr, M in (("total", total), ("highway", hw), ("remainder", total - hw)):
            got, ref = float(getattr(ps, f"{attr}_log10_frobenius")[k]), np.linalg.norm(M)
            if ref < 1e-10 * np.linalg.norm(total):
                assert got < np.log10(np.linalg.norm(total)) - 10, (attr, k)
            else:
                np.testing.assert_allclose(got, np.log10(ref), atol=1e-8, err_msg=f"{attr} k={k}")
