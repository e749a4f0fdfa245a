"""The watcher's TensorBoard and MLflow backends, read back with their own readers (tbparse, MlflowClient).

Truth: the values read back equal the JSON-lines log, which equals `gradscope.analyse` of
`gradscope.io.from_torch` on a copy of the weights saved at that step (computed after training), and
log10 ‖∂S_T/∂S_0‖₂ equals the norm of the Jacobian of the final LSTM state with respect to the initial one
computed by PyTorch's own autograd in float64 (batch-aggregated as log10 of the mean norm).
"""

from __future__ import annotations

import io
import json
import pathlib

import jax
import numpy as np
import pytest

import gradscope as gs
from gradscope.watch import Watcher
from gradscope.watch.metrics import scalars

LIGHT = {"spectra": False, "lyapunov": False, "paths": False, "gates": False}


def _records(logdir):
    return [json.loads(line) for line in (logdir / "gradscope.jsonl").read_text().splitlines()]


def _net(torch):
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = torch.nn.LSTM(2, 6, num_layers=2, batch_first=True)
            self.head = torch.nn.Linear(6, 1)

        def forward(self, x):
            return self.head(self.rnn(x)[0][:, -1])

    return Net()


def _autograd_log10_norm(torch, lstm_state, xs):
    """log10 of the batch mean of ‖∂(h_T, c_T)/∂(h_0, c_0)‖₂, by torch.autograd in float64."""
    lstm = torch.nn.LSTM(2, 6, num_layers=2, batch_first=True).double()
    lstm.load_state_dict(lstm_state)
    norms = []
    for x in torch.as_tensor(xs, dtype=torch.float64):

        def final(s0):
            h0, c0 = s0[:12].reshape(2, 1, 6), s0[12:].reshape(2, 1, 6)
            _, (h, c) = lstm(x[None], (h0, c0))
            return torch.cat([h.reshape(-1), c.reshape(-1)])

        J = torch.autograd.functional.jacobian(final, torch.zeros(24, dtype=torch.float64))
        norms.append(float(torch.linalg.matrix_norm(J, ord=2)))
    return float(np.log10(np.mean(norms)))


@pytest.mark.slow
def test_pytorch_lstm_tensorboard_read_back(tmp_path):
    torch = pytest.importorskip("torch")
    tbparse = pytest.importorskip("tbparse")
    torch.manual_seed(0)
    net = _net(torch)
    opt = torch.optim.Adam(net.parameters(), lr=3e-2)
    xs = torch.randn(3, 12, 2)
    saved = {}
    with Watcher(xs, every=10, logdir=tmp_path, backends=("tensorboard", "jsonl")) as w:
        for step in range(30):
            x = torch.randn(8, 12, 2)
            loss = (net(x) - x.sum(dim=(1, 2))[:, None]).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            if w.watched(step):
                saved[step] = {k: v.detach().clone() for k, v in net.state_dict().items()}
            w.step(net, step)
    recs = _records(tmp_path)
    assert [r["step"] for r in recs] == [0, 10, 20]

    reader = tbparse.SummaryReader(str(tmp_path), pivot=False)
    df = reader.scalars
    for r in recs:
        step = r["step"]
        # the jsonl record equals an independent analysis of the weights saved at that step
        copy = _net(torch)
        copy.load_state_dict(saved[step])
        ref = gs.analyse(gs.io.from_torch(copy), xs.numpy(), **LIGHT)
        s = r["analysis"]["summary"]
        assert s["horizon"] == ref.summary["horizon"]
        np.testing.assert_allclose(s["log10_norm_max_lag"], ref.summary["log10_norm_max_lag"], rtol=1e-12)
        np.testing.assert_allclose(s["decay_per_step"], ref.summary["decay_per_step"], rtol=1e-12)
        # ... and PyTorch's own Jacobian (float32 weights analysed in float32: ~1e-5 relative)
        rnn_state = {k[4:]: v.double() for k, v in saved[step].items() if k.startswith("rnn.")}
        np.testing.assert_allclose(s["log10_norm_max_lag"], _autograd_log10_norm(torch, rnn_state, xs), atol=2e-4)
        # TensorBoard holds exactly the jsonl scalars at that step (stored as float32)
        want = scalars(r)
        got = df[df.step == step].set_index("tag")["value"].to_dict()
        assert set(got) == set(want)
        assert {"gradscope/horizon", "gradscope/layer0/horizon", "gradscope/layer1/log10_norm_max_lag"} <= set(got)
        for tag, v in want.items():
            np.testing.assert_allclose(got[tag], v, rtol=1e-6, err_msg=tag)
    # the lag profile as an image and a histogram (tensorboard's own event reader: tbparse needs TensorFlow there)
    from matplotlib.image import imread
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(tmp_path), size_guidance={"images": 0, "histograms": 0})
    ea.Reload()
    images, hists = ea.Images("gradscope/lag_profile"), ea.Histograms("gradscope/lag_profile")
    assert [e.step for e in images] == [e.step for e in hists] == [0, 10, 20]
    img = imread(io.BytesIO(images[-1].encoded_image_string), format="png")
    assert img.ndim == 3 and img.std() > 0  # a drawn figure, not a blank
    for r, h in zip(recs, hists, strict=True):
        curve = np.asarray(r["analysis"]["lag_profile"]["log10_spectral"], np.float64)
        hv = h.histogram_value
        assert hv.num == curve.size
        np.testing.assert_allclose([hv.min, hv.max], [curve.min(), curve.max()], rtol=1e-6)


