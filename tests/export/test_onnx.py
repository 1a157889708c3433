"""ONNX export through Keras' exporter, checked with onnxruntime."""

import keras
import numpy as np
import onnxruntime

import keras_perceiver
import keras_perceiver.export as export


def _run(path, feeds):
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == list(feeds)
    return session.run(None, feeds)


def test_image_classifier_onnx(tmp_path):
    keras.utils.set_random_seed(0)
    model = keras_perceiver.models.PerceiverImageClassifier(
        num_classes=7, image_shape=(8, 8, 3), num_bands=4, num_latents=8, num_latent_channels=16,
        num_blocks=2, num_self_attends_per_block=1, num_self_attention_heads=2)
    path = export.export_onnx(model, str(tmp_path / "image.onnx"))
    for batch in (1, 3):  # dynamic batch
        x = np.random.default_rng(batch).normal(size=(batch, 8, 8, 3)).astype("float32")
        (logits,) = _run(path, {"images": x})
        np.testing.assert_allclose(logits, keras.ops.convert_to_numpy(model(x)), atol=1e-4, rtol=0)


def test_optical_flow_onnx(tmp_path):
    keras.utils.set_random_seed(1)
    model = keras_perceiver.models.PerceiverOpticalFlow(
        image_shape=(6, 8), num_latents=4, num_latent_channels=16,
        num_self_attends_per_block=1, num_self_attention_heads=2,
        num_patch_channels=8, num_bands=2)
    path = export.export_onnx(model, str(tmp_path / "flow.onnx"))
    x = np.random.default_rng(0).uniform(-1, 1, size=(2, 2, 6, 8, 3)).astype("float32")
    (flow,) = _run(path, {"frames": x})
    np.testing.assert_allclose(flow, keras.ops.convert_to_numpy(model(x)), atol=1e-4, rtol=0)


def test_masked_lm_onnx(tmp_path):
    keras.utils.set_random_seed(2)
    model = keras_perceiver.models.PerceiverMaskedLM(
        max_length=16, d_model=8, num_latents=4, num_latent_channels=16,
        num_self_attends_per_block=1, num_self_attention_heads=2,
        num_cross_attention_heads=2, qk_channels=8, v_channels=16,
        decoder_num_heads=2, decoder_qk_channels=8)
    path = export.export_onnx(model, str(tmp_path / "mlm.onnx"))
    ids = np.random.default_rng(0).integers(0, 262, (2, 16)).astype("int32")
    ids[1, 10:] = 0  # padding
    (logits,) = _run(path, {"token_ids": ids})
    np.testing.assert_allclose(logits, keras.ops.convert_to_numpy(model(ids)), atol=1e-4, rtol=0)
