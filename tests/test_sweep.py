"""Stacked (vmapped, sharded) sweeps: equal to one-at-a-time analyses and to closed forms, independent of
the stack size, resumable after an interruption, shardable into parts that merge into the same table,
and memory-planned."""

from __future__ import annotations

import json
import math

import pytest
from _records import assert_records_close

from gradscope.analysis import batch
from gradscope.engine._memory import ResourceError
from gradscope.experiments import merge, sweep

# one shape group (rnn-linear, H=4, T=8, B=2): 8 gains × 4 seeds = 32 configurations
GAINS = [0.5, 0.7, 0.9, 1.0, 1.1, 1.3, 1.6, 2.0]
COMMON = dict(init="identity", hidden=4, batch=2, input_size=2)


def _grid():
    return sweep.grid(["rnn-linear"], GAINS, [8], [0, 1, 2, 3], **COMMON)


@pytest.fixture(scope="module")
def full():
    return sweep.run_sweep(_grid(), max_vmap=8)


def test_stacked_sweep_matches_closed_form_and_serial_analyses(full):
    # identity-initialised linear RNN: ∂h_T/∂h_k = (gW)^(T−k) = g^(T−k) I exactly, λ_max = log g
    cfgs = _grid()
    for c, rec in zip(cfgs, full):
        assert rec["name"] == c.name
        s = rec["summary"]
        assert s["log10_norm_max_lag"] == pytest.approx(8 * math.log10(c.gain), abs=1e-5)
        assert s["lyapunov_max"] == pytest.approx(math.log(c.gain), abs=1e-5)
    # the stacked program computes what `analyse` computes one model at a time: bitwise on CPU but for the
    # Lyapunov numbers (and the texts that quote them), which `analyse` takes from LAPACK on the host
    # (gradscope.engine._benettin) and the stacked program from its JAX scan: the same Householder QR,
    # rounded differently
    for i in (0, 13, 31):
        serial = sweep._record(sweep.analyse_config(cfgs[i]))
        assert_records_close(serial, full[i], rel=1e-6, abs=1e-6, spectrum_atol=0)
        assert _without_lyapunov(serial) == _without_lyapunov(full[i])


def _without_lyapunov(rec):
    """The record without its Lyapunov numbers and the texts that may quote them."""
    rec = json.loads(json.dumps(rec))
    rec.pop("lyapunov"), rec.pop("findings"), rec["summary"].pop("verdict_reason")
    rec["summary"] = {k: v for k, v in rec["summary"].items() if not k.startswith("lyapunov")}
    return rec


@pytest.mark.slow
def test_stacked_sweep_of_gated_cells_equals_serial():
    cfgs = sweep.grid(["lstm"], None, [6], [0, 1], hidden=3, batch=2)
    recs = sweep.run_sweep(cfgs)
    serial = [sweep._record(sweep.analyse_config(c)) for c in cfgs]
    # the sweep's stacked program recomputes each step Jacobian inside its scans; `analyse` materialises them
    # once (gradscope.engine.trajectory_steps) and may round the last float32 bit differently for an LSTM,
    # so the records agree to float32 rounding (both routes are checked against autodiff elsewhere)

    assert_records_close(recs, serial, rel=1e-4, abs=1e-5, spectrum_atol=1e-5)
    assert "paths" in recs[0] and recs[0]["model"]["cell"] == "lstm"


def test_results_do_not_depend_on_stack_size(full):
    assert sweep.run_sweep(_grid(), max_vmap=5) == full  # stacks of 5 (padded), not 8


def test_kill_and_resume_gives_identical_table(full, tmp_path):
    part = tmp_path / "p.jsonl"
    seen = []

    def killer(cfg, resumed):
        seen.append(cfg.name)
        if len(seen) == 12:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the second stack

    with pytest.raises(KeyboardInterrupt):
        sweep.run_sweep(_grid(), partial=part, on_done=killer, max_vmap=8)
    lines = part.read_text().splitlines()
    assert len(lines) == 1 + 16  # header + two finished stacks of 8
    with part.open("a") as fh:
        fh.write('{"name": "rnn-linear/g=1.3/T=8/s=0", "ana')  # a line cut off by the kill
    flags = []
    again = sweep.run_sweep(_grid(), partial=part, on_done=lambda c, r: flags.append(r), max_vmap=8)
    assert again == full
    assert flags.count(True) == 16 and flags.count(False) == 16


def test_shards_merge_into_the_unsharded_table(full, tmp_path):
    cfgs = _grid()
    settings = {"grid": [c.to_dict() for c in cfgs], "note": "x"}
    n = 3
    for i in range(n):
        part = merge.shard_configs(cfgs, i, n)
        assert [c.name for c in part] == [c.name for c in cfgs][merge.shard_slice(32, i, n)]
        merge.write_part(tmp_path, settings, i, n, sweep.run_sweep(part, max_vmap=8))
    got_settings, analyses = merge.merge_parts([tmp_path])
    assert got_settings == settings and analyses == full
    # slices: contiguous, balanced, covering everything once
    sizes = [len(merge.shard_configs(cfgs, i, 5)) for i in range(5)]
    assert sum(sizes) == 32 and max(sizes) - min(sizes) <= 1


