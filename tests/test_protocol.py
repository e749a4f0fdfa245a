"""The cell protocol check (`gradscope.cells._protocol.check_model`) and the custom-cell documentation.

* one test per violation: the model is refused at the public entry (`gs.rollout`, `gs.lag_profile`) with a
  `ConfigError` whose message names the field and the fix;
* every built-in model passes: registered cells in float32 and float64, Stacks, Bidirectionals, MLPs, and the
  test suite's own cells (`tests/_engine_ref.build`);
* the README's and docs/custom-cells.md's example cells are right: the coRNN's lag profile equals the norms
  of `jax.jacrev` of an unrolled coRNN written here from Rusch & Mishra (2021)'s equations, and a Stack of
  two leaky diagonal layers matches the closed form J^(T−k) (J constant, computed in NumPy); the code blocks run.
"""

from __future__ import annotations

import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradscope as gs
from gradscope._errors import ConfigError, GradscopeError
from gradscope.cells import Cell, _protocol, pytree_cell, static
from gradscope.cells._protocol import check_model

ROOT = Path(__file__).resolve().parents[1]
M, N, T = 3, 4, 5
XS = np.random.default_rng(0).normal(size=(T, M))


def _refused(model, *fragments, entry=gs.rollout):
    """``entry(model, XS)`` raises a ConfigError containing every fragment literally, in order."""
    with pytest.raises(ConfigError, match=".*".join(re.escape(f) for f in fragments)) as info:
        entry(model, XS)
    assert isinstance(info.value, GradscopeError)
    return str(info.value)


def _w(*shape, seed=0, dtype=jnp.float64):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape) / np.sqrt(shape[-1]), dtype)


# --- a well-formed tiny cell and its broken variants -------------------------------------------------------


@pytree_cell
class Tiny(Cell):
    """h' = tanh(W h + U x + b): the reference well-formed cell."""

    W: jax.Array
    U: jax.Array
    b: jax.Array
    input_size: int = static()
    hidden_size: int = static()

    def __call__(self, x, state):
        (h,) = state
        a = self.W @ h + self.U @ x + self.b
        return (jnp.tanh(a),), {"a": a}


def tiny(cls=Tiny, dtype=jnp.float64, **kw):
    fields = dict(
        W=_w(N, N, dtype=dtype), U=_w(N, M, seed=1, dtype=dtype), b=jnp.zeros(N, dtype), input_size=M, hidden_size=N
    )
    fields.update(kw)
    return cls(**fields)


def test_the_well_formed_tiny_cell_passes():
    check_model(tiny())
    traj = gs.rollout(tiny(), XS)
    assert traj["h"].shape == (T + 1, N)


@pytree_cell
class NoBlocks:  # not a Cell: nothing inherited
    W: jax.Array
    input_size: int = static(M)

    def step(self, x, state, t):
        return (jnp.tanh(self.W @ state[0]),), {}


def test_missing_blocks():
    _refused(NoBlocks(_w(N, N)), "NoBlocks has no `blocks`", "blocks: ClassVar[tuple[str, ...]]")


@pytree_cell
class NoBlockSizes:
    W: jax.Array
    input_size: int = static(M)
    blocks = ("h",)

    def step(self, x, state, t):
        return (jnp.tanh(self.W @ state[0]),), {}


def test_missing_block_sizes():
    _refused(NoBlockSizes(_w(N, N)), "NoBlockSizes has no `block_sizes`", "define `block_sizes`")


@pytree_cell
class NoHiddenSize(Cell):  # Cell's default block_sizes reads hidden_size, which is not declared
    W: jax.Array
    input_size: int = static(M)

    def __call__(self, x, state):
        return (jnp.tanh(self.W @ state[0]),), {}


def test_default_block_sizes_without_hidden_size():
    _refused(NoHiddenSize(_w(N, N)), "NoHiddenSize.block_sizes failed", "hidden_size: int = static()")


@pytree_cell
class SizesMismatch(Tiny):
    blocks = ("h", "c")

    @property
    def block_sizes(self):
        return (self.hidden_size,)


def test_block_sizes_not_matching_blocks():
    _refused(
        tiny(SizesMismatch),
        "SizesMismatch.block_sizes=(4,) has 1 entries but blocks=('h', 'c') has 2",
        "give one size per block",
    )


