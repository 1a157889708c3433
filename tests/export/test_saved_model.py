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

# Per-channel mean/std that differ, so a swapped channel order shows; a 0.8 crop
# that lands on the model's 8x8 for 10x16 and 11x13 requests (no resize).
IMAGE_PREP = {"mode": "center_crop", "crop_fraction": 0.8,
              "mean": (90.0, 120.0, 150.0), "std": (30.0, 60.0, 90.0)}


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


def _crop_and_normalise(images):
    """NumPy reference of IMAGE_PREP: side int(0.8 * min(h, w)), offsets rounded down."""
    h, w = images.shape[1:3]
    side = int(0.8 * min(h, w))
    top, left = (h - side) // 2, (w - side) // 2
    crop = images[:, top : top + side, left : left + side].astype("float32")
    return (crop - np.array(IMAGE_PREP["mean"], "float32")) / np.array(IMAGE_PREP["std"], "float32")


def _rng_images(rng, shape):
    return rng.integers(0, 256, shape).astype("uint8")


@pytest.fixture(scope="module")
def models():
    keras.utils.set_random_seed(1)
    x = keras.Input((3,), name="features")
    generic = keras.Model(x, keras.layers.Dense(2, name="scores")(x))
    image = keras_perceiver.models.PerceiverImageClassifier(
        num_classes=7, image_shape=(8, 8, 3), num_bands=4, num_latents=8, num_latent_channels=16,
        num_blocks=1, num_self_attends_per_block=1, num_self_attention_heads=2)
    keras.utils.set_random_seed(2)
    masked_lm = keras_perceiver.models.PerceiverMaskedLM(
        max_length=24, d_model=8, num_latents=4, num_latent_channels=16,
        num_self_attends_per_block=1, num_self_attention_heads=2,
        num_cross_attention_heads=2, qk_channels=8, v_channels=16,
        decoder_num_heads=2, decoder_qk_channels=8)
    keras.utils.set_random_seed(3)
    text = keras_perceiver.models.PerceiverTextClassifier(
        tasks={"sst2": 2, "mnli": 3}, max_length=32, d_model=8, num_latents=4,
        num_latent_channels=16, num_self_attends_per_block=1, num_self_attention_heads=2,
        num_cross_attention_heads=2, qk_channels=8, v_channels=16)
    keras.utils.set_random_seed(4)
    flow = keras_perceiver.models.PerceiverOpticalFlow(
        image_shape=(6, 8), num_latents=4, num_latent_channels=16,
        num_self_attends_per_block=1, num_self_attention_heads=2,
        num_patch_channels=8, num_bands=2)
    keras.utils.set_random_seed(5)
    multimodal = keras_perceiver.models.PerceiverMultimodalAutoencoder(
        num_frames=2, image_size=8, audio_samples=32, samples_per_patch=4,
        num_classes=5, image_num_bands=2, audio_num_bands=3, num_latents=4,
        num_latent_channels=8, num_self_attends_per_block=1,
        num_self_attention_heads=2, label_query_channels=6, decoder_channels=8)
    return {"generic": generic, "image": image, "masked_lm": masked_lm, "text": text,
            "flow": flow, "multimodal": multimodal}


@pytest.fixture(scope="module")
def exports(models, tmp_path_factory):
    base = tmp_path_factory.mktemp("exports")
    options = {"image": {"image_preprocessing": IMAGE_PREP}, "multimodal": {"num_chunks": 3}}
    return {name: export.export_saved_model(model, str(base / name), **options.get(name, {}))
            for name, model in models.items()}


