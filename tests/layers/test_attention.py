import keras
import numpy as np
import pytest
from keras import ops

from keras_perceiver.layers import MLP
from keras_perceiver.layers import Attention
from tests.layers.numpy_reference import attention as numpy_attention


def test_attention_shapes_and_default_channels(rng):
    layer = Attention(num_heads=2)
    out = layer(rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 5, 6)))
    # qk defaults to the key/value width, v to qk, output to v.
    assert out.shape == (2, 3, 6)
    assert layer.query_dense.kernel.shape == (4, 6)
    layer = Attention(num_heads=4, qk_channels=8, v_channels=12, output_channels=5)
    out = layer(rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 7, 6)))
    assert out.shape == (2, 3, 5)
    assert layer.value_dense.kernel.shape == (6, 12)


def test_attention_matches_numpy_formula(rng):
    layer = Attention(num_heads=4, qk_channels=8, v_channels=12, output_channels=5)
    q_in = rng.normal(size=(2, 3, 4)).astype("float32")
    kv_in = rng.normal(size=(2, 7, 6)).astype("float32")
    mask = rng.random((2, 3, 7)) > 0.4
    mask[1, 2] = False  # a query row with no visible key
    out = ops.convert_to_numpy(layer(q_in, kv_in, attention_mask=mask))
    np.testing.assert_allclose(out, numpy_attention(layer, q_in, kv_in, mask), atol=1e-5)
    np.testing.assert_allclose(
        ops.convert_to_numpy(layer(q_in, kv_in)), numpy_attention(layer, q_in, kv_in), atol=1e-5
    )


def test_masked_keys_change_nothing(rng):
    layer = Attention(num_heads=2, qk_channels=8)
    q_in = rng.normal(size=(2, 3, 4)).astype("float32")
    kv_in = rng.normal(size=(2, 6, 5)).astype("float32")
    key_mask = np.array([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0]], bool)
    mask = np.broadcast_to(key_mask[:, None, :], (2, 3, 6))
    changed = kv_in.copy()
    changed[~key_mask] = rng.normal(size=changed[~key_mask].shape) * 100
    a = ops.convert_to_numpy(layer(q_in, kv_in, attention_mask=mask))
    b = ops.convert_to_numpy(layer(q_in, changed, attention_mask=mask))
    np.testing.assert_array_equal(a, b)


def test_fully_masked_query_row_is_zero_before_output_projection(rng):
    layer = Attention(num_heads=2, qk_channels=4)
    q_in = rng.normal(size=(1, 3, 4)).astype("float32")
    kv_in = rng.normal(size=(1, 5, 4)).astype("float32")
    mask = np.ones((1, 3, 5), bool)
    mask[0, 1] = False
    out = ops.convert_to_numpy(layer(q_in, kv_in, attention_mask=mask))
    # Zero merged heads -> the output projection yields exactly its bias.
    np.testing.assert_array_equal(out[0, 1], ops.convert_to_numpy(layer.output_dense.bias))
    assert not np.allclose(out[0, 0], out[0, 1])


def test_attention_errors(rng):
    with pytest.raises(ValueError, match="attention.*divisible by num_heads=3"):
        Attention(num_heads=3, qk_channels=8, name="attention")(np.ones((1, 2, 4)), np.ones((1, 3, 4)))
    with pytest.raises(ValueError, match="rank 3, received shape \\(2, 4\\)"):
        Attention(num_heads=1)(np.ones((2, 4)), np.ones((1, 3, 4)))
    layer = Attention(num_heads=1, name="att")
    layer(np.ones((1, 2, 4)), np.ones((1, 3, 4)))
    with pytest.raises(ValueError, match="att: expected query with 4 channels"):
        layer(np.ones((1, 2, 5)), np.ones((1, 3, 4)))
    with pytest.raises(ValueError, match="att: expected attention_mask of shape"):
        layer(np.ones((1, 2, 4)), np.ones((1, 3, 4)), attention_mask=np.ones((1, 3), bool))


def test_attention_dropout_only_in_training(rng):
    layer = Attention(num_heads=1, attention_dropout=0.5)
    q_in = rng.normal(size=(1, 4, 4)).astype("float32")
    a = ops.convert_to_numpy(layer(q_in, q_in))
    np.testing.assert_array_equal(a, ops.convert_to_numpy(layer(q_in, q_in, training=False)))
    assert not np.allclose(a, ops.convert_to_numpy(layer(q_in, q_in, training=True)))


