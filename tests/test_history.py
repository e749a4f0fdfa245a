"""``gradscope history LOGDIR``: a watcher's log (written here by hand from real analyses, as the contract
``gradscope.watch/1`` says) becomes a report of gradient flow over training.

Truth is the analyses that were logged: the report's heat-map columns, horizon, norm and λ_max curves
must be those numbers, step for step. The per-layer curves of a stack are checked against jax.jacrev of
the unrolled map: the layer's largest block-pair norm is a lower bound on ‖∂S^l_T/∂S^l_k‖₂ and, with all
4 pairs of a 2-block layer reported, at most log10 2 below it (‖J‖₂ ≤ (Σ_ab ‖J_ab‖₂²)^½ ≤ 2 max_ab ‖J_ab‖₂).
"""

import dataclasses
import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradscope as gs
from gradscope._json import clean
from gradscope.report import load_report, training, validate_report
from gradscope.report.history import WATCH_SCHEMA, history_runs, read_history
from tests._cli import assert_error, run

STEPS = (0, 10, 20)
SCALES = (0.3, 1.0, 3.0)  # the recurrent weights at each "training step"
THRESHOLD = -2.0


def _line(step, model, analysis, wall=None):
    rec = {"schema": WATCH_SCHEMA, "step": step, "wall_time": 1000.0 + step if wall is None else wall}
    return json.dumps(rec | {"model": model, "analysis": clean(analysis.to_dict())}) + "\n"


def _scaled(cell, g):
    return dataclasses.replace(cell, weight_hh=cell.weight_hh * g)


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """An LSTM whose recurrent weights are scaled per step, plus a 2-layer LSTM stack (one sequence, so no
    batch mean), logged as a watcher would; the log ends with a torn line (a killed run)."""
    root = tmp_path_factory.mktemp("hist")
    cell = gs.cells.make("lstm", 2, 4, key=jax.random.key(0), dtype=jnp.float64)
    xs = jax.random.uniform(jax.random.key(1), (2, 20, 2), dtype=jnp.float64)
    st = gs.stack("lstm", 2, 3, 2, key=jax.random.key(2), dtype=jnp.float64)
    xs1 = jax.random.uniform(jax.random.key(3), (6, 2), dtype=jnp.float64)
    lstm, stack, stacks = [], [], []
    text = ""
    for step, g in zip(STEPS, SCALES):
        a = gs.analyse(_scaled(cell, g), xs, spectra=False, gates=False, paths=False, threshold=THRESHOLD)
        s = dataclasses.replace(st, layers=tuple(_scaled(c, g) for c in st.layers))
        b = gs.analyse(s, xs1, spectra=False, gates=False, paths=False, lyapunov=False)
        lstm.append(a)
        stack.append(b)
        stacks.append(s)
        text += _line(step, "lstm", a) + _line(step, "stack", b)
    log = root / "run"
    log.mkdir()
    (log / "gradscope.jsonl").write_text(text + '{"schema": "gradscope.watch/1", "step": 30, "wal')
    return {"log": log, "lstm": lstm, "stack": stack, "stacks": stacks, "xs1": xs1}


