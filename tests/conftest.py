"""Test set-up: float64 is enabled for the whole session so that references can be exact.

Tests that check float32 behaviour create float32 arrays explicitly (cells take ``dtype=``).
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
