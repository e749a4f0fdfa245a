"""gradscope.checks and the `check` / `baseline` commands, on synthetic report.json files.

Reports are built here from the report contract (schema gradscope.report/1) with numbers from a
clear construction: a baseline is recorded from report R, then R is modified in one metric by a
known amount, and the expected verdict follows from the tolerance arithmetic (np.isclose semantics,
checked against numpy itself).
"""

import copy
import dataclasses
import json
import math
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from gradscope import _atomic, checks
from gradscope._errors import UnknownNameError

ROOT = Path(__file__).resolve().parents[1]


def summary(horizon=40, log10=-8.0, lyap=-0.2, verdict="vanishing", decay=None):
    return {
        "log10_norm_lag1": 0.0,
        "log10_norm_max_lag": log10,
        "decay_per_step": log10 / 100 if decay is None else decay,
        "horizon": horizon,
        "horizon_threshold": -3.0,
        "lyapunov_max": lyap,
        "verdict": verdict,
        "finite": True,
    }


def make_report(
    *summaries, names=None, dtype="float32", version="0.1.0", platform="Linux-6.1.0-x86_64-with-glibc2.35", lag_points=0
):
    summaries = summaries or (summary(),)
    names = names or [f"net{i}" for i in range(len(summaries))]
    analyses = []
    for name, s in zip(names, summaries):
        a = {
            "schema": "gradscope.analysis/1",
            "name": name,
            "model": {"cell": "lstm"},
            "blocks": ["h", "c"],
            "block_sizes": [16, 16],
            "length": 100,
            "batch": 4,
            "precision": {"dtype": dtype, "matmul": "highest"},
            "method": "exact",
            "summary": s,
        }
        if lag_points:
            a["lag_profile"] = {
                "k": list(range(lag_points)),
                "log10_spectral": [-0.08 * (lag_points - k) for k in range(lag_points)],
            }
        analyses.append(a)
    return {
        "schema": "gradscope.report/1",
        "gradscope_version": version,
        "created": "2025-01-01T00:00:00+00:00",
        "command": "analyse",
        "config": {"cell": "lstm", "hidden": 16},
        "environment": {
            "gradscope": version,
            "jax": "0.10.2",
            "backend": "cpu",
            "device": "cpu",
            "x64": False,
            "dtype": dtype,
            "matmul_precision": "highest",
            "platform": platform,
            "python": "3.11.7",
        },
        "analyses": analyses,
    }


def write(path, data):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def row(result, name):
    (r,) = [r for r in result.rows if r.name == name]
    return r


@pytest.fixture
def app():
    from gradscope.cli import app  # the real app: its GuardedGroup turns errors into one line + exit code

    return app


def invoke(app, *args):
    return CliRunner().invoke(app, [str(a) for a in args])


def one_line_error(res):
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in res.output
    return lines[0]


# ------------------------------------------------------------------------------------------ compare


def test_identical_report_passes_every_metric():
    report = make_report(summary(), summary(horizon=90, log10=-2.0, verdict="stable"), names=["lstm", "gru"])
    result = checks.compare(report, checks.make_baseline(report))
    assert result.passed and result.exit_code == 0 and result.status == "pass"
    assert {r.name for r in result.rows} == {f"{n}/{k}" for n in ("lstm", "gru") for k in summary()}
    assert all(r.delta in (None, 0.0) for r in result.rows)


def test_horizon_halved_fails_and_small_change_passes():
    base = checks.make_baseline(make_report(summary(horizon=40)))
    halved = checks.compare(make_report(summary(horizon=20)), base)
    r = row(halved, "net0/horizon")
    assert not halved.passed and halved.exit_code == 1 and not r.passed and r.status == "fail"
    assert r.delta == -20 and r.tolerance == pytest.approx(1 + 0.1 * 40)
    assert "40" in r.message and "20" in r.message
    # a 5 % shorter horizon is within 10 % + 1 step; a longer one is an improvement (decrease_is_bad)
    assert checks.compare(make_report(summary(horizon=38)), base).passed
    assert checks.compare(make_report(summary(horizon=80)), base).passed


