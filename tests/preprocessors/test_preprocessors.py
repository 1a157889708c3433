"""Data preprocessors: direct call == tf.data map, config round trips, tasks on raw data."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_perceiver import preprocessors as P
from keras_perceiver.models import PerceiverImageClassifier
from keras_perceiver.models import PerceiverMaskedLM
from keras_perceiver.models import PerceiverTask
from keras_perceiver.models import PerceiverTextClassifier

TEXT = dict(max_length=16, d_model=8, num_latents=4, num_latent_channels=16,
            num_self_attends_per_block=1, num_self_attention_heads=2,
            num_cross_attention_heads=2, qk_channels=8, v_channels=16)
TEXTS = ["hello world", "hi", "a longer sentence that is cut"]


def image_model(num_classes=3, channels=3):
    return PerceiverImageClassifier(
        num_classes=num_classes, image_shape=(8, 8, channels), num_bands=2, num_latents=4,
        num_latent_channels=8, num_blocks=1, num_self_attends_per_block=1,
        num_self_attention_heads=2)


def raw_images(n=4, size=(20, 30), channels=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, *size, channels)).astype("uint8")


def _np(x):
    return tf.nest.map_structure(lambda t: np.asarray(t), x)


PREPROCESSORS = {
    "image": (lambda: P.PerceiverImageClassifierPreprocessor(P.PerceiverImageConverter(
        (8, 8), mode="center_crop", crop_fraction=0.8, mean=(100.0, 110.0, 120.0),
        std=50.0, method="bilinear", num_channels=3)), raw_images()),
    "text": (lambda: P.PerceiverTextClassifierPreprocessor(12), np.array(TEXTS, object)),
    "frames": (lambda: P.PerceiverOpticalFlowFramesPreprocessor((4, 6)),
               np.random.default_rng(1).integers(0, 256, (3, 2, 4, 6, 3)).astype("uint8")),
    "multimodal": (lambda: P.PerceiverMultimodalPreprocessor(num_classes=5), {
        "image": np.random.default_rng(2).integers(0, 256, (3, 2, 4, 4, 3)).astype("uint8"),
        "audio": np.random.default_rng(3).integers(-32768, 32767, (3, 8, 1)).astype("int16"),
        "label": np.array([0, 4, -1]),
    }),
}


@pytest.mark.parametrize("kind", sorted(PREPROCESSORS))
def test_direct_call_equals_batched_and_unbatched_tf_data_map(kind):
    make, raw = PREPROCESSORS[kind]
    p = make()
    direct = _np(p(raw))
    batched = _np(next(iter(tf.data.Dataset.from_tensor_slices(raw).batch(8).map(p))))
    unbatched = [_np(e) for e in tf.data.Dataset.from_tensor_slices(raw).map(p)]
    for got in (batched, tf.nest.map_structure(lambda *e: np.stack(e), *unbatched)):
        tf.nest.map_structure(np.testing.assert_array_equal, direct, got)
    # Labels and weights pass through.
    x, y, w = p(raw, np.arange(3), np.ones(3))
    tf.nest.map_structure(np.testing.assert_array_equal, direct, _np(x))
    assert np.asarray(y).tolist() == [0, 1, 2] and np.asarray(w).tolist() == [1, 1, 1]


@pytest.mark.parametrize("kind", sorted(PREPROCESSORS) + ["mlm"])
def test_config_round_trip(kind):
    p = P.PerceiverMaskedLMPreprocessor(16, seed=3) if kind == "mlm" else PREPROCESSORS[kind][0]()
    again = type(p).from_config(json.loads(json.dumps(p.get_config(), default=list)))
    assert again == p and again.get_config() == p.get_config()
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(p))
    assert type(restored) is type(p) and restored == p


def test_image_converter_values_and_errors():
    converter = P.PerceiverImageConverter((2, 2), mode="resize", mean=127.5, std=127.5)
    out = converter(np.full((1, 2, 2, 3), 255, "uint8")).numpy()
    np.testing.assert_array_equal(out, np.ones((1, 2, 2, 3), "float32"))
    # One image (unbatched) gives the batched result's first row.
    image = raw_images(1)[0]
    np.testing.assert_array_equal(converter(image).numpy(), converter(image[None]).numpy()[0])
    with pytest.raises(ValueError, match="mean has 3 values but the model takes 1-channel"):
        P.PerceiverImageConverter((8, 8), num_channels=1)
    with pytest.raises(ValueError, match="image_size must be"):
        P.PerceiverImageConverter((8, 8, 3))
    with pytest.raises(TypeError, match="must be uint8 images"):
        converter(np.array(["x"]))


def test_text_preprocessor_pads_and_truncates_keeping_sep():
    ids = P.PerceiverTextClassifierPreprocessor(6)(["hi", "abcdefgh"]).numpy().tolist()
    assert ids == [[4, 110, 111, 5, 0, 0], [4, 103, 104, 105, 106, 5]]
    with pytest.raises(TypeError, match="must be strings"):
        P.PerceiverTextClassifierPreprocessor(6)(np.zeros((2, 3), "int32"))


def test_masked_lm_preprocessor_masks_15_percent_of_words_80_10_10():
    p = P.PerceiverMaskedLMPreprocessor(64, seed=0)
    texts = np.array(["the quick brown fox jumps over the lazy dog " * 2] * 64, object)
    x, y, w = (np.asarray(t) for t in p(texts))
    ids = np.asarray(p.tokenize(texts))
    np.testing.assert_array_equal(y, ids)
    assert x.shape == y.shape == w.shape == (64, 64)
    chosen = w == 1
    assert np.all(x[~chosen] == y[~chosen])  # only chosen positions change
    assert np.all(w[ids == 0] == 0)  # padding never chosen
    rate = chosen.sum() / (ids != 0).sum()
    assert 0.11 < rate < 0.19, rate
    assert 0.7 < (x[chosen] == 3).mean() < 0.9
    with pytest.raises(ValueError, match="expected raw text only"):
        p(texts, np.zeros(64))
    # Fresh masks per call (a stateful seed).
    assert not np.array_equal(np.asarray(p(texts)[2]), w)


def test_image_task_predict_raw_equals_predict_preprocessed_and_fits():
    model = image_model()
    raw = raw_images()
    model.preprocessor = PREPROCESSORS["image"][0]()
    got = model.predict(raw, batch_size=3, verbose=0)
    pre = np.asarray(model.preprocessor(raw))
    model.preprocessor = None
    np.testing.assert_allclose(got, model.predict(pre, verbose=0), atol=1e-6, rtol=0)
    model.preprocessor = PREPROCESSORS["image"][0]()
    model.compile()
    labels = np.array([0, 1, 2, 0])
    history = model.fit(raw, labels, batch_size=2, epochs=1, verbose=0,
                        validation_data=(raw, labels))
    assert np.isfinite(history.history["loss"][0]) and "val_loss" in history.history
    ds = tf.data.Dataset.from_tensor_slices((raw, labels)).batch(2)
    assert np.isfinite(model.evaluate(ds, verbose=0)[0])
    with pytest.raises(TypeError, match="PerceiverPreprocessor"):
        model.preprocessor = "not one"


def test_text_tasks_on_raw_strings():
    model = PerceiverTextClassifier(tasks={"a": 2}, **TEXT)
    model.preprocessor = model.default_preprocessor()
    got = model.predict(TEXTS, verbose=0)["a"]
    ids = np.asarray(model.preprocessor(np.array(TEXTS, object)))
    model.preprocessor = None
    np.testing.assert_allclose(got, model.predict(ids, verbose=0)["a"], atol=1e-6, rtol=0)
    mlm = PerceiverMaskedLM(decoder_num_heads=2, decoder_qk_channels=8, **TEXT)
    mlm.preprocessor = mlm.default_preprocessor()
    mlm.compile()
    assert np.isfinite(mlm.fit(TEXTS, epochs=1, verbose=0).history["loss"][0])


def test_preprocessor_travels_with_config_preset_and_keras_file(tmp_path):
    model = image_model()
    model.preprocessor = PREPROCESSORS["image"][0]()
    raw = raw_images()
    expected = model.predict(raw, verbose=0)
    config = model.get_config()
    assert config["preprocessor"]["class_name"] == "PerceiverImageClassifierPreprocessor"
    assert PerceiverImageClassifier.from_config(config).preprocessor == model.preprocessor
    preset = tmp_path / "preset"
    model.save_to_preset(preset)
    assert sorted(os.listdir(preset)) == ["config.json", "model.weights.h5", "preprocessor.json"]
    assert "preprocessor" not in json.loads((preset / "config.json").read_text())["config"]
    loaded = PerceiverTask.from_preset(str(preset))
    assert loaded.preprocessor == model.preprocessor
    np.testing.assert_array_equal(loaded.predict(raw, verbose=0), expected)
    assert PerceiverTask.from_preset(str(preset), preprocessor=False).preprocessor is None
    path = str(tmp_path / "m.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert restored.preprocessor == model.preprocessor
    np.testing.assert_array_equal(restored.predict(raw, verbose=0), expected)


def test_from_preset_default_preprocessor_and_new_head_loads_the_body_only(tmp_path):
    model = image_model(num_classes=3)
    preset = tmp_path / "preset"
    model.save_to_preset(preset)
    assert PerceiverImageClassifier.from_preset(str(preset)).preprocessor is None
    with_default = PerceiverImageClassifier.from_preset(str(preset), preprocessor="default")
    assert with_default.preprocessor == model.default_preprocessor()
    fresh = PerceiverImageClassifier.from_preset(str(preset), num_classes=5)
    assert fresh.num_classes == 5
    for part in ("input_adapter", "encoder"):
        for a, b in zip(getattr(model, part).weights, getattr(fresh, part).weights):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert fresh.decoder.weights[-1].shape[-1] == 5
    with pytest.raises(ValueError, match="only the body's weights load"):
        PerceiverImageClassifier.from_preset(str(preset), num_classes=5, num_latents=6)


def test_text_classifier_from_masked_lm_dir_passes_load_weights(tmp_path):
    mlm = PerceiverMaskedLM(decoder_num_heads=2, decoder_qk_channels=8, **TEXT)
    preset = tmp_path / "mlm"
    mlm.save_to_preset(preset)
    loaded = PerceiverTextClassifier.from_preset(str(preset), tasks={"a": 2})
    random = PerceiverTextClassifier.from_preset(str(preset), tasks={"a": 2}, load_weights=False)
    table = np.asarray(mlm.input_adapter.token_embedding.embeddings)
    np.testing.assert_array_equal(np.asarray(loaded.input_adapter.token_embedding.embeddings), table)
    assert not np.array_equal(np.asarray(random.input_adapter.token_embedding.embeddings), table)
    # A classifier directory with other tasks: the encoder, fresh heads.
    classifier_dir = tmp_path / "classifier"
    loaded.save_to_preset(classifier_dir)
    other = PerceiverTextClassifier.from_preset(str(classifier_dir), tasks={"b": 3},
                                                preprocessor="default")
    np.testing.assert_array_equal(np.asarray(other.input_adapter.token_embedding.embeddings), table)
    assert other.preprocessor == other.default_preprocessor()
    assert tuple(other.predict(TEXTS, verbose=0)["b"].shape) == (3, 3)
