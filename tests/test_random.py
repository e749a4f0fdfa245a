"""gradscope._random: the host-side twins of jax.random's key, split and uniform.

The truth is `jax.random` itself, compared bit for bit: the same keys, the same weights, the same inputs as
before the twins existed. Cases the twins do not reproduce must be handed to `jax.random`.
"""

from __future__ import annotations

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradscope import _random

SEEDS = [0, 1, 7, 12345, 2**31 - 1]
# shapes no other test draws, one set per compilation setting: JAX keeps a compiled sampler per shape in memory
# whatever the setting it was compiled under, so a shared shape could hand one variant the other's program
SHAPES = {False: [(1,), (11,), (3, 13), (129, 31), (4, 51, 3)], True: [(2,), (17,), (5, 7), (131, 29), (3, 53, 2)]}


def _bounds():
    rng = np.random.default_rng(0)
    out = [(0.0, 1.0), (-1.0, 1.0), (-0.17677669529663687, 0.17677669529663687), (2.5, 3.0), (1, 2)]
    for _ in range(12):  # bounds whose range is not a power of two: where a fused multiply-add rounds differently
        lo, hi = np.sort(rng.normal(size=2) * 10.0 ** rng.uniform(-3, 2, size=2))
        out.append((float(lo), float(hi)))
    return out


