"""Host-side twins of the `jax.random` calls that build models and inputs: the same bits, no compiled program.

Every `jax.random` call on a new shape is a compiled program, and Threefry's is slow to compile: 0.2–0.4 s each
on the 2-core CPU, and ~25 ms to look up and lower from a warm cache. Building the seven models of the default
``gradscope compare`` took 2.5 s of compilation cold and 0.6 s warm. Threefry-2x32 (Salmon, Moraes, Dror &
Shaw, "Parallel random numbers: as easy as 1, 2, 3", SC 2011) is 32-bit integer arithmetic, which NumPy does
bit for bit, so `key`, `split` (and `split_keys`, its keys as a tuple) and `uniform` here return exactly what
`jax.random` returns (the tests compare every bit), computed on the host in microseconds; `normal` takes its
uniform draw from the host and only XLA's inverse error function from a small program.

They follow JAX's "partitionable" Threefry layout (``jax_threefry_partitionable``, JAX's default): element i
of a draw of shape s is the hash of the 64-bit counter i (row-major flat index) under the key; `split` hashes
the counters 0..n−1 and keeps both output words; `uniform` keeps the xor of the two words and fills a float32's
mantissa with its top bits. Anything else (a traced key, another PRNG implementation, the legacy layout,
array-valued bounds, float64, XLA flags whose rounding of the final multiply-add is not known, another backend)
is handed to `jax.random`. Note that `jax.random.uniform` itself rounds that multiply-add once in optimised CPU
code and twice at -O0 (the test suite's setting): `uniform` follows the process's setting (`_contracted`).
"""

from __future__ import annotations

import math
import os
from typing import Any

import jax
import numpy as np
from jax.core import Tracer

_M32 = np.uint64(0xFFFFFFFF)
_ROT = ((13, 15, 26, 6), (17, 29, 16, 24))


def _threefry2x32(k1: np.uint32, k2: np.uint32, x1: np.ndarray, x2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Threefry-2x32 with 20 rounds (Salmon et al. 2011, Table 4's rotations; JAX's ``threefry2x32_p``) of the
    counter pairs ``(x1, x2)`` under the key ``(k1, k2)``: five groups of four rounds, each group followed by
    a key injection."""
    ks = (np.uint32(k1), np.uint32(k2), np.uint32(k1) ^ np.uint32(k2) ^ np.uint32(0x1BD11BDA))
    a, b = x1 + ks[0], x2 + ks[1]
    for g in range(5):
        for r in _ROT[g % 2]:
            a = a + b
            b = ((b << np.uint32(r)) | (b >> np.uint32(32 - r))) ^ a
        a, b = a + ks[(g + 1) % 3], b + ks[(g + 2) % 3] + np.uint32(g + 1)
    return a, b


def _hash(data: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The two output words for the counters 0 … ∏shape − 1 (as 64-bit numbers: high word, low word)."""
    i = np.arange(math.prod(shape), dtype=np.uint64)
    with np.errstate(over="ignore"):  # uint32 additions wrap, as in the algorithm
        b1, b2 = _threefry2x32(data[0], data[1], (i >> np.uint64(32)).astype(np.uint32), (i & _M32).astype(np.uint32))
    return b1.reshape(shape), b2.reshape(shape)


def _data(key: Any) -> np.ndarray | None:
    """The key's two words if the host path reproduces `jax.random` for it, else None."""
    if (
        isinstance(key, Tracer)
        or not isinstance(key, jax.Array)
        or not getattr(jax.config, "jax_threefry_partitionable")
    ):
        return None
    if not jax.numpy.issubdtype(key.dtype, jax.dtypes.prng_key) or key.shape != ():
        return None
    if str(jax.random.key_impl(key)) != "threefry2x32":
        return None
    return np.asarray(jax.random.key_data(key), np.uint32)


def _wrap(words: Any) -> jax.Array:
    """Threefry key data ``(…, 2)`` as a key array, by a transfer (no compiled program)."""
    return jax.random.wrap_key_data(jax.device_put(np.asarray(words, np.uint32)), impl="threefry2x32")


def key(seed: int) -> jax.Array:
    """``jax.random.key(seed)``: the key ``(0, seed)`` for 0 ≤ seed < 2³¹ (JAX's ``threefry_seed``)."""
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and 0 <= int(seed) < 2**31:
        if getattr(jax.config, "jax_default_prng_impl") == "threefry2x32":
            return _wrap([0, int(seed)])
    return jax.random.key(seed)


def split(key: Any, num: int | tuple[int, ...] = 2) -> jax.Array:
    """``jax.random.split(key, num)``."""
    data = _data(key)
    shape = (num,) if isinstance(num, (int, np.integer)) else tuple(num)
    if data is None or not all(isinstance(n, (int, np.integer)) and n >= 0 for n in shape):
        return jax.random.split(key, num)
    b1, b2 = _hash(data, tuple(int(n) for n in shape))
    return _wrap(np.stack([b1, b2], axis=-1))


def split_keys(key: Any, num: int = 2) -> tuple[jax.Array, ...]:
    """The ``num`` keys of ``jax.random.split(key, num)`` as a tuple: unpacking or indexing a key array is a
    compiled program per shape (``unstack``, ``dynamic_slice``), a tuple of keys made on the host is not."""
    data = _data(key)
    if data is None or not (isinstance(num, (int, np.integer)) and num >= 0):
        return tuple(jax.random.split(key, num))
    b1, b2 = _hash(data, (int(num),))
    return tuple(_wrap([w1, w2]) for w1, w2 in zip(b1, b2))


def _fma32(a: np.ndarray, b: np.float32, c: np.float32) -> np.ndarray:
    """``a · b + c`` rounded once to float32 (a fused multiply-add, as XLA's CPU code computes ``uniform``'s
    ``floats * (maxval − minval) + minval``). ``a · b`` is exact in float64 (48 bits); the float64 sum ``s``
    carries its exact rounding error ``e`` (Knuth's TwoSum), and where rounding ``s`` to float32 would meet a tie
    that the exact value ``s + e`` does not, ``e``'s sign picks the neighbour."""
    p = a.astype(np.float64) * np.float64(b)
    c64 = np.float64(c)
    s = p + c64
    bp = s - p
    e = (p - (s - bp)) + (c64 - bp)
    r = s.astype(np.float32)
    other = np.nextafter(r, np.where(s > r, np.float32(np.inf), np.float32(-np.inf)))
    tie = (s != r) & ((r.astype(np.float64) + other.astype(np.float64)) / 2 == s) & (e != 0)
    up = tie & ((e > 0) == (other > r))  # the exact value lies on the neighbour's side of the tie
    return np.where(up, other, r)


def _contracted() -> bool | None:
    """How XLA's CPU code computes ``uniform``'s ``floats * (maxval − minval) + minval`` in this process: one
    fused multiply-add (True: optimised code, JAX's default), two roundings (False: LLVM at -O0, as with
    ``jax_disable_most_optimizations`` or ``--xla_backend_optimization_level=0``), or not known (None: other
    XLA flags, another backend; `jax.random` is then called)."""
    flags = os.environ.get("XLA_FLAGS", "")
    if jax.default_backend() != "cpu":
        return None
    if jax.config.read("jax_disable_most_optimizations") or "xla_backend_optimization_level=0" in flags:
        return False
    if any(f in flags for f in ("optimization_level", "fast_math", "fp_contract", "llvm")):
        return None
    return True


def _shape(shape: Any) -> tuple:
    """A draw's shape as a tuple (an int is one axis), as `jax.random` takes it."""
    return tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)