@pytest.mark.parametrize("activation, approximate", [("gelu_tanh", True), ("gelu", False)])
def test_mlp_formula(rng, activation, approximate):
    layer = MLP(widening_factor=3, activation=activation)
    x = rng.normal(size=(2, 5, 4)).astype("float32")
    out = ops.convert_to_numpy(layer(x))
    h = x @ np.asarray(layer.dense1.kernel) + np.asarray(layer.dense1.bias)
    assert layer.dense1.kernel.shape == (4, 12)
    if approximate:
        h = 0.5 * h * (1 + np.tanh(np.sqrt(2 / np.pi) * (h + 0.044715 * h**3)))
    else:
        from scipy.special import erf

        h = 0.5 * h * (1 + erf(h / np.sqrt(2)))
    expected = h @ np.asarray(layer.dense2.kernel) + np.asarray(layer.dense2.bias)
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_mlp_rejects_unknown_activation():
    with pytest.raises(ValueError, match="activation must be one of"):
        MLP(activation="relu")


@pytest.mark.parametrize("layer", [
    Attention(num_heads=2, qk_channels=8, v_channels=4, output_channels=6, attention_dropout=0.1),
    MLP(widening_factor=2, activation="gelu", dropout=0.1),
])
def test_config_round_trip(layer):
    config = layer.get_config()
    clone = layer.__class__.from_config(config)
    assert clone.get_config() == config


# Mixed precision vs float32 with the same weights, relative to the output's
# scale. Measured: float16 ~1.2e-3, bfloat16 ~1.6e-2; dropping the attention
# scale moves the float32 output by ~0.7 on the moderate inputs below.
MIXED_TOLERANCE = {"mixed_float16": 5e-3, "mixed_bfloat16": 4e-2}


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_softmax_in_float32(rng, policy, monkeypatch):
    from keras_perceiver.layers import attention as attention_module

    q_in = rng.normal(size=(2, 3, 4)).astype("float32")
    moderate = rng.normal(size=(2, 5, 4)).astype("float32")  # logits O(1): scale matters
    large = moderate * 30  # logits ~70: a float16 exp/sum would lose them
    reference = Attention(num_heads=2, qk_channels=8)
    float32 = [ops.convert_to_numpy(reference(q_in, kv_in)) for kv_in in (moderate, large)]
    seen = []
    softmax = attention_module.ops.softmax

    def recording_softmax(x, *args, **kwargs):
        seen.append(keras.backend.standardize_dtype(x.dtype))
        return softmax(x, *args, **kwargs)

    monkeypatch.setattr(attention_module.ops, "softmax", recording_softmax)
    keras.config.set_dtype_policy(policy)
    layer = Attention(num_heads=2, qk_channels=8)
    layer(q_in, moderate)
    layer.set_weights(reference.get_weights())
    seen.clear()
    for kv_in, out32 in zip((moderate, large), float32):
        out = layer(q_in, kv_in, attention_mask=np.ones((2, 3, 5), bool))
        assert keras.backend.standardize_dtype(out.dtype) == policy.split("_")[1]
        got = ops.convert_to_numpy(ops.cast(out, "float32"))
        expected = numpy_attention(reference, q_in, kv_in)
        np.testing.assert_allclose(out32, expected, atol=1e-6 * np.abs(expected).max())
        np.testing.assert_allclose(got, expected,
                                   atol=MIXED_TOLERANCE[policy] * np.abs(expected).max())
    assert seen == ["float32", "float32"]


@pytest.mark.parametrize("masked", [False, True])
def test_fused_kernel_path_equals_one_shot_path(rng, masked, monkeypatch):
    # `keras.ops.dot_product_attention` (used on PyTorch in float32) against
    # the explicit float32 softmax, outputs and input gradients, with a fully
    # masked query row (no NaN through the zeroed row's gradient).
    from tests.layers.test_attention_chunked import input_gradients

    layer = Attention(num_heads=2, qk_channels=8, v_channels=8)
    q_in = rng.normal(size=(2, 4, 3)).astype("float32")
    kv_in = rng.normal(size=(2, 6, 5)).astype("float32")
    mask = None
    if masked:
        mask = rng.random((2, 4, 6)) > 0.4
        mask[1, 2] = False
    cotangent = rng.normal(size=(2, 4, 8)).astype("float32")
    results = {}
    for fused in (True, False):
        monkeypatch.setattr(Attention, "_use_fused_kernel", lambda self, training: fused)
        out = ops.convert_to_numpy(layer(q_in, kv_in, attention_mask=mask))
        results[fused] = [out] + input_gradients(layer, q_in, kv_in, mask, cotangent)
    for got, want in zip(results[True], results[False]):
        assert np.all(np.isfinite(got))
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    monkeypatch.undo()
    assert layer._use_fused_kernel(False) == (keras.backend.backend() == "torch")
