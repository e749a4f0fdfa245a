"""A bad-input and fault campaign against the installed gradscope, rerunning the categories of the reliability
issue: CLI invocations with bad options and sizes, hostile weight files generated on the fly (one of them a
pickle payload that would create a marker file if it ever ran), odd inputs, check/baseline cases, SIGKILLs
inside report publishing, and concurrent writers of one ``--out``. It prints one line:

    N invocations, 0 tracebacks, 0 internal errors, 0 hangs; M hostile files, 0 code executions, 0 partial
    loads; K kills, 0 reports lost

and exits 1 when any of the zeros is not zero (each failure is listed above the line). Every CLI call is a
subprocess under a timeout (a hang is a call that needs more than ``--timeout`` seconds). Run from the
repository root:

    python benchmarks/campaign.py            # about 5-10 min on 2 CPU cores
    python benchmarks/campaign.py --quick    # a subset, about 2 min
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import re
import signal
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ENV = {
    **os.environ,
    "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    "JAX_PLATFORMS": "cpu",
    "GRADSCOPE_CACHE_DIR": "off",
}
ENV.pop("GRADSCOPE_DEBUG", None)
GS = [sys.executable, "-m", "gradscope"]


class Tally:
    def __init__(self):
        self.invocations = self.tracebacks = self.internal = self.hangs = 0
        self.files = self.executions = self.partial = 0
        self.kills = self.lost = 0
        self.failures: list[str] = []

    def fail(self, what: str) -> None:
        self.failures.append(what)
        print(f"  FAIL {what}", flush=True)


T = Tally()


def cli(args, *, cwd, timeout, expect=(0, 1, 2, 3, 4), label=None):
    """One CLI call: counts a traceback, an "internal error" line, a hang, an exit code outside ``expect``, or
    more than one line on stderr for a failure."""
    T.invocations += 1
    label = label or " ".join(map(str, args))
    try:
        res = subprocess.run([*GS, *map(str, args)], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        T.hangs += 1
        T.fail(f"hang (> {timeout} s): {label}")
        return None
    err = res.stderr
    if "Traceback" in err:
        T.tracebacks += 1
        T.fail(f"traceback: {label}: {err.strip().splitlines()[-1]}")
    if "internal error" in err:
        T.internal += 1
        T.fail(f"internal error: {label}: {err.strip()}")
    if res.returncode not in expect:
        T.fail(f"exit {res.returncode} (expected {expect}): {label}: {err.strip()[:200]}")
    if res.returncode == 2 and len(err.strip().splitlines()) != 1:
        T.fail(f"not one line: {label}: {err.strip()[:300]}")
    return res


# ------------------------------------------------------------------------------------------ CLI options


def bad_options(work: Path, quick: bool):
    tiny = ["--hidden", "4", "--length", "8", "--batch", "1"]
    cases = [
        ["analyse", "--hidden", "-1"],
        ["analyse", "--hidden", "0"],
        ["analyse", "--length", "0"],
        ["analyse", "--length", "99999999999999999999"],
        ["analyse", "--batch", "1000000000", "--cell", "lstm"],
        ["analyse", "--hidden", "1000000000"],
        ["analyse", "--seed", "18446744073709551616", *tiny],
        ["analyse", "--seed", "-1", *tiny],
        ["analyse", "--cell", "lstmm", *tiny],
        ["analyse", "--cell", "lstm:forget_bias=abc", *tiny],
        ["analyse", "--cell", "lstm:nope=1", *tiny],
        ["analyse", "--cell", "", *tiny],
        ["analyse", "--input", "nosuchsource", *tiny],
        ["analyse", "--input", str(work / "missing.npy"), *tiny],
        ["analyse", "--out", str(work / "afile.txt"), *tiny],
        ["analyse", "--out", str(work / "userdir"), "--force", *tiny],
        ["analyse", "--out", ".", "--force", *tiny],
        ["analyse", "--out", str(work / "no" / "parent" / "x"), *tiny],
        ["analyse", "--nosuchoption"],
        ["compare", "--cells", "lstm,,gru"],
        ["compare", "--cells", "lstm", "--hidden", "nan"],
        ["sweep", "--gains", "1,x"],
        ["sweep", "--gains", "inf"],
        ["sweep", "--gains", "1,1"],
        ["sweep", "--seeds", "18446744073709551616", "--cells", "lstm", "--lengths", "8", "--hidden", "4"],
        ["sweep", "--lengths", "0"],
        ["sweep", "--vmap", "0"],
        ["train", "--batch", "1000000000", "--task", "adding", "--cell", "lstm"],
        ["train", "--task", "nosuchtask"],
        ["report", str(work / "missing")],
        ["report", str(work / "userdir")],
        ["inspect", str(work / "missing.pt")],
        ["inspect", str(work)],
        ["merge", str(work / "missing")],
        ["nosuchcommand"],
        ["cells", "--bogus"],
    ]
    if quick:
        cases = cases[::3]
    (work / "afile.txt").write_text("not a folder")
    (work / "userdir").mkdir(exist_ok=True)
    (work / "userdir" / "thesis.tex").write_text("the user's own file")
    for args in cases:
        cli(args, cwd=work, timeout=180, expect=(2,))
    if not (work / "userdir" / "thesis.tex").exists():
        T.fail("--force deleted a folder that was not a report")


# ------------------------------------------------------------------------------------------ hostile files


def _st(header, data=b"") -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def hostile_files(folder: Path, marker: Path, rng: random.Random, quick: bool) -> list[Path]:
    """Files that must all be refused (none is a valid weight file)."""
    out = {}
    f32 = {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}
    out["overflow.safetensors"] = _st({"w": {**f32, "shape": [2**40, 2**40], "data_offsets": [0, 0]}})
    out["negative.safetensors"] = _st({"w": {**f32, "shape": [-1, 4]}}, b"\0" * 16)
    out["deep-array.safetensors"] = _st(b"[" * 200_000 + b"]" * 200_000)
    out["deep-object.safetensors"] = _st(('{"a":' * 200_000 + "1" + "}" * 200_000).encode())
    out["huge-header-length.safetensors"] = struct.pack("<Q", 2**63) + b"{}"
    out["short-data.safetensors"] = _st({"w": f32}, b"\0" * 8)
    out["overlap.safetensors"] = _st({"a": f32, "b": f32}, b"\0" * 16)
    out["bad-dtype.safetensors"] = _st({"w": {**f32, "dtype": "OBJ"}}, b"\0" * 16)
    out["nan.safetensors"] = _st({"weight_hh_l0": f32}, np.full(4, np.nan, np.float32).tobytes())
    out["not-utf8.safetensors"] = _st(b"\xff\xfe{}")
    out["empty.safetensors"] = b""
    buf = io.BytesIO()
    np.save(buf, np.ones(4, np.float32))
    with zipfile.ZipFile(folder / "lie.npz", "w") as z:
        z.writestr("a.npy", buf.getvalue().replace(b"(4,)", b"(99999999999999999999,)"))
    with zipfile.ZipFile(folder / "bomb.npz", "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("a.npy", b"\0" * 50_000_000)
    np.savez(folder / "object.npz", a=np.array([{"x": 1}], dtype=object))
    out["truncated.npz"] = (folder / "object.npz").read_bytes()[:40]
    try:
        import torch

        torch.save({"x": _Payload(marker)}, folder / "payload.pt")
        torch.save({"weight_ih_l0": torch.eye(4).to_sparse()}, folder / "sparse.pt")
        d = cur = {}
        for _ in range(5000):
            cur["a"] = {}
            cur = cur["a"]
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(20_000)
        try:
            torch.save(d, folder / "deep.pt")
        finally:
            sys.setrecursionlimit(limit)
        out["garbage.pt"] = bytes(rng.randrange(256) for _ in range(300))
    except ImportError:
        pass
    try:
        import h5py

        with h5py.File(folder / "bomb.h5", "w") as f:
            f.create_dataset("w", shape=(30000, 30000), dtype="f4", compression="gzip", chunks=(1000, 1000))
        with h5py.File(folder / "link.h5", "w") as f:
            f["w"] = h5py.SoftLink("/elsewhere")
        with h5py.File(folder / "ints.h5", "w") as f:
            f["w"] = np.arange(4)
    except ImportError:
        pass
    n_random = 8 if quick else 40
    for i in range(n_random):  # random bytes in every format
        suffix = (".safetensors", ".npz", ".pt", ".msgpack")[i % 4]
        out[f"random-{i}{suffix}"] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400)))
    for name, data in out.items():
        (folder / name).write_bytes(data)
    return sorted(p for p in folder.iterdir() if p.is_file())


def hostile(work: Path, quick: bool):
    from gradscope._errors import GradscopeError
    from gradscope.io import load_model

    folder = work / "hostile"
    folder.mkdir()
    marker = work / "PAYLOAD-RAN"
    files = hostile_files(folder, marker, random.Random(0), quick)
    for path in files:
        T.files += 1
        try:
            model = load_model(path)
        except GradscopeError:
            continue
        except Exception as exc:  # noqa: BLE001 - the campaign counts it
            T.fail(f"{path.name}: {type(exc).__name__}: {exc}")
            continue
        T.partial += 1
        T.fail(f"{path.name}: a model ({type(model).__name__}) was loaded from a hostile file")
    # the user's view of some of them: `gradscope inspect` exits 2 with one line, never runs the payload
    for path in files[:: 2 if quick else 1][:12]:
        res = cli(["inspect", path], cwd=work, timeout=180, expect=(1, 2))
        if res is not None and any(s in res.stderr for s in ("weights_only=False", "trusted source")):
            T.fail(f"{path.name}: torch's advice to load unsafely reached the user")
    if marker.exists():
        T.executions += 1
        T.fail("the pickle payload ran")


# ------------------------------------------------------------------------------- odd inputs, check cases


def odd_inputs(work: Path, quick: bool):
    tiny = ["--hidden", "4", "--length", "8", "--batch", "1", "-q"]
    np.save(work / "nan.npy", np.full((1, 8, 2), np.nan, np.float32))
    np.save(work / "empty.npy", np.ones((0, 8, 2), np.float32))
    np.save(work / "ints.npy", np.ones((1, 8, 2), np.int64))
    (work / "bad.csv").write_text("1,2\n3,x\n")
    (work / "ragged.csv").write_text("1,2\n3\n")
    cases = ["nan.npy", "empty.npy", "bad.csv", "ragged.csv"] + ([] if quick else ["ints.npy"])
    for name in cases:
        res = cli(
            ["analyse", "--cell", "lstm", "--input", work / name, "--out", work / f"odd-{name}", *tiny],
            cwd=work,
            timeout=300,
        )
        if res is not None and res.returncode == 0 and name != "ints.npy":
            T.fail(f"--input {name} was accepted")


def check_cases(work: Path, quick: bool):
    rep = {
        "schema": "gradscope.report/1",
        "analyses": [{"schema": "gradscope.analysis/1", "name": "net", "summary": {"horizon": 12.0}}],
    }
    (work / "r").mkdir()
    (work / "r" / "report.json").write_text(json.dumps(rep))
    base = work / "base.json"
    cli(["baseline", work / "r", "--output", base], cwd=work, timeout=60, expect=(0,))
    good = json.loads(base.read_text())
    variants = {
        "nan-value": re.sub(r'"value": [^,}\n]+', '"value": NaN', base.read_text()),
        "min-above-max": json.dumps(
            {**good, "metrics": {"net/horizon": {**good["metrics"]["net/horizon"], "min": 5, "max": 1}}}
        ),
        "deep": "[" * 100_000 + "]" * 100_000,
        "not-json": "{",
        "wrong-schema": json.dumps({"schema": "x"}),
        "empty-metrics": json.dumps({**good, "metrics": {}}),
        "binary": "\x00\x01\x02",
    }
    for name, text in variants.items():
        path = work / f"base-{name}.json"
        path.write_text(text)
        cli(["check", work / "r", "--baseline", path], cwd=work, timeout=60, expect=(2,), label=f"check {name}")
    for name, text in {
        "bad-toml": "[defaults\n",
        "min-max": "[defaults]\nmin = 3\nmax = 1\n",
        "tool-str": '[tool]\ngradscope = "x"\n',
        "deep": "a = " + "[" * 50_000,
    }.items():
        (work / f"{name}.toml").write_text(text)
        cli(
            ["check", work / "r", "--baseline", base, "--config", work / f"{name}.toml"],
            cwd=work,
            timeout=60,
            expect=(2,),
            label=f"check --config {name}",
        )
    cli(["check", work / "r", "--baseline", work / "none.json"], cwd=work, timeout=60, expect=(4,))
    cli(["baseline", work / "r", "--output", base], cwd=work, timeout=60, expect=(2,))  # exists, no --update
    # --update through a symlink writes the target, the link stays
    link = work / "link.json"
    link.symlink_to(base)
    cli(["baseline", work / "r", "--output", link, "--update"], cwd=work, timeout=60, expect=(0,))
    if not link.is_symlink():
        T.fail("baseline --update replaced the symlink")


# ------------------------------------------------------------------------------- kills and concurrency

PUBLISH = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from gradscope import _atomic
    out, text, native = Path(sys.argv[1]), sys.argv[2], sys.argv[3] == "native"
    if not native:
        _atomic._renameat2 = lambda *a: False
    why = _atomic.check_output_folder(out, force=True)
    if why:
        sys.stderr.write("error: " + why + "\\n"); sys.exit(2)
    with _atomic.temp_folder(out) as tmp:
        (tmp / "report").mkdir()
        (tmp / "report" / "report.json").write_text(text)
        _atomic.publish_folder(tmp / "report", out)
    """
)