def uniform(key: Any, shape: Any = (), dtype: Any = None, minval: Any = 0.0, maxval: Any = 1.0) -> jax.Array:
    """``jax.random.uniform(key, shape, dtype, minval, maxval)``: U[minval, maxval) (float32 on the host;
    float64 draws go to `jax.random`, whose fused multiply-add NumPy cannot round the same way cheaply)."""
    data = _data(key)
    dt = np.dtype(jax.dtypes.canonicalize_dtype(float if dtype is None else dtype))
    scalars = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (minval, maxval))
    shape = _shape(shape)
    sizes = all(isinstance(n, (int, np.integer)) and n >= 0 for n in shape)
    fused = _contracted()
    if data is None or dt != np.dtype(np.float32) or not scalars or not sizes or fused is None:
        return jax.random.uniform(key, shape, dtype, minval, maxval)
    b1, b2 = _hash(data, tuple(int(n) for n in shape))
    # 23 random mantissa bits under the exponent of 1.0: a float in [1, 2), less 1
    floats = (((b1 ^ b2) >> np.uint32(9)) | np.uint32(0x3F800000)).view(np.float32) - np.float32(1.0)
    lo, hi = np.float32(minval), np.float32(maxval)
    scaled = _fma32(floats, hi - lo, lo) if fused else floats * (hi - lo) + lo
    return jax.device_put(np.maximum(lo, scaled))  # a transfer: no program, unlike jnp.asarray


@jax.jit
def _sqrt2_erf_inv(u: jax.Array) -> jax.Array:
    # jax.random.normal's own last step (its _normal_real): √2 · erf⁻¹(u), in the input's dtype
    return np.sqrt(2).astype(u.dtype) * jax.lax.erf_inv(u)


def normal(key: Any, shape: Any = (), dtype: Any = None) -> jax.Array:
    """``jax.random.normal(key, shape, dtype)``: √2·erf⁻¹(u) of a uniform u on (−1, 1), as JAX computes it. The
    uniform draw is `uniform`'s (host, the same bits); erf⁻¹ is XLA's, in a small program of its own (NumPy's
    is not the same to the last bit; Threefry is what costs `jax.random.normal` its compile time: 0.18 s against
    0.09 s here). Float64 and whatever `uniform` hands to JAX go to `jax.random.normal`."""
    dt = np.dtype(jax.dtypes.canonicalize_dtype(float if dtype is None else dtype))
    shape = _shape(shape)
    # unknown XLA flags (`_contracted` None): the separate erf⁻¹ program is only checked against JAX's fused one
    # under the known settings, so JAX draws the whole sample there
    if _data(key) is None or dt != np.dtype(np.float32) or _contracted() is None:
        return jax.random.normal(key, shape, dtype)
    lo = np.nextafter(np.float32(-1.0), np.float32(0.0))  # jax.random.normal's open interval (−1, 1)
    return _sqrt2_erf_inv(uniform(key, shape, dt, float(lo), 1.0))
