import json
import os

import keras
import numpy as np
import pytest
from keras import ops

from keras_perceiver.models import PerceiverSetModel
from keras_perceiver.models import PerceiverTask

SMALL = dict(num_features=4, num_classes=3, categorical_fields={3: 5}, max_entities=24,
             num_latents=6, num_latent_channels=16, num_blocks=2,
             num_self_attends_per_block=1, num_self_attention_heads=2)


def small_model(**kwargs):
    return PerceiverSetModel(**{**SMALL, **kwargs})


def randomize(model, rng):
    for w in model.weights:
        shape = tuple(w.shape)
        if len(shape) == 1:
            value = 0.5 + 0.3 * rng.normal(size=shape)
        else:
            value = rng.normal(size=shape) / np.sqrt(shape[0])
        w.assign(value.astype("float32"))


def make_inputs(rng, sizes=(12, 7), length=12):
    entities = rng.normal(size=(len(sizes), length, 4)).astype("float32")
    entities[..., 3] = rng.integers(0, 5, size=(len(sizes), length))
    mask = np.arange(length)[None, :] < np.array(sizes)[:, None]
    return {"entities": entities, "mask": mask}


def numpy(outputs):
    if isinstance(outputs, dict):
        return {k: ops.convert_to_numpy(v) for k, v in outputs.items()}
    return ops.convert_to_numpy(outputs)


def test_output_shape_and_masked_outputs_are_zero(rng):
    model = small_model()
    randomize(model, rng)
    x = make_inputs(rng)
    logits = numpy(model(x))
    assert logits.shape == (2, 12, 3)
    assert np.all(logits[1, 7:] == 0.0)
    assert np.abs(logits[0]).min() > 0 and np.abs(logits[1, :7]).min() > 0


@pytest.mark.parametrize("num_set_classes", [None, 2])
def test_permutation_equivariance(rng, num_set_classes):
    # With a set output, also a second cross-attention to the entities and
    # the per-set standardization of the continuous columns.
    model = small_model(num_set_classes=num_set_classes,
                        num_cross_attends=2 if num_set_classes else 1,
                        entity_normalization="feature" if num_set_classes else None)
    randomize(model, rng)
    x = make_inputs(rng, sizes=(12, 9))
    order = rng.permutation(12)
    permuted = {k: v[:, order] for k, v in x.items()}
    a, b = numpy(model(x)), numpy(model(permuted))
    if num_set_classes:
        np.testing.assert_allclose(b["set_logits"], a["set_logits"], atol=1e-5, rtol=0)
        a, b = a["entity_logits"], b["entity_logits"]
    np.testing.assert_allclose(b, a[:, order], atol=1e-5, rtol=0)
    # Entities do interact: changing one real entity moves the others' outputs.
    changed = {k: v.copy() for k, v in x.items()}
    changed["entities"][0, 0, :3] += 3.0
    c = numpy(model(changed))
    c = c["entity_logits"] if num_set_classes else c
    assert np.abs(c[0, 1:] - (a if not num_set_classes else a)[0, 1:]).max() > 1e-3


@pytest.mark.parametrize("num_set_classes", [None, 2])
def test_padding_entities_change_nothing(rng, num_set_classes):
    # With a set output, also a second cross-attention to the entities and
    # the per-set standardization of the continuous columns.
    model = small_model(num_set_classes=num_set_classes,
                        num_cross_attends=2 if num_set_classes else 1,
                        entity_normalization="feature" if num_set_classes else None)
    randomize(model, rng)
    x = make_inputs(rng, sizes=(10, 6), length=10)
    # Appended padding with random features, categorical junk included.
    junk = rng.normal(scale=50.0, size=(2, 9, 4)).astype("float32")
    padded = {
        "entities": np.concatenate([x["entities"], junk], axis=1),
        "mask": np.concatenate([x["mask"], np.zeros((2, 9), bool)], axis=1),
    }
    a, b = numpy(model(x)), numpy(model(padded))
    if num_set_classes:
        np.testing.assert_allclose(b["set_logits"], a["set_logits"], atol=1e-5, rtol=0)
        a, b = a["entity_logits"], b["entity_logits"]
    np.testing.assert_allclose(b[:, :10], a, atol=1e-5, rtol=0)
    assert np.all(b[:, 10:] == 0.0) and np.all(b[1, 6:] == 0.0)
    # Features of padded entities inside the set do not matter either.
    x["entities"][1, 6:] = rng.normal(size=(4, 4)) * 10
    np.testing.assert_allclose(numpy(model(x))if not num_set_classes
                               else numpy(model(x))["entity_logits"], a, atol=1e-5, rtol=0)


