"""Streamed keys and query-chunked blocks equal the one-shot blocks.

Two memory paths on top of the chunked attention: keys/values projected
(and LayerNormed) one key chunk at a time inside the online softmax
(`Attention` when all queries fit one chunk), and a whole `CrossAttention`
block (query LayerNorm, projections, attention, MLP, an output layer)
run one query chunk at a time. Both must equal the one-shot block to 1e-5,
masks and gradients included, on every backend.
"""

import keras
import numpy as np
import pytest
from keras import ops

from keras_perceiver.layers import Attention
from keras_perceiver.layers import CrossAttention
from keras_perceiver.layers.chunked_attention import even_chunk
from tests.layers.test_attention_chunked import assert_fit_alike
from tests.layers.test_attention_chunked import input_gradients
from tests.layers.test_attention_chunked import make_mask


def block_pair(q_in, kv_in, query_chunk=None, key_chunk=None, **kwargs):
    """A one-shot CrossAttention and one with fixed attention chunks, same weights."""
    plain = CrossAttention(num_heads=2, qk_channels=4, v_channels=6, widening_factor=2, **kwargs)
    chunked = CrossAttention(num_heads=2, qk_channels=4, v_channels=6, widening_factor=2,
                             **kwargs)
    plain(q_in, kv_in)
    chunked(q_in, kv_in)
    chunked.set_weights(plain.get_weights())
    # LayerNorm scales/offsets away from 1/0, so they matter in the parity.
    rng = np.random.default_rng(7)
    chunked.set_weights([w + rng.normal(scale=0.1, size=w.shape).astype("float32")
                         for w in chunked.get_weights()])
    plain.set_weights(chunked.get_weights())
    chunked.attention.query_chunk_size = query_chunk
    chunked.attention.key_chunk_size = key_chunk
    return plain, chunked


def check_block(rng, queries, keys, mask_kind, query_chunk=None, key_chunk=None,
                output_layer=None, gradients=True):
    q_in = rng.normal(size=(2, queries, 3)).astype("float32")
    kv_in = rng.normal(size=(2, keys, 5)).astype("float32")
    mask = make_mask(rng, mask_kind, 2, queries, keys)
    plain, chunked = block_pair(q_in, kv_in, query_chunk, key_chunk)

    def run(layer):
        return lambda q, kv, attention_mask=None: layer(
            q, kv, attention_mask=attention_mask, output_layer=output_layer)

    expected = ops.convert_to_numpy(run(plain)(q_in, kv_in, attention_mask=mask))
    got = ops.convert_to_numpy(run(chunked)(q_in, kv_in, attention_mask=mask))
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    if gradients:
        cotangent = rng.normal(size=expected.shape).astype("float32")
        want = input_gradients(run(plain), q_in, kv_in, mask, cotangent)
        for g, w in zip(input_gradients(run(chunked), q_in, kv_in, mask, cotangent), want):
            # Through the LayerNorms the input gradients reach ~10: compared
            # at unit scale (as the remat test does), so 1e-5 is float32 rounding.
            scale = max(1.0, float(np.abs(w).max()))
            np.testing.assert_allclose(g / scale, w / scale, atol=1e-5, rtol=0)
    return chunked


# JAX compiles every scan (and its gradient) eagerly: one case each there.
JAX = keras.backend.backend() == "jax"
# 13 keys (prime) in chunks of 3 or 4: the last chunk overlaps its predecessor.
STREAMED = [(13, "empty_row")] if JAX else [(3, "none"), (4, "empty_row"), (13, "empty_row")]
QUERY_CHUNKED = [(3, 5, "empty_row")] if JAX else [
    (4, None, "none"), (3, 5, "empty_row"), (11, None, "empty_row")]


@pytest.mark.parametrize("key_chunk, mask_kind", STREAMED)
def test_streamed_keys_equal_one_shot(rng, key_chunk, mask_kind):
    keys = 29 if key_chunk == 13 else 13
    block = check_block(rng, 5, keys, mask_kind, key_chunk=key_chunk)
    assert Attention._streams_keys(block.attention.chunk_sizes(5, keys), 5, keys)
    assert block._query_chunk(5, keys, False) is None


