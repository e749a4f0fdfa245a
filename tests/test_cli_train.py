"""`gradscope train` and `gradscope reproduce` through `typer.testing.CliRunner`, and the training figures.

Truth used: the report's loss curve is compared with the loss recomputed here by a hand-written NumPy
forward pass of the trained IndRNN network on the first training batch; the lag heat-map's pixels with the
snapshot lag profiles it was drawn from; resuming from a checkpoint with the uninterrupted run.
Sizes are tiny (hidden 8, T ≤ 20, ≤ 30 steps).
"""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from gradscope import cli
from gradscope.report import load_report
from tests._cli import assert_error

runner = CliRunner()
TINY = [
    "--task",
    "adding",
    "--length",
    "12",
    "--cell",
    "indrnn",
    "--layers",
    "2",
    "--hidden",
    "8",
    "--steps",
    "20",
    "--batch",
    "4",
    "--snapshot-every",
    "10",
    "--probe-batch",
    "2",
    "--quiet",
]


def run(*args):
    """Invoke the CLI; arguments that do not start with a command name go to ``train``."""
    args = [str(a) for a in args]
    if args and args[0] not in ("train", "reproduce"):
        args = ["train", *args]
    return runner.invoke(cli.app, args)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "run"
    res = run(*TINY, "--checkpoint-every", "10", "--out", out)
    assert res.exit_code == 0, res.output
    return out


def test_train_writes_run_folder(tiny_run):
    rep = load_report(tiny_run)  # validates the schema
    assert rep["command"] == "train"
    (r,) = rep["training"]["runs"]
    assert r["steps_done"] == 20 and len(r["loss"]) == 20 and r["step"] == list(range(1, 21))
    assert [s["step"] for s in r["snapshots"]] == [0, 10, 20]
    assert all(len(s["lag_profile"]) == 12 for s in r["snapshots"])
    assert r["final"]["mse"] is not None and r["diverged"] is None
    assert rep["config"]["indrnn_clip"] == 2.0  # IndRNN's constraint is on by default
    figs = {p.name for p in (tiny_run / "figures").iterdir()}
    assert {"training_loss.png", "training_horizon.png", "lag_profiles.png"} <= figs
    assert any(f.startswith("training_") and f.endswith("_lags.png") for f in figs)
    html = (tiny_run / "report.html").read_text()
    assert re.search(r"<h2[^>]*>Training \(1 run\)</h2>", html)
    # every figure is on the page: an inlined PNG or an interactive (plotly) figure drawn from the same data
    shown = {
        m.group(1)
        for m in re.finditer(r'<figure id="([^"]+)"(.*?)</figure>', html, re.S)
        if "data:image/png;base64," in m.group(2) or 'class="gs-fig"' in m.group(2)
    }
    assert shown == {f.removesuffix(".png") for f in figs}
    assert "Training runs" in (tiny_run / "summary.md").read_text()
    assert (tiny_run / "checkpoints" / "latest.json").exists()


def test_train_loss_matches_numpy_forward(tiny_run):
    """The first recorded loss is the MSE of the *initial* network on batch 0; recompute it in NumPy from
    the initial weights (rebuilt with the same keys) and the batch (IndRNN: h_t = relu(W x_t + u⊙h + b))."""
    import jax

    import gradscope.experiments.train  # noqa: F401
    from gradscope.cli.train import build_model
    from gradscope.experiments import tasks

    tr = sys.modules["gradscope.experiments.train"]
    task = tasks.make("adding", length=12)
    from gradscope.experiments.models import model_key

    key = jax.random.fold_in(jax.random.key(0), 1)  # the run's stream; the weights come from model_key(seed)
    model, _ = build_model("indrnn", 2, 8, 2, False, 12, key=model_key(0), dtype=np.float32)
    net = tr.network(model, task, key=jax.random.split(key, 3)[1])
    xs, ys = task.sample(jax.random.fold_in(jax.random.split(key, 3)[0], 0), 4)
    xs, ys = np.asarray(xs, np.float64), np.asarray(ys, np.float64)
    h = [np.zeros((4, 8)), np.zeros((4, 8))]
    for t in range(12):
        inp = xs[:, t]
        for l, c in enumerate(net.rnn.layers):
            W, u, b = (np.asarray(a, np.float64) for a in (c.weight_ih, c.weight_hh_diag, c.bias))
            h[l] = np.maximum(inp @ W.T + u * h[l] + b, 0.0)
            inp = h[l]
    pred = h[1] @ np.asarray(net.readout.weight, np.float64).T + np.asarray(net.readout.bias, np.float64)
    mse = np.mean((pred[:, 0] - ys) ** 2)
    loss0 = load_report(tiny_run)["training"]["runs"][0]["loss"][0]
    assert loss0 == pytest.approx(mse, rel=1e-4)


