"""Chunked (online-softmax) attention equals one-shot attention, masks included."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from keras import ops

from keras_perceiver.layers import Attention
from keras_perceiver.layers.chunked_attention import choose_chunk_sizes
from tests.layers.test_attention import numpy_attention

# JAX compiles every scan it meets eagerly: fewer random examples there.
EXAMPLES = 3 if keras.backend.backend() == "jax" else 8
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def pair(num_heads, q_in, kv_in, **chunking):
    """A one-shot layer and a chunked layer with the same weights."""
    kwargs = dict(num_heads=num_heads, qk_channels=4 * num_heads, v_channels=2 * num_heads)
    plain = Attention(**kwargs)
    chunked = Attention(**kwargs, **chunking)
    plain(q_in, kv_in)
    chunked(q_in, kv_in)
    chunked.set_weights(plain.get_weights())
    return plain, chunked


def input_gradients(layer, q_in, kv_in, mask, cotangent):
    """d sum(layer(q, kv) * cotangent) / d(q, kv), on the current backend."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        q, kv = tf.constant(q_in), tf.constant(kv_in)
        with tf.GradientTape() as tape:
            tape.watch([q, kv])
            loss = tf.reduce_sum(layer(q, kv, attention_mask=mask) * cotangent)
        return [g.numpy() for g in tape.gradient(loss, [q, kv])]
    if backend == "jax":
        import jax

        def loss(q, kv):
            return (layer(q, kv, attention_mask=mask) * cotangent).sum()

        return [np.asarray(g) for g in jax.grad(loss, argnums=(0, 1))(q_in, kv_in)]
    import torch

    q = torch.tensor(q_in, requires_grad=True)
    kv = torch.tensor(kv_in, requires_grad=True)
    (layer(q, kv, attention_mask=mask) * torch.tensor(cotangent)).sum().backward()
    return [q.grad.numpy(), kv.grad.numpy()]


