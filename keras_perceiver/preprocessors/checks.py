"""In-graph input checks shared by the preprocessors and the serving signatures.

TensorFlow ops only: a failure raises `InvalidArgumentError` whose message
names the input and the expected shape or range, in eager code, in
`tf.data` and inside an exported SavedModel alike.
"""

import tensorflow as tf


def describe(shape):
    """`(None, 8, 3)` -> `"[?, 8, 3]"`."""
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def check_input(x, name, shape, what=""):
    """Asserts (at run time, in the graph) that `x` has `shape`'s rank and dims.

    `shape` lists every axis, `None` for free ones. A failure raises
    `InvalidArgumentError` whose message names the input and gives the
    expected and received shapes. Returns `x` with the static shape set.

    Example:
    >>> from keras_perceiver.preprocessors.checks import check_input
    >>> check_input([[1, 2]], "ids", (None, 2)).shape
    TensorShape([1, 2])
    """
    x = tf.convert_to_tensor(x)
    rank = len(shape)
    received = tf.shape(x)
    # Pad with -1 so that a wrong rank never indexes out of bounds.
    padded = tf.concat([received, -tf.ones([rank], tf.int32)], axis=0)[:rank]
    ok = tf.equal(tf.size(received), rank)
    for axis, size in enumerate(shape):
        if size is not None:
            ok = tf.logical_and(ok, tf.equal(padded[axis], size))
    check = tf.debugging.Assert(
        ok,
        [f"input `{name}` must have shape {describe(shape)}{what}; received shape", received],
        summarize=16,
    )
    with tf.control_dependencies([check]):
        x = tf.identity(x)
    x.set_shape(shape)
    return x


def check_values(x, name, low, high):
    """Asserts `low <= x <= high` element-wise, naming the input."""
    message = f"input `{name}` must have values in [{low}, {high}]."
    checks = [
        tf.debugging.assert_greater_equal(x, tf.cast(low, x.dtype), message=message),
        tf.debugging.assert_less_equal(x, tf.cast(high, x.dtype), message=message),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(x)
