"""What ``gain`` means, and one initialisation per cell name in every command.

* ``gain`` is the spectral radius ρ(W_hh) of the Elman family: exactly g for an orthogonal or identity W_hh
  (every eigenvalue has modulus g; checked with ``numpy.linalg.eigvals`` in float64), and → g as n → ∞ for
  i.i.d. entries of variance g²/n, Gaussian or uniform (the circular law, Tao & Vu 2010). Without a gain
  the init is PyTorch's ``nn.RNN`` one, U(±1/√n).
* The default sweep crosses the edge of chaos. Independent truth: the mean-field theory of random tanh
  networks (Sompolinsky, Crisanti & Sommers 1988; Poole et al. 2016; for orthogonal weights Pennington,
  Schoenholz & Ganguli 2017): the pre-activation variance q* solves q = g² E[tanh²(√q z)] + σ₀² and the
  largest Lyapunov exponent is ½ ln χ with χ = g² E[tanh'(√q* z)²], z ~ N(0, 1) (Gauss–Hermite here).
  σ₀² is the variance the inputs and biases add: W_ih, b_ih, b_hh ~ U(±1/√n) (variance 1/(3n)) and
  x ~ U(0, 1) (E x² = 1/3) with m = 2 inputs give σ₀² = 2/(9n) + 2/(3n) = 8/(9n).
* A cell name with the same options and seed has bitwise the same weights whichever command builds it
  (analyse, compare, sweep, train) and as the Python API ``gs.cells.make(name, m, n,
  key=split(key(seed))[0], **options)``, the options being those the commands document: IndRNN gets
  max_length = T and, in its last layer, u_min = (1/2)^(1/T) (Li et al. 2018's adding-problem init).
"""

import inspect
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from typer.testing import CliRunner

import gradscope as gs
from gradscope import cli
from gradscope._errors import ConfigError
from gradscope.cli import analyse as analyse_cmd
from gradscope.cli import sweep as sweep_cmd
from gradscope.cli import train as train_cmd
from gradscope.cli._options import DEFAULTS, auto_options, parse_cell_spec
from gradscope.experiments import sweep
from gradscope.experiments.models import model_key

KEY = jax.random.key(3)


def _radius(W) -> np.ndarray:
    return np.abs(np.linalg.eigvals(np.asarray(W, np.float64)))


# ------------------------------------------------------------------------------ gain = spectral radius


@pytest.mark.parametrize("cell", ["rnn-tanh", "rnn-relu", "ln-rnn", "bn-rnn"])
@pytest.mark.parametrize("gain", [0.5, 1.5])
def test_a_gain_alone_gives_an_orthogonal_matrix_of_that_radius(cell, gain):
    W = np.asarray(gs.cells.make(cell, 2, 24, key=KEY, dtype=jnp.float64, gain=gain).weight_hh)
    np.testing.assert_allclose(_radius(W), gain, rtol=1e-12)  # every eigenvalue, not only the largest
    np.testing.assert_allclose(W.T @ W, gain**2 * np.eye(24), atol=1e-12)


@pytest.mark.parametrize("init", ["orthogonal", "identity"])
def test_exact_inits_have_radius_exactly_gain(init):
    c = gs.cells.make("rnn-tanh", 2, 16, key=KEY, dtype=jnp.float64, recurrent_init=init, gain=1.3)
    np.testing.assert_allclose(_radius(c.weight_hh), 1.3, rtol=1e-12)
    # an init without a gain: radius 1
    W1 = gs.cells.make("rnn-tanh", 2, 16, key=KEY, dtype=jnp.float64, recurrent_init=init).weight_hh
    np.testing.assert_allclose(_radius(W1), 1.0, rtol=1e-12)


@pytest.mark.parametrize("init", ["gaussian", "uniform"])
def test_random_inits_have_radius_near_gain_circular_law(init):
    n, g = 256, 1.5
    W = np.asarray(gs.cells.make("rnn-tanh", 2, n, key=KEY, dtype=jnp.float64, recurrent_init=init, gain=g).weight_hh)
    assert W.var() == pytest.approx(g**2 / n, rel=0.03)  # entries of variance g²/n
    assert _radius(W).max() == pytest.approx(g, rel=0.08)  # circular law: the disc of radius g (n^-1/2 edge)


