"""`compile()` defaults of the task models: loss, metrics, optimizer, fit.

Each test compiles with the defaults and checks the loss against the
default loss computed with NumPy on the model's own outputs: a one-step
`fit` on one batch reports the loss and metrics of the weights before its
update, which must equal the NumPy values. Most tests pass
`jit_compile=False` (XLA compiling on CPU costs more than the test); the
image classifier keeps Keras' default.
"""

import warnings

import keras
import numpy as np

import keras_perceiver

M = keras_perceiver.models
TINY_ENCODER = dict(num_latents=4, num_self_attends_per_block=1, num_self_attention_heads=2)


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _log_softmax(logits):
    logits = logits.astype(np.float64)
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def _sparse_ce(logits, labels):
    return -np.take_along_axis(_log_softmax(logits), labels[..., None], -1)[..., 0]


def _fit_one_step(model, x, y, sample_weight=None):
    """One `fit` step on one batch: `(history, warning messages)`.

    The step's reported loss and metrics are computed before the update,
    i.e. on the model's outputs for `x` (no dropout or BatchNorm here).
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(x, y, sample_weight=sample_weight, batch_size=len(_first(x)),
                            epochs=1, verbose=0).history
    history = {k: v[0] for k, v in history.items()}
    assert np.isfinite(history["loss"])
    return history, [str(w.message) for w in caught]


def _first(x):
    return next(iter(x.values())) if isinstance(x, dict) else x


def _check_optimizer(model):
    assert isinstance(model.optimizer, keras.optimizers.AdamW)
    np.testing.assert_allclose(float(_np(model.optimizer.learning_rate)), 5e-5, rtol=1e-6)
    np.testing.assert_allclose(model.optimizer.weight_decay, 0.01)


def test_image_classifier_defaults():
    keras.utils.set_random_seed(0)
    model = M.PerceiverImageClassifier(
        num_classes=7, image_shape=(6, 6, 1), num_bands=2, num_latent_channels=16, num_blocks=1,
        **TINY_ENCODER)
    model.compile()
    _check_optimizer(model)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 6, 6, 1)).astype("float32")
    y = rng.integers(0, 7, size=(8,)).astype("int32")
    expected = _sparse_ce(_np(model(x)), y).mean()
    history, _ = _fit_one_step(model, x, y)
    np.testing.assert_allclose(history["loss"], expected, atol=1e-5, rtol=0)
    assert {"loss", "accuracy", "top_5_accuracy"} <= set(history)
    # Few classes: no top-5 metric (it would always be 1).
    small = M.PerceiverImageClassifier(
        num_classes=3, image_shape=(6, 6, 1), num_bands=2, num_latent_channels=16, num_blocks=1,
        **TINY_ENCODER)
    small.compile()
    assert [m.name for m in small._default_metrics()] == ["accuracy"]


def test_text_classifier_defaults_per_task():
    keras.utils.set_random_seed(1)
    model = M.PerceiverTextClassifier(
        tasks={"sst2": 2, "stsb": 1}, max_length=12, d_model=8, num_latent_channels=16,
        num_cross_attention_heads=2, qk_channels=8, v_channels=16, **TINY_ENCODER)
    model.compile(jit_compile=False)
    _check_optimizer(model)
    rng = np.random.default_rng(1)
    x = rng.integers(6, 262, size=(8, 10)).astype("int32")
    y = {"sst2": rng.integers(0, 2, size=(8,)).astype("int32"),
         "stsb": rng.normal(size=(8, 1)).astype("float32")}
    out = {k: _np(v) for k, v in model(x).items()}
    ce = _sparse_ce(out["sst2"], y["sst2"]).mean()
    mse = ((out["stsb"].astype(np.float64) - y["stsb"]) ** 2).mean()
    history, _ = _fit_one_step(model, x, y)
    np.testing.assert_allclose(history["loss"], ce + mse, atol=1e-5, rtol=0)
    assert {"sst2_accuracy", "stsb_pearson_correlation"} <= set(history)


def test_masked_lm_defaults_count_only_masked_positions():
    keras.utils.set_random_seed(2)
    model = M.PerceiverMaskedLM(
        max_length=12, d_model=8, num_latent_channels=16, num_cross_attention_heads=2,
        qk_channels=8, v_channels=16, decoder_num_heads=2, decoder_qk_channels=8,
        **TINY_ENCODER)
    model.compile(jit_compile=False)
    _check_optimizer(model)
    rng = np.random.default_rng(2)
    y = rng.integers(6, 262, size=(4, 12)).astype("int32")
    weight = (rng.random((4, 12)) < 0.25).astype("float32")
    weight[:, 0] = 1.0
    x = np.where(weight > 0, 3, y).astype("int32")  # MASK_ID = 3
    logits = _np(model(x))
    ce = _sparse_ce(logits, y)
    expected = (ce * weight).sum() / weight.sum()
    accuracy = ((logits.argmax(-1) == y) * weight).sum() / weight.sum()
    history, _ = _fit_one_step(model, x, y, sample_weight=weight)
    np.testing.assert_allclose(history["loss"], expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(history["accuracy"], accuracy, atol=1e-6, rtol=0)
    assert "accuracy" in history
    # The unweighted mean differs: the weights do restrict the loss.
    assert abs(ce.mean() - expected) > 1e-4


def test_end_point_error_matches_numpy():
    rng = np.random.default_rng(3)
    y_true = rng.normal(size=(2, 3, 4, 2)).astype("float32")
    y_pred = rng.normal(size=(2, 3, 4, 2)).astype("float32")
    epe = np.sqrt(((y_pred.astype(np.float64) - y_true) ** 2).sum(-1))
    loss = keras_perceiver.losses.EndPointError()
    np.testing.assert_allclose(float(_np(loss(y_true, y_pred))), epe.mean(), rtol=1e-6)
    metric = keras_perceiver.losses.EndPointErrorMetric()
    metric.update_state(y_true, y_pred)
    np.testing.assert_allclose(float(_np(metric.result())), epe.mean(), rtol=1e-6)
    # Finite gradient where prediction == target (sqrt at 0).
    same = keras.ops.convert_to_tensor(y_true)
    value = _np(keras_perceiver.losses.end_point_error(y_true, same))
    assert np.all(value <= 1e-6)
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(restored, keras_perceiver.losses.EndPointError)


def test_optical_flow_defaults():
    keras.utils.set_random_seed(4)
    model = M.PerceiverOpticalFlow(
        image_shape=(6, 8), num_latent_channels=16, num_patch_channels=8, num_bands=2,
        **TINY_ENCODER)
    model.compile(jit_compile=False)
    _check_optimizer(model)
    rng = np.random.default_rng(4)
    x = rng.uniform(-1, 1, size=(2, 2, 6, 8, 3)).astype("float32")
    y = rng.normal(size=(2, 6, 8, 2)).astype("float32")
    epe = np.sqrt(((_np(model(x)).astype(np.float64) - y) ** 2).sum(-1)).mean()
    history, _ = _fit_one_step(model, x, y)
    np.testing.assert_allclose(history["loss"], epe, atol=1e-5, rtol=0)
    np.testing.assert_allclose(history["end_point_error"], epe, atol=1e-5, rtol=0)
    assert "end_point_error" in history


def _tiny_multimodal():
    return M.PerceiverMultimodalAutoencoder(
        num_frames=2, image_size=8, audio_samples=32, samples_per_patch=4, num_classes=5,
        image_num_bands=2, audio_num_bands=3, num_latent_channels=8,
        label_query_channels=6, decoder_channels=8, **TINY_ENCODER)


def test_multimodal_defaults_paper_loss_and_output_names():
    keras.utils.set_random_seed(5)
    model = _tiny_multimodal()
    assert model.output_names == ["audio", "image", "label"]
    model.compile(jit_compile=False)
    _check_optimizer(model)
    rng = np.random.default_rng(5)
    x = {"image": rng.uniform(0, 1, size=(2, 2, 8, 8, 3)).astype("float32"),
         "audio": rng.uniform(-1, 1, size=(2, 32, 1)).astype("float32"),
         "label": np.eye(5, dtype="float32")[[1, 3]]}
    out = {k: _np(v).astype(np.float64) for k, v in model(x).items()}
    l1_image = np.abs(out["image"] - x["image"]).mean()
    l1_audio = np.abs(out["audio"] - x["audio"]).mean()
    ce = -(_log_softmax(out["label"]) * x["label"]).sum(-1).mean()
    expected = 0.03 * l1_image + 1.0 * l1_audio + 1e-4 * ce
    history, messages = _fit_one_step(model, x, dict(x))
    np.testing.assert_allclose(history["loss"], expected, atol=1e-5, rtol=0)
    assert {"image_mean_squared_error", "audio_mean_squared_error",
            "label_accuracy"} <= set(history)
    # The mask tokens of never-masked modalities (and the always-masked
    # label's padding) are frozen: no "Gradients do not exist" warning.
    assert not [m for m in messages if "Gradients do not exist" in m], messages
    frozen = {v.path for v in model.non_trainable_weights}
    assert frozen == {"input_padding/audio_mask_token", "input_padding/image_mask_token",
                      "input_padding/label_padding"}, frozen
    # Still saved in the same order (weight files and converters unchanged).
    assert [v.path.split("/")[1] for v in model.input_padding.weights] == [
        "audio_padding", "audio_mask_token", "image_padding", "image_mask_token",
        "label_padding", "label_mask_token"]
