import numpy as np
import pytest
from keras import ops

from keras_perceiver.layers import CrossAttention
from keras_perceiver.layers import PerceiverEncoder
from keras_perceiver.layers import SelfAttention
from tests.layers import numpy_reference as ref


def small_encoder(**kwargs):
    args = dict(num_latents=8, num_latent_channels=16, num_blocks=3,
                num_self_attends_per_block=2, num_self_attention_heads=2,
                num_cross_attention_heads=1)
    args.update(kwargs)
    return PerceiverEncoder(**args)


def count(layer):
    return sum(int(np.prod(w.shape)) for w in layer.trainable_weights)


def test_encoder_output_shape(rng):
    encoder = small_encoder()
    assert encoder(rng.normal(size=(2, 30, 6))).shape == (2, 8, 16)


def test_weight_sharing_parameter_count(rng):
    encoder = small_encoder(num_blocks=3, num_self_attends_per_block=2)
    encoder(rng.normal(size=(1, 30, 6)))
    cross = CrossAttention(num_heads=1)
    cross(np.zeros((1, 8, 16)), np.zeros((1, 30, 6)))
    layer = SelfAttention(num_heads=2)
    layer(np.zeros((1, 8, 16)))
    expected = 8 * 16 + count(cross) + 2 * count(layer)
    assert count(encoder) == expected
    one_block = small_encoder(num_blocks=1, num_self_attends_per_block=2)
    one_block(rng.normal(size=(1, 30, 6)))
    assert count(one_block) == expected


def test_blocks_are_applied_num_blocks_times(rng):
    """NumPy: one cross-attend, then the shared self-attends num_blocks times."""
    encoder = small_encoder(num_blocks=3)
    x = rng.normal(size=(2, 30, 6)).astype("float32")
    encoder(x)
    ref.randomize(encoder, rng)
    out = ops.convert_to_numpy(encoder(x))
    latents = np.asarray(encoder.latents.embeddings, "float64")[None].repeat(2, 0)
    z = ref.cross_attention(encoder.cross_attention, latents, x)
    for _ in range(3):
        for layer in encoder.self_attends:
            z = ref.self_attention(layer, z)
    np.testing.assert_allclose(out, z, atol=1e-4 * np.abs(z).max())


def test_masked_inputs_change_nothing(rng):
    encoder = small_encoder()
    x = rng.normal(size=(2, 10, 6)).astype("float32")
    mask = np.arange(10)[None] < np.array([[4], [9]])
    changed = np.where(mask[..., None], x, rng.normal(size=x.shape) * 50).astype("float32")
    a = ops.convert_to_numpy(encoder(x, input_mask=mask))
    b = ops.convert_to_numpy(encoder(changed, input_mask=mask))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, ops.convert_to_numpy(encoder(changed)))


def test_encoder_errors():
    with pytest.raises(ValueError, match="enc: expected `inputs` of rank 3"):
        small_encoder(name="enc")(np.ones((2, 6)))
    encoder = small_encoder(name="enc2")
    with pytest.raises(ValueError, match="enc2: expected input_mask of shape"):
        encoder(np.ones((2, 5, 6)), input_mask=np.ones((2, 5, 1), bool))


def test_config_round_trip():
    encoder = small_encoder(qk_channels=8, v_channels=16, activation="gelu", dropout=0.1,
                            cross_attention_shape_for_attention="q", use_query_residual=False)
    config = encoder.get_config()
    assert PerceiverEncoder.from_config(config).get_config() == config
