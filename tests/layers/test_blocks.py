import numpy as np
import pytest
from keras import ops

from keras_perceiver.layers import CrossAttention
from keras_perceiver.layers import SelfAttention
from tests.layers import numpy_reference as ref


def test_cross_attention_shapes_and_channels(rng):
    block = CrossAttention(num_heads=1)
    out = block(rng.normal(size=(2, 4, 8)), rng.normal(size=(2, 10, 6)))
    assert out.shape == (2, 4, 8)
    # qk defaults to the kv width ("kv") or the query width ("q").
    assert block.attention.query_dense.kernel.shape == (8, 6)
    block = CrossAttention(num_heads=2, shape_for_attention="q")
    block(rng.normal(size=(2, 4, 8)), rng.normal(size=(2, 10, 6)))
    assert block.attention.key_dense.kernel.shape == (6, 8)
    assert block.query_layer_norm.epsilon == 1e-5


@pytest.mark.parametrize("residual", [True, False])
def test_cross_attention_formula(rng, residual):
    block = CrossAttention(num_heads=2, qk_channels=4, use_query_residual=residual,
                           widening_factor=2)
    q = rng.normal(size=(2, 3, 6)).astype("float32")
    kv = rng.normal(size=(2, 5, 4)).astype("float32")
    block(q, kv)
    ref.randomize(block, rng)
    out = ops.convert_to_numpy(block(q, kv))
    np.testing.assert_allclose(out, ref.cross_attention(block, q, kv), atol=1e-4)


def test_self_attention_formula(rng):
    block = SelfAttention(num_heads=2, widening_factor=2)
    x = rng.normal(size=(2, 5, 8)).astype("float32")
    block(x)
    ref.randomize(block, rng)
    out = ops.convert_to_numpy(block(x))
    np.testing.assert_allclose(out, ref.self_attention(block, x), atol=1e-4)
    assert block.attention.query_dense.kernel.shape == (8, 8)


def test_block_errors():
    with pytest.raises(ValueError, match="shape_for_attention must be one of"):
        CrossAttention(shape_for_attention="z")
    with pytest.raises(ValueError, match="self_attention.*rank 3"):
        SelfAttention(name="self_attention")(np.ones((2, 8)))
    with pytest.raises(ValueError, match="divisible by num_heads=3"):
        SelfAttention(num_heads=3)(np.ones((1, 2, 8)))


@pytest.mark.parametrize("layer", [
    CrossAttention(num_heads=2, qk_channels=8, v_channels=4, shape_for_attention="q",
                   use_query_residual=False, widening_factor=2, dropout=0.1,
                   attention_dropout=0.2, activation="gelu", layer_norm_epsilon=1e-6),
    SelfAttention(num_heads=4, qk_channels=16, widening_factor=4, activation="gelu"),
])
def test_config_round_trip(layer):
    config = layer.get_config()
    assert layer.__class__.from_config(config).get_config() == config
