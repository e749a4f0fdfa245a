"""Bad input raises a GradscopeError subclass whose message names the argument and the value received.

Never a bare assert, a KeyError/TypeError from Python, or an error from inside JAX.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradscope as gs
from gradscope import ConfigError, GradscopeError, ShapeError, UnknownNameError

KEY = jax.random.key(0)


def _raises(cls, *fragments):
    """pytest.raises for a GradscopeError subclass whose message contains every fragment (literally)."""
    assert issubclass(cls, GradscopeError)
    return pytest.raises(cls, match=".*".join(re.escape(f) for f in fragments))


# --- the registry ---------------------------------------------------------------------------------


def test_unknown_cell_name_suggests_close_names():
    with _raises(UnknownNameError, "'lstmm'", "did you mean", "lstm") as info:
        gs.cells.make("lstmm", 3, 4, key=KEY)
    assert isinstance(info.value, GradscopeError)
    assert not str(info.value).startswith('"')  # not KeyError's quoted repr
    with _raises(UnknownNameError, "'transformer'"):
        gs.cells.make("transformer", 3, 4, key=KEY)
    with _raises(UnknownNameError, "'rnn_tanh'", "rnn-tanh"):
        gs.cells.options("rnn_tanh")
    with _raises(UnknownNameError, "'gruu'", "gru"):
        gs.stack("gruu", 3, 4, 2, key=KEY)


@pytest.mark.parametrize("arg", ["input_size", "hidden_size"])
@pytest.mark.parametrize("value", [0, -3, 2.5, 4.0, "4", True, None])
def test_bad_sizes(arg, value):
    sizes = {"input_size": 3, "hidden_size": 4, arg: value}
    with _raises(ConfigError, f"{arg}={value!r}", "positive integer"):
        gs.cells.make("lstm", sizes["input_size"], sizes["hidden_size"], key=KEY)


def test_numpy_integer_sizes_are_accepted():
    cell = gs.cells.make("rnn-tanh", np.int64(3), np.int32(4), key=KEY)
    assert cell.input_size == 3 and cell.hidden_size == 4
    with _raises(ConfigError, "hidden_size=", "0"):
        gs.cells.make("rnn-tanh", 3, np.int64(0), key=KEY)


def test_unknown_activation():
    with _raises(ConfigError, "activation='swish'", "relu", "tanh"):
        gs.cells.make("indrnn", 3, 4, key=KEY, activation="swish")


def test_unknown_option_names_it_and_lists_allowed():
    with _raises(ConfigError, "'forget_bias'", "'rnn-tanh'", "recurrent_init"):
        gs.cells.make("rnn-tanh", 3, 4, key=KEY, forget_bias=1.0)
    with _raises(ConfigError, "'hidden'", "'lstm-nofg'", "none"):
        gs.cells.make("lstm-nofg", 3, 4, key=KEY, hidden=3)


@pytest.mark.parametrize("dtype", ["int32", jnp.int32, "float16", jnp.bfloat16, "double-ish", float])
def test_bad_dtype(dtype):
    with _raises(ConfigError, f"dtype={dtype!r}", "float32", "float64"):
        gs.cells.make("rnn-tanh", 3, 4, key=KEY, dtype=dtype)


@pytest.mark.parametrize("key", [0, None, "seed", np.zeros(3, np.uint32)])
def test_bad_key(key):
    with _raises(ConfigError, "key=", "jax.random.key"):
        gs.cells.make("lstm", 3, 4, key=key)


def test_keys_accepted():
    a = gs.cells.make("rnn-tanh", 3, 4, key=jax.random.key(1))
    b = gs.cells.make("rnn-tanh", 3, 4, key=jax.random.PRNGKey(1))  # legacy uint32 keys too
    assert a.weight_hh.shape == b.weight_hh.shape == (4, 4)
    with _raises(ConfigError, "key="):  # several keys where one is expected
        gs.cells.make("rnn-tanh", 3, 4, key=jax.random.split(jax.random.key(1), 2))


def test_bad_cell_options():
    with _raises(ConfigError, "forget_bias", "chrono"):
        gs.cells.make("lstm", 3, 4, key=KEY, forget_bias=1.0, chrono=100)
    with _raises(ConfigError, "forget_bias", "chrono"):
        gs.cells.make("lstm-peephole", 3, 4, key=KEY, forget_bias=1.0, chrono=100)
    for bad in ("one", float("nan"), float("inf")):
        with _raises(ConfigError, f"forget_bias={bad!r}"):
            gs.cells.make("lstm", 3, 4, key=KEY, forget_bias=bad)
    for bad in (2, 1.5, -10, "100", float("inf"), float("nan")):
        with _raises(ConfigError, f"chrono={bad!r}"):
            gs.cells.make("lstm", 3, 4, key=KEY, chrono=bad)
    for bad in (4, 5, -1, 1.5):
        with _raises(ConfigError, f"proj_size={bad!r}", "hidden_size=4"):
            gs.cells.make("lstm", 3, 4, key=KEY, proj_size=bad)
    with _raises(ConfigError, "recurrent_init='he'", "orthogonal"):
        gs.cells.make("rnn-tanh", 3, 4, key=KEY, recurrent_init="he")
    for bad in (float("nan"), float("inf"), "1"):
        with _raises(ConfigError, f"gain={bad!r}"):
            gs.cells.make("rnn-tanh", 3, 4, key=KEY, gain=bad)
    for bad in (0.0, -1.0):
        with _raises(ConfigError, f"scale={bad!r}"):
            gs.cells.make("irnn", 3, 4, key=KEY, scale=bad)


def test_bad_indrnn_options():
    for bad in (0, -5, 2.5):
        with _raises(ConfigError, f"max_length={bad!r}"):
            gs.cells.make("indrnn", 3, 4, key=KEY, max_length=bad)
    with _raises(ConfigError, "gamma=0.0"):
        gs.cells.make("indrnn", 3, 4, key=KEY, max_length=10, gamma=0.0)
    with _raises(ConfigError, "u_min=2.0", "u_max=1.0"):
        gs.cells.make("indrnn", 3, 4, key=KEY, u_min=2.0, u_max=1.0)
    with _raises(ConfigError, "length=0"):
        gs.cells.recurrent_bound(0)


# --- rollout inputs ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lstm():
    return gs.cells.make("lstm", 3, 4, key=KEY)


@pytest.mark.parametrize("shape", [(3,), (2, 2, 5, 3), ()])
def test_xs_of_wrong_rank(lstm, shape):
    with _raises(ShapeError, f"xs has shape {shape}", "(T, input_size)", "input_size=3"):
        gs.rollout(lstm, np.zeros(shape))


@pytest.mark.parametrize("shape", [(5, 2), (2, 5, 7)])
def test_xs_of_wrong_feature_count(lstm, shape):
    with _raises(ShapeError, f"xs has {shape[-1]} features", "input_size is 3"):
        gs.rollout(lstm, np.zeros(shape))


def test_xs_empty_or_not_real(lstm):
    with _raises(ShapeError, "xs has shape (0, 3)", "at least one step"):
        gs.rollout(lstm, np.zeros((0, 3)))
    with _raises(ShapeError, "xs has dtype complex128"):
        gs.rollout(lstm, np.zeros((2, 3), complex))


def test_state0_of_wrong_length_or_shape(lstm):
    h, c = np.zeros(4), np.zeros(4)
    with _raises(ShapeError, "state0", "2 arrays", "('h', 'c')", "length 1"):
        gs.rollout(lstm, np.zeros((5, 3)), (h,))
    with _raises(ShapeError, "state0", "2 arrays", "length 3"):
        gs.rollout(lstm, np.zeros((5, 3)), (h, c, c))
    with _raises(ShapeError, "state0", "2 arrays"):
        gs.rollout(lstm, np.zeros((5, 3)), h)  # a bare array for a two-block cell
    with _raises(ShapeError, "state0 block 'c'", "(5,)", "expected (4,)"):
        gs.rollout(lstm, np.zeros((5, 3)), (h, np.zeros(5)))
    with _raises(ShapeError, "state0 block 'h'", "(4,)", "expected (2, 4)"):  # unbatched state, batched xs
        gs.rollout(lstm, np.zeros((2, 5, 3)), (h, c))
    with _raises(ShapeError, "state0 block 'h'", "(3, 4)", "expected (2, 4)"):
        gs.rollout(lstm, np.zeros((2, 5, 3)), (np.zeros((3, 4)), np.zeros((2, 4))))
    rnn = gs.cells.make("rnn-tanh", 3, 4, key=KEY)
    with _raises(ShapeError, "state0 block 'h'", "(5,)", "expected (4,)"):
        gs.rollout(rnn, np.zeros((5, 3)), np.zeros(5))


# --- networks ----------------------------------------------------------------------------------------


def test_stack_layer_size_mismatch():
    a = gs.cells.make("rnn-tanh", 3, 4, key=KEY)
    b = gs.cells.make("lstm", 5, 4, key=KEY)
    with _raises(ConfigError, "layer 1", "input_size=5", "layer 0", "outputs 4"):
        gs.Stack((a, b))
    proj = gs.cells.make("lstm", 3, 6, key=KEY, proj_size=2)
    with _raises(ConfigError, "layer 1", "input_size=6", "outputs 2"):
        gs.Stack((proj, gs.cells.make("rnn-tanh", 6, 4, key=KEY)))
    with _raises(ConfigError, "layers=()"):
        gs.Stack(())
    for bad in (0, -1, 1.5):
        with _raises(ConfigError, f"layers={bad!r}"):
            gs.stack("lstm", 3, 4, bad, key=KEY)


def test_residual_stack_needs_equal_widths():
    layers = (
        gs.cells.make("rnn-tanh", 3, 4, key=KEY),
        gs.cells.make("rnn-tanh", 4, 5, key=KEY),
        gs.cells.make("rnn-tanh", 5, 5, key=KEY),
    )
    with _raises(ConfigError, "residual=True", "layer 2", "5", "layer 1", "4"):
        gs.Stack(layers, residual=True)


def test_bidirectional_mismatch():
    f = gs.cells.make("lstm", 3, 4, key=KEY)
    b = gs.cells.make("lstm", 2, 4, key=KEY)
    with _raises(ConfigError, "forward input_size=3", "backward input_size=2"):
        gs.Bidirectional(f, b)
    with _raises(ConfigError, "Bidirectional", "Stack"):
        gs.Stack((gs.cells.make("rnn-tanh", 3, 4, key=KEY), gs.Bidirectional(f, f)))


_KEY = jax.random.key(0)


@pytest.mark.parametrize(
    "call,needle",
    [
        (lambda: gs.cells.make("irnn", 2, 3, key=_KEY, scale="a"), "scale='a'"),
        (lambda: gs.cells.make("irnn", 2, 3, key=_KEY, input_std=-1), "input_std=-1"),
        (lambda: gs.cells.make("indrnn", 2, 3, key=_KEY, u_min="x"), "u_min='x'"),
        (lambda: gs.cells.make("indrnn", 2, 3, key=_KEY, gamma=float("nan")), "gamma=nan"),
        (lambda: gs.cells.recurrent_bound(10, gamma="x"), "gamma='x'"),
        (lambda: gs.cells.make("rnn-tanh", 2, 3, key=_KEY, bias=1), "bias=1"),
        (lambda: gs.stack("rnn-tanh", 2, 3, 2, key=_KEY, residual=1), "residual=1"),
        (lambda: gs.cells.clip_recurrent(gs.cells.make("indrnn", 2, 3, key=_KEY), -1), "max_abs=-1"),
        (lambda: gs.rollout(gs.cells.make("rnn-tanh", 2, 3, key=_KEY), [[1.0, 2.0], [3.0]]), "rectangular"),
        (lambda: gs.rollout(gs.cells.make("lstm", 2, 3, key=_KEY), np.ones((4, 2)), (None, np.zeros(3))), "block 'h'"),
    ],
)
def test_more_bad_values_name_the_argument(call, needle):
    with pytest.raises(gs.GradscopeError, match=re.escape(needle)):
        call()


# --- the shared number checks -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [True, False, np.bool_(True), "1", None, float("nan"), float("inf"), -float("inf"), 10**400, np.array(1.0), [1.0]],
)
def test_check_number_rejects_what_is_not_a_finite_real(value):
    """Bools are not numbers here although Python counts True as the int 1; nor are strings, None, NaN,
    infinities, ints beyond float range, arrays or lists."""
    from gradscope._errors import check_number

    with _raises(ConfigError, f"x={value!r}", "finite number"):
        check_number("x", value)


def test_check_number_accepts_python_and_numpy_reals():
    from gradscope._errors import check_number

    for value in (3, -2.5, 0, np.float32(1.5), np.int64(-4), np.float64(1e300)):
        out = check_number("x", value)
        assert type(out) is float and out == float(value)
    assert check_number("x", 0, nonnegative=True) == 0.0
    with _raises(ConfigError, "x=0", "positive"):
        check_number("x", 0, positive=True)
    with _raises(ConfigError, "x=-1e-300", ">= 0"):
        check_number("x", -1e-300, nonnegative=True)


@pytest.mark.parametrize("value", [True, np.bool_(True), 4.0, np.float64(4), "4", 0, -1, None])
def test_check_positive_int_rejects_bools_floats_and_non_positive(value):
    from gradscope._errors import check_positive_int

    with _raises(ConfigError, f"n={value!r}", "positive integer"):
        check_positive_int("n", value)
    assert check_positive_int("n", np.int32(7)) == 7 and type(check_positive_int("n", np.int32(7))) is int


@pytest.mark.parametrize("bad", [True, False])
def test_forget_bias_must_not_be_a_bool(bad):
    with _raises(ConfigError, f"forget_bias={bad!r}", "finite number"):
        gs.cells.make("lstm", 3, 4, key=KEY, forget_bias=bad)
    cell = gs.cells.make("lstm", 3, 4, key=KEY, forget_bias=np.float32(1.0))  # a NumPy scalar is a number
    n = 4
    forget = slice(n, 2 * n)  # PyTorch gate order i, f, g, o: the total forget bias is b_ih + b_hh
    np.testing.assert_array_equal(np.asarray(cell.bias_ih[forget] + cell.bias_hh[forget]), np.ones(n))


# --- the one registry helper ("did you mean" lives here once) ---------------------------------------


def test_registry_lookup_suggestions_and_order():
    from gradscope._registry import Registry, did_you_mean

    reg = Registry("colour", unknown="colour={name!r} is unknown: {hint}choose one of {known}")
    for name in ("red", "green", "blue"):
        assert reg.register(name, name.upper()) == name.upper()
    assert reg.names() == ("red", "green", "blue") and reg.entries() == ("RED", "GREEN", "BLUE")
    assert reg.get("green") == "GREEN" and "red" in reg and "pink" not in reg and len(reg) == 3
    with _raises(UnknownNameError, "colour='gren' is unknown: did you mean green? choose one of red, green, blue"):
        reg.get("gren")
    with _raises(UnknownNameError, "colour='xyzzy' is unknown: choose one of"):  # nothing close: no suggestion
        reg.get("xyzzy")
    with _raises(UnknownNameError, "colour=['red'] is unknown"):  # unhashable: still the one-line error
        reg.get(["red"])
    with pytest.raises(RuntimeError, match="colour 'red' registered twice"):
        reg.register("red", "again")
    assert did_you_mean("lstmm", ["lstm", "gru", "lstm-peephole"], n=1) == "did you mean lstm? "
    assert did_you_mean("zzz", ["lstm"]) == ""


def test_every_registry_uses_the_helper():
    """Cells, tasks, reproductions and check formats: one Registry each, with their own messages."""
    from gradscope import checks
    from gradscope.experiments import reproduce, tasks

    with _raises(UnknownNameError, "cell='gruu' is not a registered cell: did you mean gru", "gradscope cells"):
        gs.cells.make("gruu", 3, 4, key=KEY)
    with _raises(UnknownNameError, "task='addin' is not a registered task: did you mean adding", "known tasks are"):
        tasks.make("addin")
    with _raises(UnknownNameError, "reproduction 'deptth' is not known: did you mean depth", "known reproductions"):
        reproduce.get("deptth")
    with _raises(UnknownNameError, "format='junt' is not allowed; did you mean junit"):
        checks.render(checks.CheckResult(()), "junt")


def test_check_clip_range():
    """`check_clip_range`: None or (lo, hi) with 0 ≤ lo < hi, floats out; (0, inf) clips nothing and is None."""
    import math

    from gradscope._errors import check_clip_range

    assert check_clip_range("r", None) is None
    assert check_clip_range("r", [0, math.inf]) is None
    assert check_clip_range("r", (0.01, 5)) == (0.01, 5.0)
    assert check_clip_range("r", (0.0, math.inf)) is None and check_clip_range("r", (0.5, math.inf)) == (0.5, math.inf)
    for bad, where in [((0.2, 0.1), "r="), ((0.1, 0.1), "r="), ((0.0, float("nan")), "r="), ((-1, 2), "r[0]")]:
        with pytest.raises(ConfigError, match=re.escape(where)):
            check_clip_range("r", bad)
    for bad, where in [((0.0, "x"), "r[1]"), (0.1, "r="), ((1, 2, 3), "r=")]:
        with pytest.raises(ConfigError, match=re.escape(where)):
            check_clip_range("r", bad)
