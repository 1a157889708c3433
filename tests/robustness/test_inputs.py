"""Bad inputs to the task models and the tokenizer (issue 8, items 4, 8, NaN/Inf).

Eager calls and `predict` check dtypes, ranges and NaN/Inf with messages
naming the input, the expectation and what was received; `fit` runs no value
checks (zero cost per step). Layers: tests/robustness/test_inputs_layers.py.
"""

import keras
import numpy as np
import pytest
from keras import ops

from keras_perceiver import models as M
from keras_perceiver.layers import validation
from keras_perceiver.tokenizers import BytesTokenizer

TEXT = dict(max_length=16, d_model=8, num_latents=4, num_latent_channels=16, num_self_attends_per_block=1,
            num_self_attention_heads=2, num_cross_attention_heads=2, qk_channels=8,
            v_channels=16)
MULTIMODAL = dict(num_frames=2, image_size=8, audio_samples=32, samples_per_patch=4,
                  num_classes=5, image_num_bands=2, audio_num_bands=3, num_latents=4,
                  num_latent_channels=8, num_self_attends_per_block=1,
                  num_self_attention_heads=2, label_query_channels=6, decoder_channels=8)


def masked_lm():
    return M.PerceiverMaskedLM(decoder_num_heads=2, decoder_qk_channels=8, **TEXT)


def text_classifier():
    return M.PerceiverTextClassifier(tasks={"a": 2}, **TEXT)


def image_classifier():
    return M.PerceiverImageClassifier(
        num_classes=3, image_shape=(8, 8, 1), num_bands=2, num_latents=4, num_latent_channels=8,
        num_blocks=1, num_self_attends_per_block=1, num_self_attention_heads=2)


def optical_flow():
    return M.PerceiverOpticalFlow(
        image_shape=(6, 8), num_latents=4, num_latent_channels=8, num_self_attends_per_block=1,
        num_self_attention_heads=2, num_patch_channels=4, num_bands=2)


def multimodal(**kwargs):
    return M.PerceiverMultimodalAutoencoder(**MULTIMODAL, **kwargs)


def mm_inputs(batch=2, **changes):
    x = {"image": np.full((batch, 2, 8, 8, 3), 0.5, "float32"),
         "audio": np.zeros((batch, 32, 1), "float32"),
         "label": np.eye(5, dtype="float32")[:batch] if batch else np.zeros((0, 5), "float32")}
    x.update(changes)
    return x


# Each task model, a good input (batch 2) and the catalogue of bad inputs:
# (description, input, exception, message regex). Every entry is run through
# both an eager call and `predict`.
def _catalogue():
    ids = np.full((2, 10), 50, "int32")
    img = np.zeros((2, 8, 8, 1), "float32")
    frames = np.zeros((2, 2, 6, 8, 3), "float32")

    def nan(x, value=np.nan):
        x = x.copy()
        x.flat[3] = value
        return x

    def text(model_fn, name):
        return (model_fn, ids, [
            ("id -1", np.full((2, 10), -1, "int32"), ValueError,
             r"`token_ids` values in \[0, 262\), received values in \[-1, -1\]"),
            ("id >= vocab", np.full((2, 10), 262, "int32"), ValueError, r"values in \[0, 262\)"),
            ("float ids", ids.astype("float32") + 0.5, TypeError,
             "`token_ids` of an integer dtype.*received dtype float32"),
            ("wrong rank", ids[0], ValueError, "expected|shape"),
            ("over-long text", np.full((2, 17), 50, "int32"), ValueError, "<= 16"),
        ])

    return {
        "PerceiverMaskedLM": text(masked_lm, "token_ids"),
        "PerceiverTextClassifier": text(text_classifier, "token_ids"),
        "PerceiverImageClassifier": (image_classifier, img, [
            ("uint8 images", img.astype("uint8"), TypeError,
             "`images` of a float dtype.*not raw uint8.*received dtype uint8"),
            ("NaN", nan(img), ValueError, "finite `images`.*NaN"),
            ("Inf", nan(img, np.inf), ValueError, "finite `images`.*Inf"),
            ("wrong channels", np.zeros((2, 8, 8, 3), "float32"), ValueError,
             r"expected.*8, 8, 1"),
            ("wrong rank", img[:, :, 0, 0], ValueError, r"(?i)expected.*8, 8, 1"),
        ]),
        "PerceiverOpticalFlow": (optical_flow, frames, [
            ("uint8 frames", frames.astype("uint8"), TypeError,
             r"`frames` of a float dtype.*\[-1, 1\].*received dtype uint8"),
            ("unscaled float frames", frames + 255.0, ValueError,
             r"`frames` values in \[-1.0, 1.0\], received values in \[255.0, 255.0\]"),
            ("NaN", nan(frames), ValueError, "finite `frames`.*NaN"),
            ("wrong size", np.zeros((2, 2, 6, 9, 3), "float32"), ValueError,
             r"expected.*\(None, 2, 6, 8, 3\)"),
        ]),
        "PerceiverMultimodalAutoencoder": (multimodal, mm_inputs(), [
            ("non-one-hot label", mm_inputs(label=np.full((2, 5), 0.3, "float32")), ValueError,
             "`label` rows that are one-hot.*or all zeros"),
            ("two-hot label", mm_inputs(label=np.ones((2, 5), "float32")), ValueError,
             "`label` rows that are one-hot"),
            ("uint8 video", mm_inputs(image=np.zeros((2, 2, 8, 8, 3), "uint8")), TypeError,
             "`image` of a float dtype.*received dtype uint8"),
            ("NaN audio", mm_inputs(audio=nan(np.zeros((2, 32, 1), "float32"))), ValueError,
             "finite `audio`.*NaN"),
        ]),
    }


