"""LiteRT export: float32 / float16 / int8, checked with the LiteRT interpreter."""

import os
import warnings

import keras
import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter
from sklearn.datasets import load_digits

import keras_perceiver
import keras_perceiver.export as export


@pytest.fixture(scope="module")
def digits_model():
    """A small classifier trained briefly on scikit-learn's digits."""
    keras.utils.set_random_seed(0)
    digits = load_digits()
    x = ((digits.images - 8.0) / 8.0).astype("float32")[..., None]
    y = digits.target
    model = keras_perceiver.models.PerceiverImageClassifier(
        num_classes=10, image_shape=(8, 8, 1), num_bands=4, num_latents=8, num_latent_channels=32,
        num_blocks=1, num_self_attends_per_block=1, num_self_attention_heads=4)
    steps = 12 * int(np.ceil((len(x) - 200) / 32))
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, steps, warmup_target=2e-3, warmup_steps=steps // 10)
    model.compile(optimizer=keras.optimizers.Adam(schedule), jit_compile=False,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x[200:], y[200:], batch_size=32, epochs=12, verbose=0)
    return model, x[:200], x[200:400]


def _run(path, images):
    """Runs the `.tflite` file with the LiteRT interpreter (builtin ops only)."""
    runner = Interpreter(model_path=path).get_signature_runner("serving_default")
    (out,) = runner(images=images).values()
    return out


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _export(model, path, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        export.export_litert(model, path, **kwargs)
    assert not [w for w in caught if "SELECT_TF_OPS" in str(w.message)]  # builtin ops only
    print(f"\n{os.path.basename(path)}: {os.path.getsize(path) / 1024:.1f} KiB")
    return path


def test_float32_and_float16(digits_model, tmp_path):
    model, test, _ = digits_model
    expected = keras.ops.convert_to_numpy(model(test))
    accuracy = np.mean(expected.argmax(-1) == load_digits().target[:200])
    print(f"\nKeras accuracy on the 200 held-out digits: {accuracy:.3f}")
    assert accuracy > 0.9  # the model learnt something: agreement below is meaningful
    fp32 = _export(model, str(tmp_path / "fp32.tflite"))
    np.testing.assert_allclose(_run(fp32, test), expected, atol=1e-4, rtol=0)
    fp16 = _export(model, str(tmp_path / "fp16.tflite"), quantization="float16")
    # float16 weights: relative error ~5e-4, so the trained logits (|z| ~ 10)
    # move by up to ~0.03; the probabilities (O(1)) stay within 1e-2.
    got = _run(fp16, test)
    print(f"float16: max |logit diff| {np.abs(got - expected).max():.4f}")
    np.testing.assert_allclose(_softmax(got), _softmax(expected), atol=1e-2, rtol=0)
    np.testing.assert_array_equal(got.argmax(-1), expected.argmax(-1))
    assert os.path.getsize(fp16) < os.path.getsize(fp32)  # weights halved; the graph stays


@pytest.mark.parametrize("quantization", ["dynamic_int8", "int8"])
def test_int8_keeps_top1(digits_model, tmp_path, quantization):
    model, test, calibration = digits_model
    path = _export(model, str(tmp_path / f"{quantization}.tflite"),
                   quantization=quantization, representative_data=calibration)
    expected = keras.ops.convert_to_numpy(model(test)).argmax(-1)
    agreement = np.mean(_run(path, test).argmax(-1) == expected)
    print(f"{quantization}: top-1 agreement {agreement:.3f}")
    assert agreement >= 0.99


def test_bad_arguments(digits_model, tmp_path):
    model = digits_model[0]
    with pytest.raises(ValueError, match="representative_data"):
        export.export_litert(model, str(tmp_path / "a.tflite"), quantization="int8")
    with pytest.raises(ValueError, match="quantization must be one of"):
        export.export_litert(model, str(tmp_path / "a.tflite"), quantization="int4")
    with pytest.raises(ValueError, match=".tflite"):
        export.export_litert(model, str(tmp_path / "a.bin"))


@pytest.mark.parametrize("task", ["masked_lm", "classifier"])
def test_text_models_are_builtin_only_at_a_static_length(task, tmp_path):
    """Text models' token input (unknown length in Keras) is written at `max_length`, so
    the attention takes its one-shot path and no Flex op is needed."""
    keras.utils.set_random_seed(0)
    config = dict(max_length=24, d_model=16, num_latents=4, num_latent_channels=16, num_blocks=1,
                  num_self_attends_per_block=1, num_self_attention_heads=2,
                  num_cross_attention_heads=2, qk_channels=8, v_channels=16)
    if task == "masked_lm":
        model = keras_perceiver.models.PerceiverMaskedLM(**config)
    else:
        model = keras_perceiver.models.PerceiverTextClassifier(tasks={"a": 3, "b": 2}, **config)
    path = _export(model, str(tmp_path / "text.tflite"))
    runner = Interpreter(model_path=path).get_signature_runner("serving_default")
    assert list(runner.get_input_details()["token_ids"]["shape_signature"]) == [-1, 24]
    ids = np.zeros((2, 24), np.int32)
    ids[0, :15] = np.arange(15) + 40
    ids[1] = 90
    got = runner(token_ids=ids)
    expected = model(ids)
    expected = expected if isinstance(expected, dict) else {"outputs": expected}
    assert sorted(got) == sorted(expected)
    for name, value in got.items():
        np.testing.assert_allclose(value, keras.ops.convert_to_numpy(expected[name]),
                                   atol=1e-4, rtol=0)
    if task == "classifier":  # the padded row gives what the 15 real tokens alone give
        alone = model(ids[:1, :15])
        for name in got:
            np.testing.assert_allclose(got[name][:1], keras.ops.convert_to_numpy(alone[name]),
                                       atol=1e-4, rtol=0)
        short = _export(model, str(tmp_path / "short.tflite"), sequence_length=15)
        runner = Interpreter(model_path=short).get_signature_runner("serving_default")
        assert list(runner.get_input_details()["token_ids"]["shape_signature"]) == [-1, 15]
        got = runner(token_ids=ids[:1, :15])
        for name in got:
            np.testing.assert_allclose(got[name], keras.ops.convert_to_numpy(alone[name]),
                                       atol=1e-4, rtol=0)
        for bad in (0, 25, 2.0, True):
            with pytest.raises(ValueError, match="sequence_length must be an int in"):
                export.export_litert(model, str(tmp_path / "bad.tflite"), sequence_length=bad)
        assert not os.path.exists(tmp_path / "bad.tflite")


def test_sequence_length_needs_a_text_model(digits_model, tmp_path):
    with pytest.raises(ValueError, match="sequence_length applies to text models"):
        export.export_litert(digits_model[0], str(tmp_path / "a.tflite"), sequence_length=8)