def test_log10_metrics_use_absolute_plus_relative_tolerance_both_ways():
    base = checks.make_baseline(make_report(summary(log10=-8.0)))
    allowed = 0.5 + 0.1 * 8.0
    for shift, ok in ((0.9 * allowed, True), (-0.9 * allowed, True), (1.1 * allowed, False), (-1.1 * allowed, False)):
        res = checks.compare(make_report(summary(log10=-8.0 + shift, decay=-0.08)), base)
        assert row(res, "net0/log10_norm_max_lag").passed is ok, shift


def test_direction_semantics_match_numpy_isclose():
    """'both' passes exactly when np.isclose(observed, baseline, rtol, atol) does; the one-sided directions
    pass every change in the harmless direction and agree with isclose in the harmful one."""
    rng = np.random.default_rng(0)
    base = make_report(summary())
    for _ in range(200):
        b, obs = rng.normal(scale=3, size=2)
        atol, rtol = rng.uniform(0, 1), rng.uniform(0, 0.5)
        report_b, report_o = copy.deepcopy(base), copy.deepcopy(base)
        report_b["analyses"][0]["summary"]["horizon_threshold"] = float(b)
        report_o["analyses"][0]["summary"]["horizon_threshold"] = float(obs)
        baseline = checks.make_baseline(report_b)
        for direction in checks.DIRECTIONS:
            rule = {"atol": atol, "rtol": rtol, "direction": direction}
            got = row(
                checks.compare(report_o, baseline, {"metrics": {"net0/horizon_threshold": rule}}),
                "net0/horizon_threshold",
            ).passed
            close = bool(np.isclose(obs, b, rtol=rtol, atol=atol))
            harmless = {"both": False, "increase_is_bad": obs < b, "decrease_is_bad": obs > b}[direction]
            assert got == (close or harmless), (b, obs, atol, rtol, direction)


def test_lyapunov_rise_fails_fall_passes_and_max_limit_holds():
    base = checks.make_baseline(make_report(summary(lyap=-0.2)))
    assert not row(checks.compare(make_report(summary(lyap=0.1)), base), "net0/lyapunov_max").passed
    assert checks.compare(make_report(summary(lyap=-0.6)), base).passed
    # an absolute limit holds even inside a generous tolerance
    loose = {"metrics": {"*/lyapunov_max": {"atol": 1.0, "max": 0.0}}}
    assert checks.compare(make_report(summary(lyap=-0.05)), base, loose).passed
    r = row(checks.compare(make_report(summary(lyap=0.05)), base, loose), "net0/lyapunov_max")
    assert not r.passed and "max=0" in r.message
    r = row(
        checks.compare(make_report(summary(horizon=30)), base, {"metrics": {"net0/horizon": {"min": 35}}}),
        "net0/horizon",
    )
    assert not r.passed and "min=35" in r.message


def test_verdict_must_be_equal():
    base = checks.make_baseline(make_report(summary(verdict="stable")))
    r = row(checks.compare(make_report(summary(verdict="vanishing")), base), "net0/verdict")
    assert not r.passed and "'stable'" in r.message and "'vanishing'" in r.message


def test_rule_precedence_and_patterns():
    report = make_report(summary(horizon=20))
    base = checks.make_baseline(make_report(summary(horizon=40)))
    assert not checks.compare(report, base).passed
    # overrides in the baseline file (a pattern), then a call-time override on the exact name wins
    base["overrides"] = {"metrics": {"*/horizon": {"rtol": 0.6}}}
    assert checks.compare(report, base).passed
    assert not checks.compare(report, base, {"metrics": {"net0/horizon": {"rtol": 0.1}}}).passed
    assert checks.compare(report, base, {"kinds": {"horizon": {"skip": True}}}).passed
    # tolerances recorded at baseline time
    tuned = checks.make_baseline(make_report(summary(horizon=40)), {"kinds": {"horizon": {"rtol": 0.6}}})
    assert tuned["metrics"]["net0/horizon"]["rtol"] == 0.6 and checks.compare(report, tuned).passed