@pytest.mark.parametrize("query_chunk, key_chunk, mask_kind", QUERY_CHUNKED)
def test_block_in_query_chunks_equals_one_shot(rng, query_chunk, key_chunk, mask_kind):
    # 11 (23) queries: chunks of 4, 3 (11) leave a last chunk overlapping its predecessor.
    queries = 23 if query_chunk == 11 else 11
    block = check_block(rng, queries, 7, mask_kind, query_chunk=query_chunk, key_chunk=key_chunk,
                        gradients=not JAX)  # JAX: the streamed-key case checks gradients
    assert block._query_chunk(queries, 7, False) == query_chunk


def test_query_chunks_run_the_output_layer_per_chunk(rng):
    # The decoder's final projection goes inside the chunks: [B, T, 2] out.
    final = keras.layers.Dense(2)
    final.build((None, None, 3))
    check_block(rng, 10, 6, "random", query_chunk=4, output_layer=final, gradients=not JAX)


def test_dropout_in_training_keeps_the_whole_block(rng):
    block = CrossAttention(num_heads=1, dropout=0.1)
    block(np.ones((1, 8, 4), "float32"), np.ones((1, 3, 4), "float32"))
    block.attention.query_chunk_size = 2
    assert block._query_chunk(8, 3, training=True) is None
    assert block._query_chunk(8, 3, training=False) == 2


def test_even_chunk():
    assert even_chunk(8192, 182528) == 7936
    assert even_chunk(4, 13) == 4  # no divisor in (2, 4]: overlapping last chunk
    assert even_chunk(4, 12) == 4 and even_chunk(5, 12) == 4
    assert even_chunk(16, 10) == 16  # longer than the length: clipped by the caller


def _block_model(query_chunk=None, key_chunk=None, queries=9, keys=13):
    q = keras.Input((queries, 3))
    kv = keras.Input((keys, 5))
    block = CrossAttention(num_heads=1, name="block")
    out = keras.layers.Dense(1)(block(q, kv))
    block.attention.query_chunk_size = query_chunk
    block.attention.key_chunk_size = key_chunk
    return keras.Model([q, kv], out)


@pytest.mark.parametrize("chunking", [dict(key_chunk=4)] + ([] if JAX else [dict(query_chunk=4)]))
def test_chunked_blocks_train_like_one_shot_in_fit(rng, chunking):
    x = [rng.normal(size=(4, 9, 3)).astype("float32"), rng.normal(size=(4, 13, 5)).astype("float32")]
    y = rng.normal(size=(4, 9, 1)).astype("float32")
    assert_fit_alike(_block_model(), _block_model(**chunking), x, y,
                     _block_model().get_weights()[0])


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="XLA fit on TensorFlow (JAX's fit is always XLA; torch's is torch.compile)")
@pytest.mark.parametrize("chunking", [dict(key_chunk=4), dict(query_chunk=4)])
def test_chunked_blocks_train_under_xla_on_tensorflow(rng, chunking):
    x = [rng.normal(size=(4, 9, 3)).astype("float32"), rng.normal(size=(4, 13, 5)).astype("float32")]
    y = rng.normal(size=(4, 9, 1)).astype("float32")
    assert_fit_alike(_block_model(), _block_model(**chunking), x, y,
                     _block_model().get_weights()[0], jit_compile=True)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="SavedModel: TF")
def test_chunked_blocks_in_exported_saved_model(rng, tmp_path):
    import tensorflow as tf

    plain = _block_model(queries=None, keys=None)
    for i, chunking in enumerate([dict(key_chunk=4), dict(query_chunk=4)]):
        model = _block_model(queries=None, keys=None, **chunking)
        model.set_weights(plain.get_weights())
        spec = [tf.TensorSpec((None, None, 3)), tf.TensorSpec((None, None, 5))]
        model.export(str(tmp_path / str(i)), format="tf_saved_model", verbose=False,
                     input_signature=[spec])
        served = tf.saved_model.load(str(tmp_path / str(i)))
        for queries, keys in ((9, 13), (3, 2), (12, 8)):
            x = [rng.normal(size=(2, queries, 3)).astype("float32"),
                 rng.normal(size=(2, keys, 5)).astype("float32")]
            np.testing.assert_allclose(served.serve(x).numpy(), ops.convert_to_numpy(plain(x)),
                                       atol=1e-5, rtol=0)
