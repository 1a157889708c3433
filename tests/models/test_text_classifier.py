import numpy as np
import pytest
from keras import ops

from keras_perceiver.models import PerceiverMaskedLM
from keras_perceiver.models import PerceiverTextClassifier

ENCODER = dict(
    max_length=24, d_model=8, num_latents=6, num_latent_channels=16, num_blocks=2,
    num_self_attends_per_block=2, num_self_attention_heads=2,
    num_cross_attention_heads=2, qk_channels=8, v_channels=16,
)
TASKS = {"sst2": 2, "mnli": 3, "stsb": 1}


def small_classifier(tasks=TASKS, **kwargs):
    return PerceiverTextClassifier(tasks=tasks, **{**ENCODER, **kwargs})


def small_masked_lm():
    return PerceiverMaskedLM(**ENCODER, decoder_num_heads=2, decoder_qk_channels=8)


def randomize(model, rng):
    for w in model.weights:
        shape = tuple(w.shape)
        if len(shape) == 1:
            value = 0.5 + 0.3 * rng.normal(size=shape)
        elif w.path.endswith("/embeddings"):
            value = rng.normal(size=shape)
        else:
            value = rng.normal(size=shape) / np.sqrt(shape[0])
        w.assign(value.astype("float32"))


def token_ids(rng, length=20, real=(20, 13)):
    ids = rng.integers(6, 262, size=(len(real), length)).astype("int32")
    for row, n in enumerate(real):
        ids[row, n:] = 0
    return ids


def numpy(outputs):
    return {k: ops.convert_to_numpy(v) for k, v in outputs.items()}


def test_one_output_per_task(rng):
    model = small_classifier()
    randomize(model, rng)
    out = numpy(model(token_ids(rng)))
    assert sorted(out) == sorted(TASKS)
    assert {k: v.shape for k, v in out.items()} == {"sst2": (2, 2), "mnli": (2, 3), "stsb": (2, 1)}
    # One learned query per task.
    assert tuple(model.decoder.position_encoding.embeddings.shape) == (3, 16)
    assert [h.name for h in model.heads.values()] == ["sst2_head", "mnli_head", "stsb_head"]


def test_task_queries_are_independent(rng):
    model = small_classifier()
    randomize(model, rng)
    ids = token_ids(rng)
    before = numpy(model(ids))
    queries = model.decoder.position_encoding.embeddings
    table = ops.convert_to_numpy(queries)
    table[1] += 1.0  # change only the "mnli" query
    queries.assign(table)
    after = numpy(model(ids))
    np.testing.assert_array_equal(after["sst2"], before["sst2"])
    np.testing.assert_array_equal(after["stsb"], before["stsb"])
    assert np.abs(after["mnli"] - before["mnli"]).max() > 1e-3


def test_padding_is_masked(rng):
    model = small_classifier()
    randomize(model, rng)
    ids = token_ids(rng, length=10, real=(10, 7))
    longer = np.pad(ids, ((0, 0), (0, 8)))
    a, b = numpy(model(ids)), numpy(model(longer))
    for task in TASKS:
        np.testing.assert_allclose(a[task], b[task], atol=1e-5)


def test_int_tasks_and_invalid_tasks():
    model = small_classifier(tasks=2)
    assert model.get_config()["tasks"] == {"label": 2}
    for bad in ({}, {"a": 0}, {"a": 2.0}, [2], None):
        with pytest.raises(ValueError, match="PerceiverTextClassifier.*tasks"):
            small_classifier(tasks=bad)


def test_get_config_round_trip(rng):
    model = small_classifier(activation="gelu", decoder_num_heads=2)
    config = model.get_config()
    clone = PerceiverTextClassifier.from_config(config)
    assert clone.get_config() == config
    randomize(model, rng)
    clone.set_weights(model.get_weights())
    ids = token_ids(rng)
    a, b = numpy(model(ids)), numpy(clone(ids))
    for task in TASKS:
        np.testing.assert_array_equal(a[task], b[task])


def test_save_to_preset_round_trip(tmp_path, rng):
    model = small_classifier()
    randomize(model, rng)
    model.save_to_preset(tmp_path / "clf")
    loaded = PerceiverTextClassifier.from_preset(str(tmp_path / "clf"))
    assert loaded.get_config() == model.get_config()
    for a, b in zip(model.weights, loaded.weights):
        assert a.path == b.path
        np.testing.assert_array_equal(ops.convert_to_numpy(a), ops.convert_to_numpy(b))


def _assert_encoder_transferred(masked_lm, classifier):
    pairs = [(masked_lm.input_adapter, classifier.input_adapter),
             (masked_lm.encoder, classifier.encoder)]
    count = 0
    for source, target in pairs:
        assert len(source.weights) == len(target.weights)
        for a, b in zip(source.weights, target.weights):
            assert a.path == b.path
            np.testing.assert_array_equal(ops.convert_to_numpy(a), ops.convert_to_numpy(b))
            count += 1
    assert count == 2 + 1 + 18 + 2 * 16  # embeddings, latents, cross- and self-attention


def test_from_masked_lm_transfers_encoder(rng):
    masked_lm = small_masked_lm()
    randomize(masked_lm, rng)
    classifier = PerceiverTextClassifier.from_masked_lm(masked_lm, TASKS, dropout=0.1)
    _assert_encoder_transferred(masked_lm, classifier)
    assert classifier.get_config()["dropout"] == 0.1
    with pytest.raises(ValueError, match="expected a PerceiverMaskedLM"):
        PerceiverTextClassifier.from_masked_lm(classifier, TASKS)


def test_from_preset_of_a_masked_lm(tmp_path, rng):
    masked_lm = small_masked_lm()
    randomize(masked_lm, rng)
    masked_lm.save_to_preset(tmp_path / "mlm")
    classifier = PerceiverTextClassifier.from_preset(str(tmp_path / "mlm"), tasks={"a": 4})
    _assert_encoder_transferred(masked_lm, classifier)
    assert ops.convert_to_numpy(classifier(token_ids(rng))["a"]).shape == (2, 4)
    # The masked LM's weights file with the architecture's preset name.
    with pytest.raises(ValueError, match="pass `tasks="):
        PerceiverTextClassifier.from_preset(str(tmp_path / "mlm"))


def test_named_preset_needs_tasks():
    assert "language_perceiver" in PerceiverTextClassifier.presets
    with pytest.raises(ValueError, match="pass `tasks="):
        PerceiverTextClassifier.from_preset("language_perceiver")


@pytest.mark.large
def test_language_perceiver_classifier_preset(tmp_path):
    masked_lm = PerceiverMaskedLM.from_preset("language_perceiver", load_weights=False)
    masked_lm.save_weights(str(tmp_path / "mlm.weights.h5"))
    classifier = PerceiverTextClassifier.from_preset(
        "language_perceiver", weights=str(tmp_path / "mlm.weights.h5"),
        tasks={"sst2": 2, "mnli": 3},
    )
    for a, b in zip(masked_lm.encoder.weights, classifier.encoder.weights):
        np.testing.assert_array_equal(ops.convert_to_numpy(a), ops.convert_to_numpy(b))
    out = numpy(classifier(np.full((1, 64), 100, "int32")))
    assert out["sst2"].shape == (1, 2) and out["mnli"].shape == (1, 3)