@pytest.mark.slow
def test_train_is_deterministic_and_resumes(tiny_run, tmp_path):
    """Same seed → the same curve; a run resumed from its step-10 checkpoint ends where the uninterrupted one did."""
    out = tmp_path / "again"
    assert run(*TINY, "--checkpoint-every", "10", "--out", out).exit_code == 0
    a = load_report(tiny_run)["training"]["runs"][0]
    b = load_report(out)["training"]["runs"][0]
    assert a["loss"] == b["loss"]
    # simulate an interruption after step 10: point latest.json back and drop the final report
    (out / "checkpoints" / "latest.json").write_text(json.dumps({"step": 10}))
    for p in ("report.json", "report.html", "summary.md"):
        (out / p).unlink()
    res = run(*TINY, "--checkpoint-every", "10", "--out", out, "--resume")
    assert res.exit_code == 0, res.output
    c = load_report(out)["training"]["runs"][0]
    assert c["loss"] == a["loss"] and c["final"]["mse"] == pytest.approx(a["final"]["mse"], rel=1e-6)


def test_train_json_only_on_stdout(tmp_path):
    res = run(*TINY, "--steps", "4", "--snapshot-every", "2", "--json", "--out", tmp_path / "j")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["schema"] == "gradscope.report/1" and doc["training"]["runs"][0]["steps_done"] == 4


def test_train_nan_stops_with_one_line(tmp_path):
    res = run(
        "--task",
        "adding",
        "--length",
        "10",
        "--cell",
        "rnn-relu",
        "--hidden",
        "8",
        "--steps",
        "30",
        "--optimizer",
        "sgd",
        "--lr",
        "1e6",
        "--batch",
        "4",
        "--quiet",
        "--out",
        tmp_path / "nan",
    )
    assert_error(res, "training diverged at step")


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--task", "nope"], "'nope'"),
        (["--task", "adding", "--lr", "-1"], "--lr"),
        (["--task", "adding", "--cell", "lstm:forget_bias=x"], "forget_bias"),
        (["--task", "adding", "--clip-norm", "0"], "--clip-norm"),
        (["--task", "adding", "--lr", "nan"], "--lr=nan"),
        (["--task", "adding", "--indrnn-clip", "inf"], "--indrnn-clip=inf"),
    ],
)
def test_train_errors(tmp_path, args, needle):
    assert_error(run("train", *args, "--out", tmp_path / "e"), needle)


def test_train_refuses_non_empty_out_and_force_with_resume(tiny_run):
    assert_error(run(*TINY, "--out", tiny_run), "--force")
    assert_error(run(*TINY, "--out", tiny_run, "--force", "--resume"), "--resume")


def test_reproduce_list_and_errors(tmp_path):
    res = run("reproduce", "--list", "--json")
    assert res.exit_code == 0
    names = [r["name"] for r in json.loads(res.stdout)]
    assert names == ["adding", "forget-bias", "bn-gamma", "gru-vs-lstm", "depth", "clipping"]
    assert_error(run("reproduce", "addding", "--out", tmp_path / "x"), "did you mean adding")
    assert_error(run("reproduce", "adding"), "--out")
    assert_error(run("reproduce"), "--list")


@pytest.mark.slow
def test_reproduce_writes_report(tmp_path):
    out = tmp_path / "fb"
    res = run("reproduce", "forget-bias", "--out", out, "--json", "--check")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["name"] == "forget-bias" and doc["held"] is True and doc["setting"] == "quick"
    rep = load_report(out)
    assert rep["reproduction"]["held"] is True and rep["config"]["reproduce"] == "forget-bias"
    html = (out / "report.html").read_text()
    assert "Reproduction:" in html and "claim held" in html and "Claim." in html
    assert (out / "summary.md").read_text().startswith("## Reproduction `forget-bias` (quick): claim held")


