import numpy as np
import pytest
from keras import ops

from keras_perceiver.layers import BasicDecoder
from keras_perceiver.layers import ClassificationDecoder
from keras_perceiver.layers import ProjectionDecoder
from tests.layers import numpy_reference as ref


def _np(x):
    return ops.convert_to_numpy(x)


def test_basic_decoder_trainable_queries(rng):
    decoder = BasicDecoder(5, output_index_dims=7, num_query_channels=12, num_heads=2,
                           use_query_residual=True)
    latents = rng.normal(size=(2, 8, 16)).astype("float32")
    decoder(latents)
    ref.randomize(decoder, rng)
    out = _np(decoder(latents))
    assert out.shape == (2, 7, 5)
    queries = np.broadcast_to(np.asarray(decoder.position_encoding.embeddings, "float64"),
                              (2, 7, 12))
    hidden = ref.cross_attention(decoder.decoding_cross_attention, queries, latents)
    np.testing.assert_allclose(out, ref.dense(hidden, decoder.final_layer), atol=1e-4)
    # qk defaults to the latent width ("kv").
    assert decoder.decoding_cross_attention.attention.query_dense.kernel.shape == (12, 16)


def test_basic_decoder_fourier_queries_and_subsampling(rng):
    decoder = BasicDecoder(3, output_index_dims=(4, 6), position_encoding_type="fourier",
                           num_bands=4, max_resolution=(5, 9), final_project=True)
    latents = rng.normal(size=(2, 8, 16)).astype("float32")
    decoder(latents)
    ref.randomize(decoder, rng)
    block = decoder.decoding_cross_attention
    full = _np(decoder(latents))
    queries = ref.fourier_features((4, 6), 4, (5, 9))[None].repeat(2, 0)
    expected = ref.dense(ref.cross_attention(block, queries, latents), decoder.final_layer)
    np.testing.assert_allclose(full, expected, atol=1e-4)
    indices = np.array([0, 5, 23, 13])
    part = _np(decoder(latents, indices=indices))
    queries = ref.fourier_features((4, 6), 4, (5, 9), indices=indices)[None].repeat(2, 0)
    expected = ref.dense(ref.cross_attention(block, queries, latents), decoder.final_layer)
    np.testing.assert_allclose(part, expected, atol=1e-4)


def test_basic_decoder_projection_and_concat_inputs(rng):
    """DeepMind and transformers: queries = concat([inputs_without_pos, pos], -1)."""
    decoder = BasicDecoder(3, output_index_dims=5, num_query_channels=4, project_pos_dim=6,
                           concat_preprocessed_input=True, final_project=False,
                           use_query_residual=True)
    latents = rng.normal(size=(2, 8, 16)).astype("float32")
    inputs = rng.normal(size=(2, 5, 2)).astype("float32")
    decoder(latents, inputs=inputs)
    assert decoder.needs_inputs
    ref.randomize(decoder, rng)
    positions = np.asarray(decoder.position_encoding.embeddings, "float64")[None].repeat(2, 0)
    queries = np.concatenate([inputs, ref.dense(positions, decoder.position_projection)], -1)
    np.testing.assert_allclose(_np(decoder.decoder_query(latents, inputs=inputs)), queries,
                               atol=1e-5)
    out = _np(decoder(latents, inputs=inputs))
    assert out.shape == (2, 5, 8)  # 2 input + 6 projected position channels
    expected = ref.cross_attention(decoder.decoding_cross_attention, queries, latents)
    np.testing.assert_allclose(out, expected, atol=1e-4)


def test_basic_decoder_supplied_queries_and_query_mask(rng):
    decoder = BasicDecoder(2, position_encoding_type="none", use_query_residual=False)
    latents = rng.normal(size=(2, 8, 16)).astype("float32")
    queries = rng.normal(size=(2, 5, 10)).astype("float32")
    query_mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    decoder(latents, queries=queries)
    ref.randomize(decoder, rng)
    out = _np(decoder(latents, queries=queries, query_mask=query_mask))
    assert out.shape == (2, 5, 2)
    mask = np.broadcast_to(query_mask[:, :, None], (2, 5, 8))
    block = decoder.decoding_cross_attention
    expected = ref.dense(ref.cross_attention(block, queries, latents, mask), decoder.final_layer)
    np.testing.assert_allclose(out, expected, atol=1e-4)
    # Masked query rows carry no attention output: all of them are equal.
    np.testing.assert_allclose(out[0, 3], out[0, 4], atol=1e-6)
    unmasked = ref.dense(ref.cross_attention(block, queries, latents), decoder.final_layer)
    np.testing.assert_allclose(_np(decoder(latents, queries=queries)), unmasked, atol=1e-4)


def test_decoder_errors(rng):
    with pytest.raises(ValueError, match="position_encoding_type must be one of"):
        BasicDecoder(2, position_encoding_type="sinusoid")
    with pytest.raises(ValueError, match="need num_query_channels"):
        BasicDecoder(2, output_index_dims=3)
    decoder = BasicDecoder(2, position_encoding_type="none", name="dec")
    decoder(np.ones((1, 4, 8)), queries=np.ones((1, 3, 6)))
    with pytest.raises(ValueError, match="dec: expected `queries` with 6 channels"):
        decoder(np.ones((1, 4, 8)), queries=np.ones((1, 3, 7)))


def test_classification_decoder_formula(rng):
    latents = rng.normal(size=(2, 8, 16)).astype("float32")
    decoder = ClassificationDecoder(10, 32, num_heads=2, use_query_residual=True)
    decoder(latents)
    ref.randomize(decoder, rng)
    out = _np(decoder(latents))
    assert out.shape == (2, 10)
    query = np.asarray(decoder.position_encoding.embeddings, "float64")[None].repeat(2, 0)
    hidden = ref.cross_attention(decoder.decoding_cross_attention, query, latents)
    np.testing.assert_allclose(out, ref.dense(hidden, decoder.final_layer)[:, 0], atol=1e-4)


def test_projection_decoder_formula(rng):
    latents = rng.normal(size=(2, 8, 16)).astype("float32")
    projection = ProjectionDecoder(10, kernel_initializer="glorot_uniform")
    projection(latents)
    ref.randomize(projection, rng)  # a non-zero bias
    assert np.abs(np.asarray(projection.projection.bias)).min() > 0
    out = _np(projection(latents))
    kernel = np.asarray(projection.projection.kernel, "float64")
    bias = np.asarray(projection.projection.bias, "float64")
    np.testing.assert_allclose(out, latents.mean(1) @ kernel + bias, atol=1e-5)


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
