"""SavedModel export: versions, signatures, and serving in a fresh process."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_perceiver
import keras_perceiver.export as export
from keras_perceiver.tokenizers import BytesTokenizer

import serving  # tests/export/serving.py

DIGITS_PREP = {"mode": "resize", "mean": 120.0, "std": 120.0}


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _both(response, name):
    """The output `name` from the session path and the signature function path."""
    assert "session" in response, response.get("session_error")
    assert "function" in response, response.get("function_error")
    assert response["modules_blocked"]
    return response["session"][name], response["function"][name]


def _close(response, name, expected, atol=1e-5):
    for got in _both(response, name):
        np.testing.assert_allclose(got, expected, atol=atol, rtol=0)


@pytest.fixture(scope="module")
def image_classifier():
    keras.utils.set_random_seed(1)
    return keras_perceiver.models.PerceiverImageClassifier(
        num_classes=7, image_shape=(8, 8, 3), num_bands=4, num_latents=8, d_latents=16,
        num_blocks=1, num_self_attends_per_block=1, num_self_attention_heads=2)


@pytest.fixture(scope="module")
def image_export(image_classifier, tmp_path_factory):
    base = tmp_path_factory.mktemp("image")
    return export.export_saved_model(image_classifier, str(base), image_preprocessing=DIGITS_PREP)


def test_versions_are_never_overwritten(tmp_path):
    x = keras.Input((3,), name="features")
    model = keras.Model(x, keras.layers.Dense(2, name="scores")(x))
    base = str(tmp_path / "model")
    first = export.export_saved_model(model, base)
    second = export.export_saved_model(model, base)
    assert first == os.path.join(base, "1") and second == os.path.join(base, "2")
    assert sorted(os.listdir(base)) == ["1", "2"]
    before = {f: os.path.getmtime(os.path.join(first, f)) for f in os.listdir(first)}
    with pytest.raises(ValueError, match="version 1 already exists"):
        export.export_saved_model(model, base, version=1)
    assert {f: os.path.getmtime(os.path.join(first, f)) for f in os.listdir(first)} == before
    assert export.export_saved_model(model, base, version=7).endswith("7")
    assert export.export_saved_model(model, base).endswith("8")
    with pytest.raises(ValueError, match="positive integer"):
        export.export_saved_model(model, base, version=0)
    assert sorted(os.listdir(base)) == ["1", "2", "7", "8"]  # no staging left-overs
    # The generic signature: the model's input name, dynamic batch.
    data = np.random.default_rng(0).normal(size=(5, 3)).astype("float32")
    (response,) = serving.serve_fresh(second, [("serving_default", {"features": data})])
    _close(response, "outputs", _np(model(data)))


def test_image_classifier_served_in_fresh_process(image_classifier, image_export):
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (3, 8, 8, 3)).astype("uint8")
    large = rng.integers(0, 256, (2, 21, 30, 3)).astype("uint8")
    normalized = rng.normal(size=(4, 8, 8, 3)).astype("float32")
    responses = serving.serve_fresh(image_export, [
        ("serving_default", {"images": small}),
        ("serving_default", {"images": large}),
        ("normalized", {"images": normalized}),
    ])
    for response, images in zip(responses[:2], (small, large)):
        # Keras on the same preprocessing (resize to 8x8, (x - 120) / 120).
        x = export.preprocess_images(images, (8, 8, 3), DIGITS_PREP)
        logits = _np(image_classifier(x))
        _close(response, "logits", logits)
        _close(response, "probabilities", _np(keras.ops.softmax(logits)))
        for top5 in _both(response, "top_5_classes"):
            np.testing.assert_array_equal(top5[:, 0], logits.argmax(-1))
            assert top5.shape == (len(images), 5) and top5.dtype == np.int32
    # Resizing the small images is a no-op: served == Keras on (x - 120) / 120.
    _close(responses[0], "logits", _np(image_classifier((small - 120.0) / 120.0)))
    _close(responses[2], "logits", _np(image_classifier(normalized)))


def test_image_center_crop_preprocessing():
    images = np.arange(2 * 10 * 16 * 3, dtype=np.int64).reshape(2, 10, 16, 3) % 256
    images = images.astype("uint8")
    out = export.preprocess_images(images, (8, 8, 3), {"mode": "center_crop", "crop_fraction": 0.8,
                                                      "mean": 0.0, "std": 1.0})
    # side = round(10 * 0.8) = 8: the central 8x8 crop, already at size.
    np.testing.assert_array_equal(out.numpy(), images[:, 1:9, 4:12].astype("float32"))
    default = export.preprocess_images(images, (8, 8, 3))
    expected = (images[:, 1:9, 4:12].astype("float32") - np.array(
        export.preprocessing.IMAGENET_MEAN, "float32")) / np.array(
        export.preprocessing.IMAGENET_STD, "float32")
    assert default.shape == (2, 8, 8, 3)
    assert not np.allclose(default.numpy(), expected)  # 9x9 crop resized, not 8x8
    with pytest.raises(ValueError, match="unknown option"):
        export.preprocess_images(images, (8, 8, 3), {"size": 3})


def test_bad_requests_name_the_input(image_export):
    good = np.zeros((2, 8, 8, 3), "uint8")
    responses = serving.serve_fresh(image_export, [
        ("serving_default", {"images": good[..., 0]}),  # rank 3
        ("serving_default", {"images": good[..., :1]}),  # 1 channel
        ("serving_default", {"images": np.zeros((2, 8, 8, 4), "uint8")}),  # RGBA
        ("serving_default", {}),  # missing
        ("serving_default", {"pixels": good}),  # unknown name
        ("serving_default", {"images": good.astype("float32")}),  # wrong dtype
        ("normalized", {"images": np.zeros((2, 8, 9, 3), "float32")}),  # wrong width
    ])
    for response in responses[:3] + responses[6:]:
        for key in ("session_error", "function_error", "endpoint_error"):
            assert "input `images` must have shape" in response[key], response
            assert "received shape" in response[key]
    assert "[?, ?, ?, 3]" in responses[1]["session_error"]
    for key in ("session_error", "function_error", "endpoint_error"):
        assert "images" in responses[3][key]
    assert "pixels" in responses[4]["session_error"]
    assert "images" in responses[4]["function_error"]
    # A float tensor for the uint8 input: the typed paths reject it by name.
    assert "images" in responses[5]["endpoint_error"]
    assert "uint8" in responses[5]["function_error"]


def test_saved_model_cli_shows_named_signatures(image_classifier, image_export):
    described = export.describe_signatures(image_classifier, image_preprocessing=DIGITS_PREP)
    assert sorted(described) == ["normalized", "serving_default"]
    assert "uint8" in described["serving_default"]
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    out = subprocess.run([cli, "show", "--all", "--dir", image_export],
                         capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert out.returncode == 0, out.stderr[-2000:]
    for text in ("signature_def['serving_default']", "signature_def['normalized']",
                 "inputs['images']", "DT_UINT8", "outputs['probabilities']",
                 "outputs['top_5_classes']", "serving_default_images:0"):
        assert text in out.stdout


def test_masked_lm_served_text_matches_fill_mask(tmp_path):
    keras.utils.set_random_seed(2)
    model = keras_perceiver.models.PerceiverMaskedLM(
        max_length=24, d_model=8, num_latents=4, d_latents=16,
        num_self_attends_per_block=1, num_self_attention_heads=2,
        num_cross_attention_heads=2, qk_channels=8, v_channels=16,
        decoder_num_heads=2, decoder_qk_channels=8)
    path = export.export_saved_model(model, str(tmp_path))
    texts = ["Hello [MASK][MASK]rld", "[MASK] caf\u00e9 [MASK]", "no mask at all"]
    ids = BytesTokenizer().encode(texts, max_length=24, pad=True, mask_placeholder="[MASK]")
    short_ids = BytesTokenizer().encode(texts, pad=True, mask_placeholder="[MASK]")
    responses = serving.serve_fresh(path, [
        ("serving_default", {"text": np.array([t.encode() for t in texts])}),
        ("token_ids", {"token_ids": short_ids}),
        ("serving_default", {"text": np.array([b"x" * 25])}),  # too long
        ("token_ids", {"token_ids": np.full((1, 3), 262, "int32")}),  # out of vocabulary
        ("token_ids", {"token_ids": ids[0]}),  # rank 1
    ])
    logits = _np(model(ids))
    _close(responses[0], "logits", logits)
    _close(responses[1], "logits", logits)
    for filled in _both(responses[0], "filled_text"):
        assert [t.decode() for t in filled] == model.fill_mask(texts)
    assert "input `text` must encode to at most 24 tokens" in responses[2]["session_error"]
    assert "input `token_ids` must have values in [0, 261]" in responses[3]["session_error"]
    assert "input `token_ids` must have shape [?, ?]" in responses[4]["function_error"]


def test_text_classifier_served(tmp_path):
    keras.utils.set_random_seed(3)
    model = keras_perceiver.models.PerceiverTextClassifier(
        tasks={"sst2": 2, "mnli": 3}, max_length=32, d_model=8, num_latents=4,
        d_latents=16, num_self_attends_per_block=1, num_self_attention_heads=2,
        num_cross_attention_heads=2, qk_channels=8, v_channels=16)
    path = export.export_saved_model(model, str(tmp_path))
    texts = ["a fine film", "dull", "\u00fcber gut!"]
    ids = BytesTokenizer().encode(texts, add_special_tokens=True, pad=True)
    responses = serving.serve_fresh(path, [
        ("serving_default", {"text": np.array([t.encode() for t in texts])}),
        ("token_ids", {"token_ids": ids}),
    ])
    expected = {k: _np(v) for k, v in model(ids).items()}
    for response in responses:
        for task, logits in expected.items():
            _close(response, f"{task}_logits", logits)
            _close(response, f"{task}_probabilities", _np(keras.ops.softmax(logits)))
            for cls in _both(response, f"{task}_class"):
                np.testing.assert_array_equal(cls, logits.argmax(-1))


def test_optical_flow_served_on_uint8_frames(tmp_path):
    keras.utils.set_random_seed(4)
    model = keras_perceiver.models.PerceiverOpticalFlow(
        image_shape=(6, 8), num_latents=4, num_latent_channels=16,
        num_self_attends_per_block=1, num_self_attention_heads=2,
        num_patch_channels=8, num_bands=2)
    path = export.export_saved_model(model, str(tmp_path))
    frames = np.random.default_rng(0).integers(0, 256, (2, 2, 6, 8, 3)).astype("uint8")
    responses = serving.serve_fresh(path, [
        ("serving_default", {"frames": frames}),
        ("normalized", {"frames": (frames / 255.0 * 2 - 1).astype("float32")}),
        ("serving_default", {"frames": frames[:, :1]}),  # one frame
        ("serving_default", {"frames": np.zeros((1, 2, 6, 8, 1), "uint8")}),  # grey
    ])
    flow = _np(model(frames.astype("float32") / 255.0 * 2.0 - 1.0))
    assert flow.shape == (2, 6, 8, 2)
    _close(responses[0], "flow", flow)
    _close(responses[1], "flow", flow)
    for response in responses[2:]:
        assert "input `frames` must have shape [?, 2, 6, 8, 3]" in response["session_error"]


def test_multimodal_served_chunked(tmp_path):
    keras.utils.set_random_seed(5)
    model = keras_perceiver.models.PerceiverMultimodalAutoencoder(
        num_frames=2, image_size=8, audio_samples=32, samples_per_patch=4,
        num_classes=5, image_num_bands=2, audio_num_bands=3, num_latents=4,
        num_latent_channels=8, num_self_attends_per_block=1,
        num_self_attention_heads=2, label_query_channels=6, decoder_channels=8)
    path = export.export_saved_model(model, str(tmp_path), num_chunks=3)  # uneven chunks
    rng = np.random.default_rng(0)
    inputs = {
        "image": rng.uniform(size=(2, 2, 8, 8, 3)).astype("float32"),
        "audio": rng.uniform(-1, 1, size=(2, 32, 1)).astype("float32"),
        "label": np.eye(5, dtype="float32")[[1, 3]],
    }
    bad = dict(inputs, audio=inputs["audio"][:, :16])
    responses = serving.serve_fresh(path, [("serving_default", inputs), ("serving_default", bad)])
    expected = {k: _np(v) for k, v in model(inputs).items()}
    for name in ("image", "audio", "label"):
        _close(responses[0], name, expected[name])
    assert "input `audio` must have shape [?, 32, 1]" in responses[1]["session_error"]
