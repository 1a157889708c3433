"""TensorFlow only: `scan` as a `tf.while_loop` that XLA can differentiate.

The backward pass of a `tf.while_loop` keeps each iteration's intermediate
values in lists, and XLA compiles those lists only with a fixed size: the
loop's `maximum_iterations`. Keras' TensorFlow `ops.scan` does not set it, so
a chunked attention inside `fit(jit_compile=True)` failed with "XLA
compilation requires a fixed tensor list size". This loop sets it to the
scan length (a tensor when the length is unknown at trace time; XLA sees it
as a constant once shapes are known) and keeps `parallel_iterations=1`, so
one chunk's logits are alive at a time. Used through
`keras_perceiver.layers.loops.scan`.
"""

import keras
import tensorflow as tf


def scan(step, init, xs):
    """`keras_perceiver.layers.loops.scan` on TensorFlow (same contract)."""
    xs_flat = [tf.convert_to_tensor(x) for x in keras.tree.flatten(xs)]
    n = xs_flat[0].shape[0]
    if n is None:
        n = tf.shape(xs_flat[0])[0]
    xs_arrays = [
        tf.TensorArray(x.dtype, size=n, element_shape=x.shape[1:]).unstack(x) for x in xs_flat
    ]
    carry_flat = [tf.convert_to_tensor(c) for c in keras.tree.flatten(init)]
    ys_arrays = [tf.TensorArray(c.dtype, size=n, element_shape=c.shape) for c in carry_flat]
    ys_written = []

    def body(i, carry, ys):
        x = keras.tree.pack_sequence_as(xs, [a.read(i) for a in xs_arrays])
        new_carry, y = step(keras.tree.pack_sequence_as(init, carry), x)
        if y is not None:
            ys_written.append(True)
            ys = [a.write(i, tf.convert_to_tensor(v)) for a, v in zip(ys, keras.tree.flatten(y))]
        new_carry = [tf.convert_to_tensor(c) for c in keras.tree.flatten(new_carry)]
        for c, first in zip(new_carry, carry_flat):
            c.set_shape(first.shape)  # as static as the initial carry (the loop's invariant)
        return i + 1, new_carry, ys

    _, carry_flat, ys_arrays = tf.while_loop(
        lambda i, carry, ys: i < n, body, (tf.constant(0), carry_flat, ys_arrays),
        parallel_iterations=1, maximum_iterations=n,
    )
    carry = keras.tree.pack_sequence_as(init, carry_flat)
    if not ys_written:
        return carry, None
    ys_flat = []
    for array, c in zip(ys_arrays, keras.tree.flatten(init)):
        stacked = array.stack()
        stacked.set_shape(tf.TensorShape([xs_flat[0].shape[0]]).concatenate(c.shape))
        ys_flat.append(stacked)
    return carry, keras.tree.pack_sequence_as(init, ys_flat)