def make_mask(rng, kind, batch, queries, keys):
    if kind == "none":
        return None
    mask = rng.random((batch, queries, keys)) > 0.5
    if kind == "empty_row":
        mask[0, queries // 2] = False  # a query that sees no key: zeroed
    return mask


def check_parity(rng, batch, heads, queries, keys, mask_kind, gradients=True, **chunking):
    q_in = rng.normal(size=(batch, queries, 3)).astype("float32")
    kv_in = rng.normal(size=(batch, keys, 5)).astype("float32")
    mask = make_mask(rng, mask_kind, batch, queries, keys)
    plain, chunked = pair(heads, q_in, kv_in, **chunking)
    assert chunked.chunk_sizes(queries, keys) is not None
    expected = ops.convert_to_numpy(plain(q_in, kv_in, attention_mask=mask))
    got = ops.convert_to_numpy(chunked(q_in, kv_in, attention_mask=mask))
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(got, numpy_attention(plain, q_in, kv_in, mask), atol=1e-5)
    if mask is not None and mask_kind == "empty_row":
        bias = ops.convert_to_numpy(chunked.output_dense.bias)
        np.testing.assert_array_equal(got[0, queries // 2], bias)
    if gradients:
        cotangent = rng.normal(size=expected.shape).astype("float32")
        want = input_gradients(plain, q_in, kv_in, mask, cotangent)
        for g, w in zip(input_gradients(chunked, q_in, kv_in, mask, cotangent), want):
            np.testing.assert_allclose(g, w, atol=1e-5, rtol=0)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True)
@given(
    batch=st.integers(1, 2),
    heads=st.integers(1, 2),
    queries=st.integers(1, 9),
    keys=st.integers(1, 17),
    mask_kind=st.sampled_from(["none", "random", "empty_row"]),
    data=st.data(),
)
def test_chunked_equals_unchunked_random(batch, heads, queries, keys, mask_kind, data):
    query_chunk = data.draw(st.integers(1, queries + 2), label="query_chunk")
    key_chunk = data.draw(st.integers(1, keys + 2), label="key_chunk")
    check_parity(
        np.random.default_rng(queries * 31 + keys), batch, heads, queries, keys, mask_kind,
        query_chunk_size=query_chunk, key_chunk_size=key_chunk,
    )


@pytest.mark.parametrize("key_chunk", range(1, 9))
def test_every_key_chunk_size(rng, key_chunk):
    # 7 keys: chunks of 1..8, most of which leave a ragged last chunk.
    check_parity(rng, 2, 2, 5, 7, "empty_row", gradients=key_chunk == 3,
                 query_chunk_size=2, key_chunk_size=key_chunk)


@pytest.mark.parametrize("query_chunk", range(1, 7))
def test_every_query_chunk_size(rng, query_chunk):
    check_parity(rng, 1, 2, 5, 7, "random", gradients=query_chunk == 4,
                 query_chunk_size=query_chunk, key_chunk_size=3)


def test_memory_budget_chooses_chunks_and_keeps_small_inputs_whole(rng):
    assert choose_chunk_sizes(8, 256, 2048) is None  # 16 MiB: one shot
    assert choose_chunk_sizes(1, 2048, 182528) == (2048, 8192)  # flow encoder
    assert choose_chunk_sizes(1, 182528, 2048) == (8192, 2048)  # flow decoder
    # A length unknown at trace time counts as unbounded.
    assert choose_chunk_sizes(1, 2048, None) == (2048, 8192)
    assert choose_chunk_sizes(2, None, 2048) == (4096, 2048)
    assert choose_chunk_sizes(4, None, None) == (4096, 1024)
    layer = Attention(num_heads=1, memory_budget=4 * 4 * 6)
    assert layer.chunk_sizes(4, 6) is None
    assert layer.chunk_sizes(5, 6) is not None
    check_parity(rng, 2, 2, 9, 40, "random", memory_budget=4 * 2 * 9 * 8)


def test_chunking_config_round_trip():
    layer = Attention(num_heads=2, query_chunk_size=3, key_chunk_size=5, memory_budget=1024)
    config = layer.get_config()
    assert (config["query_chunk_size"], config["key_chunk_size"], config["memory_budget"]) == (3, 5, 1024)
    assert Attention.from_config(config).get_config() == config
    with pytest.raises(ValueError, match="key_chunk_size must be None or a positive integer"):
        Attention(key_chunk_size=0)


def test_chunked_attention_keeps_float32_softmax_under_mixed_precision(rng):
    keras.config.set_dtype_policy("mixed_float16")
    q_in = rng.normal(size=(1, 6, 3)).astype("float32")
    kv_in = rng.normal(size=(1, 50, 5)).astype("float32")
    layer = Attention(num_heads=1, query_chunk_size=4, key_chunk_size=16)
    layer(q_in, kv_in)
    # Logits of ~1e5 overflow float16, but not the float32 softmax.
    big = [w * 60 if w.ndim == 2 and i < 2 else w for i, w in enumerate(layer.get_weights())]
    layer.set_weights(big)
    out = ops.convert_to_numpy(ops.cast(layer(q_in, kv_in), "float32"))
    assert np.all(np.isfinite(out))


def _chunk_model(chunking):
    x = keras.Input((6, 3))
    y = keras.layers.Dense(5)(x)
    h = Attention(num_heads=2, qk_channels=4, name="attention", **chunking)(x, y)
    return keras.Model(x, keras.layers.Dense(1)(h))


def assert_fit_alike(plain, chunked, x, y, initial_kernel, jit_compile="auto"):
    """`chunked`, given `plain`'s weights, trains (SGD, 2 epochs) to the same
    weights within 1e-5; training moved `plain`'s first kernel away from
    `initial_kernel` (a fresh model's), so the comparison is not vacuous.
    `jit_compile`: `chunked`'s (`plain` keeps Keras' default)."""
    chunked.set_weights(plain.get_weights())
    for model, jit in ((plain, "auto"), (chunked, jit_compile)):
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse", jit_compile=jit)
        model.fit(x, y, batch_size=2, epochs=2, verbose=0, shuffle=False)
    for a, b in zip(plain.get_weights(), chunked.get_weights()):
        np.testing.assert_allclose(b, a, atol=1e-5, rtol=0)
    assert not np.allclose(plain.get_weights()[0], initial_kernel)


def test_chunked_attention_trains_like_unchunked_in_fit(rng):
    x = rng.normal(size=(4, 6, 3)).astype("float32")
    y = rng.normal(size=(4, 6, 1)).astype("float32")
    assert_fit_alike(_chunk_model({}), _chunk_model(dict(query_chunk_size=4, key_chunk_size=4)),
                     x, y, _chunk_model({}).get_weights()[0])


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="XLA fit on TensorFlow (JAX's fit is always XLA; torch's is torch.compile)")
def test_chunked_attention_trains_under_xla_on_tensorflow(rng):
    # The chunk loops' gradients compile only with a bounded loop (`loops.scan`).
    x = rng.normal(size=(4, 6, 3)).astype("float32")
    y = rng.normal(size=(4, 6, 1)).astype("float32")
    chunked = _chunk_model(dict(query_chunk_size=4, key_chunk_size=4))
    assert_fit_alike(_chunk_model({}), chunked, x, y, _chunk_model({}).get_weights()[0],
                     jit_compile=True)
    assert chunked.jit_compile is True


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="SavedModel: TF")
def test_chunked_attention_in_exported_saved_model(rng, tmp_path):
    import tensorflow as tf

    model = _chunk_model(dict(query_chunk_size=4, key_chunk_size=4))
    x = rng.normal(size=(3, 6, 3)).astype("float32")
    expected = ops.convert_to_numpy(model(x))
    model.export(str(tmp_path / "sm"), format="tf_saved_model", verbose=False)
    served = tf.saved_model.load(str(tmp_path / "sm"))
    np.testing.assert_allclose(served.serve(x).numpy(), expected, atol=1e-6)
    graph = served.serve.get_concrete_function(tf.TensorSpec((None, 6, 3))).graph
    ops_used = {n.op for n in graph.as_graph_def().node}
    ops_used |= {n.op for f in graph.as_graph_def().library.function for n in f.node_def}
    assert "StatelessWhile" in ops_used or "While" in ops_used