def _report_there(out: Path) -> bool:
    from gradscope import _atomic

    why = _atomic.check_output_folder(out, force=True)  # the next run: recovers, cleans, reserves
    _atomic.release_output(out)
    return not why and (out / "report.json").is_file()


def kills(work: Path, quick: bool):
    points = [
        ("native", "exchanged"),
        ("native", "published"),
        ("fallback", "moved-aside"),
        ("fallback", "replaced"),
        ("fallback", "published"),
    ]
    rounds = 1 if quick else 4
    for r in range(rounds):
        for mode, point in points:
            out = work / f"kill-{r}-{mode}-{point}"
            subprocess.run([sys.executable, "-c", PUBLISH, str(out), "old", mode], env=ENV, check=True)
            res = subprocess.run(
                [sys.executable, "-c", PUBLISH, str(out), "new", mode],
                capture_output=True,
                env={**ENV, "GRADSCOPE_TEST_KILL_AT": point},
            )
            T.kills += 1
            if res.returncode != -signal.SIGKILL:
                T.fail(f"kill at {point} ({mode}) did not happen: exit {res.returncode}")
            if not _report_there(out):
                T.lost += 1
                T.fail(f"report lost after a kill at {point} ({mode})")
    # SIGKILL of real CLI runs at random moments while they replace a report
    n_cli = 1 if quick else 3
    out = work / "cli-kill"
    cli(
        ["analyse", "--cell", "rnn-tanh", "--hidden", "4", "--length", "8", "--batch", "1", "--out", out, "-q"],
        cwd=work,
        timeout=300,
        expect=(0,),
    )
    rng = random.Random(1)
    for _ in range(n_cli):
        p = subprocess.Popen(
            _tiny_analyse(out, "--force"),
            cwd=work,
            env=ENV,
        )
        time.sleep(rng.uniform(2.0, 12.0))
        p.send_signal(signal.SIGKILL)
        p.wait()
        T.kills += 1
        if not _report_there(out):
            T.lost += 1
            T.fail("report lost after a SIGKILL of `gradscope analyse --force`")