@pytree_cell
class SizeAsData(Cell):
    W: jax.Array
    U: jax.Array
    input_size: int  # forgot static(): a pytree leaf, a tracer under jit
    hidden_size: int = static()

    def __call__(self, x, state):
        return (jnp.tanh(self.W @ state[0] + self.U @ x),), {}


def test_size_declared_as_data():
    _refused(
        SizeAsData(_w(N, N), _w(N, M), M, hidden_size=N),
        "SizeAsData.input_size = 3 (int) is declared as data",
        "`input_size: int = static(3)`",
    )
    _refused(
        tiny(input_size=jnp.asarray(M)),
        "Tiny.input_size=Array(3",
        "expected a non-negative int",
        "input_size: int = static()",
    )


@pytree_cell
class BareArray(Tiny):
    def __call__(self, x, state):
        return jnp.tanh(self.W @ state[0] + self.U @ x + self.b)


def test_step_returning_a_bare_array():
    _refused(
        tiny(BareArray),
        "BareArray.step / __call__ returned a bare array of shape (4,)",
        "return (new_state, aux)",
        "aux a dict",
    )


@pytree_cell
class NoAux(Tiny):
    def __call__(self, x, state):
        return (jnp.tanh(self.W @ state[0] + self.U @ x + self.b),)


@pytree_cell
class TwoBlocksNoAux(Tiny):  # returns (h, c): looks like a pair, but has no aux dict
    blocks = ("h", "c")

    def __call__(self, x, state):
        h, c = state
        return jnp.tanh(self.W @ h + self.U @ x + self.b), c


@pytree_cell
class AuxNotADict(Tiny):
    def __call__(self, x, state):
        a = self.W @ state[0] + self.U @ x + self.b
        return (jnp.tanh(a),), a


@pytree_cell
class NewStateBare(Tiny):  # returns (h, aux) instead of ((h,), aux)
    def __call__(self, x, state):
        a = self.W @ state[0] + self.U @ x + self.b
        return jnp.tanh(a), {"a": a}


@pytree_cell
class WrongBlockCount(Tiny):
    def __call__(self, x, state):
        h = jnp.tanh(self.W @ state[0] + self.U @ x + self.b)
        return (h, h), {}


@pytree_cell
class WrongBlockShape(Tiny):  # keeps a batch axis of 1 on its state
    def __call__(self, x, state):
        h = jnp.tanh(self.W @ state[0] + self.U @ x + self.b)
        return (h[None, :],), {}


@pytree_cell
class WrongBlockDtype(Tiny):  # adds a float64 constant to a float32 state under x64
    def __call__(self, x, state):
        h = jnp.tanh(self.W @ state[0] + self.U @ x + self.b)
        return (h + jnp.zeros(self.hidden_size, jnp.float64),), {}


def test_step_returning_no_aux_dict():
    _refused(tiny(NoAux), "NoAux.step / __call__ returned (array of shape (4,)) with no aux dict", "return (h,), {}")
    _refused(tiny(TwoBlocksNoAux), "returned (array of shape (4,), array of shape (4,)) with no aux dict", "aux a dict")
    _refused(tiny(AuxNotADict), "AuxNotADict.step / __call__ returned", "with no aux dict")


def test_new_state_not_a_tuple():
    _refused(tiny(NewStateBare), "NewStateBare.step / __call__ returned new_state as a bare array", "return (h,), aux")


def test_state_blocks_of_the_wrong_number_shape_or_dtype():
    _refused(tiny(WrongBlockCount), "returned 2 state blocks but blocks=('h',) has 1", "one array per block")
    _refused(
        tiny(WrongBlockShape), "state block 'h' as array of shape (1, 4)", "block_sizes says (4,)", "for ONE example"
    )
    _refused(
        tiny(WrongBlockDtype, dtype=jnp.float32),
        "state block 'h' in float64",
        "model computes in float32",
        "keep the state in the weights' dtype",
    )


def test_integer_leaf():
    @pytree_cell
    class WithPerm(Tiny):
        perm: jax.Array = None

        def __call__(self, x, state):
            out, aux = Tiny.__call__(self, x, state)
            return (out[0][self.perm],), aux

    _refused(
        tiny(WithPerm, perm=jnp.arange(N)),
        "WithPerm.perm is an array of dtype int",
        "declare it with static()",
        "cast it with .astype",
    )


