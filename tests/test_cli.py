"""The typer CLI through `typer.testing.CliRunner`: every command, its --json output, and the error paths
a new user hits (one line on stderr, exit code 2, no traceback).

Numbers are checked against closed forms: a linear RNN with W_hh = g·I has ∂h_T/∂h_0 = g^T I, so
log10 ‖∂h_T/∂h_0‖₂ = T·log10 g, a decay of log10 g per step and Lyapunov exponents ln g; and against
PyTorch autograd for an imported nn.LSTM. Sizes are tiny (hidden ≤ 8, T ≤ 30) and shapes repeat, so the
JIT cache is shared between tests.
"""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gradscope import cli
from gradscope.experiments import sweep
from tests._cli import assert_error, run

TINY = ["--hidden", "4", "--length", "8", "--batch", "2"]


def validate(report: dict):
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((Path(cli.__file__).parents[1] / "report" / "schema.json").read_text())
    jsonschema.validate(report, schema)


# ---------------------------------------------------------------------------------------- basics


def test_cli_module_does_not_import_jax():
    code = "import sys; from gradscope import cli; assert 'jax' not in sys.modules, 'jax imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(cli.__file__).parents[1])


def test_no_arguments_shows_help():
    res = run()
    assert res.exit_code == 0
    assert "compare" in res.stdout and "analyse" in res.stdout


@pytest.mark.parametrize("command", ["cells", "analyse", "compare", "sweep", "report", "inspect"])
def test_every_command_help_has_an_example(command):
    res = run(command, "--help")
    assert res.exit_code == 0
    assert "Example" in res.stdout


def test_check_and_baseline_are_registered():
    res = run("--help")
    assert "check" in res.stdout and "baseline" in res.stdout


from test_public_api import COMMANDS  # noqa: E402  # the one list of the CLI's commands (a contract)


def test_one_registration_style_in_a_fixed_order():
    """Every command is a module-level function listed in its group module's COMMANDS, registered once by the
    app, in the order of README's command list (which `gradscope --help` shows)."""
    import typer.main

    from gradscope.cli import GROUPS

    shown = [
        line.split()[1]
        for line in run("--help").stdout.splitlines()
        if line.startswith("│ ") and line.split()[1] in COMMANDS
    ]
    assert shown == COMMANDS
    assert list(typer.main.get_command(cli.app).list_commands(None)) == COMMANDS  # pyright: ignore[reportAttributeAccessIssue]  # a click Group
    registered = [c.callback for c in cli.app.registered_commands]
    assert registered == [f for group in GROUPS for f in group.COMMANDS]
    for group in GROUPS:
        for f in group.COMMANDS:
            assert f.__module__ == group.__name__ and f.__qualname__ == f.__name__  # not nested in a function


def test_typo_in_command_suggests():
    line = assert_error(run("compar"))
    assert "Did you mean 'compare'" in line


def test_version():
    res = run("--version")
    assert res.exit_code == 0 and res.stdout.startswith("gradscope ")


# ----------------------------------------------------------------------------------------- cells


def test_cells_table_and_json():
    from gradscope.cells import entries

    res = run("cells")
    assert res.exit_code == 0
    for name in ("rnn-tanh", "lstm", "indrnn"):
        assert name in res.stdout
    res = run("cells", "--json")
    rows = json.loads(res.stdout)  # nothing but JSON on stdout
    assert [r["name"] for r in rows] == [e.name for e in entries()]
    lstm = next(r for r in rows if r["name"] == "lstm")
    assert lstm["family"] == "lstm" and lstm["equation"] and "forget_bias" in lstm["options"]


# --------------------------------------------------------------------------------------- analyse


@pytest.mark.parametrize("gain", [0.5, 1.25])
def test_analyse_linear_identity_matches_closed_form(tmp_path, gain):
    T = 8
    out = tmp_path / "r"
    res = run(
        "analyse",
        "--cell",
        "rnn-linear",
        "--init",
        "identity",
        "--gain",
        gain,
        *TINY,
        "--out",
        out,
        "--json",
        "--quiet",
    )
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report == json.loads((out / "report.json").read_text())
    validate(report)
    (a,) = report["analyses"]
    s = a["summary"]
    assert a["name"] == f"rnn-linear-identity-g{gain:g}"
    assert s["log10_norm_max_lag"] == pytest.approx(T * math.log10(gain), abs=1e-5)
    assert s["decay_per_step"] == pytest.approx(math.log10(gain), abs=1e-6)
    assert s["lyapunov_max"] == pytest.approx(math.log(gain), abs=1e-5)
    assert a["precision"]["dtype"] == "float32"
    assert report["command"] == "analyse" and report["config"]["options"]["gain"] == gain
    assert (out / "report.html").exists() and (out / "summary.md").exists()