def test_without_a_gain_the_init_is_pytorchs():
    n = 256
    W = np.asarray(gs.cells.make("rnn-tanh", 2, n, key=KEY, dtype=jnp.float64).weight_hh)
    assert np.abs(W).max() <= 1 / np.sqrt(n)  # nn.RNN: U(±1/√n)
    assert W.var() == pytest.approx(1 / (3 * n), rel=0.03)
    assert _radius(W).max() == pytest.approx(1 / np.sqrt(3), rel=0.08)


def test_a_negative_gain_is_refused():
    with pytest.raises(ConfigError, match="gain=-1.0"):
        gs.cells.make("rnn-tanh", 2, 4, key=KEY, gain=-1.0)


# ---------------------------------------------------------------------- the default sweep and theory


def _mean_field_lyapunov(g: float, s0: float) -> float:
    z, w = np.polynomial.hermite_e.hermegauss(121)
    w = w / w.sum()
    q = 1.0
    for _ in range(5000):
        q = g * g * np.sum(w * np.tanh(np.sqrt(q) * z) ** 2) + s0
    return 0.5 * float(np.log(g * g * np.sum(w * (1 - np.tanh(np.sqrt(q) * z) ** 2) ** 2)))


def _sweep_default(name: str) -> str:
    return inspect.signature(sweep_cmd.sweep).parameters[name].default.default


def test_mean_field_theory_crosses_zero_near_gain_one():
    """The theory itself: λ < 0 at g = 0.5, > 0 at g = 1.5, and ln g below the transition without inputs."""
    assert _mean_field_lyapunov(0.5, 0.0) == pytest.approx(np.log(0.5), abs=1e-9)
    assert _mean_field_lyapunov(1.5, 8 / (9 * 32)) > 0 > _mean_field_lyapunov(0.5, 8 / (9 * 32))


@pytest.mark.slow
def test_default_sweep_crosses_the_edge_of_chaos_for_the_tanh_rnn():
    """The tanh slice of the default grid (`gradscope sweep` with no options): λ_max < 0 at gain 0.5, > 0 at
    gain 1.5, each within 0.04 nats/step of the mean-field value for its gain."""
    gains = [float(g) for g in _sweep_default("gains").split(",")]
    lengths = [int(t) for t in (_sweep_default("lengths") or "50,100").split(",")]  # 50,100: the documented default
    assert "rnn-tanh" in _sweep_default("cells").split(",") and {0.5, 1.5} <= set(gains)
    hidden = DEFAULTS["hidden"]
    cfgs = sweep.grid(["rnn-tanh"], [0.5, 1.5], lengths[:1], [0], hidden=hidden, batch=DEFAULTS["batch"])
    s0 = 8 / (9 * hidden)
    for cfg in cfgs:
        assert cfg.gain is not None
        lam = sweep.analyse_config(cfg).summary["lyapunov_max"]
        theory = _mean_field_lyapunov(cfg.gain, s0)
        assert np.sign(lam) == np.sign(theory) == (1 if cfg.gain > 1 else -1), (cfg.name, lam, theory)
        assert lam == pytest.approx(theory, abs=0.04), (cfg.name, lam, theory)


@pytest.mark.slow
def test_default_sweep_report_shows_chaos_at_gain_1_5(tmp_path):
    """`gradscope sweep --out DIR` with its defaults: report.json has λ_max > 0 for every rnn-tanh run at gain
    1.5 and < 0 at gain 0.5, and the Lyapunov heat-map is drawn."""
    out = tmp_path / "sweep"
    res = CliRunner().invoke(cli.app, ["sweep", "--out", str(out), "--json", "-q"])
    assert res.exit_code == 0, res.output
    report = json.loads((out / "report.json").read_text())
    tanh = [a for a in report["analyses"] if a["name"].startswith("rnn-tanh/")]
    hot = [a["summary"]["lyapunov_max"] for a in tanh if "/g=1.5/" in a["name"]]
    cold = [a["summary"]["lyapunov_max"] for a in tanh if "/g=0.5/" in a["name"]]
    assert hot and cold and min(hot) > 0 > max(cold)
    assert (out / "figures" / "sweep_lyapunov_gain_cell.png").stat().st_size > 0