def _identity_value_layer(rng, keys, **chunking):
    """One head whose output row t is its attention weights over the keys.

    Keys are one-hot (`kv = eye(S)`) and the value and output projections
    are identities, so the output is the (dropped-out) attention matrix.
    """
    layer = Attention(num_heads=1, qk_channels=4, v_channels=keys,
                      attention_dropout=0.5, **chunking)
    q_in = rng.normal(size=(2, 11, 3)).astype("float32")
    kv_in = np.broadcast_to(np.eye(keys, dtype="float32"), (2, keys, keys)).copy()
    layer(q_in, kv_in)
    for dense in (layer.value_dense, layer.output_dense):
        dense.kernel.assign(np.eye(keys, dtype="float32"))
        dense.bias.assign(np.zeros(keys, "float32"))
    return layer, q_in, kv_in


# Both loops, then each alone (JAX, which compiles every eager scan: both only).
DROPOUT_CHUNKINGS = [dict(query_chunk_size=4, key_chunk_size=5)] + (
    [] if keras.backend.backend() == "jax" else [dict(key_chunk_size=7), dict(query_chunk_size=3)]
)


@pytest.mark.parametrize("chunking", DROPOUT_CHUNKINGS)
def test_chunked_dropout_drops_normalised_probabilities(rng, chunking):
    # Dropout commutes with the softmax normaliser: every training output is
    # either 0 or the one-shot probability / (1 - rate), chunk by chunk.
    layer, q_in, kv_in = _identity_value_layer(rng, 17, **chunking)
    assert layer.chunk_sizes(11, 17, training=True) is not None
    probs = ops.convert_to_numpy(layer(q_in, kv_in, training=False))
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    drawn = [ops.convert_to_numpy(layer(q_in, kv_in, training=True)) for _ in range(2)]
    for out in drawn:
        kept = np.abs(out) > 1e-9
        np.testing.assert_allclose(out[kept], 2 * probs[kept], atol=1e-5, rtol=1e-5)
        assert 0.3 < kept.mean() < 0.7, kept.mean()
    # Fresh masks per call, and chunks do not repeat one mask.
    assert not np.array_equal(drawn[0] > 0, drawn[1] > 0)
    assert not np.array_equal(drawn[0][:, :3, :5] > 0, drawn[0][:, 3:6, 5:10] > 0)


def test_chunked_attention_with_dropout_trains_in_fit(rng):
    x = rng.normal(size=(4, 6, 3)).astype("float32")
    y = rng.normal(size=(4, 6, 1)).astype("float32")
    model = _chunk_model(dict(query_chunk_size=4, key_chunk_size=4, attention_dropout=0.3))
    before = model.get_weights()
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    history = model.fit(x, y, batch_size=2, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert not np.allclose(model.get_weights()[0], before[0])


def _dynamic_length_model(**chunking):
    x = keras.Input((None, 3))
    latents = keras.Input((5, 4))
    h = Attention(num_heads=2, qk_channels=4, name="attention", **chunking)(latents, x)
    return keras.Model([latents, x], h)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="unknown lengths at trace time: TensorFlow graphs only")
