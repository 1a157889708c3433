import numpy as np
import pytest
from keras import ops

from keras_perceiver.layers import EmbeddingDecoder
from keras_perceiver.layers import TextPreprocessor


def test_text_preprocessor_adds_positions(rng):
    layer = TextPreprocessor(262, 16, max_length=32)
    ids = rng.integers(0, 262, size=(2, 10)).astype("int32")
    out = ops.convert_to_numpy(layer(ids))
    table = ops.convert_to_numpy(layer.token_embedding.embeddings)
    pos = ops.convert_to_numpy(layer.position_embedding.embeddings)
    np.testing.assert_allclose(out, table[ids] + pos[None, :10], atol=1e-7)
    mask = ops.convert_to_numpy(layer.compute_padding_mask(np.array([[5, 0, 7]])))
    np.testing.assert_array_equal(mask, [[True, False, True]])


def test_text_preprocessor_rejects_long_input():
    with pytest.raises(ValueError, match="length <= 8"):
        TextPreprocessor(10, 4, max_length=8)(np.zeros((1, 9), "int32"))


def test_embedding_decoder_is_tied(rng):
    head = EmbeddingDecoder(vocab_size=7)
    hidden = rng.normal(size=(2, 3, 4)).astype("float32")
    table = rng.normal(size=(7, 4)).astype("float32")
    out = ops.convert_to_numpy(head(hidden, table))
    np.testing.assert_allclose(out, hidden @ table.T, atol=1e-5)


@pytest.mark.parametrize("layer", [TextPreprocessor(10, 4, max_length=8, pad_id=1),
                                   EmbeddingDecoder(9)])
def test_config_round_trip(layer):
    config = layer.get_config()
    assert layer.__class__.from_config(config).get_config() == config