def _requests():
    """`{case: [(export name, signature, inputs)]}`, all served by one process."""
    rng = np.random.default_rng(0)
    good = np.zeros((2, 8, 8, 3), "uint8")
    texts = ["Hello [MASK][MASK]rld", "[MASK] caf\u00e9 [MASK]", "no mask at all"]
    frames = _rng_images(rng, (2, 2, 6, 8, 3))
    multimodal = {
        "image": rng.uniform(size=(2, 2, 8, 8, 3)).astype("float32"),
        "audio": rng.uniform(-1, 1, size=(2, 32, 1)).astype("float32"),
        "label": np.eye(5, dtype="float32")[[1, 3]],
    }
    classifier_texts = ["a fine film", "dull", "\u00fcber gut!"]
    return {
        "generic": [("generic", "serving_default",
                     {"features": rng.normal(size=(5, 3)).astype("float32")})],
        "image": [
            ("image", "serving_default", {"images": _rng_images(rng, (3, 10, 16, 3))}),
            ("image", "serving_default", {"images": _rng_images(rng, (2, 11, 13, 3))}),
            ("image", "serving_default", {"images": _rng_images(rng, (2, 21, 30, 3))}),
            ("image", "normalized", {"images": rng.normal(size=(4, 8, 8, 3)).astype("float32")}),
        ],
        "image_bad": [
            ("image", "serving_default", {"images": good[..., 0]}),  # rank 3
            ("image", "serving_default", {"images": good[..., :1]}),  # 1 channel
            ("image", "serving_default", {"images": np.zeros((2, 8, 8, 4), "uint8")}),  # RGBA
            ("image", "serving_default", {}),  # missing
            ("image", "serving_default", {"pixels": good}),  # unknown name
            ("image", "serving_default", {"images": good.astype("float32")}),  # wrong dtype
            ("image", "normalized", {"images": np.zeros((2, 8, 9, 3), "float32")}),  # width
        ],
        "masked_lm": [
            ("masked_lm", "serving_default", {"text": np.array([t.encode() for t in texts])}),
            ("masked_lm", "token_ids",
             {"token_ids": BytesTokenizer().encode(texts, pad=True, mask_placeholder="[MASK]")}),
            ("masked_lm", "serving_default", {"text": np.array([b"x" * 25])}),  # too long
            ("masked_lm", "token_ids", {"token_ids": np.full((1, 3), 262, "int32")}),  # vocab
            ("masked_lm", "token_ids", {"token_ids": np.zeros(24, "int32")}),  # rank 1
        ],
        "text": [
            ("text", "serving_default",
             {"text": np.array([t.encode() for t in classifier_texts])}),
            ("text", "token_ids", {"token_ids": BytesTokenizer().encode(
                classifier_texts, add_special_tokens=True, pad=True)}),
        ],
        "flow": [
            ("flow", "serving_default", {"frames": frames}),
            ("flow", "normalized", {"frames": (frames / 255.0 * 2 - 1).astype("float32")}),
            ("flow", "serving_default", {"frames": frames[:, :1]}),  # one frame
            ("flow", "serving_default", {"frames": np.zeros((1, 2, 6, 8, 1), "uint8")}),  # grey
        ],
        "multimodal": [
            ("multimodal", "serving_default", multimodal),
            ("multimodal", "serving_default", dict(multimodal, audio=multimodal["audio"][:, :16])),
        ],
    }


@pytest.fixture(scope="module")
def served(exports):
    """One fresh serving process answers every request of this module."""
    cases = _requests()
    flat = [(exports[name], signature, inputs)
            for requests in cases.values() for name, signature, inputs in requests]
    responses = iter(serving.serve_fresh(flat))
    return {case: [(inputs, next(responses)) for _, _, inputs in requests]
            for case, requests in cases.items()}


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


def test_generic_signature_served(models, served):
    # The model's input name, dynamic batch.
    ((inputs, response),) = served["generic"]
    _close(response, "outputs", _np(models["generic"](inputs["features"])))


