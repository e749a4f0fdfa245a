"""The CLI's store of traced stage programs (gradscope.engine._exported): a stored program gives the numbers
of the jitted function it was exported from, a damaged file is a miss, a user's own cell class is never
stored, the key follows shapes and options, and the folder is bounded. (That a cold and a warm CLI run give
the same report, with these files damaged or not, is tests/test_cache.py.)"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _engine_ref import build, inputs

from gradscope import engine
from gradscope.engine import _exported, spectra
from gradscope.engine._exported import cached_program


def _fresh(fn):
    """A new `cached_program` of ``fn``'s function: its own in-memory table, so that files are read again."""
    return cached_program(static_argnames=("batched", "k", "warmup"))(fn.__wrapped__)


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv(_exported.ENV, str(tmp_path / "programs"))
    return tmp_path / "programs"


def _jac(seed=0, B=2, T=9, d=6):
    return jnp.asarray(np.random.default_rng(seed).normal(size=(B, T, d, d)) * 0.5)


def test_a_stored_program_gives_the_jitted_numbers_and_is_read_back(store):
    J = _jac()
    want = jax.jit(spectra._lyapunov_of.__wrapped__, static_argnames=("batched", "k", "warmup"))(
        J, batched=True, k=3, warmup=2
    )
    f = _fresh(spectra._lyapunov_of)
    got = f(J, batched=True, k=3, warmup=2)
    files = sorted(store.glob("*.jaxexport"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    again = _fresh(spectra._lyapunov_of)(J, batched=True, k=3, warmup=2)  # read from the file, not traced
    assert sorted(store.glob("*.jaxexport")) == files and files[0].stat().st_mtime_ns >= stamp
    for a, b, c in zip(want, got, again):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        np.testing.assert_array_equal(np.asarray(a), np.asarray(c))


def test_a_damaged_file_is_a_miss_and_is_rewritten(store):
    J = _jac(1)
    want = _fresh(spectra._lyapunov_of)(J, batched=True, k=2, warmup=0)
    (path,) = store.glob("*.jaxexport")
    for damage in (b"", b"not a program", path.read_bytes()[:100]):
        path.write_bytes(damage)
        got = _fresh(spectra._lyapunov_of)(J, batched=True, k=2, warmup=0)
        for a, b in zip(want, got):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert jax.export.deserialize(bytearray(path.read_bytes())) is not None  # rewritten whole


def test_the_key_follows_shapes_dtypes_options_and_the_model_structure():
    f = spectra._lyapunov_of.__wrapped__
    J = [_jac(0)]
    head = jax.tree.structure((J[0],))
    base = _exported._key(f, J, {"k": 2}, head)
    assert base == _exported._key(f, [_jac(5)], {"k": 2}, head)  # values are not part of it
    assert base != _exported._key(f, J, {"k": 3}, head)
    assert base != _exported._key(f, [_jac(0, T=10)], {"k": 2}, head)
    assert base != _exported._key(f, [_jac(0).astype(jnp.float32)], {"k": 2}, head)
    gru, lstm = build("gru"), build("lstm")
    assert _exported._key(f, J, {}, jax.tree.structure(gru)) != _exported._key(f, J, {}, jax.tree.structure(lstm))
    # a static field (here the activation) is part of the structure, so part of the key
    a, b = build("rnn-tanh"), dataclasses.replace(build("rnn-tanh"), activation="relu")
    assert _exported._key(f, J, {}, jax.tree.structure(a)) != _exported._key(f, J, {}, jax.tree.structure(b))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class _UserCell:
    """A cell defined outside gradscope: its code is not in the key's source digest."""

    w: jax.Array
    input_size: int = dataclasses.field(default=2, metadata=dict(static=True))
    hidden_size: int = dataclasses.field(default=3, metadata=dict(static=True))
    blocks: tuple = dataclasses.field(default=("h",), metadata=dict(static=True))
    block_sizes: tuple = dataclasses.field(default=(3,), metadata=dict(static=True))
    dtype: object = dataclasses.field(default=jnp.float64, metadata=dict(static=True))

    def init_state(self, batch_shape=()):
        return (jnp.zeros(batch_shape + (3,), self.dtype),)

    def prepare_inputs(self, xs):
        return xs

    def step(self, x, state, t):
        h = jnp.tanh(self.w @ state[0] + x.sum())
        return (h,), {}


def test_a_model_with_a_class_from_outside_gradscope_is_never_stored(store):
    cell = _UserCell(jnp.asarray(np.random.default_rng(0).normal(size=(3, 3)) * 0.5))
    st = engine.trajectory_steps(cell, inputs(5, 2))
    assert st.jac.shape == (5, 3, 3)
    assert not list(store.glob("*.jaxexport")) if store.exists() else True
    engine.trajectory_steps(build("gru", 2, 3), inputs(5, 2))
    assert len(list(store.glob("*.jaxexport"))) == 1  # the registered cell's program is stored


def test_the_store_keeps_at_most_max_files(store, monkeypatch):
    monkeypatch.setattr(_exported, "MAX_FILES", 2)
    for T in (4, 5, 6):
        _fresh(spectra._lyapunov_of)(_jac(0, T=T), batched=True, k=2, warmup=0)
    assert len(list(store.glob("*.jaxexport"))) == 2