def test_merge_refuses_missing_duplicate_and_foreign_parts(tmp_path):
    s1, s2 = {"grid": [{"name": "a"}, {"name": "b"}]}, {"grid": [{"name": "a"}, {"name": "c"}]}
    rec = lambda n: {"name": n}  # noqa: E731
    merge.write_part(tmp_path / "one", s1, 0, 2, [rec("a")])
    with pytest.raises(merge.ConfigError, match="1/2 are missing"):
        merge.merge_parts([tmp_path / "one"])
    merge.write_part(tmp_path / "two", s2, 1, 2, [rec("c")])
    with pytest.raises(merge.ConfigError, match="different sweeps"):
        merge.merge_parts([tmp_path / "one" / "part-0-of-2.json", tmp_path / "two" / "part-1-of-2.json"])
    merge.write_part(tmp_path / "one", s1, 1, 2, [])
    with pytest.raises(merge.ConfigError, match="incomplete"):
        merge.merge_parts([tmp_path / "one"])
    with pytest.raises(merge.ConfigError, match="given twice"):
        merge.merge_parts([tmp_path / "one", tmp_path / "one" / "part-0-of-2.json"])
    for bad in ("4/4", "1/0", "x", "-1/2"):
        with pytest.raises(merge.ConfigError, match="--shard"):
            merge.parse_shard(bad)
    assert merge.parse_shard("3/4") == (3, 4)


def test_memory_plan_sizes_stacks_and_refuses_what_cannot_fit():
    c = _grid()[0]
    model = sweep.build_model(c, sweep.config_keys(0)[0])
    per = batch.config_bytes(model, 2, 8, 2)
    assert per > 2 * 4 * 2 * 9 * 4  # at least the states of both sequences
    assert batch.plan_stack(model, 2, 8, 2, 32, budget=3 * per + 1) == 3
    assert batch.plan_stack(model, 2, 8, 2, 32, budget=3 * per + 1, n_devices=2) == 6  # budget is per device
    assert batch.plan_stack(model, 2, 8, 2, 32, budget=10**12, max_vmap=8) == 8
    assert batch.plan_stack(model, 2, 8, 2, 5, budget=10**12, n_devices=4) == 8  # 5 → 2 per device
    with pytest.raises(ResourceError, match=r"one configuration.*needs .* GB, .* GB available; at most T = \d+ fits"):
        batch.plan_stack(model, 2, 8, 2, 32, budget=per // 2)
    size, devs = 7, 2
    stacks, per_stack = sweep.chunks(list(range(20)), size, devs)
    assert per_stack % devs == 0 and per_stack <= size + devs and sum(map(len, stacks)) == 20


def test_stack_refuses_models_of_different_shapes():
    a = sweep.build_model(sweep.Config(name="a", cell="rnn-tanh", hidden=3), sweep.config_keys(0)[0])
    b = sweep.build_model(sweep.Config(name="b", cell="rnn-tanh", hidden=4), sweep.config_keys(0)[0])
    with pytest.raises(batch.ConfigError, match="differs in structure or shapes"):
        batch.stack_models([a, b])


def test_sweep_report_html_holds_the_heatmaps(full):
    from gradscope.report import build_report, figure_specs

    report = build_report(full[:4], command="sweep", config={"grid": [c.to_dict() for c in _grid()[:4]]})
    files = [s.filename for s in figure_specs(report)]
    assert files[-2:] == list(sweep.SWEEP_FIGURE_FILES)
    assert figure_specs(report)[-1].png(dpi=30)[:4] == b"\x89PNG"
    analyse_report = build_report(full[:1], command="analyse", config={})
    assert not set(sweep.SWEEP_FIGURE_FILES) & {s.filename for s in figure_specs(analyse_report)}


@pytest.mark.slow
def test_cli_shards_and_merge_equal_the_unsharded_report(tmp_path):
    from typer.testing import CliRunner

    from gradscope.cli import app

    args = [
        "sweep",
        "--cells",
        "rnn-linear",
        "--gains",
        "0.5,2",
        "--lengths",
        "8",
        "--seeds",
        "0",
        "--init",
        "identity",
        "--hidden",
        "4",
        "--batch",
        "2",
        "-q",
    ]
    r = CliRunner()
    full = r.invoke(app, args + ["--out", str(tmp_path / "full"), "--json"])
    assert full.exit_code == 0, full.output
    for i in range(2):
        res = r.invoke(app, args + ["--shard", f"{i}/2", "--out", str(tmp_path / "parts")])
        assert res.exit_code == 0, res.output
    again = r.invoke(app, args + ["--shard", "1/2", "--out", str(tmp_path / "parts")])
    assert again.exit_code == 2 and "--force" in again.output
    merged = r.invoke(app, ["merge", str(tmp_path / "parts"), "--out", str(tmp_path / "merged"), "--json", "-q"])
    assert merged.exit_code == 0, merged.output
    a, b = json.loads(full.stdout), json.loads(merged.stdout)
    for k in ("created", "environment"):
        a.pop(k), b.pop(k)
    assert a == b
    assert sorted(p.name for p in (tmp_path / "merged" / "figures").iterdir() if p.name.startswith("sweep_")) == sorted(
        sweep.SWEEP_FIGURE_FILES
    )
    html = (tmp_path / "merged" / "report.html").read_text()
    assert "gradient horizon by length and cell" in html
    bad = r.invoke(app, args + ["--shard", "2/2", "--out", str(tmp_path / "p2")])
    assert bad.exit_code == 2 and "--shard" in bad.output
