import numpy as np
import pytest
from keras import ops

from keras_perceiver.layers import BasicDecoder
from keras_perceiver.layers import ClassificationDecoder
from keras_perceiver.layers import FourierPositionEncoding
from keras_perceiver.layers import ProjectionDecoder


def test_basic_decoder_trainable_queries(rng):
    decoder = BasicDecoder(5, output_index_dims=7, num_query_channels=12)
    latents = rng.normal(size=(2, 8, 16)).astype("float32")
    out = ops.convert_to_numpy(decoder(latents))
    assert out.shape == (2, 7, 5)
    queries = ops.convert_to_numpy(decoder.position_encoding.embeddings)[None].repeat(2, 0)
    expected = decoder.final_layer(decoder.decoding_cross_attention(queries, latents))
    np.testing.assert_allclose(out, ops.convert_to_numpy(expected), atol=1e-6)
    # qk defaults to the latent width ("kv").
    assert decoder.decoding_cross_attention.attention.query_dense.kernel.shape == (12, 16)


def test_basic_decoder_fourier_queries_and_subsampling(rng):
    decoder = BasicDecoder(3, output_index_dims=(4, 6), position_encoding_type="fourier",
                           num_bands=4, final_project=True)
    latents = rng.normal(size=(2, 8, 16)).astype("float32")
    full = ops.convert_to_numpy(decoder(latents))
    assert full.shape == (2, 24, 3)
    indices = np.array([0, 5, 23])
    part = ops.convert_to_numpy(decoder(latents, indices=indices))
    assert part.shape == (2, 3, 3)
    pe = FourierPositionEncoding((4, 6), 4)
    queries = pe(latents, indices=indices)
    expected = decoder.final_layer(decoder.decoding_cross_attention(queries, latents))
    np.testing.assert_allclose(part, ops.convert_to_numpy(expected), atol=1e-6)


def test_basic_decoder_projection_and_concat_inputs(rng):
    decoder = BasicDecoder(3, output_index_dims=5, num_query_channels=4, project_pos_dim=6,
                           concat_preprocessed_input=True, final_project=False)
    latents = rng.normal(size=(2, 8, 16)).astype("float32")
    inputs = rng.normal(size=(2, 5, 2)).astype("float32")
    out = decoder(latents, inputs=inputs)
    assert out.shape == (2, 5, 8)  # 2 input + 6 projected position channels
    assert decoder.needs_inputs


def test_basic_decoder_supplied_queries_and_query_mask(rng):
    decoder = BasicDecoder(2, position_encoding_type="none", use_query_residual=False)
    latents = rng.normal(size=(2, 8, 16)).astype("float32")
    queries = rng.normal(size=(2, 5, 10)).astype("float32")
    query_mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    out = ops.convert_to_numpy(decoder(latents, queries=queries, query_mask=query_mask))
    assert out.shape == (2, 5, 2)
    # Masked query rows carry no attention output: all of them are equal.
    np.testing.assert_allclose(out[0, 3], out[0, 4], atol=1e-6)
    unmasked = ops.convert_to_numpy(decoder(latents, queries=queries))
    np.testing.assert_allclose(out[0, :3], unmasked[0, :3], atol=1e-6)


def test_decoder_errors(rng):
    with pytest.raises(ValueError, match="position_encoding_type must be one of"):
        BasicDecoder(2, position_encoding_type="sinusoid")
    with pytest.raises(ValueError, match="need num_query_channels"):
        BasicDecoder(2, output_index_dims=3)
    decoder = BasicDecoder(2, position_encoding_type="none", name="dec")
    decoder(np.ones((1, 4, 8)), queries=np.ones((1, 3, 6)))
    with pytest.raises(ValueError, match="dec: expected `queries` with 6 channels"):
        decoder(np.ones((1, 4, 8)), queries=np.ones((1, 3, 7)))


def test_classification_and_projection_decoders(rng):
    latents = rng.normal(size=(2, 8, 16)).astype("float32")
    decoder = ClassificationDecoder(10, 32, use_query_residual=True)
    assert decoder(latents).shape == (2, 10)
    projection = ProjectionDecoder(10, kernel_initializer="glorot_uniform")
    out = ops.convert_to_numpy(projection(latents))
    expected = latents.mean(1) @ np.asarray(projection.projection.kernel)
    np.testing.assert_allclose(out, expected, atol=1e-5)


@pytest.mark.parametrize("layer", [
    BasicDecoder(5, output_index_dims=(2, 3), position_encoding_type="fourier", num_bands=4,
                 max_resolution=(4, 6), concat_pos=False, project_pos_dim=8, num_heads=2,
                 qk_channels=8, v_channels=8, use_query_residual=True, activation="gelu"),
    ClassificationDecoder(10, 32, num_heads=2),
    ProjectionDecoder(7),
])
def test_config_round_trip(layer):
    config = layer.get_config()
    assert layer.__class__.from_config(config).get_config() == config
