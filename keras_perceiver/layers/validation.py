"""Argument, shape and value checks shared by the layers and the task models.

Every check raises a `ValueError` (`TypeError` for a wrong dtype) whose
message names the owner (class or layer), the argument or input, what is
allowed and what was received.

Value checks (ranges, NaN/Inf) cost a host read of the tensor, so they run
only on concrete inputs outside training (`should_check_values`): NumPy
arrays, eager TensorFlow tensors, JAX arrays that are not tracers, and torch
tensors outside `torch.compile` when `training` is not True. Inside
`tf.function` / `jit` graphs and training steps they cost nothing. Shape
checks use static shapes only and always run.

Layers pass NaN/Inf through (like every Keras layer); the task models reject
them in eager calls and `predict` (`check_finite`).
"""

import difflib
import inspect
import numbers

import keras
import numpy as np

# Keyword arguments of `keras.Model` a task model accepts besides its own.
MODEL_KWARGS = ("name", "dtype", "trainable")


def _owner(owner):
    if isinstance(owner, str):
        return owner
    name = getattr(owner, "name", None) if isinstance(owner, keras.layers.Layer) else None
    return name or owner.__class__.__name__


def is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int(owner, name, value, minimum=1, allow_none=False):
    """`value` is an int >= `minimum` (or None when `allow_none`).

    Example:
    >>> keras_perceiver.layers.validation.check_int("Attention", "num_heads", 0)
    Traceback (most recent call last):
    ...
    ValueError: Attention: `num_heads` must be an integer >= 1, received 0.
    """
    if value is None and allow_none:
        return value
    if not is_int(value) or value < minimum:
        allowed = f"an integer >= {minimum}" + (" or None" if allow_none else "")
        raise ValueError(f"{_owner(owner)}: `{name}` must be {allowed}, received {value!r}.")
    return int(value)


def check_float(owner, name, value, minimum=0.0, maximum=None, min_inclusive=False,
                max_inclusive=False, allow_none=False):
    """`value` is a finite number in the given interval."""
    if value is None and allow_none:
        return value
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and np.isfinite(value)
    if ok and minimum is not None:
        ok = value >= minimum if min_inclusive else value > minimum
    if ok and maximum is not None:
        ok = value <= maximum if max_inclusive else value < maximum
    if not ok:
        if minimum is not None and maximum is not None:
            interval = (f" in {'[' if min_inclusive else '('}{minimum}, "
                        f"{maximum}{']' if max_inclusive else ')'}")
        elif minimum is not None:
            interval = f" {'>=' if min_inclusive else '>'} {minimum}"
        elif maximum is not None:
            interval = f" {'<=' if max_inclusive else '<'} {maximum}"
        else:
            interval = ""
        raise ValueError(
            f"{_owner(owner)}: `{name}` must be a finite number{interval}, "
            f"received {value!r}."
        )
    return value


def check_rate(owner, name, value):
    """A dropout rate in [0, 1)."""
    return check_float(owner, name, value, 0.0, 1.0, min_inclusive=True)


def check_ints(owner, name, values, minimum=1):
    """A tuple of ints >= `minimum` (an int is one entry)."""
    items = values if isinstance(values, (list, tuple)) else (values,)
    if not items or not all(is_int(v) and v >= minimum for v in items):
        raise ValueError(
            f"{_owner(owner)}: `{name}` must be a non-empty tuple of integers >= "
            f"{minimum}, received {values!r}."
        )
    return tuple(int(v) for v in items)


def check_divisible(owner, name, value, heads_name, heads):
    """`value` (channels) is divisible by `heads`, when both are known."""
    if value is not None and heads and value % heads:
        raise ValueError(
            f"{_owner(owner)}: {name}={value} must be divisible by "
            f"{heads_name}={heads}."
        )


def check_model_kwargs(cls, kwargs):
    """Rejects keyword arguments that are neither `cls`'s own nor `MODEL_KWARGS`."""
    cls_name = cls.__name__
    known = [k for k in inspect.signature(cls.__init__).parameters if k not in ("self", "kwargs")]
    allowed = tuple(MODEL_KWARGS) + tuple(getattr(cls, "EXTRA_MODEL_KWARGS", ()))
    unknown = sorted(set(kwargs) - set(allowed))
    if not unknown:
        return
    hints = []
    for key in unknown:
        close = difflib.get_close_matches(key, list(known) + list(allowed), n=1)
        hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    raise ValueError(
        f"{cls_name}: unknown argument(s) {', '.join(hints)}. Allowed: its "
        f"constructor arguments and {list(allowed)}."
    )


# --- Shapes ----------------------------------------------------------------