def test_mixed_float_dtypes():
    cell = tiny(W=_w(N, N, dtype=jnp.float32), U=_w(N, M, dtype=jnp.float32), b=jnp.zeros(N, jnp.float64))
    msg = _refused(
        cell, "Tiny mixes floating-point dtypes in its weights", "b float64", "cast all weights to one dtype"
    )
    assert "W, U float32" in msg and "refuses to promote" in msg


@pytree_cell
class StringAsData(Tiny):
    activation: str = "tanh"  # forgot static()


def test_string_declared_as_data():
    _refused(
        tiny(StringAsData),
        "StringAsData.activation = 'tanh' (str) is declared as data",
        "activation: str = static('tanh')",
    )


def test_python_number_declared_as_data():
    @pytree_cell
    class FloatAsData(Tiny):
        scale: float = 0.5

    _refused(tiny(FloatAsData), "FloatAsData.scale = 0.5 (float)", "scale: float = static(0.5)")


class NotAPytree(Cell):  # no @pytree_cell: JAX cannot trace or jit it
    input_size = M
    hidden_size = N

    def __call__(self, x, state):
        return state, {}


def test_not_a_pytree():
    _refused(NotAPytree(), "NotAPytree is not a JAX pytree", "@gradscope.cells.pytree_cell")


def test_no_step_and_no_call():
    @pytree_cell
    class NoStep:
        W: jax.Array
        input_size: int = static(M)
        blocks = ("h",)
        block_sizes = (N,)

    _refused(NoStep(_w(N, N)), "NoStep has no `step`", "define __call__(x, state)")

    @pytree_cell
    class CallMissing(Cell):  # Cell.__call__ raises NotImplementedError
        W: jax.Array
        input_size: int = static(M)
        hidden_size: int = static(N)

    _refused(
        CallMissing(_w(N, N)),
        "CallMissing.step(x, state, t) is not implemented",
        "define",
        "__call__(x, state) -> (new_state, aux)",
    )


def test_step_that_only_works_on_batches():
    @pytree_cell
    class Batched(Tiny):
        def __call__(self, x, state):  # written for x of shape (B, m): x[:, 0] fails on one example
            return (jnp.tanh(self.W @ state[0] + x[:, 0]),), {}

    _refused(tiny(Batched), "Batched.step(x, state, t) failed when traced on one example", "x of shape (input_size,)")


def test_structure():
    @pytree_cell
    class UnknownStructure(Tiny):
        structure = "sparse"

    @pytree_cell
    class DiagonalWithoutDiag(Tiny):
        structure = "diagonal"

    _refused(tiny(UnknownStructure), "UnknownStructure.structure='sparse' is not allowed", "'dense', 'diagonal'")
    _refused(
        tiny(DiagonalWithoutDiag),
        "DiagonalWithoutDiag.structure='diagonal' needs jacobian_diag",
        'set structure = "dense"',
    )


def test_jacobian_and_jacobian_diag_of_the_wrong_shape():
    @pytree_cell
    class BadJacobian(Tiny):
        def jacobian(self, x, state, t=None):
            return self.W  # the pair is missing

    @pytree_cell
    class BadDiag(Tiny):
        structure = "diagonal"

        def jacobian_diag(self, x, state, t=None):
            return jnp.ones(N), jnp.ones((N, N))  # dS'/dx must be (N, M)

    _refused(
        tiny(BadJacobian),
        "BadJacobian.jacobian(x, state, t) returned (array of shape (4, 4))",
        "(4, 4), (4, 3)",
        "delete jacobian",
    )
    _refused(
        tiny(BadDiag),
        "BadDiag.jacobian_diag(x, state, t) returned",
        "(4,), (4, 3)",
        'set structure = "dense"',
        entry=gs.lag_profile,
    )


def test_readout_of_the_wrong_size():
    @pytree_cell
    class BadReadout(Tiny):
        def readout(self, state, x):
            return jnp.concatenate([state[0], x])  # size N + M, but output_size says N

    _refused(
        tiny(BadReadout),
        "BadReadout.readout(state, x) returned array of shape (7,) but output_size is 4",
        "set output_size",
    )


def test_the_check_runs_at_every_engine_entry():
    bad = tiny(NoAux)
    for entry in (gs.rollout, gs.lag_profile, gs.step_jacobians, gs.lyapunov_spectrum):
        _refused(bad, "no aux dict", entry=entry)