@pytest.fixture(scope="module")
def history(logged, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "report"
    res = run("history", logged["log"], "--out", out)
    assert res.exit_code == 0, res.output
    return out, load_report(out), res


def _run(report, name):
    return next(r for r in report["training"]["runs"] if r["name"] == name)


def test_report_holds_the_logged_values_step_by_step(logged, history):
    out, rep, res = history
    validate_report(rep)
    assert rep["command"] == "history"
    assert "incomplete" in res.stderr and "line 7" in res.stderr  # the torn last line: a note, not an error
    run_ = _run(rep, "lstm")
    assert [s["step"] for s in run_["snapshots"]] == list(STEPS)
    for snap, a in zip(run_["snapshots"], logged["lstm"]):
        d = clean(a.to_dict())
        assert snap["lag_profile"] == d["lag_profile"]["log10_spectral"]
        for k in ("horizon", "log10_norm_max_lag", "lyapunov_max", "verdict"):
            assert snap[k] == d["summary"][k]
    horizons = [a.summary["horizon"] for a in logged["lstm"]]
    assert len(set(horizons)) > 1  # the curve moves: a report that ignored the steps would fail
    # the report's analyses: the last step of each model
    names = [a["name"] for a in rep["analyses"]]
    assert names == ["lstm @ step 20", "stack @ step 20"]
    assert rep["analyses"][0]["summary"] == clean(logged["lstm"][-1].to_dict())["summary"]


def test_figures_plot_the_logged_values(logged, history):
    out, rep, _ = history
    run_ = _run(rep, "lstm")
    fig = training.lag_heatmap(run_)
    (im,) = fig.axes[0].get_images()
    M = np.ma.filled(im.get_array().astype(float), np.nan)
    want = np.stack([np.asarray(a.lag_profile.log10_spectral, np.float64) for a in logged["lstm"]])  # (steps, B, T)
    # batch aggregate = log10 of the mean norm over the batch (NumPy float64, from the per-sequence norms)
    want = np.log10(np.mean(10.0**want, axis=1))[:, ::-1].T  # rows lag 1..T, columns steps
    np.testing.assert_allclose(M, want, rtol=0, atol=1e-12)
    fig = training.horizon_over_training([run_])
    h, n, lam = (ax.get_lines()[0] for ax in fig.axes[:3])
    assert list(h.get_xdata()) == list(STEPS)
    assert list(h.get_ydata()) == [a.summary["horizon"] for a in logged["lstm"]]
    np.testing.assert_array_equal(n.get_ydata(), [a.summary["log10_norm_max_lag"] for a in logged["lstm"]])
    np.testing.assert_array_equal(lam.get_ydata(), [a.summary["lyapunov_max"] for a in logged["lstm"]])
    figs = {p.name for p in (out / "figures").iterdir()}
    assert {"training_horizon.png", "training_lstm_lags.png", "training_stack_lags.png"} <= figs
    assert "training_stack_layers.png" in figs and "training_lstm_layers.png" not in figs  # per layer: stacks
    assert "training_loss.png" not in figs  # a watched run logs no loss
    assert all((out / "figures" / f).read_bytes().startswith(b"\x89PNG") for f in figs)
    html = (out / "report.html").read_text()
    for f in sorted(figs):
        if f.startswith("training_"):  # the training section inlines its figures next to the run table
            stem = f.removesuffix(".png")
            assert re.search(rf'<figure id="{stem}">.*?<img [^>]*src="data:image/png;base64,', html, re.S), f


def _layer_norms(model, xs, k):
    """[log10 ‖∂S^l_T/∂S^l_k‖₂ for each layer l] by jax.jacrev of the unrolled steps k..T−1 (float64)."""
    traj = gs.rollout(model, xs)
    sizes = list(model.block_sizes)
    cut = np.cumsum(sizes)[:-1]
    T = xs.shape[0]

    def f(s):
        state = tuple(jnp.split(s, cut))
        for t in range(k, T):
            state, _ = model.step(xs[t], state, t)
        return jnp.concatenate(state)

    J = np.asarray(jax.jacrev(f)(traj.flat[k]))
    out = []
    for l in range(len(model.layers)):
        idx = np.concatenate(
            [np.arange(o, o + n) for b, o, n in zip(model.blocks, np.r_[0, cut], sizes) if b.startswith(f"layer{l}.")]
        )
        out.append(np.log10(np.linalg.norm(J[np.ix_(idx, idx)], 2)))
    return out


@pytest.mark.slow  # jax.jacrev of the unrolled stack, op by op (~9 s)
def test_per_layer_curves_bound_the_layer_jacobian(logged, history):
    _, rep, _ = history
    run_ = _run(rep, "stack")
    assert "lyapunov_max" in run_["snapshots"][0] and run_["snapshots"][0]["lyapunov_max"] is None  # not logged
    for snap, model in zip(run_["snapshots"], logged["stacks"]):
        assert set(snap["layers"]) == {"layer0", "layer1"}
        for k in (0,):  # the longest lag, where the blocks have mixed most
            for l, exact in enumerate(_layer_norms(model, logged["xs1"], k)):
                got = snap["layers"][f"layer{l}"]["lag_profile"][k]
                assert exact - np.log10(2) - 1e-9 <= got <= exact + 1e-9, (l, k, got, exact)
        for l in (0, 1):
            lay = snap["layers"][f"layer{l}"]
            assert lay["log10_norm_max_lag"] == lay["lag_profile"][0]
            by_lag = np.asarray(lay["lag_profile"], float)[::-1]
            h = lay["horizon"]  # the stack was analysed with the default threshold, 10^-3
            assert (by_lag[:h] >= -3.0).all() and (h == len(by_lag) or by_lag[h] < -3.0)
    fig = training.layer_curves(run_)
    lines = fig.axes[1].get_lines()
    assert [ln.get_label() for ln in lines] == ["layer0", "layer1"]
    np.testing.assert_array_equal(
        lines[1].get_ydata(), [s["layers"]["layer1"]["log10_norm_max_lag"] for s in run_["snapshots"]]
    )


@pytest.mark.slow  # three report folders (~15 s)
def test_out_defaults_into_logdir_and_refuses_to_overwrite(logged):
    res = run("history", logged["log"], "-q")
    assert res.exit_code == 0, res.output
    assert (logged["log"] / "history-report" / "report.json").is_file()
    assert_error(run("history", logged["log"], "-q"), "--force")
    assert run("history", logged["log"], "-q", "--force").exit_code == 0


def test_a_repeated_step_keeps_its_last_record(logged, tmp_path):
    a0, a1 = logged["lstm"][0], logged["lstm"][1]
    (tmp_path / "gradscope.jsonl").write_text(_line(0, "m", a0) + _line(5, "m", a0) + _line(5, "m", a1))
    (run_,) = history_runs(read_history(tmp_path))
    assert [s["step"] for s in run_["snapshots"]] == [0, 5]
    assert run_["snapshots"][1]["horizon"] == a1.summary["horizon"]


@pytest.mark.parametrize(
    "case, needle",
    [
        ("no-folder", "is not a folder"),
        ("no-file", "does not exist"),
        ("empty", "no watched steps"),
        ("other-schema", "is not 'gradscope.watch/1'"),
        ("bad-middle-line", ":1: not JSON"),
        ("no-analysis", "'analysis'"),
        ("bad-step", "step=-1"),
    ],
)
def test_bad_logdirs_give_one_line_and_exit_2(case, needle, tmp_path, logged):
    d = tmp_path / "log"
    if case != "no-folder":
        d.mkdir()
    good = _line(0, "m", logged["lstm"][0])
    text = {
        "empty": "\n",
        "other-schema": good + json.dumps({"schema": "gradscope.watch/2", "step": 1}) + "\n",
        "bad-middle-line": "{not json\n" + good,
        "no-analysis": json.dumps({"schema": WATCH_SCHEMA, "step": 1, "model": "m", "analysis": None}) + "\n",
        "bad-step": json.dumps({"schema": WATCH_SCHEMA, "step": -1, "model": "m", "analysis": {}}) + "\n",
    }.get(case)
    if text is not None:
        (d / "gradscope.jsonl").write_text(text)
    assert_error(run("history", d, "--out", tmp_path / "o"), needle)
    assert not (tmp_path / "o").exists()


def test_help_has_an_example():
    res = run("history", "--help")
    assert res.exit_code == 0 and "Example" in res.stdout and "gradscope.jsonl" in res.stdout


def test_light_records_give_curves_without_a_heatmap(logged, tmp_path):
    """A light record (no lag-profile section) still gives the summary curves."""
    lines = ""
    for step, a in zip(STEPS, logged["lstm"]):
        d = {k: v for k, v in clean(a.to_dict()).items() if k != "lag_profile"}
        lines += (
            json.dumps({"schema": WATCH_SCHEMA, "step": step, "wall_time": 1.0, "model": "m", "analysis": d}) + "\n"
        )
    (tmp_path / "gradscope.jsonl").write_text(lines)
    (run_,) = history_runs(read_history(tmp_path / "gradscope.jsonl"))
    assert all("lag_profile" not in s and "layers" not in s for s in run_["snapshots"])
    assert [s["horizon"] for s in run_["snapshots"]] == [a.summary["horizon"] for a in logged["lstm"]]
    fig = training.lag_heatmap(run_)
    assert not fig.axes[0].get_images()  # "no snapshots with lag profiles"
    specs = training.figure_specs({"training": {"runs": [run_]}})
    assert [s.filename for s in specs] == ["training_horizon.png"]  # no heat-map without lag profiles