def test_indrnn_default_clip_finds_indrnn_layers_in_any_network():
    """``gradscope train`` turns IndRNN's constraint on when any leaf cell (`named_cells`) is an IndRNN."""
    import jax

    import gradscope as gs
    from gradscope.cli.train import _has_indrnn

    k = jax.random.key(0)
    assert _has_indrnn(gs.cells.make("indrnn", 2, 4, key=k))
    assert _has_indrnn(gs.Stack((gs.cells.make("lstm", 2, 4, key=k), gs.cells.make("indrnn", 4, 4, key=k))))
    assert _has_indrnn(gs.bidirectional("indrnn", 2, 4, key=k))
    assert not _has_indrnn(gs.stack("lstm", 2, 4, 2, key=k))


def test_cli_train_module_does_not_import_jax():
    code = "import sys, gradscope.cli.train; assert 'jax' not in sys.modules, 'jax imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------------------- training figures


def _fake_run(name="r", T=5):
    prof = [[-0.5 * (T - k) * (s + 1) for k in range(T)] for s in range(3)]  # by k; lag T-k
    prof[1][0] = None  # an exactly zero product: a gap
    return {
        "name": name,
        "task": {"task": "adding"},
        "metric_name": "mse",
        "baseline": 1 / 6,
        "steps_done": 4,
        "step": [1, 2, 3, 4],
        "loss": [1.0, 0.5, 0.25, 0.2],
        "metric": [1.0, 0.5, 0.25, 0.2],
        "grad_norm": [3.0, 2.0, 1.0, 0.5],
        "final": {"loss": 0.2, "mse": 0.2, "success": False},
        "diverged": None,
        "seconds": 1.0,
        "snapshots": [
            {"step": 2 * s, "horizon": 5 - s, "log10_norm_max_lag": prof[s][0], "lag_profile": prof[s]}
            for s in range(3)
        ],
    }


def test_lag_heatmap_shows_the_snapshot_profiles():
    from gradscope.report import training

    run_ = _fake_run()
    fig = training.lag_heatmap(run_)
    (im,) = fig.axes[0].get_images()
    M = np.ma.filled(im.get_array().astype(float), np.nan)
    T = 5
    for s, snap in enumerate(run_["snapshots"]):
        for k, v in enumerate(snap["lag_profile"]):
            lag = T - k  # row lag-1
            if v is None:
                assert np.isnan(M[lag - 1, s])
            else:
                assert M[lag - 1, s] == pytest.approx(v)


def test_loss_and_horizon_figures_plot_the_curves():
    from gradscope.report import training

    runs = [_fake_run("a"), dict(_fake_run("b"), diverged={"step": 3, "message": "x"})]
    fig = training.loss_curves(runs)
    lines = fig.axes[0].get_lines()
    assert list(lines[0].get_ydata()) == runs[0]["loss"]
    assert any("baseline" in (ln.get_label() or "") for ln in lines)
    assert any("diverged at step 3" in (ln.get_label() or "") for ln in lines)
    fig = training.horizon_over_training(runs)
    assert list(fig.axes[0].get_lines()[0].get_ydata()) == [5, 4, 3]
    assert list(fig.axes[0].get_lines()[0].get_xdata()) == [0, 2, 4]
    specs = training.figure_specs({"training": {"runs": runs}})
    assert [s.filename for s in specs] == [
        "training_loss.png",
        "training_horizon.png",
        "training_a_lags.png",
        "training_b_lags.png",
    ]
    assert all(s.png().startswith(b"\x89PNG") for s in specs[:1])


def test_write_training_report_keeps_other_files(tmp_path, tiny_run):
    from gradscope.report.training import write_training_report

    rep = load_report(tiny_run)
    out = tmp_path / "w"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "keep.txt").write_text("x")
    from gradscope.report import ReportExistsError

    with pytest.raises(ReportExistsError):
        write_training_report(out, rep)
    write_training_report(out, rep, force=True)
    assert (out / "checkpoints" / "keep.txt").read_text() == "x"
    assert load_report(out)["training"] == rep["training"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folders left
