"""Task generators: deterministic by key and correct by construction (checked by independent NumPy decoding)."""

import math
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradscope._errors import ConfigError, GradscopeError, UnknownNameError
from gradscope.experiments import tasks


def _np(a):
    return np.asarray(a)


# ------------------------------------------------------------------------------------------ registry


def test_registry_lists_all_tasks():
    assert set(tasks.names()) == {"adding", "copy", "temporal-order", "digits", "permuted-digits", "text"}
    assert all(isinstance(d, str) and d for d in tasks.names().values())


def test_unknown_task_and_bad_options_raise_clear_errors():
    with pytest.raises(UnknownNameError, match="did you mean adding"):
        tasks.make("addng")
    with pytest.raises(ConfigError, match="option 'alphabt' is not allowed for task 'copy'.*alphabet"):
        tasks.make("copy", alphabt=4)
    with pytest.raises(ConfigError, match="length=1"):
        tasks.make("adding", length=1)
    with pytest.raises(ConfigError, match="length=5"):
        tasks.make("temporal-order", length=5)
    with pytest.raises(ConfigError, match="disagree"):
        tasks.make("copy", length=30, delay=5, symbols=10)
    with pytest.raises(ConfigError, match="length=20"):
        tasks.make("copy", length=20, symbols=10)  # needs 2*symbols + 1
    assert issubclass(UnknownNameError, GradscopeError)


@pytest.mark.parametrize("name,length", [("adding", 20), ("copy", 25), ("temporal-order", 30)])
def test_synthetic_tasks_are_deterministic_by_key_and_jittable(name, length):
    task = tasks.make(name, length=length)
    a = task.sample(jax.random.key(3), 16)
    b = task.sample(jax.random.key(3), 16)
    c = task.sample(jax.random.key(4), 16)
    j = jax.jit(task.sample, static_argnums=1)(jax.random.key(3), 16)
    for x, y, z in zip(a, b, j):
        np.testing.assert_array_equal(_np(x), _np(y))
        np.testing.assert_array_equal(_np(x), _np(z))
    assert not np.array_equal(_np(a[0]), _np(c[0]))
    xs, ys = a
    assert xs.shape == (16, length, task.input_size) and xs.dtype == jnp.float32
    assert task.length == length


# -------------------------------------------------------------------------------------------- adding