def test_missing_and_new_metrics():
    base = checks.make_baseline(make_report(summary(), summary(), names=["a", "b"]))
    res = checks.compare(make_report(summary(), names=["a"]), base)
    assert not res.passed and {r.name for r in res.failures} == {f"b/{k}" for k in summary()}
    assert all(r.status == "missing" for r in res.failures)
    res = checks.compare(
        make_report(summary(), summary(), names=["a", "c"]), checks.make_baseline(make_report(summary(), names=["a"]))
    )
    assert res.passed and any("not in the baseline" in w for w in res.warnings)


def test_nonfinite_report_value_gives_status_3():
    base = checks.make_baseline(make_report(summary()))
    for bad in (math.nan, math.inf, None):  # None: how strict JSON writers store NaN
        s = summary()
        s["log10_norm_max_lag"] = bad
        res = checks.compare(make_report(s), base)
        assert res.exit_code == 3 and res.status == "nonfinite"
        assert row(res, "net0/log10_norm_max_lag").status == "nonfinite"


def test_make_baseline_skips_uncomputed_lyapunov_and_refuses_other_nonfinite():
    base = checks.make_baseline(make_report(summary(lyap=None)))
    assert "net0/lyapunov_max" not in base["metrics"]
    with pytest.raises(checks.ReportNonFiniteError) as exc:
        checks.make_baseline(make_report(summary(horizon=math.nan)))
    assert exc.value.exit_code == 3


def test_environment_differences_warn_but_do_not_fail():
    base = checks.make_baseline(make_report(summary()))
    assert base["precision"] == {"dtype": "float32", "matmul": "highest"} and base["gradscope_version"] == "0.1.0"
    newer_kernel = make_report(summary(), platform="Linux-6.8.0-azure-x86_64-with-glibc2.39")
    assert checks.compare(newer_kernel, base).warnings == ()
    res = checks.compare(make_report(summary(), dtype="float64", version="0.2.0", platform="macOS-14-arm64"), base)
    assert res.passed
    text = " ".join(res.warnings)
    assert "dtype" in text and "float64" in text and "version" in text and "platform" in text


def test_result_is_immutable():
    res = checks.compare(make_report(), checks.make_baseline(make_report()))
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.rows = ()
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.rows[0].passed = False
    with pytest.raises(TypeError):
        res.environment["jax"] = "x"


# ------------------------------------------------------------------------------------------ files


def test_atomic_writes_leave_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "sub" / "b.json"
    checks.save_baseline(checks.make_baseline(make_report()), target)
    original = target.read_text()
    assert json.loads(original)["schema"] == "gradscope.baseline/1"
    with pytest.raises(checks.CheckInputError):
        checks.save_baseline(checks.make_baseline(make_report()), target)  # exists, no overwrite

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(_atomic.os, "replace", boom)  # the one atomic writer's final rename
    with pytest.raises(OSError):
        checks.save_baseline(checks.make_baseline(make_report(summary(horizon=3))), target, overwrite=True)
    assert target.read_text() == original
    assert sorted(p.name for p in target.parent.iterdir()) == ["b.json"]


def test_load_report_accepts_folder_and_rejects_bad_files(tmp_path):
    write(tmp_path / "rep" / "report.json", make_report())
    assert checks.load_report(tmp_path / "rep")["analyses"][0]["name"] == "net0"
    bad = {
        "corrupt.json": "{not json",
        "schema.json": json.dumps({"schema": "gradscope.report/9", "analyses": []}),
        "noname.json": json.dumps({"schema": "gradscope.report/1", "analyses": [{"summary": {}}]}),
        "dup.json": json.dumps(make_report(summary(), summary(), names=["a", "a"])),
    }
    for name, text in bad.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(checks.CheckInputError) as exc:
            checks.load_report(tmp_path / name)
        assert exc.value.exit_code == 2 and "\n" not in str(exc.value)


# ------------------------------------------------------------------------------------------ CLI


@pytest.fixture
def files(tmp_path, app):
    report = write(tmp_path / "report" / "report.json", make_report(summary(horizon=40)))
    baseline = tmp_path / "baselines" / "lstm.json"
    res = invoke(app, "baseline", report.parent, "--output", baseline)
    assert res.exit_code == 0, res.output
    return tmp_path, report, baseline