def test_analyse_float64(tmp_path):
    res = run(
        "analyse",
        "--cell",
        "rnn-linear",
        "--init",
        "identity",
        "--gain",
        "0.5",
        *TINY,
        "--float64",
        "--out",
        tmp_path / "r",
        "--json",
        "-q",
    )
    assert res.exit_code == 0, res.output
    (a,) = json.loads(res.stdout)["analyses"]
    assert a["precision"]["dtype"] == "float64"
    assert a["summary"]["log10_norm_max_lag"] == pytest.approx(8 * math.log10(0.5), abs=1e-12)


def test_analyse_writes_table_to_stderr_not_stdout(tmp_path):
    res = run("analyse", "--cell", "rnn-linear", "--init", "identity", *TINY, "--out", tmp_path / "r")
    assert res.exit_code == 0, res.output
    assert res.stdout == ""
    assert "rnn-linear" in res.stderr and "wrote" in res.stderr


def test_analyse_refuses_non_empty_out_without_force(tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert_error(run("analyse", "--cell", "rnn-linear", *TINY, "--out", out), "--force")
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]  # untouched
    # --force replaces gradscope's output, never a folder of the user's own files (checked before any work)
    assert_error(run("analyse", "--cell", "rnn-linear", *TINY, "--out", out, "--force"), "not written by gradscope")
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    (out / "keep.txt").unlink()
    assert run("analyse", "--cell", "rnn-linear", *TINY, "--out", out, "-q").exit_code == 0
    res = run("analyse", "--cell", "rnn-tanh", *TINY, "--out", out, "--force", "-q")
    assert res.exit_code == 0, res.output
    assert "rnn-tanh" in (out / "report.json").read_text()


