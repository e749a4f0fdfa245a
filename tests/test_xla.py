"""gradscope._xla: XLA flags set before JAX starts, and the compile option of the stage programs."""

from __future__ import annotations

import os
from importlib import metadata

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradscope import _xla


@pytest.fixture
def fresh_options():
    _xla._accepted.cache_clear()
    yield
    _xla._accepted.cache_clear()


def _jaxlib(monkeypatch, version):
    real = metadata.version
    monkeypatch.setattr(metadata, "version", lambda name: version if name == "jaxlib" else real(name))


def test_prefer_flag_appends_on_a_known_jaxlib(monkeypatch):
    _jaxlib(monkeypatch, "0.10.2")
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
    _xla.prefer_flag(_xla.EMITTER_FLAG)
    assert os.environ["XLA_FLAGS"] == "--xla_force_host_platform_device_count=2 --xla_cpu_use_fusion_emitters=false"
    _xla.prefer_flag(_xla.EMITTER_FLAG)  # once only
    assert os.environ["XLA_FLAGS"].count("fusion_emitters") == 1


def test_prefer_flag_leaves_the_users_setting_and_unknown_jaxlibs(monkeypatch):
    _jaxlib(monkeypatch, "0.10.2")
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_use_fusion_emitters=true")
    _xla.prefer_flag(_xla.EMITTER_FLAG)
    assert os.environ["XLA_FLAGS"] == "--xla_cpu_use_fusion_emitters=true"
    _jaxlib(monkeypatch, "0.11.0")  # XLA aborts on an unknown flag: only versions known to have it
    monkeypatch.delenv("XLA_FLAGS")
    _xla.prefer_flag(_xla.EMITTER_FLAG)
    assert "XLA_FLAGS" not in os.environ


def test_the_command_line_sets_the_emitter_flag_before_running(monkeypatch):
    import gradscope.cli as cli

    seen = []
    monkeypatch.setenv("XLA_FLAGS", "")
    monkeypatch.setattr(cli, "app", lambda: seen.append(os.environ["XLA_FLAGS"]))
    _jaxlib(monkeypatch, "0.10.2")
    cli.main()
    assert seen == [_xla.EMITTER_FLAG]


def test_stage_programs_get_the_option_on_this_cpu(fresh_options, monkeypatch):
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    assert jax.default_backend() == "cpu"
    assert _xla.compiler_options() == {"xla_cpu_use_fusion_emitters": False}
    # a fresh dict each time: a caller cannot change the process's options
    _xla.compiler_options()["xla_cpu_use_fusion_emitters"] = True
    assert _xla.compiler_options() == {"xla_cpu_use_fusion_emitters": False}


def test_no_option_where_xla_flags_choose_the_emitters(fresh_options, monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_use_fusion_emitters=true")
    assert _xla.compiler_options() is None


def test_no_option_where_xla_refuses_it(fresh_options, monkeypatch):
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    monkeypatch.setattr(_xla, "OPTIONS", {"xla_no_such_option_anywhere": True})
    assert _xla.compiler_options() is None


def test_jit_passes_the_options_to_the_compiler(monkeypatch):
    # an option XLA does not know reaches the compiler, which refuses it: proof that it is passed
    monkeypatch.setattr(_xla, "_accepted", lambda: (("xla_no_such_option_anywhere", True),))
    f = _xla.jit(lambda x: jnp.tanh(x) * 2)
    with pytest.raises(Exception, match="xla_no_such_option_anywhere"):
        f(jnp.ones(3))


def test_jit_is_jax_jit(fresh_options):
    # static arguments, lowering and the in-memory cache as jax.jit's; the value against NumPy
    def f(x, *, n):
        return jnp.sum(jnp.tanh(x) ** n)

    g = _xla.jit(f, static_argnames=("n",))
    x = np.linspace(-1, 2, 7, dtype=np.float32)
    np.testing.assert_allclose(g(x, n=3), np.sum(np.tanh(x.astype(np.float64)) ** 3), rtol=1e-5)
    g(x + 1, n=3)
    assert g._cache_size() == 1
    g(x, n=2)
    assert g._cache_size() == 2
    assert "tanh" in g.lower(x, n=2).as_text()
    assert g.__name__ == "f"


def test_inside_another_trace_the_stage_is_jitted_without_options(fresh_options):
    # JAX refuses compile options on a nested jit: under a user's jit (traced arguments, or concrete ones
    # closed over), under vmap and under jax.export the stage runs as a plain nested jit
    g = _xla.jit(lambda x: jnp.sin(x) * 2)
    x = jnp.linspace(0.0, 1.0, 5)
    want = 2 * np.sin(np.linspace(0.0, 1.0, 5))
    np.testing.assert_allclose(jax.jit(g)(x), want, rtol=1e-6)
    np.testing.assert_allclose(jax.jit(lambda: g(x))(), want, rtol=1e-6)
    np.testing.assert_allclose(jax.vmap(g)(x[:, None])[:, 0], want, rtol=1e-6)
    exp = jax.export.export(jax.jit(g))(x)
    np.testing.assert_allclose(exp.call(x), want, rtol=1e-6)