def test_cli_exit_codes(files, app):
    tmp, report, baseline = files
    assert invoke(app, "check", report.parent, "--baseline", baseline).exit_code == 0
    worse = write(tmp / "worse.json", make_report(summary(horizon=20)))
    res = invoke(app, "check", worse, "--baseline", baseline)
    assert res.exit_code == 1 and "net0/horizon" in res.stdout
    nan = summary()
    nan["decay_per_step"] = None
    res = invoke(app, "check", write(tmp / "nan.json", make_report(nan)), "--baseline", baseline)
    assert res.exit_code == 3
    res = invoke(app, "check", report, "--baseline", tmp / "nowhere.json")
    assert res.exit_code == 4 and "gradscope baseline" in one_line_error(res)


@pytest.mark.parametrize(
    "case",
    [
        "corrupt_baseline",
        "wrong_schema",
        "report_as_baseline",
        "bad_toml",
        "bad_rule",
        "missing_report",
        "corrupt_report",
        "bad_format",
    ],
)
def test_cli_input_errors_exit_2_with_one_line(files, app, case):
    tmp, report, baseline = files
    args = ["check", report, "--baseline", baseline]
    if case == "corrupt_baseline":
        baseline.write_text('{"schema": "gradscope.baseline/1", "metrics": {')
    elif case == "wrong_schema":
        baseline.write_text(json.dumps({"schema": "something/1"}))
    elif case == "report_as_baseline":
        args[3] = report
    elif case == "bad_toml":
        (tmp / "c.toml").write_text("[metrics\nrtol = ")
        args += ["--config", tmp / "c.toml"]
    elif case == "bad_rule":
        (tmp / "c.toml").write_text('[metrics."*/horizon"]\nrtol = -1\n')
        args += ["--config", tmp / "c.toml"]
    elif case == "missing_report":
        args[1] = tmp / "none.json"
    elif case == "corrupt_report":
        report.write_text("[1, 2")
    elif case == "bad_format":
        res = invoke(app, *args, "--format", "yaml")
        assert res.exit_code == 2 and "yaml" in res.output
        return
    res = invoke(app, *args)
    assert res.exit_code == 2, res.output
    one_line_error(res)


def test_cli_config_toml_and_pyproject(files, app):
    tmp, report, baseline = files
    worse = write(tmp / "worse.json", make_report(summary(horizon=20)))
    (tmp / "check.toml").write_text('[metrics."*/horizon"]\nrtol = 0.6\n')
    assert invoke(app, "check", worse, "-b", baseline, "--config", tmp / "check.toml").exit_code == 0
    (tmp / "pyproject.toml").write_text('[project]\nname = "x"\n[tool.gradscope.check.kinds.horizon]\nskip = true\n')
    assert invoke(app, "check", worse, "-b", baseline, "--config", tmp / "pyproject.toml").exit_code == 0


def test_cli_baseline_replaced_only_with_update_and_keeps_tuned_tolerances(files, app):
    tmp, report, baseline = files
    before = baseline.read_text()
    other = write(tmp / "other.json", make_report(summary(horizon=70)))
    res = invoke(app, "baseline", other, "--output", baseline)
    assert res.exit_code == 2 and "--update" in one_line_error(res) and baseline.read_text() == before
    tuned = json.loads(before)
    tuned["metrics"]["net0/horizon"]["rtol"] = 0.5
    baseline.write_text(json.dumps(tuned))
    assert invoke(app, "baseline", other, "--output", baseline, "--update").exit_code == 0
    new = json.loads(baseline.read_text())
    assert new["metrics"]["net0/horizon"] == {
        "value": 70,
        "kind": "horizon",
        "atol": 1.0,
        "rtol": 0.5,
        "direction": "decrease_is_bad",
    }


def test_cli_baseline_from_nonfinite_report_exits_3(tmp_path, app):
    s = summary()
    s["log10_norm_max_lag"] = math.inf
    res = invoke(app, "baseline", write(tmp_path / "r.json", make_report(s)), "--output", tmp_path / "b.json")
    assert res.exit_code == 3 and not (tmp_path / "b.json").exists()
    one_line_error(res)