def _same(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("seed", SEEDS)
def test_key_and_split_are_jax_random_bit_for_bit(seed):
    k = _random.key(seed)
    assert _same(jax.random.key_data(k), jax.random.key_data(jax.random.key(seed)))
    for num in (2, 3, 7, (2, 3)):
        assert _same(jax.random.key_data(_random.split(k, num)), jax.random.key_data(jax.random.split(k, num)))
    assert _same(jax.random.key_data(_random.split(k)), jax.random.key_data(jax.random.split(k)))
    for num in (0, 1, 2, 5):
        keys = _random.split_keys(k, num)
        assert isinstance(keys, tuple) and len(keys) == num
        for got, want in zip(keys, jax.random.split(k, num)):
            assert got.shape == () and _same(jax.random.key_data(got), jax.random.key_data(want))


@pytest.mark.parametrize("optimised_code", [False, True], ids=["O0", "optimised"])
@pytest.mark.parametrize("seed", SEEDS)
def test_uniform_is_jax_random_bit_for_bit(seed, optimised_code, request):
    """In optimised CPU code XLA rounds uniform's final multiply-add once (a fused multiply-add), at -O0 (this
    suite's setting, conftest.py) twice: the twin matches jax.random under either."""
    if optimised_code:
        request.getfixturevalue("optimised")
    k = jax.random.split(jax.random.key(seed))[1]
    for shape in SHAPES[optimised_code]:
        for lo, hi in _bounds():
            got = _random.uniform(k, shape, jnp.float32, lo, hi)
            assert isinstance(got, jax.Array)
            assert _same(got, jax.random.uniform(k, shape, jnp.float32, lo, hi)), (shape, lo, hi)
    shape = (5, 4 + optimised_code)
    with jax.enable_x64(False):  # the defaults: float32, [0, 1)
        assert _same(_random.uniform(k, shape), jax.random.uniform(k, shape))


NORMAL_SHAPES = {
    False: [(1,), (9,), (3, 11), (127, 33), (2, 47, 3)],
    True: [(6,), (19,), (7, 5), (125, 27), (3, 41, 2)],
}


@pytest.mark.parametrize("optimised_code", [False, True], ids=["O0", "optimised"])
@pytest.mark.parametrize("seed", SEEDS)
def test_normal_is_jax_random_bit_for_bit(seed, optimised_code, request):
    if optimised_code:
        request.getfixturevalue("optimised")
    k = jax.random.split(jax.random.key(seed))[0]
    for shape in NORMAL_SHAPES[optimised_code]:
        got = _random.normal(k, shape, jnp.float32)
        assert isinstance(got, jax.Array)
        assert _same(got, jax.random.normal(k, shape, jnp.float32)), shape
    with jax.enable_x64(False):  # the defaults: float32
        assert _same(_random.normal(k, 4 + optimised_code), jax.random.normal(k, (4 + optimised_code,)))


def test_normal_compiles_no_random_number_generator(caplog):
    """`jax.random.normal` on a fresh shape compiles Threefry with erf⁻¹; the twin only erf⁻¹."""
    k = jax.random.key(8)
    with jax.log_compiles(True), caplog.at_level(logging.DEBUG, logger="jax"):
        _random.normal(k, (13, 21, 2), jnp.float32)
    compiled = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Compiling ")]
    assert compiled and all(m.startswith("Compiling jit(_sqrt2_erf_inv)") for m in compiled), compiled


def test_the_twins_compile_nothing(caplog):
    """A fresh shape costs `jax.random` a compiled program; the twins none."""
    k = jax.random.key(3)
    with jax.log_compiles(True), caplog.at_level(logging.DEBUG, logger="jax"):
        jax.random.uniform(k, (13, 19, 3), jnp.float32, -0.3, 0.3)
        assert [r for r in caplog.records if "ompil" in r.getMessage()]  # the capture sees a compilation
        caplog.clear()
        _random.uniform(k, (13, 17, 3), jnp.float32, -0.3, 0.3)
        _random.split(_random.key(11), 9)
        k1, k2, k3 = _random.split_keys(_random.key(12), 3)  # unpacking a key array would compile `unstack`
        _random.uniform(k3, (13, 17, 3), jnp.float32, -0.3, 0.3)
    assert not [r for r in caplog.records if "ompil" in r.getMessage()]


def test_what_the_twins_do_not_reproduce_goes_to_jax_random():
    k = jax.random.key(4)
    # a traced key (inside jit): jax.random itself, traced
    f = jax.jit(lambda k: _random.uniform(k, (3,), jnp.float32, -1.0, 0.5))
    assert _same(f(k), jax.random.uniform(k, (3,), jnp.float32, -1.0, 0.5))
    g = jax.jit(lambda k: jax.random.key_data(_random.split(k, 3)))
    assert _same(g(k), jax.random.key_data(jax.random.split(k, 3)))
    h = jax.jit(lambda k: jnp.stack([jax.random.key_data(x) for x in _random.split_keys(k, 3)]))
    assert _same(h(k), jax.random.key_data(jax.random.split(k, 3)))
    # array-valued bounds and legacy uint32 keys
    lo = jnp.zeros(3)
    assert _same(_random.uniform(k, (3,), jnp.float32, lo, 2.0), jax.random.uniform(k, (3,), jnp.float32, lo, 2.0))
    raw = jax.random.PRNGKey(5)
    assert _same(_random.uniform(raw, (4,)), jax.random.uniform(raw, (4,)))
    assert _same(_random.split(raw, 3), jax.random.split(raw, 3))
    # float64 draws (their multiply-add is not rounded on the host)
    with jax.enable_x64(True):
        k64 = jax.random.key(6)
        got = _random.uniform(k64, (50,), jnp.float64, -0.3, 0.3)
        assert got.dtype == jnp.float64
        assert _same(got, jax.random.uniform(k64, (50,), jnp.float64, -0.3, 0.3))
    assert _same(jax.random.key_data(_random.key(-1)), jax.random.key_data(jax.random.key(-1)))
    # normal: a traced key, a legacy key, float64
    n = jax.jit(lambda k: _random.normal(k, (3, 2)))
    assert _same(n(k), jax.random.normal(k, (3, 2)))
    assert _same(_random.normal(raw, (5,)), jax.random.normal(raw, (5,)))
    with jax.enable_x64(True):
        k64 = jax.random.key(9)
        assert _same(_random.normal(k64, (6,), jnp.float64), jax.random.normal(k64, (6,), jnp.float64))


def test_fma32_rounds_once():
    """`_fma32` against exact rational arithmetic: ``a·b + c`` rounded to the nearest float32 (ties to even)."""
    from fractions import Fraction

    rng = np.random.default_rng(1)
    a = rng.uniform(0, 1, 2000).astype(np.float32)
    b, c = np.float32(0.35355338), np.float32(-0.17677669)
    got = _random._fma32(a, b, c)
    for x, g in zip(a[:400], got[:400], strict=False):
        exact = Fraction(float(x)) * Fraction(float(b)) + Fraction(float(c))
        lo = np.float32(float(exact))  # nearest float64 then float32: a candidate; check its neighbours
        cands = [np.nextafter(lo, np.float32(-np.inf)), lo, np.nextafter(lo, np.float32(np.inf))]
        best = min(cands, key=lambda v: (abs(Fraction(float(v)) - exact), int(np.float32(v).view(np.uint32)) & 1))
        assert g == best