@pytest.mark.parametrize("mode", ["feature", "isotropic"])
def test_entity_normalization(rng, mode):
    from keras_perceiver.models.set_embedding import normalize_set

    x = make_inputs(rng, sizes=(12, 7))
    x["entities"][1, 7:] = 1e4  # junk in the padding
    out = numpy(normalize_set(x["entities"][..., :3], x["mask"], mode))
    for s, n in enumerate((12, 7)):
        real = x["entities"][s, :n, :3].astype("float64")
        std = real.std(0) if mode == "feature" else np.sqrt(real.var(0).mean())
        np.testing.assert_allclose(out[s, :n], (real - real.mean(0)) / std, atol=1e-5)
    assert np.all(out[1, 7:] == 0.0)
    # The model ignores where a set lies and (isotropic) how large it is.
    model = small_model(entity_normalization=mode)
    randomize(model, rng)
    a = numpy(model(x))
    moved = {k: v.copy() for k, v in x.items()}
    moved["entities"][..., :3] = moved["entities"][..., :3] * (
        2.5 if mode == "isotropic" else np.array([2.5, 0.5, 4.0], "float32")) + [3.0, -7.0, 1.0]
    np.testing.assert_allclose(numpy(model(moved)), a, atol=1e-4, rtol=0)


def test_categorical_field_is_embedded(rng):
    model = small_model()
    randomize(model, rng)
    assert [t.input_dim for _, _, t in model.embedding.tables] == [5]
    x = make_inputs(rng)
    a = numpy(model(x))
    x["entities"][0, 0, 3] = (x["entities"][0, 0, 3] + 1) % 5
    b = numpy(model(x))
    assert np.abs(b[0, 0] - a[0, 0]).max() > 1e-3


def test_config_round_trip(rng):
    model = small_model(num_set_classes=2, activation="gelu")
    config = model.get_config()
    # JSON turns the categorical column keys into strings.
    clone = PerceiverSetModel.from_config(json.loads(json.dumps(config)))
    assert clone.get_config() == config
    randomize(model, rng)
    clone.set_weights(model.get_weights())
    x = make_inputs(rng)
    for key, value in numpy(model(x)).items():
        np.testing.assert_array_equal(numpy(clone(x))[key], value)