def test_formats(files, app, monkeypatch):
    tmp, report, baseline = files
    worse = write(tmp / "worse.json", make_report(summary(horizon=20, verdict="stable")))
    n_metrics = len(summary())

    res = invoke(app, "check", worse, "-b", baseline, "--format", "junit", "--output", tmp / "out" / "junit.xml")
    assert res.exit_code == 1 and res.stdout == ""
    root = ET.parse(tmp / "out" / "junit.xml").getroot()
    cases = root.findall(".//testcase")
    assert len(cases) == n_metrics and root.get("tests") == str(n_metrics) and root.get("failures") == "2"
    failed = {c.get("name"): c.find("failure") for c in cases if c.find("failure") is not None}
    assert set(failed) == {"net0/horizon", "net0/verdict"}
    assert "40" in failed["net0/horizon"].get("message") and "20" in failed["net0/horizon"].get("message")

    res = invoke(app, "check", worse, "-b", baseline, "--format", "json")
    doc = json.loads(res.stdout)
    assert doc["status"] == "regression" and doc["exit_code"] == 1 and len(doc["metrics"]) == n_metrics
    assert {m["name"] for m in doc["metrics"] if not m["passed"]} == {"net0/horizon", "net0/verdict"}

    summary_file = tmp / "step_summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary_file))
    res = invoke(app, "check", worse, "-b", baseline, "--format", "github")
    errors = [line for line in res.stdout.splitlines() if line.startswith("::error ")]
    assert len(errors) == 2 and all("::" in e[8:] for e in errors)
    assert all("\n" not in e and "%0A" not in e.split("::")[1] for e in errors)
    assert "net0/horizon" in summary_file.read_text()

    res = invoke(app, "check", worse, "-b", baseline, "--format", "markdown")
    table = [line for line in res.stdout.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + n_metrics  # header + one row per metric (the |---| line starts with "|-")


def test_github_escaping():
    r = checks.MetricCheck(
        "a/b",
        "number",
        1.0,
        2.0,
        1.0,
        0.1,
        0.1,
        0.0,
        "both",
        None,
        None,
        False,
        "fail",
        "50% worse\nsecond line, with: colon",
    )
    out = checks.format_github(checks.CheckResult((r,), ("warn\nline",)))
    first = out.splitlines()[0]
    assert first.endswith("::50%25 worse%0Asecond line, with: colon")
    assert "::warning title=gradscope::warn%0Aline" in out


# ------------------------------------------------------------------------------------------ speed, no JAX


def test_check_runs_well_under_a_second(tmp_path):
    """A typical report: 8 analyses, each with a 1000-point lag profile in the JSON."""
    report = write(
        tmp_path / "r.json",
        make_report(
            *[summary(horizon=30 + i) for i in range(8)], names=[f"cell{i}" for i in range(8)], lag_points=1000
        ),
    )
    base = tmp_path / "b.json"
    checks.save_baseline(checks.make_baseline(report), base)
    best = math.inf
    for _ in range(3):
        t0 = time.perf_counter()
        result = checks.compare(report, base)
        for fmt in checks.FORMATS:
            checks.render(result, fmt)
        best = min(best, time.perf_counter() - t0)
    assert result.passed and best < 0.25, best


def _cli(argv: str, code: int) -> str:
    """A program that runs the real console-script entry point with ``argv`` and expects exit ``code``."""
    return (
        f"from gradscope.cli import main\nsys.argv = ['gradscope', {argv}]\n"
        f"try:\n    main()\nexcept SystemExit as e:\n    assert e.code == {code}, e.code"
    )


@pytest.mark.parametrize(
    "code",
    [
        "import gradscope.checks",
        _cli("'check', sys.argv[1], '--baseline', sys.argv[2], '--format', 'junit'", 1),
        _cli("'baseline', sys.argv[1], '--output', sys.argv[2] + '.new'", 0),
        _cli("'--help'", 0),
    ],
    ids=["import", "cli-check", "cli-baseline", "cli-help"],
)
def test_no_jax_import(tmp_path, code):
    report = write(tmp_path / "r.json", make_report(summary(horizon=40)))
    base = tmp_path / "b.json"
    checks.save_baseline(checks.make_baseline(report), base)
    write(report, make_report(summary(horizon=10)))
    prog = f"import sys\n{code}\nassert 'jax' not in sys.modules, 'jax was imported'\n"
    proc = subprocess.run(
        [sys.executable, "-c", prog, str(report), str(base)],
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr


# ------------------------------------------------------------------------------------------ the package

# every name `gradscope.checks` offered as one module (before it became a package), minus its private
# helpers and the standard-library modules it happened to import
PUBLIC_NAMES = [
    "ANALYSIS_SCHEMA",
    "BASELINE_SCHEMA",
    "BaselineMissingError",
    "CHECK_SCHEMA",
    "CheckInputError",
    "CheckResult",
    "DEFAULT_RULES",
    "DIRECTIONS",
    "EXIT_BASELINE_MISSING",
    "EXIT_NONFINITE",
    "EXIT_PASS",
    "EXIT_REGRESSION",
    "EXIT_USAGE",
    "FORMATS",
    "GradscopeError",
    "MetricCheck",
    "NonFiniteError",
    "REGENERATE_HINT",
    "REPORT_SCHEMA",
    "ReportNonFiniteError",
    "Rule",
    "clean",
    "compare",
    "format_github",
    "format_json",
    "format_junit",
    "format_markdown",
    "format_text",
    "formats",
    "load_baseline",
    "load_config",
    "load_report",
    "make_baseline",
    "metric_kind",
    "render",
    "report_metrics",
    "save_baseline",
    "write_text",
    "write_text_atomic",
]


def test_public_names_are_kept():
    missing = [n for n in PUBLIC_NAMES if not hasattr(checks, n)]
    assert not missing, missing
    assert set(checks.__all__) <= set(dir(checks))
    assert callable(checks.compare) and checks.FORMATS == ("text", "json", "junit", "github", "markdown")
    assert (
        checks.EXIT_PASS,
        checks.EXIT_REGRESSION,
        checks.EXIT_USAGE,
        checks.EXIT_NONFINITE,
        checks.EXIT_BASELINE_MISSING,
    ) == (0, 1, 2, 3, 4)


# the layers of the package, lowest first: a module imports only from layers below it (no cycle), and
# never from the package itself (whose __init__ only re-exports)
LAYERS = ["_errors", "rules", "io", "comparison", "formats"]


@pytest.mark.parametrize("module", LAYERS)
def test_modules_import_only_lower_layers(module):
    import ast

    tree = ast.parse((ROOT / "gradscope" / "checks" / f"{module}.py").read_text())
    imported = [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module]
    imported += [a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names]
    own = [m for m in imported if m == "gradscope.checks" or m.startswith("gradscope.checks.")]
    assert "gradscope.checks" not in own, f"{module} imports from the package __init__"
    below = {f"gradscope.checks.{m}" for m in LAYERS[: LAYERS.index(module)]}
    assert set(own) <= below, (module, own)
    assert not any(m == "jax" or m.startswith("jax.") for m in imported)


def test_unknown_format_suggests_and_is_both_error_kinds():
    result = checks.compare(make_report(), checks.make_baseline(make_report()))
    with pytest.raises(checks.CheckInputError) as exc:
        checks.render(result, "jsno")
    assert isinstance(exc.value, UnknownNameError) and exc.value.exit_code == 2
    assert str(exc.value) == (
        "format='jsno' is not allowed; did you mean json? use one of text, json, junit, github, markdown"
    )


@pytest.mark.parametrize(
    "field,value,needle",
    [
        ("atol", True, "atol=True"),
        ("rtol", -0.1, "rtol=-0.1"),
        ("atol", math.nan, "atol=nan"),
        ("max", "0", "max='0'"),
        ("min", math.inf, "min=inf"),
    ],
)
def test_rule_numbers_are_checked(field, value, needle):
    """A rule number must be a finite real (not a bool); atol and rtol also >= 0. min/max may be negative."""
    base = checks.make_baseline(make_report())
    with pytest.raises(checks.CheckInputError, match=re.escape(needle)) as exc:
        checks.compare(make_report(), base, {"defaults": {field: value}})
    assert "\n" not in str(exc.value) and "overrides [defaults]" in str(exc.value)
    assert checks.compare(make_report(), base, {"defaults": {"min": -100.0, "atol": 0}}).passed