def test_adding_target_is_sum_of_marked_values():
    T, B = 40, 256
    task = tasks.make("adding", length=T)
    xs, ys = (_np(a).astype(np.float64) for a in task.sample(jax.random.key(0), B))
    values, markers = xs[..., 0], xs[..., 1]
    assert np.all((values >= 0) & (values < 1))
    assert set(np.unique(markers)) == {0.0, 1.0}
    for b in range(B):
        idx = np.flatnonzero(markers[b])
        assert len(idx) == 2 and idx[0] < T // 2 <= idx[1]
        assert ys[b] == pytest.approx(values[b, idx[0]] + values[b, idx[1]], abs=1e-6)
    # both markers cover their halves (uniform positions)
    first = np.argmax(markers[:, : T // 2], axis=1)
    assert first.min() == 0 and first.max() == T // 2 - 1


def test_adding_baseline_is_variance_of_the_sum():
    task = tasks.make("adding", length=10)
    assert task.baseline == pytest.approx(2 / 12)  # Var(U(0,1)) = 1/12, two independent terms
    _, ys = task.sample(jax.random.key(1), 20000)
    const = jnp.ones((20000, 1), jnp.float32)  # predict 1 = E[sum]
    assert float(task.loss(const, ys)) == pytest.approx(1 / 6, abs=0.01)
    assert task.success(0.001) and not task.success(0.1)


# ---------------------------------------------------------------------------------------------- copy


def test_copy_task_layout_and_targets():
    A, S, delay = 5, 4, 7
    task = tasks.make("copy", delay=delay, alphabet=A, symbols=S)
    T = 2 * S + delay
    assert task.length == T and task.input_size == A + 2 and task.output_size == A
    xs, ys = (_np(a) for a in task.sample(jax.random.key(0), 64))
    assert np.all(xs.sum(-1) == 1)  # one-hot
    codes = xs.argmax(-1)
    np.testing.assert_array_equal(codes[:, :S], ys)  # the targets are the presented symbols
    assert np.all(ys < A)
    assert np.all(codes[:, S : T - S - 1] == A)  # blanks during the delay
    assert np.all(codes[:, T - S - 1] == A + 1)  # delimiter
    assert np.all(codes[:, T - S :] == A)  # blanks while recalling


def test_copy_loss_baseline_and_perfect_predictor():
    task = tasks.make("copy", length=30, alphabet=8, symbols=5)
    xs, ys = task.sample(jax.random.key(1), 32)
    uniform = jnp.zeros((32, 30, 8))
    assert float(task.loss(uniform, ys)) == pytest.approx(math.log(8), abs=1e-6)
    assert task.baseline == pytest.approx(math.log(8))
    perfect = jnp.zeros((32, 30, 8)).at[:, -5:, :].set(50.0 * jax.nn.one_hot(ys, 8))
    assert float(task.metric(perfect, ys)) == 1.0 and task.success(float(task.metric(perfect, ys)))
    assert float(task.loss(perfect, ys)) < 1e-6


# ------------------------------------------------------------------------------------ temporal order


def test_temporal_order_labels_decode_independently():
    T, B = 50, 400
    task = tasks.make("temporal-order", length=T)
    xs, ys = (_np(a) for a in task.sample(jax.random.key(2), B))
    codes = xs.argmax(-1)
    assert np.all(xs.sum(-1) == 1)
    for b in range(B):
        rel = np.flatnonzero(codes[b] < 2)  # A=0, B=1 are the relevant symbols
        assert len(rel) == 2
        t1, t2 = rel
        assert T // 10 <= t1 < 2 * T // 10 and 4 * T // 10 <= t2 < 5 * T // 10
        assert ys[b] == 2 * codes[b, t1] + codes[b, t2]
    assert set(np.unique(ys)) == {0, 1, 2, 3}
    assert task.baseline == pytest.approx(math.log(4))
    perfect = 30.0 * jax.nn.one_hot(ys, 4)
    assert float(task.metric(perfect, ys)) == 0.0 and task.success(0.0)
    assert not task.success(0.02)  # Pascanu: success is < 1% misclassified


# -------------------------------------------------------------------------------------------- digits


def test_digits_shape_values_and_labels_match_sklearn():
    sk = pytest.importorskip("sklearn.datasets")
    d = sk.load_digits()
    task = tasks.make("digits")
    xs, ys = (_np(a) for a in task.sample(jax.random.key(0), 32))
    assert xs.shape == (32, 64, 1) and task.input_size == 1 and task.output_size == 10
    assert 0.0 <= xs.min() and xs.max() <= 1.0
    images = d.data / 16.0
    for x, y in zip(xs[:, :, 0], ys):
        hits = np.flatnonzero(np.all(np.isclose(images, x), axis=1))
        assert len(hits) >= 1 and y in d.target[hits]
    tx, ty = task.dataset("train")
    vx, vy = task.dataset("test")
    assert len(ty) + len(vy) == len(d.target) and len(ty) == round(0.8 * len(d.target))
    assert task.baseline == pytest.approx(math.log(10), abs=0.01)


def test_permuted_digits_permutation_is_fixed_by_seed():
    pytest.importorskip("sklearn")
    plain = _np(tasks.make("digits").dataset("train")[0])[..., 0]
    p0 = _np(tasks.make("permuted-digits", seed=0).dataset("train")[0])[..., 0]
    p0b = _np(tasks.make("permuted-digits", seed=0).dataset("train")[0])[..., 0]
    p1 = _np(tasks.make("permuted-digits", seed=1).dataset("train")[0])[..., 0]
    np.testing.assert_array_equal(p0, p0b)
    assert not np.array_equal(p0, p1) and not np.array_equal(p0, plain)
    # the same column permutation is applied to every image (border columns are all zero, so
    # pick any matching column), and it is a bijection on the pixel values of each image
    perm = [int(np.flatnonzero(np.all(plain == p0[:, [j]], axis=0))[0]) for j in range(64)]
    np.testing.assert_array_equal(plain[:, perm], p0)
    np.testing.assert_array_equal(np.sort(plain, axis=1), np.sort(p0, axis=1))
    with pytest.raises(ConfigError, match="length=32"):
        tasks.make("digits", length=32)


def test_digits_without_sklearn_raises_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(GradscopeError, match="pip install scikit-learn"):
        tasks.make("digits")


# ---------------------------------------------------------------------------------------------- text


def test_text_split_is_deterministic_and_partitions_the_corpus():
    from pydoc_data import topics

    corpus = "\n".join(topics.topics[k] for k in sorted(topics.topics))
    a, b = tasks.make("text", length=20), tasks.make("text", length=20)
    parts = []
    for split in ("train", "valid", "test"):
        np.testing.assert_array_equal(a.split(split), b.split(split))
        parts.append(a.decode(a.split(split)))
    assert "".join(parts) == corpus
    assert len(parts[0]) == pytest.approx(0.9 * len(corpus), abs=1)
    assert a.vocab == "".join(sorted(set(corpus))) and a.input_size == len(a.vocab)
    with pytest.raises(ConfigError, match="split='dev'"):
        a.split("dev")


def test_text_windows_are_next_character_pairs_from_the_split():
    task = tasks.make("text", length=20)
    xs, ys = (_np(a) for a in task.sample(jax.random.key(0), 8))
    assert xs.shape == (8, 20, task.input_size) and ys.shape == (8, 20)
    train_text = task.decode(task.split("train"))
    for x, y in zip(xs.argmax(-1), ys):
        np.testing.assert_array_equal(x[1:], y[:-1])  # targets are the inputs shifted by one
        assert task.decode(np.concatenate([x, y[-1:]])) in train_text


def test_text_bpc_of_uniform_predictor_is_log2_vocab():
    task = tasks.make("text", length=10)
    _, ys = task.sample(jax.random.key(0), 4)
    uniform = jnp.zeros((4, 10, task.output_size))
    assert float(task.metric(uniform, ys)) == pytest.approx(math.log2(task.output_size), abs=1e-6)
    # the baseline (unigram entropy) is below the uniform predictor's loss
    assert task.baseline < math.log(task.output_size)


def test_loaded_data_is_not_part_of_a_task_identity():
    """Text's corpus and Digits' arrays are set in __post_init__: out of the options (describe), the repr,
    equality and hashing, so equal options give equal tasks (jit's static-argument cache relies on it)."""
    import dataclasses

    a, b = tasks.make("text", length=20), tasks.make("text", length=20)
    assert a == b and hash(a) == hash(b) and a != tasks.make("text", length=21)
    assert repr(a) == "Text(length=20)"
    assert not any(k.startswith("_") for k in a.describe())
    assert [f.name for f in dataclasses.fields(a) if f.init] == ["length"]
    assert a.input_size == a.output_size == len(a.vocab) > 0