@pytest.mark.slow
def test_compare_gains_crosses_the_edge_of_chaos(tmp_path):
    """`gradscope compare --cells rnn-tanh,lstm --gains 0.5,1.5`: the tanh RNN once per gain (the spectral radius
    of W_hh), the LSTM (no gain) once; λ_max on the side of 0 that mean-field theory gives for each gain."""
    out = tmp_path / "cmp"
    res = CliRunner().invoke(
        cli.app,
        ["compare", "--cells", "rnn-tanh,lstm", "--gains", "0.5,1.5", "--length", "60", "--out", str(out), "-q"],
    )
    assert res.exit_code == 0, res.output
    report = json.loads((out / "report.json").read_text())
    lam = {a["name"]: a["summary"]["lyapunov_max"] for a in report["analyses"]}
    assert set(lam) == {"rnn-tanh:gain=0.5", "rnn-tanh:gain=1.5", "lstm"}
    s0 = 8 / (9 * DEFAULTS["hidden"])
    assert _mean_field_lyapunov(1.5, s0) > 0 and lam["rnn-tanh:gain=1.5"] > 0
    assert _mean_field_lyapunov(0.5, s0) < 0 and lam["rnn-tanh:gain=0.5"] < 0


def test_compare_gains_without_a_gain_cell_is_refused(tmp_path):
    res = CliRunner().invoke(
        cli.app, ["compare", "--cells", "lstm,gru", "--gains", "0.5,1.5", "--out", str(tmp_path / "x")]
    )
    assert res.exit_code == 2 and "none of the cells has a gain option" in res.stderr, res.output


# ------------------------------------------------------------------ one initialisation per cell name


M, N, T, SEED = 4, 8, 16, 1


def _leaves(model):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(model)]


def _assert_same(a, b, what):
    la, lb = _leaves(a), _leaves(b)
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b), what
    for x, y in zip(la, lb):
        assert x.dtype == y.dtype and x.shape == y.shape, what
        np.testing.assert_array_equal(x, y, err_msg=what)


def _documented_options(name: str, options: dict, last: bool = True) -> dict:
    """The options the commands document adding, written out here (not taken from the code under test)."""
    opts = dict(options)
    if name == "indrnn":
        opts.setdefault("max_length", T)
        if last and "u_min" not in options and "u_max" not in options:
            opts["u_min"] = 0.5 ** (1.0 / T)
    return opts


def _python_api(name: str, options: dict):
    key = jax.random.split(jax.random.key(SEED))[0]
    return gs.cells.make(name, M, N, key=key, dtype=jnp.float32, **_documented_options(name, options))


def _command_models(name: str, options: dict) -> dict:
    """The model each command path builds for ``name`` with ``options`` at seed SEED."""
    spec = ":".join([name, *(f"{k}={v}" for k, v in options.items())])
    common = {"length": T, "batch": 1, "seed": SEED, "input": "uniform", "dtype": "float32", "threshold": -3.0}
    common |= {"mode": "exact", "triangle": False, "attribution": False, "sensitivity": False}
    k_model = sweep.config_keys(SEED)[0]
    analyse_cfg = analyse_cmd._cell_config(spec, {}, N, 1, False, M, common)
    p = parse_cell_spec(spec)
    compare_cfg = sweep.Config(
        name=p.label,
        cell=p.name,
        options=auto_options(p.name, p.options, T),
        hidden=N,
        length=T,
        seed=SEED,
        input_size=M,
    )  # as `gradscope compare` builds it
    gains = [options["gain"]] if "gain" in options else None
    rest = {k: v for k, v in options.items() if k != "gain"}
    (sweep_cfg,) = sweep.grid([(name, name, rest)], gains, [T], [SEED], hidden=N, input_size=M)
    # `gradscope train` passes key=model_key(seed)
    train_model, _ = train_cmd.build_model(spec, M, N, 1, False, T, key=model_key(SEED), dtype=jnp.float32)
    return {
        "analyse": sweep.build_model(analyse_cfg, k_model),
        "compare": sweep.build_model(compare_cfg, k_model),
        "sweep": sweep.build_model(sweep_cfg, k_model),
        "train": train_model,
    }