def test_keras_file_round_trip(tmp_path, rng):
    model = small_model()
    randomize(model, rng)
    path = str(tmp_path / "set.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, PerceiverSetModel)
    x = make_inputs(rng)
    np.testing.assert_allclose(numpy(loaded(x)), numpy(model(x)), atol=1e-6, rtol=0)


def test_preset_directory_round_trip(tmp_path, rng):
    model = small_model()
    randomize(model, rng)
    model.save_to_preset(tmp_path / "preset")
    loaded = PerceiverTask.from_preset(str(tmp_path / "preset"))
    assert isinstance(loaded, PerceiverSetModel)
    assert loaded.get_config() == model.get_config()
    x = make_inputs(rng)
    np.testing.assert_array_equal(numpy(loaded(x)), numpy(model(x)))
    longer = PerceiverSetModel.from_preset(str(tmp_path / "preset"), max_entities=48)
    assert longer.max_entities == 48


def test_fit_with_compile_defaults(rng):
    model = small_model()
    model.compile()
    assert type(model.optimizer).__name__ == "AdamW"
    x = make_inputs(rng, sizes=(12, 7, 3, 10), length=12)
    labels = rng.integers(0, 3, size=(4, 12))
    labels[~x["mask"]] = 0
    weights = x["mask"].astype("float32")
    before = [ops.convert_to_numpy(w).copy() for w in model.trainable_weights]
    history = model.fit(x, labels, sample_weight=weights, batch_size=2, epochs=2, verbose=0)
    assert set(history.history) == {"loss", "accuracy"}
    assert np.isfinite(history.history["loss"]).all()
    changed = [not np.allclose(ops.convert_to_numpy(w), b)
               for w, b in zip(model.trainable_weights, before)]
    assert all(changed[:2]) and sum(changed) > len(changed) // 2


def _error(model, inputs, kind, match):
    with pytest.raises(kind, match=match):
        model(inputs)
    with pytest.raises(kind, match=match):
        model.predict(inputs, verbose=0)


def test_bad_inputs_name_what_was_expected(rng):
    model = small_model()
    x = make_inputs(rng)
    entities, mask = x["entities"], x["mask"]
    _error(model, entities, ValueError, r"expected a dict \{'entities'")
    _error(model, {"entities": entities}, ValueError, r"expected a dict")
    _error(model, {"entities": entities[0], "mask": mask}, ValueError,
           r"`entities` of shape \[batch, N, 4\], received shape \(12, 4\)")
    _error(model, {"entities": entities[..., :3], "mask": mask}, ValueError,
           r"`entities` of shape \[batch, N, 4\]")
    _error(model, {"entities": entities, "mask": mask[:, :5]}, ValueError,
           r"`mask` of shape \[batch, N\] = \[2, 12\]")
    _error(model, {"entities": entities, "mask": mask[:, :, None]}, ValueError, r"`mask` of shape")
    _error(model, {"entities": entities.astype("int32"), "mask": mask}, TypeError,
           r"`entities` of a float dtype")
    _error(model, {"entities": entities, "mask": mask.astype("int32") * 2}, ValueError,
           r"`mask` values in \{0, 1\}")
    _error(model, {"entities": entities, "mask": mask.astype(str)}, TypeError, "`mask` of dtype")
    long = np.zeros((1, 25, 4), "float32")
    _error(model, {"entities": long, "mask": np.ones((1, 25), bool)}, ValueError,
           "at most max_entities=24")
    bad = entities.copy()
    bad[0, 0, 3] = 5
    _error(model, {"entities": bad, "mask": mask}, ValueError,
           r"categorical field: expected integer ids in \[0, 5\)")
    bad[0, 0, 3] = 1.5
    _error(model, {"entities": bad, "mask": mask}, ValueError, "integer ids")
    bad[0, 0, 3] = np.nan
    _error(model, {"entities": bad, "mask": mask}, ValueError, "finite")
    # Junk in the categorical column of padded entities is fine.
    ok = entities.copy()
    ok[1, 8, 3] = 99
    assert numpy(model({"entities": ok, "mask": mask})).shape == (2, 12, 3)


@pytest.mark.parametrize("kwargs, match", [
    (dict(categorical_fields={4: 5}), "categorical_fields"),
    (dict(categorical_fields={0: 0}), "categorical_fields"),
    (dict(categorical_fields=[3]), "categorical_fields"),
    (dict(num_features=1, categorical_fields={0: 3}), "at least one column"),
    (dict(num_classes=0), "num_classes"),
    (dict(num_cross_attends=0), "num_cross_attends"),
    (dict(entity_normalization="set"), "entity_normalization must be one of"),
    (dict(embedding_dim=15, decoder_num_heads=2), "embedding_dim=15 must be divisible"),
    (dict(num_latent=4), "did you mean 'num_latents'"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        small_model(**kwargs)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="SavedModel: TF")
def test_saved_model_signature_on_dynamic_n(tmp_path, rng):
    import tensorflow as tf

    from keras_perceiver.export import export_saved_model

    model = small_model(num_set_classes=2)
    randomize(model, rng)
    path = export_saved_model(model, str(tmp_path / "sm"))
    serve = tf.saved_model.load(path).signatures["serving_default"]
    for n in (5, 17, 24):
        x = make_inputs(rng, sizes=(n, n - 3), length=n)
        expected = numpy(model(x))
        got = serve(entities=tf.constant(x["entities"]), mask=tf.constant(x["mask"]))
        np.testing.assert_allclose(got["entity_logits"].numpy(), expected["entity_logits"],
                                   atol=1e-5, rtol=0)
        np.testing.assert_allclose(got["set_logits"].numpy(), expected["set_logits"],
                                   atol=1e-5, rtol=0)
        classes = got["entity_class"].numpy()
        assert np.all(classes[1, n - 3:] == -1) and np.all(classes[0] >= 0)
        assert np.all(got["entity_probabilities"].numpy()[1, n - 3:] == 0)
    too_long = make_inputs(rng, sizes=(25,), length=25)
    with pytest.raises(tf.errors.InvalidArgumentError, match="at most 24 entities"):
        serve(entities=tf.constant(too_long["entities"]), mask=tf.constant(too_long["mask"]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="input `mask` must have the shape"):
        serve(entities=tf.constant(x["entities"]), mask=tf.constant(x["mask"][:, :3]))


def _no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("from_preset tried to download")

    monkeypatch.setattr(keras.utils, "get_file", refuse)


def test_named_preset_offline_and_through_a_preset_directory(tmp_path, monkeypatch, rng):
    from keras_perceiver.models import presets
    from keras_perceiver.models.set_model import BLOBS_CONFIG
    from keras_perceiver.models.set_model import BLOBS_PRESET

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    _no_network(monkeypatch)
    assert BLOBS_PRESET in PerceiverSetModel.presets
    random_init = PerceiverSetModel.from_preset(BLOBS_PRESET, load_weights=False)
    config = random_init.get_config()
    assert {k: config[k] for k in BLOBS_CONFIG} == BLOBS_CONFIG
    # Not cached yet: a clear error naming how to make it, and nothing written.
    with pytest.raises(FileNotFoundError, match="--save-preset") as info:
        PerceiverSetModel.from_preset(BLOBS_PRESET)
    assert presets.cached_preset_dir(BLOBS_PRESET) in str(info.value)
    assert "load_weights=False" in str(info.value)
    assert not os.path.exists(presets.cached_preset_dir(BLOBS_PRESET))
    # The recipe's save_preset caches it; the name then loads those weights offline.
    from keras_perceiver.recipes import entity_sets

    randomize(random_init, rng)
    assert entity_sets.save_preset(random_init) == presets.cached_preset_dir(BLOBS_PRESET)
    loaded = PerceiverSetModel.from_preset(BLOBS_PRESET)
    x = {"entities": rng.normal(size=(2, 40, 2)).astype("float32"),
         "mask": np.arange(40)[None] < np.array([[40], [25]])}
    expected = numpy(random_init(x))
    np.testing.assert_array_equal(numpy(loaded(x)), expected)
    # ... and round-trips through a preset directory.
    loaded.save_to_preset(tmp_path / "copy")
    again = PerceiverTask.from_preset(str(tmp_path / "copy"))
    assert isinstance(again, PerceiverSetModel) and again.get_config() == loaded.get_config()
    np.testing.assert_array_equal(numpy(again(x)), expected)
    with pytest.raises(ValueError, match="differs in \\['num_latents'\\]"):
        entity_sets.save_preset(PerceiverSetModel(**{**BLOBS_CONFIG, "num_latents": 8}))


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="LiteRT: TF")
def test_litert_matches_keras_with_padding(tmp_path, rng):
    from ai_edge_litert.interpreter import Interpreter

    from keras_perceiver.export import export_litert
    from keras_perceiver.export.set_signatures import export_set_litert

    num_set_classes = 2  # entity and set outputs, two cross-attentions to the entities
    model = small_model(num_set_classes=num_set_classes, num_cross_attends=2)
    randomize(model, rng)
    path = export_set_litert(model, str(tmp_path / "set.tflite"), num_entities=16)
    runner = Interpreter(model_path=path).get_signature_runner("serving_default")
    x = make_inputs(rng, sizes=(16, 9, 1), length=16)
    x["entities"][1, 9:] = rng.normal(scale=50.0, size=(7, 4))  # junk in padded rows
    got = runner(entities=x["entities"], mask=x["mask"])
    expected = numpy(model(x))
    if num_set_classes:
        np.testing.assert_allclose(got["set_logits"], expected["set_logits"], atol=1e-4, rtol=0)
        expected = expected["entity_logits"]
    np.testing.assert_allclose(got["entity_logits"], expected, atol=1e-4, rtol=0)
    assert np.all(got["entity_logits"][1, 9:] == 0) and np.all(got["entity_logits"][2, 1:] == 0)
    # The padded set gives what the 9 real entities alone give.
    alone = numpy(model({k: v[1:2, :9] for k, v in x.items()}))
    alone = alone["entity_logits"] if num_set_classes else alone
    np.testing.assert_allclose(got["entity_logits"][1, :9], alone[0], atol=1e-4, rtol=0)
    classes = got["entity_class"]
    assert np.all(classes[1, 9:] == -1) and np.all(classes[1, :9] == expected[1, :9].argmax(-1))
    with pytest.raises(ValueError, match="num_entities must be an int in \\[1, max_entities=24\\]"):
        export_set_litert(model, str(tmp_path / "long.tflite"), num_entities=25)
    with pytest.raises(FileExistsError):
        export_set_litert(model, path, num_entities=16)
    # The generic export_litert writes the same file at the model's max_entities.
    generic = export_litert(model, str(tmp_path / "generic.tflite"))
    runner = Interpreter(model_path=generic).get_signature_runner("serving_default")
    x = make_inputs(rng, sizes=(24, 5), length=24)
    got = runner(entities=x["entities"], mask=x["mask"])
    np.testing.assert_allclose(got["entity_logits"], numpy(model(x))["entity_logits"],
                               atol=1e-4, rtol=0)