@pytest.mark.slow
def test_mlflow_sqlite_read_back(tmp_path):
    """MLflow with a sqlite tracking URI, read back with MlflowClient (`_mlflow_read_back`), in a fresh
    interpreter: once in two slow-tier runs (2026-12-06) an XLA compilation segfaulted in a worker that had
    imported mlflow's stack (pandas, pyarrow, scikit-learn) next to many earlier tests; not reproduced alone.
    A run killed by SIGSEGV is retried once and reported; any assertion failure fails at once."""
    import subprocess
    import sys

    pytest.importorskip("mlflow")
    code = (
        "import sys, pathlib, jax; jax.config.update('jax_enable_x64', True); sys.path.insert(0, sys.argv[2]); "
        "from tests.test_watch_backends import _mlflow_read_back; _mlflow_read_back(pathlib.Path(sys.argv[1]))"
    )
    root = str(pathlib.Path(__file__).resolve().parents[1])
    for attempt in range(2):
        d = tmp_path / f"try{attempt}"
        d.mkdir()
        res = subprocess.run([sys.executable, "-c", code, str(d), root], capture_output=True, text=True, timeout=600)
        if res.returncode != -11:  # not a segfault: pass or fail on the test's own assertions
            break
        print(f"attempt {attempt}: the interpreter segfaulted (SIGSEGV); retrying once", file=sys.stderr)
    assert res.returncode == 0, res.stderr[-3000:]


def _mlflow_read_back(tmp_path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'runs.db'}"
    xs = np.random.default_rng(0).normal(size=(2, 10, 2))
    cell = gs.cells.make("gru", 2, 4, key=jax.random.key(0), dtype=jax.numpy.float64)
    models = {s: jax.tree.map(lambda w, s=s: w * (1 + 0.2 * s), cell) for s in range(0, 9, 3)}
    logdir = tmp_path / "log"
    with Watcher(xs, every=3, logdir=logdir, backends=("mlflow",), tracking_uri=uri, run_name="gru") as w:
        for s in range(9):
            w.step(models.get(s, cell), s)
        run_id = w.backends[-1].run_id
    recs = _records(logdir)
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "gru"
    for tag in ("gradscope/horizon", "gradscope/log10_norm_max_lag", "gradscope/decay_per_step"):
        hist = sorted(client.get_metric_history(run_id, tag), key=lambda m: m.step)
        assert [m.step for m in hist] == [0, 3, 6]
        np.testing.assert_allclose([m.value for m in hist], [scalars(r)[tag] for r in recs], rtol=1e-12)
    files = {f.path for f in client.list_artifacts(run_id, "gradscope-report")}
    assert {"gradscope-report/report.json", "gradscope-report/report.html"} <= files
    # the artifact is the report of the last analysis
    local = client.download_artifacts(run_id, "gradscope-report/report.json", str(tmp_path))
    report = json.loads(open(local).read())
    assert report["analyses"][0]["summary"]["horizon"] == recs[-1]["analysis"]["summary"]["horizon"]

    # a with-block that raises ends the watcher's run as FAILED; the jsonl keeps the finished lines
    with pytest.raises(RuntimeError), Watcher(xs, every=1, logdir=logdir, backends=("mlflow",), tracking_uri=uri) as w:
        w.step(cell, 0)
        failed_id = w.backends[-1].run_id
        raise RuntimeError("training crashed")
    assert client.get_run(failed_id).info.status == "FAILED"
    assert len(_records(logdir)) == 4