def _tiny_analyse(out: Path, *extra: str) -> list[str]:
    """`gradscope analyse` of a 4-unit tanh RNN over 8 steps into ``out`` (quiet): seconds, so many fit."""
    return [*GS, "analyse", "--cell", "rnn-tanh", "--hidden", "4", "--length", "8", "--batch", "1",
            "--out", str(out), *extra, "-q"]  # fmt: skip


def concurrent(work: Path, quick: bool):
    """Two CLI runs into one new --out: one report, one exit 2 (or both refusals of a finished folder)."""
    rounds = 1 if quick else 2
    for r in range(rounds):
        out = work / f"same-{r}"
        cmd = _tiny_analyse(out)
        procs = [subprocess.Popen(cmd, cwd=work, env=ENV, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        codes = []
        for p in procs:
            T.invocations += 1
            try:
                _, err = p.communicate(timeout=300)
            except subprocess.TimeoutExpired:
                p.kill()
                T.hangs += 1
                T.fail("concurrent analyse hung")
                continue
            codes.append(p.returncode)
            if "Traceback" in err or "internal error" in err:
                T.tracebacks += "Traceback" in err
                T.internal += "internal error" in err
                T.fail(f"concurrent analyse: {err.strip()}")
        if sorted(codes) != [0, 2] or not (out / "report.json").is_file():
            T.lost += 1
            T.fail(f"two runs into one --out: exit codes {codes}")


def main() -> int:
    ap = argparse.ArgumentParser(description="A bad-input and fault campaign against gradscope.")
    ap.add_argument("--quick", action="store_true", help="a subset (about 2 min)")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="gradscope-campaign-") as d:
        work = Path(d)
        for name, step in [
            ("options", bad_options),
            ("hostile files", hostile),
            ("odd inputs", odd_inputs),
            ("check/baseline", check_cases),
            ("kills", kills),
            ("concurrency", concurrent),
        ]:
            print(f"{name} …", flush=True)
            (work / name.replace("/", "-").replace(" ", "-")).mkdir()
            step(work / name.replace("/", "-").replace(" ", "-"), args.quick)
    print(
        f"{T.invocations} invocations, {T.tracebacks} tracebacks, {T.internal} internal errors, {T.hangs} hangs; "
        f"{T.files} hostile files, {T.executions} code executions, {T.partial} partial loads; "
        f"{T.kills} kills, {T.lost} reports lost"
    )
    print(f"{len(T.failures)} other failures; {time.time() - t0:.0f} s", flush=True)
    return 1 if T.failures else 0


if __name__ == "__main__":
    sys.exit(main())