CATALOGUE = _catalogue()
CASES = [(name, i) for name, (_, _, bad) in CATALOGUE.items() for i in range(len(bad))]
_MODELS = {}


def _model(name):
    if name not in _MODELS:
        keras.utils.set_random_seed(0)
        _MODELS[name] = CATALOGUE[name][0]()
    return _MODELS[name]


@pytest.mark.parametrize("name, index", CASES,
                         ids=[f"{n}-{CATALOGUE[n][2][i][0]}" for n, i in CASES])
def test_task_model_rejects_bad_input(name, index):
    model = _model(name)
    _, x, error, match = CATALOGUE[name][2][index]
    with pytest.raises(error, match=match):
        model(x)
    with pytest.raises(error, match=match):
        model.predict(x, verbose=0)


def _first_output(out):
    if isinstance(out, dict):
        return next(iter(out.values()))
    return out


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_task_model_good_and_empty_batch(name):
    model = _model(name)
    good = CATALOGUE[name][1]
    eager = ops.convert_to_numpy(_first_output(model(good)))
    predicted = _first_output(model.predict(good, verbose=0))
    np.testing.assert_allclose(predicted, eager, atol=1e-5)
    assert eager.shape[0] == 2 and np.isfinite(eager).all()
    empty = {k: v[:0] for k, v in good.items()} if isinstance(good, dict) else good[:0]
    out = ops.convert_to_numpy(_first_output(model(empty)))
    assert out.shape == (0,) + eager.shape[1:]


def test_subsampled_points_out_of_range():
    model = multimodal(num_subsampled_points={"image": 3, "audio": 2})
    x = mm_inputs(image_points=np.array([[0, 1, 128]] * 2, "int32"),
                  audio_points=np.array([[0, 1]] * 2, "int32"))
    with pytest.raises(ValueError, match=r"`image_points` values in \[0, 128\), received values in \[0, 128\]"):
        model(x)
    x["image_points"] = np.array([[0, -1, 2]] * 2, "int32")
    with pytest.raises(ValueError, match=r"values in \[0, 128\), received values in \[-1, 2\]"):
        model.predict(x, verbose=0)
    x["image_points"] = np.array([[0, 1, 127]] * 2, "int32")
    out = model(x)
    assert tuple(out["image"].shape) == (2, 3, 3)


def test_zero_label_rows_are_allowed():
    model = _model("PerceiverMultimodalAutoencoder")
    out = model(mm_inputs(label=np.zeros((2, 5), "float32")))
    assert np.isfinite(ops.convert_to_numpy(out["label"])).all()


def test_fit_runs_no_value_checks(monkeypatch):
    """Value checks are eager-only: `fit` (traced or training=True) never reads values."""
    calls = []
    original = validation.check_index_range

    def counting(*args, **kwargs):
        calls.append(args[1])
        return original(*args, **kwargs)

    monkeypatch.setattr(validation, "check_index_range", counting)
    monkeypatch.setattr("keras_perceiver.layers.text.check_index_range", counting)
    model = text_classifier()
    ids = np.full((4, 10), 50, "int32")
    model(ids)
    assert calls  # eager call: checked
    calls.clear()
    model.compile(optimizer="sgd", loss={"a": "sparse_categorical_crossentropy"})
    model.fit(ids, {"a": np.zeros((4,), "int32")}, epochs=1, verbose=0)
    assert calls == []


@pytest.mark.parametrize("texts, spans, match", [
    (["abcd", "efgh"], [[(0, 1)]], r"one masked_spans list per text \(2 texts\), received 1"),
    ("abcd", [(3, 1)], r"0 <= start < end <= 4.*received \(3, 1\)"),
    ("abcd", [(2, 2)], r"received \(2, 2\)"),
    ("abcd", [(1, 9)], r"<= 4 \(the length of text 0\), received \(1, 9\)"),
    ("abcd", [(-1, 2)], r"received \(-1, 2\)"),
    ("abcd", [(0.5, 2)], r"of ints"),
])
def test_fill_mask_rejects_bad_spans(texts, spans, match):
    with pytest.raises(ValueError, match=match):
        _model("PerceiverMaskedLM").fill_mask(texts, masked_spans=spans)


def test_fill_mask_spans_per_text_and_empty_batch():
    model = _model("PerceiverMaskedLM")
    both = model.fill_mask(["abcd", "efgh"], masked_spans=[[(0, 1)], None])
    assert both == [model.fill_mask("abcd", masked_spans=[(0, 1)]), "efgh"]
    assert model.fill_mask([]) == []
    with pytest.raises(TypeError, match="expected text as str"):
        model.fill_mask([b"abcd"])


def test_tokenizer_non_utf8_and_bad_types():
    tok = BytesTokenizer()
    assert tok.encode(b"\xff\xfe") == [0xFF + 6, 0xFE + 6]
    assert tok.decode(tok.encode(b"a\xffb")) == "a\ufffdb"
    with pytest.raises(TypeError, match="must be str or bytes"):
        tok.encode(12)
    with pytest.raises(ValueError, match=r"range \[0, 262\)"):
        tok.decode([262])
    with pytest.raises(TypeError, match="must be integers"):
        tok.decode(np.array([1.5]))