@pytest.mark.parametrize("name", list(gs.cells.names()))
def test_every_command_builds_the_python_apis_weights(name):
    expected = _python_api(name, {})
    for path, model in _command_models(name, {}).items():
        _assert_same(model, expected, f"{name}: {path} differs from gs.cells.make")


@pytest.mark.parametrize("options", [{"gain": 1.5}, {"gain": 0.5, "recurrent_init": "gaussian"}])
def test_a_gain_is_the_same_matrix_in_every_command(options):
    expected = _python_api("rnn-tanh", options)
    for path, model in _command_models("rnn-tanh", options).items():
        _assert_same(model, expected, f"rnn-tanh {options}: {path}")


def test_stacked_indrnn_layers_follow_the_documented_recipe():
    """Layer l of a stack: key split(model key, L)[l]; the last layer alone gets u_min = (1/2)^(1/T)."""
    L = 3
    model, _ = train_cmd.build_model("indrnn", M, N, L, False, T, key=sweep.config_keys(SEED)[0], dtype=jnp.float32)
    cfg = sweep.Config(
        name="x",
        cell="indrnn",
        options=auto_options("indrnn", {}, T),
        hidden=N,
        length=T,
        seed=SEED,
        input_size=M,
        layers=L,
    )
    keys = jax.random.split(sweep.config_keys(SEED)[0], L)
    m = M
    for l, layer in enumerate(model.layers):
        ref = gs.cells.make("indrnn", m, N, key=keys[l], **_documented_options("indrnn", {}, last=l == L - 1))
        _assert_same(layer, ref, f"layer {l}")
        m = N
    _assert_same(sweep.build_model(cfg, sweep.config_keys(SEED)[0]), model, "analyse/sweep stack vs train stack")


def _cli_json(*args) -> dict:
    res = CliRunner().invoke(cli.app, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


@pytest.mark.slow
def test_analyse_compare_and_sweep_report_the_same_numbers(tmp_path):
    """Run through the commands themselves: IndRNN (initialised differently by compare and analyse before)
    and a tanh RNN at gain 1.5 give the same report numbers in analyse, compare and sweep."""
    tiny = ["--hidden", 4, "--batch", 2, "--json", "-q"]
    comp = _cli_json("compare", "--cells", "indrnn,rnn-tanh:gain=1.5", "--length", 12, *tiny, "--out", tmp_path / "c")
    swp = _cli_json(
        "sweep", "--cells", "indrnn,rnn-tanh", "--gains", 1.5, "--lengths", 12, *tiny, "--out", tmp_path / "s"
    )
    ana_i = _cli_json("analyse", "--cell", "indrnn", "--length", 12, *tiny, "--out", tmp_path / "a1")
    ana_t = _cli_json("analyse", "--cell", "rnn-tanh", "--gain", 1.5, "--length", 12, *tiny, "--out", tmp_path / "a2")
    keys = ("log10_norm_max_lag", "decay_per_step", "lyapunov_max")
    got = {
        "compare": [[a["summary"][k] for k in keys] for a in comp["analyses"]],
        "sweep": [[a["summary"][k] for k in keys] for a in swp["analyses"]],
        "analyse": [[a["summary"][k] for k in keys] for a in (ana_i["analyses"][0], ana_t["analyses"][0])],
    }
    assert got["compare"] == got["analyse"], got
    # the sweep analyses with the vmapped engine, whose float32 rounding differs by ulps (amplified by chaos
    # at gain 1.5); the weights themselves are bitwise equal (test_every_command_builds_the_python_apis_weights)
    np.testing.assert_allclose(got["sweep"], got["analyse"], rtol=1e-5, atol=1e-6)
