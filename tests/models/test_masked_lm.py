import keras
import numpy as np
import pytest
from keras import ops

from keras_perceiver.models import PerceiverMaskedLM
from keras_perceiver.models import PerceiverTask
from keras_perceiver.tokenizers import BytesTokenizer

SMALL = dict(
    max_length=24, d_model=8, num_latents=6, num_latent_channels=16, num_blocks=2,
    num_self_attends_per_block=2, num_self_attention_heads=2,
    num_cross_attention_heads=2, qk_channels=8, v_channels=16,
    decoder_num_heads=2, decoder_qk_channels=8,
)


def small_model(**kwargs):
    return PerceiverMaskedLM(**{**SMALL, **kwargs})


def randomize(model, rng):
    """Unit-scale random weights so outputs are O(1) and differences show."""
    for w in model.weights:
        shape = tuple(w.shape)
        if len(shape) == 1:  # biases, LayerNorm parameters
            value = 0.5 + 0.3 * rng.normal(size=shape)
        elif w.path.endswith("/embeddings"):  # tokens, positions, latents, queries
            value = rng.normal(size=shape)
        else:  # Dense kernels [in, out]
            value = rng.normal(size=shape) / np.sqrt(shape[0])
        w.assign(value.astype("float32"))


def token_ids(rng, batch=2, length=20, real=(20, 13)):
    ids = rng.integers(6, 262, size=(batch, length)).astype("int32")
    for row, n in enumerate(real):
        ids[row, n:] = 0
    return ids


def numpy(x):
    return ops.convert_to_numpy(x)


def test_logits_cover_all_positions_and_short_input_is_padded(rng):
    model = small_model()
    randomize(model, rng)
    ids = token_ids(rng, length=20)
    padded = np.pad(ids, ((0, 0), (0, 4)))
    out = numpy(model(ids))
    assert out.shape == (2, 24, 262)
    np.testing.assert_array_equal(out, numpy(model(padded)))
    np.testing.assert_allclose(numpy(model.predict(ids, verbose=0)), out, atol=1e-5)


def test_too_long_input_raises():
    with pytest.raises(ValueError, match=r"pad_to_length.*<= 24.*\(1, 25\)"):
        small_model()(np.ones((1, 25), "int32"))


def test_padded_decoder_queries_give_constant_logits(rng):
    model = small_model()
    randomize(model, rng)
    ids = token_ids(rng, length=24, real=(20, 13))
    out = numpy(model(ids))
    pads = out[ids == 0]
    assert len(pads) == 4 + 11
    np.testing.assert_allclose(pads, np.broadcast_to(pads[0], pads.shape), atol=1e-5)
    # Real positions differ from each other (the model is not degenerate).
    assert np.abs(out[0, 0] - out[0, 1]).max() > 1e-2


def test_unmasked_decoder_queries_agree_at_real_positions(rng):
    masked, unmasked = small_model(), small_model(mask_decoder_queries=False)
    randomize(masked, rng)
    unmasked.set_weights(masked.get_weights())
    ids = token_ids(rng, length=24)
    a, b = numpy(masked(ids)), numpy(unmasked(ids))
    real = ids != 0
    np.testing.assert_allclose(a[real], b[real], atol=1e-5)
    assert np.abs(a[~real] - b[~real]).max() > 1e-3


def test_padding_does_not_change_real_positions(rng):
    model = small_model()
    randomize(model, rng)
    ids = token_ids(rng, batch=1, length=10, real=(10,))
    longer = np.concatenate([ids, np.zeros((1, 6), "int32")], axis=1)
    np.testing.assert_allclose(numpy(model(ids))[:, :10], numpy(model(longer))[:, :10], atol=1e-5)


def test_embedding_head_is_tied(rng):
    model = small_model()
    randomize(model, rng)
    table = model.input_adapter.token_embedding.embeddings
    assert model.head.weights == [model.head.bias]
    assert sum(w is table for w in model.trainable_weights) == 1
    ids = token_ids(rng)
    before = numpy(model(ids))
    table.assign(numpy(table) * 2.0)
    assert np.abs(numpy(model(ids)) - before).max() > 1e-2


