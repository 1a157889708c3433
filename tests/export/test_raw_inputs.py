"""Raw-input exports: SavedModel, LiteRT and ONNX run the task's preprocessor code."""

import numpy as np
import pytest
import tensorflow as tf

import keras_perceiver.export as export
from keras_perceiver import preprocessors as P
from keras_perceiver.models import PerceiverImageClassifier
from keras_perceiver.models import PerceiverTextClassifier

OUTPUTS = ("logits", "probabilities", "top_5_classes")


@pytest.fixture(scope="module")
def classifier():
    model = PerceiverImageClassifier(
        num_classes=7, image_shape=(8, 8, 3), num_bands=2, num_latents=4,
        num_latent_channels=8, num_blocks=1, num_self_attends_per_block=1,
        num_self_attention_heads=2)
    # Non-default settings: the exports must take them from the attached preprocessor.
    model.preprocessor = P.PerceiverImageClassifierPreprocessor(P.PerceiverImageConverter(
        (8, 8), crop_fraction=0.8, mean=(120.0, 110.0, 100.0), std=(60.0, 50.0, 40.0),
        num_channels=3))
    return model


def _raw(size=(20, 30), n=3):
    return np.random.default_rng(0).integers(0, 256, (n, *size, 3)).astype("uint8")


def test_saved_model_on_raw_images_equals_task_predict(classifier, tmp_path):
    path = export.export_saved_model(classifier, str(tmp_path / "sm"))
    serve = tf.saved_model.load(path).signatures["serving_default"]
    raw = _raw()
    got = serve(images=tf.constant(raw))
    np.testing.assert_allclose(got["logits"].numpy(), classifier.predict(raw, verbose=0),
                               atol=1e-5, rtol=0)
    # The attached preprocessor's settings, not the ImageNet defaults.
    classifier_default = classifier.preprocessor
    try:
        classifier.preprocessor = None
        default = export.serving_signatures(classifier)["serving_default"].fn(images=raw)
    finally:
        classifier.preprocessor = classifier_default
    assert np.abs(default["logits"].numpy() - got["logits"].numpy()).max() > 1e-3


def _saved_model_outputs(model, raw, tmp_path):
    path = export.export_saved_model(model, str(tmp_path / "sm_ref"))
    out = tf.saved_model.load(path).signatures["serving_default"](images=tf.constant(raw))
    return {k: v.numpy() for k, v in out.items()}


def _assert_same_outputs(got, expected):
    assert set(got) == set(OUTPUTS)
    # float32 products in another order (the resize as matrices): ~1e-6 here.
    np.testing.assert_allclose(got["logits"], expected["logits"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(got["probabilities"], expected["probabilities"], atol=1e-4, rtol=0)
    np.testing.assert_array_equal(got["top_5_classes"], expected["top_5_classes"])


def test_litert_on_raw_uint8_images_equals_the_saved_model(classifier, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    raw = _raw()
    path = export.export_litert(classifier, str(tmp_path / "raw.tflite"), raw_inputs=True,
                                image_size=(20, 30))
    interpreter = Interpreter(model_path=path)
    assert interpreter.get_signature_list()["serving_default"]["inputs"] == ["images"]
    got = interpreter.get_signature_runner("serving_default")(images=raw)
    _assert_same_outputs(got, _saved_model_outputs(classifier, raw, tmp_path))
    # Default size: the model's own (a crop, then an upscale).
    small = _raw(size=(8, 8))
    path = export.export_litert(classifier, str(tmp_path / "own.tflite"), raw_inputs=True)
    got = Interpreter(model_path=path).get_signature_runner("serving_default")(images=small)
    _assert_same_outputs(got, _saved_model_outputs(classifier, small, tmp_path / "b"))


def test_onnx_on_raw_uint8_images_equals_the_saved_model(classifier, tmp_path):
    import onnxruntime

    raw = _raw(size=(25, 17))
    path = export.export_onnx(classifier, str(tmp_path / "raw.onnx"), raw_inputs=True,
                              image_size=(25, 17))
    session = onnxruntime.InferenceSession(path)
    assert [i.name for i in session.get_inputs()] == ["images"]
    names = [o.name for o in session.get_outputs()]
    got = dict(zip(names, session.run(None, {"images": raw})))
    _assert_same_outputs(got, _saved_model_outputs(classifier, raw, tmp_path))


def test_raw_inputs_errors(classifier, tmp_path):
    text = PerceiverTextClassifier(
        tasks={"a": 2}, max_length=8, d_model=8, num_latents=2, num_latent_channels=8,
        num_self_attends_per_block=1, num_self_attention_heads=2, num_cross_attention_heads=2,
        qk_channels=8, v_channels=8)
    with pytest.raises(ValueError, match="image classifiers only"):
        export.export_litert(text, str(tmp_path / "t.tflite"), raw_inputs=True)
    with pytest.raises(ValueError, match="need raw_inputs=True"):
        export.export_litert(classifier, str(tmp_path / "t.tflite"), image_size=(9, 9))
    with pytest.raises(ValueError, match="need raw_inputs=True"):
        export.export_onnx(classifier, str(tmp_path / "t.onnx"), image_size=(9, 9))