def test_out_may_not_be_the_current_folder_even_with_force(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    for out in (".", str(tmp_path), ".."):
        assert_error(run("analyse", "--cell", "rnn-linear", *TINY, "--out", out, "--force"), "current folder")
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_analyse_imported_torch_lstm_matches_autograd(tmp_path):
    torch = pytest.importorskip("torch")
    st = pytest.importorskip("safetensors.torch")

    from gradscope.experiments import inputs

    torch.manual_seed(0)
    lstm = torch.nn.LSTM(2, 4, batch_first=True).double()
    path = tmp_path / "lstm.safetensors"
    st.save_file({k: v.float().contiguous() for k, v in lstm.state_dict().items()}, str(path))
    T, seed, B = 8, 3, 2
    res = run(
        "analyse",
        "--weights",
        path,
        "--arch",
        "torch-lstm",
        "--length",
        T,
        "--batch",
        B,
        "--seed",
        seed,
        "--out",
        tmp_path / "r",
        "--json",
        "-q",
    )
    assert res.exit_code == 0, res.output
    (a,) = json.loads(res.stdout)["analyses"]
    # the CLI's inputs: U(0,1) from the second half of split(key(seed)) (documented in gradscope.experiments.sweep)
    xs = np.asarray(inputs.make_inputs("uniform", sweep.config_keys(seed)[1], B, T, 2), np.float64)
    lstm = lstm.float().double()  # the float32-rounded weights the file holds

    def log10_norm(x):
        def unrolled(s0):
            h, c = s0[:4].reshape(1, 1, 4), s0[4:].reshape(1, 1, 4)
            _, (h, c) = lstm(torch.from_numpy(x)[None], (h, c))
            return torch.cat([h.reshape(-1), c.reshape(-1)])

        J = torch.autograd.functional.jacobian(unrolled, torch.zeros(8, dtype=torch.float64)).numpy()
        return math.log10(np.linalg.norm(J, 2))

    # the batch curve is log10 of the mean norm over the sequences (gradscope.analysis.summary.batch_mean)
    expected = math.log10(np.mean([10 ** log10_norm(x) for x in xs]))
    assert a["summary"]["log10_norm_max_lag"] == pytest.approx(expected, abs=2e-4)
    assert a["blocks"] == ["h", "c"]


def test_analyse_weights_errors(tmp_path):
    assert_error(
        run("analyse", "--weights", tmp_path / "nope.safetensors", "--out", tmp_path / "r"),
        "nope.safetensors",
        "does not exist",
    )
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00garbage")
    assert_error(run("analyse", "--weights", bad, "--out", tmp_path / "r2"))
    assert not (tmp_path / "r2").exists()


@pytest.mark.parametrize(
    "args,needles",
    [
        (["--cell", "lstmm"], ["did you mean lstm"]),
        (["--cell", "rnn-tanh", "--forget-bias", "1"], ["--forget-bias", "rnn-tanh"]),
        (["--cell", "lstm", "--gain", "2"], ["--gain", "'lstm'"]),
        (["--cell", "lstm:forgetbias=1"], ["forgetbias", "'lstm'"]),
        (["--cell", "lstm:forget_bias=x"], ["forget_bias", "'x'"]),
        (["--cell", "lstm", "--hidden", "-3"], ["--hidden"]),
        (["--cell", "lstm", "--length", "0"], ["--length"]),
        (["--cell", "lstm", "--batch", "-1"], ["--batch"]),
        (["--cell", "lstm", "--input", "uniformm"], ["did you mean uniform"]),
        (["--cell", "lstm", "--input", "adding", "--input-size", "3"], ["--input-size", "adding"]),
        (["--cell", "lstm", "--init", "weird"], ["--init"]),
        (["--cell", "lstm", "--mode", "fast"], ["--mode"]),
        (["--cell", "lstm", "--weights", "x.pt"], ["exactly one"]),
        ([], ["exactly one"]),
    ],
)
def test_analyse_errors(tmp_path, args, needles):
    assert_error(run("analyse", *args, "--out", tmp_path / "r"), *needles)
    assert not (tmp_path / "r").exists()


def test_analyse_missing_out_is_a_usage_error():
    assert_error(run("analyse", "--cell", "lstm"), "--out")


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_results_are_one_line(tmp_path, monkeypatch, bad):
    """An analysis whose summary holds NaN or +inf (states that overflowed) is refused before any report is
    written. (A linear RNN with W = 1e30·I no longer gets there: its Jacobian does not depend on the states,
    and the engine's log-space products keep 8 steps of 1e30 finite, so the analysis is stubbed here.)"""
    real = sweep.analyse_config

    def overflowed(cfg):
        analysis = real(cfg)
        analysis.summary["log10_norm_max_lag"] = bad
        return analysis

    monkeypatch.setattr(sweep, "analyse_config", overflowed)
    res = run("analyse", "--cell", "rnn-linear", *TINY, "--input", "noise", "--out", tmp_path / "r")
    assert_error(res, "non-finite", f"log10_norm_max_lag={bad}", "--float64")
    assert not (tmp_path / "r").exists()


# --------------------------------------------------------------------------------------- compare


def test_compare_tiny(tmp_path):
    out = tmp_path / "cmp"
    res = run(
        "compare",
        "--cells",
        "rnn-linear:recurrent_init=identity:gain=0.5,lstm:forget_bias=1",
        *TINY,
        "--out",
        out,
        "--json",
        "-q",
    )
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    validate(report)
    names = [a["name"] for a in report["analyses"]]
    assert names == ["rnn-linear-identity-g0.5", "lstm-fb1"]
    assert report["analyses"][0]["summary"]["log10_norm_max_lag"] == pytest.approx(8 * math.log10(0.5), abs=1e-5)
    assert report["command"] == "compare"
    assert (out / "report.html").exists()


def test_compare_seeds_name_each_run(tmp_path):
    res = run("compare", "--cells", "rnn-linear", *TINY, "--seeds", "0,1", "--out", tmp_path / "c", "--json", "-q")
    assert res.exit_code == 0, res.output
    assert [a["name"] for a in json.loads(res.stdout)["analyses"]] == ["rnn-linear/s=0", "rnn-linear/s=1"]


def test_compare_default_cells_parse():
    from gradscope.cli._options import auto_options, parse_cell_list
    from gradscope.cli.compare import DEFAULT_COMPARE_CELLS

    specs = parse_cell_list(",".join(DEFAULT_COMPARE_CELLS))
    assert [s.label for s in specs] == ["rnn-tanh", "lstm-fb0", "lstm-fb1", "gru", "indrnn", "irnn", "ln-lstm"]
    assert auto_options("indrnn", {}, 200) == {"max_length": 200}


@pytest.mark.parametrize(
    "args,needles",
    [
        (["--cells", "rnn-tanh,lstmm"], ["did you mean lstm"]),
        (["--cells", "rnn-tanh,,gru"], ["--cells"]),
        (["--cells", "lstm:forget_bias"], ["key=value"]),
        (["--cells", "rnn-tanh:forget_bias=1"], ["forget_bias", "rnn-tanh"]),
        (["--seeds", "0,x"], ["--seeds", "'x'"]),
        (["--seeds", "-1"], ["--seeds"]),
        (["--hidden", "0"], ["--hidden"]),
    ],
)
def test_compare_errors(tmp_path, args, needles):
    assert_error(run("compare", *args, "--out", tmp_path / "c"), *needles)


def test_compare_refuses_non_empty_out(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "x").write_text("")
    assert_error(run("compare", "--out", tmp_path / "c"), "not empty", "--force")


# ----------------------------------------------------------------------------------------- sweep


SWEEP = [
    "--cells",
    "rnn-linear,irnn",
    "--gains",
    "0.5,2",
    "--lengths",
    "6,8",
    "--seeds",
    "0",
    "--init",
    "identity",
    "--hidden",
    "4",
    "--batch",
    "2",
]
# one length (the shape the other tests compile), two seeds: 6 configurations
SWEEP_RESUME = [
    "--cells",
    "rnn-linear,irnn",
    "--gains",
    "0.5,2",
    "--lengths",
    "8",
    "--seeds",
    "0,1",
    "--init",
    "identity",
    "--hidden",
    "4",
    "--batch",
    "2",
]


@pytest.mark.slow
def test_sweep_grid_names_numbers_and_heatmaps(tmp_path):
    out = tmp_path / "sw"
    res = run("sweep", *SWEEP, "--out", out, "--json", "-q")
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    validate(report)
    by = {a["name"]: a for a in report["analyses"]}
    assert list(by) == [
        "rnn-linear/g=0.5/T=6/s=0",
        "rnn-linear/g=0.5/T=8/s=0",
        "rnn-linear/g=2/T=6/s=0",
        "rnn-linear/g=2/T=8/s=0",
        "irnn/T=6/s=0",
        "irnn/T=8/s=0",
    ]
    for g in (0.5, 2):
        for T in (6, 8):
            s = by[f"rnn-linear/g={g:g}/T={T}/s=0"]["summary"]
            assert s["log10_norm_max_lag"] == pytest.approx(T * math.log10(g), abs=1e-5)
            assert s["lyapunov_max"] == pytest.approx(math.log(g), abs=1e-5)
    assert report["config"]["gain_not_applicable"] == ["irnn"]
    assert sorted(p.name for p in (out / "figures").iterdir() if p.name.startswith("sweep_")) == sorted(
        sweep.SWEEP_FIGURE_FILES
    )
    # the partial-results file is removed once the report holds everything
    assert not (tmp_path / ".sw.partial.jsonl").exists()


def test_sweep_figures_place_values_by_gain_and_cell(tmp_path):
    report = {
        "config": {},
        "analyses": [
            {"name": "rnn-tanh/g=0.5/T=10/s=0", "length": 10, "summary": {"lyapunov_max": -1.0, "horizon": 3}},
            {"name": "rnn-tanh/g=2/T=10/s=0", "length": 10, "summary": {"lyapunov_max": 0.5, "horizon": 10}},
            {"name": "lstm/T=10/s=0", "length": 10, "summary": {"lyapunov_max": -0.2, "horizon": 7}},
        ],
    }
    lyap, horizon = sweep.sweep_figures(report)
    M = np.ma.filled(lyap.axes[0].images[0].get_array(), np.nan)
    np.testing.assert_array_equal(M, [[-1.0, 0.5, np.nan], [np.nan, np.nan, -0.2]])
    H = np.ma.filled(horizon.axes[0].images[0].get_array(), np.nan)
    np.testing.assert_array_equal(H, [[3], [10], [7]])


@pytest.mark.slow
def test_sweep_resumes_after_interruption_with_identical_table(tmp_path, monkeypatch):
    full = run("sweep", *SWEEP_RESUME, "--out", tmp_path / "full", "--json", "-q")
    assert full.exit_code == 0, full.output
    partial = tmp_path / "p.jsonl"
    from gradscope.experiments.sweep import run as sweep_run  # where run_sweep looks the function up

    real, calls = sweep_run.analyse_configs, []

    def interrupted(cfgs, **kw):
        if len(calls) == 1:
            raise KeyboardInterrupt  # Ctrl-C after the first stack of configurations
        calls.append([c.name for c in cfgs])
        return real(cfgs, **kw)

    monkeypatch.setattr(sweep_run, "analyse_configs", interrupted)
    res = run("sweep", *SWEEP_RESUME, "--vmap", "2", "--out", tmp_path / "resumed", "--partial", partial, "-q")
    assert res.exit_code != 0 and not (tmp_path / "resumed").exists()
    assert len(partial.read_text().splitlines()) == 1 + 2  # header + the two configurations of one stack
    with partial.open("a") as fh:
        fh.write('{"name": "rnn-linear/g=2/T=8/s=1", "ana')  # a line cut off by the interruption
    monkeypatch.setattr(sweep_run, "analyse_configs", real)
    res = run("sweep", *SWEEP_RESUME, "--out", tmp_path / "resumed", "--partial", partial, "--json")
    assert res.exit_code == 0, res.output
    assert "resumed 2 of 6" in res.stderr
    a, b = json.loads(full.stdout)["analyses"], json.loads(res.stdout)["analyses"]
    assert a == b
    assert not partial.exists()


def test_sweep_partial_from_other_settings_is_refused(tmp_path):
    partial = tmp_path / "p.jsonl"
    cfgs = sweep.grid(["rnn-linear"], [0.5], [6], [0], hidden=4, batch=2)
    settings = {"configs": [c.to_dict() for c in cfgs]}
    partial.write_text(json.dumps({"schema": sweep.PARTIAL_SCHEMA, "settings": settings}) + "\n")
    assert_error(run("sweep", *SWEEP, "--out", tmp_path / "sw", "--partial", partial), "other settings")


@pytest.mark.parametrize(
    "args,needles",
    [
        (["--gains", "0.5,-1"], ["--gains"]),
        (["--gains", "a"], ["--gains"]),
        (["--lengths", "0"], ["--lengths"]),
        (["--cells", "rnn-tanh:gain=2"], ["gain"]),
        (["--cells", "grue"], ["did you mean gru"]),
        (["--coordinator", "node0:1234"], ["--coordinator", "add --distributed"]),
        (["--distributed", "--coordinator", "node0:1234"], ["without --num-processes, --process-id"]),
        (["--distributed", "--coordinator", "node0", "--num-processes", "2", "--process-id", "0"], ["HOST:PORT"]),
        (
            ["--distributed", "--coordinator", "node0:1234", "--num-processes", "2", "--process-id", "2"],
            ["--process-id=2", "0 … 1"],
        ),
        (["--distributed"], ["--distributed: JAX could not start", "--coordinator"]),  # no cluster to detect here
    ],
)
def test_sweep_errors(tmp_path, args, needles):
    assert_error(run("sweep", *args, "--hidden", "4", "--out", tmp_path / "sw"), *needles)


# ---------------------------------------------------------------------------------------- report


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("rep") / "r"
    res = run("analyse", "--cell", "rnn-linear", "--init", "identity", *TINY, "--out", out, "-q")
    assert res.exit_code == 0, res.output
    return out


def test_report_rerenders_without_recomputing(report_dir):
    before = (report_dir / "report.json").read_bytes()
    (report_dir / "report.html").unlink()
    res = run("report", report_dir, "-q")
    assert res.exit_code == 0, res.output
    assert (report_dir / "report.html").exists()
    assert (report_dir / "report.json").read_bytes() == before


def test_report_errors(tmp_path):
    assert_error(run("report", tmp_path / "missing"), "does not exist")
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "report.json").write_text('{"schema": "gradscope.report/1", "analyses": [')
    assert_error(run("report", tmp_path / "corrupt"), "not valid JSON")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "report.json").write_text('{"hello": 1}')
    assert_error(run("report", tmp_path / "other"), "not a gradscope report")


