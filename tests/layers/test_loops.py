"""`loops.scan` / `scan_range`: Keras' scan contract on every backend, and on
TensorFlow a loop whose gradient XLA compiles (Keras' own scan's does not)."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_perceiver.layers import loops


def test_scan_carries_and_stacks_like_a_python_loop():
    xs = {"a": np.arange(12, dtype="float32").reshape(4, 3), "b": np.ones((4, 2), "float32")}

    def step(carry, x):
        total, count = carry
        total = total + ops.sum(x["a"]) * x["b"]
        return (total, count + 1.0), (total, count)

    init = (ops.zeros((2,)), ops.zeros(()))
    (total, count), (totals, counts) = loops.scan(step, init, xs)
    sums = np.cumsum(xs["a"].sum(1))
    np.testing.assert_allclose(ops.convert_to_numpy(total), [sums[-1]] * 2)
    assert float(count) == 4.0
    np.testing.assert_allclose(ops.convert_to_numpy(totals), np.stack([sums, sums], 1))
    np.testing.assert_allclose(ops.convert_to_numpy(counts), [0.0, 1.0, 2.0, 3.0])


def test_scan_without_outputs_returns_none():
    carry, ys = loops.scan(lambda c, x: (c * x, None), ops.ones(()), np.array([2.0, 3.0, 4.0], "float32"))
    assert ys is None and float(carry) == 24.0
    carry, ys = loops.scan_range(lambda c, i: (c + 1.0, None), ops.zeros(()), 5)
    assert ys is None and float(carry) == 5.0


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow's loop")
def test_tensorflow_scan_with_unknown_length_and_xla_gradient():
    import tensorflow as tf

    def cumulative_product_sum(xs, w):
        def step(carry, x):
            carry = carry * tf.tanh(x * w)
            return carry, carry

        carry, ys = loops.scan(step, tf.ones((3,)), xs)
        return tf.reduce_sum(carry) + tf.reduce_sum(ys)

    def gradient(xs, w):
        with tf.GradientTape() as tape:
            tape.watch(w)
            loss = cumulative_product_sum(xs, w)
        return tape.gradient(loss, w)

    xs = np.random.default_rng(0).normal(size=(5, 3)).astype("float32")
    w = tf.constant([0.5, -1.0, 2.0])
    eager = gradient(tf.constant(xs), w).numpy()
    unknown = tf.function(gradient, input_signature=[tf.TensorSpec((None, 3)), tf.TensorSpec((3,))])
    np.testing.assert_allclose(unknown(xs, w).numpy(), eager, atol=1e-6)
    xla = tf.function(gradient, jit_compile=True)
    np.testing.assert_allclose(xla(xs, w).numpy(), eager, atol=1e-6)
    assert np.abs(eager).max() > 0.1