def test_one_trace_per_model_structure(monkeypatch):
    _protocol._CACHE.clear()
    check_model(tiny())  # traced once

    def boom(*a, **k):
        raise AssertionError("traced again")

    monkeypatch.setattr(_protocol.jax, "eval_shape", boom)
    check_model(tiny(W=_w(N, N, seed=5)))  # same structure, new weights: cached
    with pytest.raises(ConfigError, match="traced again"):
        check_model(tiny(dtype=jnp.float32))  # another dtype is another structure: traced


# --- every built-in model passes ----------------------------------------------------------------------------


def test_every_registered_cell_passes():
    key = jax.random.key(0)
    for name in gs.cells.names():
        check_model(gs.cells.make(name, M, N, key=key, dtype=jnp.float64))


@pytest.mark.slow
def test_every_registered_cell_passes_in_float32_under_x64():
    """A float32 cell whose step promotes its state to float64 (a float64 constant under x64) would be refused."""
    key = jax.random.key(0)
    for name in gs.cells.names():
        check_model(gs.cells.make(name, M, N, key=key, dtype=jnp.float32))


def test_networks_and_mlps_pass():
    key = jax.random.key(1)
    check_model(gs.stack("lstm", M, N, 3, key=key, residual=True))
    check_model(gs.stack("indrnn", M, N, 2, key=key))
    check_model(gs.bidirectional("gru", M, N, key=key))
    check_model(gs.Bidirectional(gs.stack("rnn-tanh", M, N, 2, key=key), gs.stack("lstm", M, N, 2, key=key)))
    check_model(gs.make_mlp(N, 5, key=key, batch_norm=True, residual=True))
    check_model(gs.make_mlp(N, 3, key=key, activation="relu", init="orthogonal", dtype=jnp.float64))


def test_the_suites_own_cells_pass():
    from _engine_ref import build

    for name in ("bn-lstm", "bn-rnn", "lstm", "lru"):
        if name in gs.cells.names():
            check_model(build(name))


# --- the documented examples --------------------------------------------------------------------------------


def _readme_block() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Your own cells", 1)[1].split("\n## ", 1)[0]
    return section.split("```python", 1)[1].split("```", 1)[0]


def _cornn_class():
    """The README's CoRNN class (the code up to its construction), without running the example."""
    code = _readme_block().split("k1, k2, k3 =", 1)[0]
    ns: dict = {}
    exec(compile(code, "README.md", "exec"), ns)
    return ns["CoRNN"]


def _cornn_unrolled(W, Wz, V, b, dt, gamma, eps, xs, k, t):
    """S_k ↦ S_t for coRNN, from Rusch & Mishra (2021), eq. 3 (written here, not the README's code)."""
    n = W.shape[0]

    def f(s):
        y, z = s[:n], s[n:]
        for j in range(k, t):
            z = z + dt * (jnp.tanh(W @ y + Wz @ z + V @ xs[j] + b) - gamma * y - eps * z)
            y = y + dt * z
        return jnp.concatenate([y, z])

    return f


def test_readme_cornn_lag_profile_matches_jacrev_of_the_equations():
    CoRNN = _cornn_class()
    m, n, steps = 2, 3, 6
    rng = np.random.default_rng(3)
    W, Wz, V, b = (jnp.asarray(rng.normal(size=s)) for s in [(n, n), (n, n), (n, m), (n,)])
    cell = CoRNN(W, Wz, V, b, input_size=m, hidden_size=n, dt=0.3, gamma=0.7, eps=0.2)
    assert cell.blocks == ("y", "z") and not callable(getattr(cell, "jacobian", None))  # autodiff path
    xs = rng.normal(size=(steps, m))
    lp = gs.lag_profile(cell, xs)
    S = gs.rollout(cell, xs).flat
    for k in range(steps):
        P = np.asarray(jax.jacrev(_cornn_unrolled(W, Wz, V, b, 0.3, 0.7, 0.2, jnp.asarray(xs), k, steps))(S[k]))
        np.testing.assert_allclose(float(lp.log10_spectral[k]), np.log10(np.linalg.norm(P, 2)), atol=1e-10)
        np.testing.assert_allclose(float(lp.log10_frobenius[k]), np.log10(np.linalg.norm(P)), atol=1e-10)
        np.testing.assert_allclose(
            float(lp.blocks["z→y"]["log10_frobenius"][k]), np.log10(np.linalg.norm(P[:n, n:])), atol=1e-10
        )