def test_unknown_length_chunks_in_graph_and_saved_model(rng, tmp_path):
    import tensorflow as tf

    # A budget of 4 bytes * 2 heads * 5 queries * 1024 keys: 1024-key chunks.
    chunked = _dynamic_length_model(memory_budget=40 * 1024)
    plain = _dynamic_length_model()
    plain.set_weights(chunked.get_weights())
    layer = chunked.get_layer("attention")
    assert layer.chunk_sizes(5, None) == (5, 1024)
    spec = [tf.TensorSpec((None, 5, 4)), tf.TensorSpec((None, None, 3))]
    fn = tf.function(lambda a, b: chunked([a, b]), input_signature=spec)
    graph = fn.get_concrete_function().graph.as_graph_def()
    ops_used = {n.op for n in graph.node}
    ops_used |= {n.op for f in graph.library.function for n in f.node_def}
    assert "StatelessWhile" in ops_used or "While" in ops_used
    chunked.export(str(tmp_path / "sm"), format="tf_saved_model", verbose=False,
                   input_signature=[spec])
    loaded = tf.saved_model.load(str(tmp_path / "sm"))
    for keys in (1, 1024, 1500, 2100):
        latents = rng.normal(size=(2, 5, 4)).astype("float32")
        x = rng.normal(size=(2, keys, 3)).astype("float32")
        want = ops.convert_to_numpy(plain([latents, x]))
        np.testing.assert_allclose(fn(latents, x).numpy(), want, atol=1e-5, rtol=0)
        np.testing.assert_allclose(loaded.serve([latents, x]).numpy(), want, atol=1e-5, rtol=0)
    # Gradients through the dynamic-length loop.
    latents, x = tf.constant(rng.normal(size=(1, 5, 4)), tf.float32), tf.constant(
        rng.normal(size=(1, 1100, 3)), tf.float32)

    @tf.function(input_signature=spec)
    def grads(a, b):
        with tf.GradientTape() as tape:
            tape.watch(b)
            loss = tf.reduce_sum(chunked([a, b]) ** 2)
        return tape.gradient(loss, b)

    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(plain([latents, x]) ** 2)
    np.testing.assert_allclose(grads(latents, x).numpy(), tape.gradient(loss, x).numpy(),
                               atol=1e-5, rtol=0)


ENCODER_SCRIPT = """
import json, os, sys, threading, time
import numpy as np, keras
from keras_perceiver.layers import PerceiverEncoder
PAGE = os.sysconf("SC_PAGE_SIZE")
def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE / 2**20
budget = int(sys.argv[1])
layer = PerceiverEncoder(num_latents=256, num_latent_channels=32, num_self_attends_per_block=1,
                         num_self_attention_heads=1, attention_memory_budget=budget)
inputs = np.random.default_rng(0).normal(size=(1, 200_000, 8)).astype("float32")
keras.ops.convert_to_numpy(layer(inputs[:, :1000]))  # build and warm up
base, peak, done = rss_mb(), [0.0], threading.Event()
def sample():  # the current RSS, sampled: a peak that lasts over a millisecond shows
    while not done.is_set():
        peak[0] = max(peak[0], rss_mb())
        time.sleep(0.0005)
thread = threading.Thread(target=sample)
thread.start()
out = keras.ops.convert_to_numpy(layer(inputs))
done.set()
thread.join()
print(json.dumps({"chunk_sizes": layer.cross_attention.attention.chunk_sizes(256, 200_000),
                  "growth_mb": max(peak[0], rss_mb()) - base,
                  "finite": bool(np.isfinite(out).all())}))
"""


def _encoder_growth(budget):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.update(TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
    result = subprocess.run(
        [sys.executable, "-c", ENCODER_SCRIPT, str(budget)],
        capture_output=True, text=True, env=env, timeout=300, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="one subprocess measurement (TensorFlow) is enough; parity runs everywhere",
)
def test_200k_input_encoder_forward_fits_a_memory_limit_unchunked_exceeds():
    # One-shot logits of 256 latents x 200k inputs are 205 MB (float32), and the
    # softmax holds a few such arrays; 8 MiB chunks hold a few MB at a time.
    # Each forward runs in its own process; RSS growth over the warmed-up model.
    chunked, unchunked = _encoder_growth(8 * 2**20), _encoder_growth(2**40)
    assert chunked["chunk_sizes"] is not None and unchunked["chunk_sizes"] is None
    assert chunked["finite"] and unchunked["finite"]
    limit_mb = 200
    assert chunked["growth_mb"] < limit_mb < unchunked["growth_mb"], (chunked, unchunked)