def test_training_step_reaches_the_tied_embedding(rng):
    model = small_model()
    table = model.input_adapter.token_embedding.embeddings
    before = numpy(table).copy()
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer="adam", loss=loss, run_eagerly=True)
    ids = token_ids(rng, length=24)
    model.fit(ids, ids, epochs=1, verbose=0)
    after = numpy(table)
    # Token 5 never occurs in the input: it only gets gradients through the head.
    assert not np.isin(5, ids)
    assert np.abs(after[5] - before[5]).max() > 1e-4


def test_get_config_round_trip(rng):
    model = small_model(activation="gelu", dropout=0.1)
    config = model.get_config()
    clone = PerceiverMaskedLM.from_config(config)
    assert clone.get_config() == config
    randomize(model, rng)
    clone.set_weights(model.get_weights())
    ids = token_ids(rng)
    np.testing.assert_array_equal(numpy(clone(ids)), numpy(model(ids)))


def test_save_to_preset_round_trip(tmp_path, rng):
    model = small_model()
    randomize(model, rng)
    model.save_to_preset(tmp_path / "mlm")
    loaded = PerceiverMaskedLM.from_preset(str(tmp_path / "mlm"))
    assert loaded.get_config() == model.get_config()
    for a, b in zip(model.weights, loaded.weights):
        assert a.path == b.path
        np.testing.assert_array_equal(numpy(a), numpy(b))
    ids = token_ids(rng)
    np.testing.assert_array_equal(numpy(loaded(ids)), numpy(model(ids)))
    generic = PerceiverTask.from_preset(str(tmp_path / "mlm"))
    assert isinstance(generic, PerceiverMaskedLM)
    np.testing.assert_array_equal(numpy(generic(ids)), numpy(model(ids)))


def test_presets_and_overrides():
    assert "language_perceiver" in PerceiverMaskedLM.presets
    assert "201M" in PerceiverMaskedLM.presets["language_perceiver"]
    with pytest.raises(ValueError, match="unknown preset"):
        PerceiverMaskedLM.from_preset("no_such_preset")
    config = PerceiverMaskedLM.preset_config("language_perceiver")
    assert (config["max_length"], config["d_model"], config["num_latents"], config["num_latent_channels"],
            config["num_self_attends_per_block"], config["qk_channels"], config["v_channels"],
            config["decoder_qk_channels"], config["decoder_v_channels"]) == (
        2048, 768, 256, 1280, 26, 256, 1280, 256, 768)


def test_fill_mask_placeholder_and_spans(rng):
    model = small_model()
    randomize(model, rng)
    tok = BytesTokenizer()
    text = "hello world!"
    by_span = model.fill_mask(text, masked_spans=[(5, 9)])
    by_placeholder = model.fill_mask("hello" + "[MASK]" * 4 + "ld!")
    assert by_span == by_placeholder
    # Only the masked bytes change; they are the model's argmax there.
    ids = np.array(tok.encode("hello" + "[MASK]" * 4 + "ld!", mask_placeholder="[MASK]"))
    batch = np.pad(ids, (0, 24 - len(ids)))[None].astype("int32")
    predicted = numpy(model(batch)).argmax(-1)[0, 5:9]
    expected = bytes([*b"hello", *(predicted - 6), *b"ld!"]).decode("utf-8", errors="replace")
    assert by_span == expected
    assert model.fill_mask([text, "ab[MASK]"]) == [text, model.fill_mask("ab[MASK]")]
    with pytest.raises(ValueError, match="at most 24 tokens"):
        model.fill_mask("x" * 25)


@pytest.mark.large
def test_language_perceiver_preset(tmp_path):
    model = PerceiverMaskedLM.from_preset("language_perceiver", load_weights=False)
    count = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert count == 201_108_230
    tok = BytesTokenizer()
    text = "This is an incomplete sentence where some words are missing."
    ids = np.array([tok.encode(text)], "int32")
    ids[0, 51:60] = tok.MASK_ID
    logits = numpy(model(ids))
    assert logits.shape == (1, 2048, 262)
    assert np.isfinite(logits).all()
    model.save_to_preset(tmp_path / "language_perceiver")
    loaded = PerceiverMaskedLM.from_preset(str(tmp_path / "language_perceiver"))
    for a, b in zip(model.weights, loaded.weights):  # equal weights: no second forward
        np.testing.assert_array_equal(numpy(a), numpy(b))