def _doc_blocks() -> list[str]:
    text = (ROOT / "docs" / "custom-cells.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)
    # the `block_sizes` fragment is a method shown on its own, not a program
    return [b for b in blocks if not b.lstrip().startswith("@property")]


def test_doc_leaky_stack_matches_its_closed_form():
    """Two leaky diagonal layers: ∂S'/∂S = [[diag λ1, 0], [(1−λ2) B2 C1 diag λ1, diag λ2]] is constant, so
    ∂S_T/∂S_k = J^(T−k) (NumPy, float64)."""
    ns: dict = {}
    exec(compile(_doc_blocks()[0].split("k1, k2, k3 =", 1)[0], "custom-cells.md", "exec"), ns)
    leaky_code = next(b for b in _doc_blocks() if "class Leaky" in b).split("net = ", 1)[0]
    exec(compile(leaky_code, "custom-cells.md", "exec"), ns)
    l1, l2 = ns["leaky"](jax.random.key(1), 2, 3), ns["leaky"](jax.random.key(2), 2, 3)
    net = gs.Stack((l1, l2))
    steps = 7
    xs = np.random.default_rng(4).normal(size=(steps, 2))
    lp = gs.lag_profile(net, xs)
    lam1, lam2 = (1 / (1 + np.exp(-np.asarray(c.nu, np.float64))) for c in (l1, l2))
    B2, C1 = np.asarray(l2.B, np.float64), np.asarray(l1.C, np.float64)
    J = np.block([[np.diag(lam1), np.zeros((3, 3))], [(1 - lam2)[:, None] * B2 @ C1 @ np.diag(lam1), np.diag(lam2)]])
    for k in range(steps):
        P = np.linalg.matrix_power(J, steps - k)
        np.testing.assert_allclose(float(lp.log10_spectral[k]), np.log10(np.linalg.norm(P, 2)), atol=1e-10)
        np.testing.assert_allclose(
            float(lp.blocks["layer0.h→layer1.h"]["log10_frobenius"][k]), np.log10(np.linalg.norm(P[3:, :3])), atol=1e-10
        )


@pytest.mark.slow
def test_custom_cells_page_runs():
    ns: dict = {}
    for i, code in enumerate(_doc_blocks()):
        exec(compile(code.replace("(4, 200, 2)", "(2, 12, 2)"), f"custom-cells.md block {i}", "exec"), ns)
    assert ns["J"].shape == (32, 32) and ns["lp"].log10_spectral.shape == (2, 12)


# --- citations (docs/references.md) ---------------------------------------------------------------------------

_CITATION = re.compile(r"\b([A-Z][A-Za-zÀ-ÿ'\-]+)(?: et al\.?| & [A-Z][A-Za-zÀ-ÿ'\-]+),? \(?((?:19|20)\d\d)\b")


def _sources(*roots):
    for root in roots:
        path = ROOT / root
        files = [path] if path.is_file() else sorted(path.rglob("*"))
        for f in files:
            if f.suffix in (".py", ".md") and "_hooks" not in f.parts:
                yield f


def test_every_author_year_citation_has_a_full_reference():
    """Each "Surname et al. YEAR" / "Surname & Other YEAR" in the code, tests, notebooks and docs names an entry
    of docs/references.md (an item holding both the surname and the year)."""
    refs = (ROOT / "docs" / "references.md").read_text(encoding="utf-8")
    items = re.split(r"\n- \*\*", refs)
    missing = set()
    for f in _sources("gradscope", "tests", "notebooks", "docs", "README.md"):
        for surname, year in _CITATION.findall(f.read_text(encoding="utf-8")):
            if int(year) < 2026 and not any(surname in it and year in it for it in items):
                missing.add(f"{surname} {year} ({f.relative_to(ROOT)})")
    assert not missing, sorted(missing)


def test_no_citation_points_outside_the_repository():
    """Research notes outside the repository (papers.md, ecosystem.md, DESIGN.md) are never cited: cite papers."""
    pattern = re.compile(r"papers\.md|ecosystem\.md|DESIGN\.md|DESIGN §")
    roots = (
        "gradscope/cells",
        "gradscope/engine",
        "gradscope/io",
        "gradscope/norms.py",
        "gradscope/nets.py",
        "gradscope/mlp.py",
        "gradscope/_rollout.py",
        "tests",
        "notebooks",
        "docs",
        "README.md",
    )
    hits = [
        f"{f.relative_to(ROOT)}:{i}"
        for f in _sources(*roots)
        for i, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line)
    ]
    hits = [h for h in hits if not h.startswith("tests/test_protocol.py")]  # this test names them
    assert not hits, hits
