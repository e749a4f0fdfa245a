"""The cell protocol, checked once where a model enters the rollout and the engine.

`check_model(model)` raises a `ConfigError` naming the field and the fix for every way a model can
break the protocol of `gradscope.cells._base` (documented for users in ``docs/custom-cells.md``):

* ``blocks`` (names of the state blocks) and ``block_sizes`` (their sizes) exist and agree in length;
  ``input_size`` is a non-negative int; ``structure`` is ``"dense"``, ``"diagonal"`` or
  ``"complex-diagonal"``, and a non-dense structure comes with ``jacobian_diag``;
* every data field (pytree leaf) is a floating-point array, all of one precision: a string, a Python
  number or an integer array declared as data (it should be ``static()``) is named, and so are
  float32 weights next to float64 biases. Mixed precisions are *refused, not promoted*: a silent
  promotion would change the precision the analysis reports, and the fix (cast all weights to one
  dtype) is one line;
* one step, traced abstractly with `jax.eval_shape` (no computation, no sequence), returns
  ``(new_state, aux)``: a tuple with one ``(block_size,)`` array per block in the model's dtype, and a
  dict; the optional ``jacobian``, ``jacobian_diag`` and ``readout`` return the shapes the engine expects.

The abstract trace is cached per model structure (the pytree definition with its static fields, and
the shapes and dtypes of the weights), so repeated calls on the same kind of model cost a dictionary lookup.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradscope._errors import ConfigError, GradscopeError

STRUCTURES = ("dense", "diagonal", "complex-diagonal")
_CACHE: OrderedDict = OrderedDict()  # structure key -> None: models whose step was traced and passed
_CACHE_SIZE = 256


def check_model(model: Any) -> None:
    """Raise a `ConfigError` naming the field and the fix if ``model`` breaks the cell protocol."""
    cls = type(model).__name__
    blocks, sizes = _check_sizes(model, cls)
    _check_structure(model, cls)
    leaves = _check_leaves(model, cls)
    key = _cache_key(model, leaves)
    if key is not None and key in _CACHE:
        _CACHE.move_to_end(key)
        return
    _check_traced(model, cls, blocks, sizes)
    if key is not None:
        _CACHE[key] = None
        if len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)


# --- sizes and declarations ---------------------------------------------------------------------------------


def _get(model, cls: str, name: str, fix: str):
    """``model.<name>``, or a ConfigError naming it; errors inside a property are reported with their cause."""
    try:
        return getattr(model, name)
    except AttributeError as e:
        if hasattr(type(model), name):  # a property that failed, e.g. Cell.block_sizes without hidden_size
            raise ConfigError(f"{cls}.{name} failed: {e}. {fix}") from None
        raise ConfigError(f"{cls} has no `{name}`: {fix}") from None


def _check_sizes(model, cls: str) -> tuple[tuple[str, ...], tuple[int, ...]]:
    blocks = _get(
        model,
        cls,
        "blocks",
        'declare the names of the state blocks, e.g. `blocks: ClassVar[tuple[str, ...]] = ("h", "c")`, '
        'or subclass gradscope.cells.Cell (one block, "h")',
    )
    if (
        not isinstance(blocks, (tuple, list))
        or not blocks
        or not all(isinstance(b, str) and b for b in blocks)
        or len(set(blocks)) != len(blocks)
    ):
        raise ConfigError(
            f"{cls}.blocks={blocks!r} is not allowed: expected a non-empty tuple of distinct "
            'block names, e.g. ("h",) or ("h", "c")'
        )
    sizes = _get(
        model,
        cls,
        "block_sizes",
        "define `block_sizes` (a property returning one int per block), or declare "
        "`hidden_size: int = static()` for Cell's default (hidden_size,) * len(blocks)",
    )
    if not isinstance(sizes, (tuple, list)) or not all(_is_int(n) and n > 0 for n in sizes):
        raise ConfigError(
            f"{cls}.block_sizes={sizes!r} is not allowed: expected a tuple of positive ints, "
            f"one per block of blocks={tuple(blocks)!r}"
        )
    if len(sizes) != len(blocks):
        raise ConfigError(
            f"{cls}.block_sizes={tuple(sizes)!r} has {len(sizes)} entries but blocks={tuple(blocks)!r} "
            f"has {len(blocks)}: give one size per block (override the block_sizes property)"
        )
    m = _get(model, cls, "input_size", "declare `input_size: int = static()`")
    if not _is_int(m) or m < 0:
        raise ConfigError(
            f"{cls}.input_size={m!r} is not allowed: expected a non-negative int, declared "
            "`input_size: int = static()` (a data field becomes a traced array under jit)"
        )
    if not callable(getattr(model, "step", None)):
        raise ConfigError(
            f"{cls} has no `step`: define step(x, state, t) -> (new_state, aux), or subclass "
            "gradscope.cells.Cell and define __call__(x, state) -> (new_state, aux)"
        )
    return tuple(blocks), tuple(int(n) for n in sizes)


def _is_int(n) -> bool:
    return isinstance(n, (int, np.integer)) and not isinstance(n, (bool, np.bool_))


def _check_structure(model, cls: str) -> None:
    structure = getattr(model, "structure", "dense")
    if structure not in STRUCTURES:
        raise ConfigError(
            f"{cls}.structure={structure!r} is not allowed: use one of {', '.join(map(repr, STRUCTURES))}"
        )
    if structure != "dense" and not callable(getattr(model, "jacobian_diag", None)):
        raise ConfigError(
            f"{cls}.structure={structure!r} needs jacobian_diag(x, state, t) -> (diagonal of dS'/dS, "
            'dS\'/dx): define it, or set structure = "dense"'
        )


# --- data fields ----------------------------------------------------------------------------------------------


def _path_name(path) -> str:
    return jax.tree_util.keystr(path).lstrip(".") or "<the model itself>"


def _field_name(path) -> str:
    """The dataclass field a leaf sits in (the last attribute on its path)."""
    for k in reversed(path):
        if isinstance(k, jax.tree_util.GetAttrKey):
            return k.name
    return _path_name(path)


def _check_leaves(model, cls: str) -> list:
    pairs = jax.tree_util.tree_flatten_with_path(model)[0]
    if len(pairs) == 1 and pairs[0][1] is model:
        raise ConfigError(
            f"{cls} is not a JAX pytree: decorate the class with @gradscope.cells.pytree_cell "
            "(weights as data fields, sizes and options as static() fields)"
        )
    by_dtype: dict[Any, list[str]] = {}
    for path, leaf in pairs:
        where, field = _path_name(path), _field_name(path)
        if not (hasattr(leaf, "shape") and hasattr(leaf, "dtype")):
            raise ConfigError(
                f"{cls}.{where} = {leaf!r} ({type(leaf).__name__}) is declared as data, so JAX traces it as a weight: "
                f"declare it with static(), e.g. `{field}: {type(leaf).__name__} = static({leaf!r})`, "
                "or make it a jax array if it is a weight"
            )
        dt = np.dtype(leaf.dtype)
        if np.issubdtype(dt, np.complexfloating):
            real = np.finfo(dt).dtype
        elif np.issubdtype(dt, np.floating) or dt == jnp.bfloat16:
            real = dt
        else:
            raise ConfigError(
                f"{cls}.{where} is an array of dtype {dt}: every data field is a weight the engine differentiates, "
                f"so it must be floating-point. If `{field}` is a hyperparameter or an index table, declare it with "
                f"static() (as a tuple); if it is a weight, cast it with .astype(jnp.float32) (or the model's float "
                "dtype)"
            )
        by_dtype.setdefault(real, []).append(where)
    if len(by_dtype) > 1:
        groups = sorted(by_dtype.items(), key=lambda kv: -len(kv[1]))
        said = "; ".join(
            f"{', '.join(names[:3])}{' …' if len(names) > 3 else ''} {np.dtype(d).name}" for d, names in groups
        )
        main = np.dtype(groups[0][0]).name
        raise ConfigError(
            f"{cls} mixes floating-point dtypes in its weights ({said}); gradscope computes in one dtype and refuses "
            f"to promote silently: cast all weights to one dtype, e.g. "
            f"`model = jax.tree.map(lambda a: a.astype(jnp.{main}), model)`"
        )
    dtype = getattr(model, "dtype", None)
    try:
        ok = dtype is not None and np.issubdtype(np.dtype(dtype), np.floating)
    except TypeError:
        ok = False
    if not ok:
        raise ConfigError(
            f"{cls}.dtype={dtype!r} is not allowed: it must be the real floating dtype the model "
            "computes in (Cell's default is the dtype of its first weight; store complex weights as "
            "real and imaginary parts, or override the dtype property)"
        )
    return [leaf for _, leaf in pairs]


def _cache_key(model, leaves):
    try:
        key = (jax.tree_util.tree_structure(model), tuple((tuple(a.shape), str(a.dtype)) for a in leaves))
        hash(key)
    except TypeError:  # an unhashable static field: check every time
        return None
    return key


# --- one abstract step ------------------------------------------------------------------------------------------


def _spec(shape, dtype):
    return jax.ShapeDtypeStruct(tuple(shape), dtype)


def _trace(cls: str, what: str, fn, *args):
    """`jax.eval_shape(fn, *args)`; a failure becomes a ConfigError that says which call failed on what."""
    try:
        return jax.eval_shape(fn, *args)
    except GradscopeError:
        raise
    except NotImplementedError as e:
        raise ConfigError(
            f"{cls}.{what} is not implemented ({str(e) or 'NotImplementedError'}): a Cell subclass "
            "defines __call__(x, state) -> (new_state, aux)"
        ) from e
    except Exception as e:  # noqa: BLE001 - any failure of the user's code, reported with its call
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ConfigError(
            f"{cls}.{what} failed when traced on one example: {type(e).__name__}: {msg}. It must run "
            "on one unbatched example (x of shape (input_size,), state a tuple of 1-D blocks) under "
            "jax tracing (no Python control flow on array values)"
        ) from e


def _check_traced(model, cls: str, blocks, sizes) -> None:
    dtype = np.dtype(model.dtype)
    # the model is an argument, not a closure: eval_shape abstracts its weights (and a user's jit tracers) to shapes
    px = _trace(
        cls, "prepare_inputs(xs)", lambda mdl, xs: mdl.prepare_inputs(xs), model, _spec((1, model.input_size), dtype)
    )
    x = _spec(px.shape[1:], px.dtype)
    state = tuple(_spec((n,), dtype) for n in sizes)
    t = _spec((), jnp.int32)
    want = ", ".join(f"{b}: ({n},)" for b, n in zip(blocks, sizes))
    fix_return = (
        f"return (new_state, aux): new_state a tuple with one array per block ({want}) and aux a dict of "
        "per-step values such as gate activations ({} if none)"
    )

    out = _trace(cls, "step(x, state, t)", lambda mdl, x, s, t: mdl.step(x, s, t), model, x, state, t)
    if not isinstance(out, (tuple, list)):
        raise ConfigError(f"{cls}.step / __call__ returned a bare {_describe(out)}: {fix_return}")
    if len(out) != 2 or not isinstance(out[1], dict):
        got = ", ".join(_describe(o) for o in out)
        raise ConfigError(
            f"{cls}.step / __call__ returned ({got}) with no aux dict: {fix_return}; e.g. `return (h,), {{}}`"
        )
    new = out[0]
    if not isinstance(new, (tuple, list)):
        raise ConfigError(
            f"{cls}.step / __call__ returned new_state as a bare {_describe(new)}: new_state is a tuple "
            f"with one array per block ({want}); e.g. `return (h,), aux`, not `return h, aux`"
        )
    if len(new) != len(blocks):
        raise ConfigError(
            f"{cls}.step / __call__ returned {len(new)} state blocks but blocks={blocks!r} has "
            f"{len(blocks)}: return one array per block ({want})"
        )
    for b, n, s in zip(blocks, sizes, new):
        if not hasattr(s, "shape") or tuple(s.shape) != (n,):
            raise ConfigError(
                f"{cls}.step / __call__ returned state block {b!r} as {_describe(s)}, but "
                f"block_sizes says ({n},): return one 1-D array of size {n} per block for ONE example "
                "(batches are vmapped), or fix block_sizes"
            )
        if np.dtype(s.dtype) != dtype:
            raise ConfigError(
                f"{cls}.step / __call__ returned state block {b!r} in {np.dtype(s.dtype).name}, but the "
                f"model computes in {dtype.name} (its dtype): keep the state in the weights' dtype "
                "(create constants with dtype=x.dtype, or cast with .astype(x.dtype))"
            )

    d, mp = sum(sizes), x.shape[0]
    if callable(getattr(model, "jacobian", None)):
        jac = _trace(cls, "jacobian(x, state, t)", lambda mdl, x, s, t: mdl.jacobian(x, s, t), model, x, state, t)
        _expect_pair(
            cls,
            "jacobian",
            jac,
            [(d, d), (d, mp)],
            "(dS'/dS, dS'/dx)",
            "delete jacobian (the engine then differentiates step with jax.jacfwd)",
        )
    structure = getattr(model, "structure", "dense")
    if structure != "dense":
        diag = _trace(
            cls, "jacobian_diag(x, state, t)", lambda mdl, x, s, t: mdl.jacobian_diag(x, s, t), model, x, state, t
        )
        n_diag = d // 2 if structure == "complex-diagonal" else d
        _expect_pair(
            cls,
            "jacobian_diag",
            diag,
            [(n_diag,), (d, mp)],
            "(complex multipliers lam, dS'/dx)" if structure == "complex-diagonal" else "(diagonal of dS'/dS, dS'/dx)",
            'set structure = "dense" (the dense jacobian is used)',
        )
    from gradscope.cells._base import has_readout

    if has_readout(model):
        y = _trace(cls, "readout(state, x)", lambda mdl, s, x: mdl.readout(s, x), model, state, x)
        o = getattr(model, "output_size", None)
        if not hasattr(y, "shape") or tuple(y.shape) != (o,):
            raise ConfigError(
                f"{cls}.readout(state, x) returned {_describe(y)} but output_size is {o!r}: return the "
                f"layer output as one 1-D array and set output_size to its length"
            )


def _expect_pair(cls: str, what: str, out, shapes, names: str, otherwise: str) -> None:
    ok = (
        isinstance(out, (tuple, list))
        and len(out) == 2
        and all(hasattr(o, "shape") and tuple(o.shape) == s for o, s in zip(out, shapes))
    )
    if not ok:
        got = ", ".join(_describe(o) for o in out) if isinstance(out, (tuple, list)) else _describe(out)
        raise ConfigError(
            f"{cls}.{what}(x, state, t) returned ({got}); expected {names} of shapes "
            f"{', '.join(map(str, shapes))} for one example. Fix it, or {otherwise}"
        )


def _describe(o) -> str:
    if hasattr(o, "shape") and hasattr(o, "dtype"):
        return f"array of shape {tuple(o.shape)}"
    return type(o).__name__