def _fmt(shape):
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def check_shape(layer, name, shape, expected):
    """`shape` matches `expected` (None entries match anything)."""
    shape = tuple(shape)
    expected = tuple(expected)
    ok = len(shape) == len(expected) and all(
        e is None or s is None or int(s) == int(e) for s, e in zip(shape, expected)
    )
    if not ok:
        raise ValueError(
            f"{_owner(layer)}: expected {name} of shape {_fmt(expected)}, "
            f"received shape {tuple(shape)}."
        )


def check_same_batch(layer, **shapes):
    """The known batch sizes (axis 0) of the named shapes agree."""
    known = {k: s[0] for k, s in shapes.items() if s is not None and len(s) and s[0] is not None}
    if len(set(known.values())) > 1:
        received = ", ".join(f"`{k}` {tuple(shapes[k])}" for k in known)
        raise ValueError(
            f"{_owner(layer)}: expected the same batch size (axis 0) for all "
            f"inputs, received {received}."
        )


# --- Values ----------------------------------------------------------------


def is_concrete(x):
    """Whether `x` holds values we can read cheaply (not symbolic/traced)."""
    if isinstance(x, (np.ndarray, np.generic, list, tuple, numbers.Number)):
        return True
    if isinstance(x, keras.KerasTensor):
        return False
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.executing_eagerly() and isinstance(x, tf.Tensor) and hasattr(x, "numpy")
    if backend == "jax":
        import jax

        return isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer)
    if backend == "torch":
        import torch

        compiling = getattr(getattr(torch, "compiler", None), "is_compiling", lambda: False)
        return isinstance(x, torch.Tensor) and not compiling()
    return False


def should_check_values(x, training=None):
    """Value checks run on concrete inputs outside training."""
    return not training and is_concrete(x)


def _to_numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x)) if not isinstance(x, np.ndarray) else x


def dtype_name(x):
    dtype = getattr(x, "dtype", None)
    if dtype is None:
        return np.asarray(x).dtype.name
    try:
        return keras.backend.standardize_dtype(dtype)
    except ValueError:
        return str(dtype)


def check_integer_dtype(owner, name, x):
    """Integer input (token ids, indices): float/bool dtypes are refused."""
    dtype = dtype_name(x)
    if not (dtype.startswith("int") or dtype.startswith("uint")):
        raise TypeError(
            f"{_owner(owner)}: expected `{name}` of an integer dtype (int32), "
            f"received dtype {dtype}."
        )


def check_float_dtype(owner, name, x, hint=""):
    """Float input (images, audio): integer/bool dtypes (e.g. raw uint8) are refused."""
    dtype = dtype_name(x)
    if not (dtype.startswith("float") or dtype == "bfloat16"):
        raise TypeError(
            f"{_owner(owner)}: expected `{name}` of a float dtype (float32)"
            f"{hint}, received dtype {dtype}."
        )


def check_index_range(owner, name, x, high, low=0):
    """Integer values of `x` lie in `[low, high)`."""
    values = _to_numpy(x)
    if values.size and (values.min() < low or values.max() >= high):
        raise ValueError(
            f"{_owner(owner)}: expected `{name}` values in [{low}, {high}), "
            f"received values in [{values.min()}, {values.max()}]."
        )


def check_value_range(owner, name, x, low, high):
    """Float values of `x` lie in `[low, high]`."""
    values = _to_numpy(x)
    if values.size and (values.min() < low or values.max() > high):
        raise ValueError(
            f"{_owner(owner)}: expected `{name}` values in [{low}, {high}], "
            f"received values in [{values.min()}, {values.max()}]."
        )


def check_finite(owner, name, x):
    """No NaN or Inf in `x`."""
    values = _to_numpy(x)
    if np.issubdtype(values.dtype, np.floating) and not np.isfinite(values).all():
        bad = "NaN" if np.isnan(values).any() else "Inf"
        raise ValueError(
            f"{_owner(owner)}: expected finite `{name}` values, received {bad} "
            f"at {int((~np.isfinite(values)).sum())} position(s)."
        )


def check_arguments(owner, args, ints=(), non_negative_ints=(), optional_ints=(),
                    rates=(), positive_floats=()):
    """Checks a task model's constructor arguments by kind, naming each."""
    for name in ints:
        check_int(owner, name, args[name])
    for name in non_negative_ints:
        check_int(owner, name, args[name], minimum=0)
    for name in optional_ints:
        check_int(owner, name, args[name], allow_none=True)
    for name in rates:
        check_rate(owner, name, args[name])
    for name in positive_floats:
        check_float(owner, name, args[name])