def test_image_classifier_served_in_fresh_process(models, served):
    model = models["image"]
    responses = served["image"]
    # 10x16 and 11x13: the crop is the model's 8x8, so the expectation is NumPy
    # (crop, per-channel mean/std) and the model, independent of the export code.
    for inputs, response in responses[:2]:
        images = inputs["images"]
        logits = _np(model(_crop_and_normalise(images)))
        _close(response, "logits", logits)
        _close(response, "probabilities", _np(keras.ops.softmax(logits)))
        for top5 in _both(response, "top_5_classes"):
            np.testing.assert_array_equal(top5[:, 0], logits.argmax(-1))
            assert top5.shape == (len(images), 5) and top5.dtype == np.int32
    # 21x30: crop 16x16 resized to 8x8; the served graph equals the eager
    # function (itself checked against transformers in test_preprocessing.py).
    inputs, response = responses[2]
    x = export.preprocess_images(inputs["images"], (8, 8, 3), IMAGE_PREP)
    _close(response, "logits", _np(model(x)))
    inputs, response = responses[3]
    _close(response, "logits", _np(model(inputs["images"])))


def test_bad_requests_name_the_input(served):
    responses = [response for _, response in served["image_bad"]]
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


def test_saved_model_cli_shows_named_signatures(models, exports):
    described = export.describe_signatures(models["image"], image_preprocessing=IMAGE_PREP)
    assert sorted(described) == ["normalized", "serving_default"]
    assert "uint8" in described["serving_default"]
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    out = subprocess.run([cli, "show", "--all", "--dir", exports["image"]],
                         capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert out.returncode == 0, out.stderr[-2000:]
    for text in ("signature_def['serving_default']", "signature_def['normalized']",
                 "inputs['images']", "DT_UINT8", "outputs['probabilities']",
                 "outputs['top_5_classes']", "serving_default_images:0"):
        assert text in out.stdout


def test_masked_lm_served_text_matches_fill_mask(models, served):
    model = models["masked_lm"]
    responses = [response for _, response in served["masked_lm"]]
    texts = [t.decode() for t in served["masked_lm"][0][0]["text"]]
    ids = BytesTokenizer().encode(texts, max_length=24, pad=True, mask_placeholder="[MASK]")
    logits = _np(model(ids))
    _close(responses[0], "logits", logits)
    _close(responses[1], "logits", logits)
    for filled in _both(responses[0], "filled_text"):
        assert [t.decode() for t in filled] == model.fill_mask(texts)
    assert "input `text` must encode to at most 24 tokens" in responses[2]["session_error"]
    assert "input `token_ids` must have values in [0, 261]" in responses[3]["session_error"]
    assert "input `token_ids` must have shape [?, ?]" in responses[4]["function_error"]


def test_text_classifier_served(models, served):
    model = models["text"]
    ids = served["text"][1][0]["token_ids"]
    expected = {k: _np(v) for k, v in model(ids).items()}
    for _, response in served["text"]:
        for task, logits in expected.items():
            _close(response, f"{task}_logits", logits)
            _close(response, f"{task}_probabilities", _np(keras.ops.softmax(logits)))
            for cls in _both(response, f"{task}_class"):
                np.testing.assert_array_equal(cls, logits.argmax(-1))


def test_optical_flow_served_on_uint8_frames(models, served):
    model = models["flow"]
    responses = [response for _, response in served["flow"]]
    frames = served["flow"][0][0]["frames"]
    flow = _np(model(frames.astype("float32") / 255.0 * 2.0 - 1.0))
    assert flow.shape == (2, 6, 8, 2)
    _close(responses[0], "flow", flow)
    _close(responses[1], "flow", flow)
    for response in responses[2:]:
        assert "input `frames` must have shape [?, 2, 6, 8, 3]" in response["session_error"]


def test_multimodal_served_chunked(models, served):
    # Exported with num_chunks=3: uneven chunks.
    (inputs, response), (_, bad) = served["multimodal"]
    expected = {k: _np(v) for k, v in models["multimodal"](inputs).items()}
    for name in ("image", "audio", "label"):
        _close(response, name, expected[name])
    assert "input `audio` must have shape [?, 32, 1]" in bad["session_error"]