# --------------------------------------------------------------------------------------- inspect


def test_inspect_table_json_and_errors(tmp_path):
    torch = pytest.importorskip("torch")
    st = pytest.importorskip("safetensors.torch")
    gru = torch.nn.GRU(3, 5, num_layers=2)
    path = tmp_path / "gru.safetensors"
    st.save_file({k: v.contiguous() for k, v in gru.state_dict().items()}, str(path))
    res = run("inspect", path)
    assert res.exit_code == 0, res.output
    assert "weight_hh_l1" in res.stdout
    d = json.loads(run("inspect", path, "--json").stdout)
    assert d["framework"] == "torch" and d["mapping"]["num_layers"] == 2 and d["mapping"]["hidden_size"] == 5
    shapes = {t["name"]: t["shape"] for t in d["tensors"]}
    assert shapes["weight_ih_l0"] == [15, 3]
    assert_error(run("inspect", tmp_path / "missing.pt"), "missing.pt", "does not exist")


# ------------------------------------------------------------------------- compare: the modern cells

MODERN = ["lru", "s4d", "mamba", "mamba2", "mingru", "minlstm", "rglru", "mlstm", "slstm"]


@pytest.mark.slow
def test_compare_preset_modern_analyses_every_modern_cell(tmp_path):
    """All nine recent recurrences side by side, with finite numbers; the LRU's against its closed form:
    ∂S_T/∂S_0 = diag(λ^T) (complex), so log10 ‖∂S_T/∂S_0‖₂ = T·log10 max_n |λ_n| with |λ| = exp(−exp(ν_log))."""
    res = run("compare", "--preset", "modern", "--out", tmp_path / "m", "--json", "-q")
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    validate(report)
    assert [a["name"] for a in report["analyses"]] == MODERN
    cfg = report["config"]
    assert cfg["preset"] == "modern" and (cfg["hidden"], cfg["length"], cfg["input_size"]) == (8, 64, 4)
    for a in report["analyses"]:
        s = a["summary"]
        assert s["finite"] is True, a["name"]
        for k in ("log10_norm_max_lag", "lyapunov_max", "decay_per_step"):
            assert isinstance(s[k], float) and math.isfinite(s[k]), (a["name"], k, s[k])
    from gradscope.cells import make
    from gradscope.cells.lru import LRU

    lru = make("lru", 4, 8, key=sweep.config_keys(0)[0])  # the weights compare draws for seed 0
    assert isinstance(lru, LRU)
    lam = np.exp(-np.exp(np.asarray(lru.nu_log, np.float64)))
    assert report["analyses"][0]["summary"]["log10_norm_max_lag"] == pytest.approx(64 * np.log10(lam.max()), abs=1e-3)


