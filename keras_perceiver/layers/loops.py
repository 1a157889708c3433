"""The chunk loops of memory-bounded attention, one per backend.

`scan(step, init, xs)` is `keras.ops.scan` with one chunk in flight at a
time: `lax.scan` on JAX; a plain Python loop on PyTorch, which runs eagerly;
and on TensorFlow a `tf.while_loop` with `maximum_iterations` set
(`keras_perceiver.layers.tf_loops`), which XLA needs to differentiate a loop
(Keras' own TensorFlow scan leaves it unset, so `fit` with
`jit_compile=True` failed on every chunked model).

Example:
>>> from keras import ops
>>> from keras_perceiver.layers import loops
>>> def step(total, i):
...     total = total + ops.cast(i, "float32")
...     return total, total
>>> total, totals = loops.scan_range(step, ops.zeros(()), 4)
>>> float(total), ops.convert_to_numpy(totals).tolist()
(6.0, [0.0, 1.0, 3.0, 6.0])
"""

import keras
from keras import ops


def scan(step, init, xs):
    """`step(carry, x) -> (carry, y)` over the leading axis of the structure `xs`.

    Returns `(carry, ys)`, `ys` stacked along a new leading axis, or None when
    `step` returns None for `y`. As Keras' TensorFlow scan, `y` must have the
    structure, shapes and dtypes of `carry`. The leading length may be unknown
    when traced (TensorFlow graphs).
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        from keras_perceiver.layers import tf_loops

        return tf_loops.scan(step, init, xs)
    if backend != "torch":
        return ops.scan(step, init, xs)
    length = int(keras.tree.flatten(xs)[0].shape[0])
    return _eager_loop(step, init, (keras.tree.map_structure(lambda x: x[i], xs)
                                    for i in range(length)))


def scan_range(step, init, n):
    """`step(carry, i) -> (carry, y)` for `i` in `range(n)`; returns `(carry, ys)`.

    `n` may be a tensor (a length unknown when traced, TensorFlow). On
    PyTorch, which runs eagerly, `i` is a Python int.
    """
    if keras.backend.backend() != "torch":
        return scan(step, init, ops.arange(n, dtype="int32"))
    return _eager_loop(step, init, range(int(n)))


def _eager_loop(step, init, items):
    """PyTorch: `step` over `items` in a Python loop, the `y`s stacked."""
    carry, ys = init, []
    for item in items:
        carry, y = step(carry, item)
        ys.append(y)
    if not ys or ys[0] is None:
        return carry, None
    return carry, keras.tree.map_structure(lambda *parts: ops.stack(parts), *ys)
