"""Named input sources (gradscope.experiments.inputs): shapes, distributions, task inputs and error messages."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradscope._errors import ConfigError, UnknownNameError
from gradscope.experiments import inputs


def test_sources_listed():
    assert set(inputs.names()) == {"noise", "uniform", "zeros", "adding", "copy", "temporal-order"}


def test_noise_is_standard_normal():
    xs = np.asarray(inputs.make_inputs("noise", jax.random.key(0), 16, 50, 8), np.float64)
    assert xs.shape == (16, 50, 8) and xs.dtype == np.float64  # float64 array of a float32 draw
    # 6400 draws: mean within 5 standard errors of 0, variance near 1
    assert abs(xs.mean()) < 5 / np.sqrt(xs.size)
    assert abs(xs.var() - 1) < 0.1


def test_noise_default_dtype_is_float32():
    xs = inputs.make_inputs("noise", jax.random.key(0), 2, 3, 4)
    assert xs.dtype == jnp.float32
    assert inputs.make_inputs("noise", jax.random.key(0), 2, 3, 4, dtype="float64").dtype == jnp.float64


def test_uniform_in_unit_interval_with_mean_half():
    xs = np.asarray(inputs.make_inputs("uniform", jax.random.key(1), 32, 40, 2))
    assert xs.shape == (32, 40, 2)
    assert xs.min() >= 0 and xs.max() < 1
    assert abs(xs.mean() - 0.5) < 5 * np.sqrt(1 / 12 / xs.size)


def test_zeros():
    xs = inputs.make_inputs("zeros", jax.random.key(0), 2, 5, 3)
    assert xs.shape == (2, 5, 3) and not np.any(np.asarray(xs))


def test_same_key_same_inputs_and_different_key_differs():
    a = inputs.make_inputs("noise", jax.random.key(3), 2, 5, 3)
    b = inputs.make_inputs("noise", jax.random.key(3), 2, 5, 3)
    c = inputs.make_inputs("noise", jax.random.key(4), 2, 5, 3)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_adding_inputs_are_values_and_two_markers():
    xs = np.asarray(inputs.make_inputs("adding", jax.random.key(0), 4, 20, None))
    assert xs.shape == (4, 20, 2)
    values, markers = xs[..., 0], xs[..., 1]
    assert values.min() >= 0 and values.max() < 1
    # exactly one marker in each half of the sequence (Li et al. 2018 set-up)
    assert np.array_equal(markers[:, :10].sum(1), np.ones(4))
    assert np.array_equal(markers[:, 10:].sum(1), np.ones(4))


@pytest.mark.parametrize("source,m", [("copy", 10), ("temporal-order", 6)])
def test_task_inputs_are_one_hot(source, m):
    xs = np.asarray(inputs.make_inputs(source, jax.random.key(0), 3, 40, None))
    assert xs.shape == (3, 40, m)
    assert np.array_equal(xs.sum(-1), np.ones((3, 40)))
    assert inputs.task_input_size(source, 40) == m


def test_task_input_size_mismatch_is_an_error():
    with pytest.raises(ConfigError, match="input_size=3.*adding.*size 2"):
        inputs.make_inputs("adding", jax.random.key(0), 2, 10, 3)


def test_free_source_needs_input_size():
    with pytest.raises(ConfigError, match="input_size=None"):
        inputs.make_inputs("noise", jax.random.key(0), 2, 10, None)


def test_unknown_source_lists_sources_and_suggests():
    with pytest.raises(UnknownNameError) as e:
        inputs.make_inputs("uniformm", jax.random.key(0), 2, 10, 2)
    msg = str(e.value)
    assert "did you mean uniform" in msg and "noise" in msg and "temporal-order" in msg


@pytest.mark.parametrize("arg", ["batch", "length", "input_size"])
def test_non_positive_sizes_are_errors(arg):
    kw = dict(batch=2, length=5, input_size=3) | {arg: 0}
    with pytest.raises(ConfigError, match=arg):
        inputs.make_inputs("noise", jax.random.key(0), **kw)