def test_compare_unknown_preset_is_one_line(tmp_path):
    assert_error(run("compare", "--preset", "modrn", "--out", tmp_path / "c"), "--preset='modrn'", "modern")
    assert not (tmp_path / "c").exists()


def test_compare_preset_and_cells_exclude_each_other(tmp_path):
    assert_error(run("compare", "--preset", "modern", "--cells", "lru", "--out", tmp_path / "c"), "--cells", "--preset")


@pytest.mark.parametrize(
    "cells,needles",
    [
        ("mamba2:heads=3", ["mamba2-heads=3", "--input-size 2", "divisor of input_size=2", "channels"]),
        ("slstm:num_heads=5", ["slstm-num_heads=5", "--hidden 8", "must divide hidden_size=8"]),
        ("rglru:projection=false", ["rglru-projection=False", "must equal input_size=2"]),  # text false -> bool
    ],
)
def test_compare_modern_cells_sizes_they_cannot_take(tmp_path, cells, needles):
    """Checked before any analysis runs: one line naming the cell, the flags and what the sizes mean."""
    res = run("compare", "--cells", f"lru,{cells}", "--hidden", "8", "--out", tmp_path / "c")
    assert_error(res, *needles)
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--seed", "18446744073709551616"], "--seed=18446744073709551616 is not allowed"),
        (["--length", "99999999999999999999"], "--length=99999999999999999999 is not allowed"),
        (["--layers", "1000000"], "--layers=1000000 is not allowed"),
        (["--hidden", "1000000000"], "needs"),  # memory planned from shapes only (jax.eval_shape)
        (["--length", "1000000000"], "at most T = "),
        (["--hidden", "8192", "--length", "2000", "--batch", "1000"], "needs"),
    ],
)
def test_impossible_sizes_fail_before_any_work(tmp_path, args, needle):
    """Each of these used to hang, abort, print an internal error or run for a minute before failing."""
    assert_error(run("analyse", "--cell", "lstm", *args, "--out", tmp_path / "r"), needle)
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_compare_prints_the_findings(tmp_path):
    """Forget bias 0 keeps σ(f) near 0.5 (Gers et al. 2000): the forget-gate rule fires in compare's output too."""
    res = run(
        "compare",
        "--cells",
        "lstm:forget_bias=0,rnn-tanh",
        "--hidden",
        "4",
        "--length",
        "20",
        "--batch",
        "2",
        "--out",
        tmp_path / "c",
    )
    assert res.exit_code == 0, res.output
    assert "findings" in res.stderr and "forget-gate" in res.stderr
