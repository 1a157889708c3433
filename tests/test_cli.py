"""The `keras-perceiver` command line: export and convert."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_perceiver
from keras_perceiver import cli


@pytest.fixture(scope="module")
def preset_dir(tmp_path_factory):
    keras.utils.set_random_seed(0)
    model = keras_perceiver.models.PerceiverImageClassifier(
        num_classes=5, image_shape=(8, 8, 3), num_bands=2, num_latents=4, num_latent_channels=8,
        num_blocks=1, num_self_attends_per_block=1, num_self_attention_heads=2,
        name="tiny_classifier")
    path = str(tmp_path_factory.mktemp("preset") / "tiny")
    model.save_to_preset(path)
    return path, model


def test_export_saved_model_versions(preset_dir, tmp_path, capsys):
    path, model = preset_dir
    out = str(tmp_path / "saved_models" / "tiny")
    prep = '{"mode": "resize", "mean": 0, "std": 255}'
    args = ["export", "--preset", path, "--format", "saved_model", "--output", out,
            "--image-preprocessing", prep]
    assert cli.main(args) == 0
    assert cli.main(args) == 0
    assert sorted(os.listdir(out)) == ["1", "2"]
    assert cli.main(args + ["--version", "2"]) == 1
    assert sorted(os.listdir(out)) == ["1", "2"]
    images = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3)).astype("uint8")
    served = tf.saved_model.load(os.path.join(out, "2")).signatures["serving_default"]
    probabilities = served(images=tf.constant(images))["probabilities"].numpy()
    expected = keras.ops.softmax(model(images.astype("float32") / 255.0))
    np.testing.assert_allclose(probabilities, keras.ops.convert_to_numpy(expected), atol=1e-5)
    assert "version 2 already exists" in capsys.readouterr().err


def test_export_tflite_and_onnx(preset_dir, tmp_path):
    path, model = preset_dir
    assert cli.main(["export", "--preset", path, "--weights", path, "--format", "tflite",
                     "--output", str(tmp_path)]) == 0
    tflite = tmp_path / "tiny_classifier.tflite"
    interpreter = tf.lite.Interpreter(model_path=str(tflite))
    runner = interpreter.get_signature_runner()
    x = np.random.default_rng(1).normal(size=(1, 8, 8, 3)).astype("float32")
    (out,) = runner(images=x).values()
    np.testing.assert_allclose(out, keras.ops.convert_to_numpy(model(x)), atol=1e-4)
    assert cli.main(["export", "--preset", path, "--format", "onnx", "--output",
                     str(tmp_path / "m.onnx")]) == 0
    size = (tmp_path / "m.onnx").stat().st_size
    assert size > 1000
    # An existing file is replaced only with --overwrite.
    assert cli.main(["export", "--preset", path, "--format", "onnx", "--output",
                     str(tmp_path / "m.onnx")]) == 1
    assert (tmp_path / "m.onnx").stat().st_size == size


def test_export_tflite_and_onnx_on_raw_images(preset_dir, tmp_path, capsys):
    """--raw-image-size: uint8 images in, the SavedModel's preprocessing, named outputs."""
    path, model = preset_dir
    prep = '{"mode": "resize", "mean": 0, "std": 255}'
    tflite = str(tmp_path / "raw.tflite")
    assert cli.main(["export", "--preset", path, "--format", "tflite", "--output", tflite,
                     "--raw-image-size", "8,8", "--image-preprocessing", prep]) == 0
    runner = tf.lite.Interpreter(model_path=tflite).get_signature_runner()
    images = np.random.default_rng(2).integers(0, 256, (1, 8, 8, 3)).astype("uint8")
    outputs = runner(images=images)
    assert {"logits", "probabilities", "top_5_classes"} <= set(outputs)
    expected = keras.ops.convert_to_numpy(model(images.astype("float32") / 255.0))
    np.testing.assert_allclose(outputs["logits"], expected, atol=1e-4)
    onnx_path = str(tmp_path / "raw.onnx")
    assert cli.main(["export", "--preset", path, "--format", "onnx", "--output", onnx_path,
                     "--raw-image-size", "8x8", "--image-preprocessing", prep]) == 0
    import onnxruntime

    session = onnxruntime.InferenceSession(onnx_path)
    names = [o.name for o in session.get_outputs()]
    assert "logits" in names
    (logits,) = session.run(["logits"], {session.get_inputs()[0].name: images})
    np.testing.assert_allclose(logits, expected, atol=1e-4)
    # The flag does not apply to SavedModels; a malformed size is a usage error.
    assert cli.main(["export", "--preset", path, "--format", "saved_model", "--output",
                     str(tmp_path / "sm"), "--raw-image-size", "8,8"]) == 2
    assert "--raw-image-size applies to --format tflite/onnx" in capsys.readouterr().err
    assert cli.main(["export", "--preset", path, "--format", "tflite", "--output",
                     str(tmp_path / "x.tflite"), "--raw-image-size", "8"]) == 2
    assert "expected HEIGHT,WIDTH" in capsys.readouterr().err


def test_unknown_preset_is_rejected(tmp_path, capsys):
    assert cli.main(["export", "--preset", "no_such_model", "--output", str(tmp_path)]) == 2
    assert "unknown preset 'no_such_model'" in capsys.readouterr().err


def test_preset_name_without_weights_fails_clearly(tmp_path, capsys, monkeypatch):
    # Offline: the weights URL points at a closed local port, the cache is empty.
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setenv("KERAS_PERCEIVER_WEIGHTS_URL", "http://127.0.0.1:9")
    assert cli.main(["export", "--preset", "vision_perceiver_conv", "--format", "onnx",
                     "--output", str(tmp_path / "m.onnx")]) == 1
    err = capsys.readouterr().err
    assert "could not download" in err and "imagenet_conv_preprocessing.pystate" in err
    assert "--random-weights" in err and "load_weights=False" in err
    assert not (tmp_path / "m.onnx").exists()


def test_presets_command_lists_sources(capsys):
    assert cli.main(["presets"]) == 0
    out = capsys.readouterr().out
    for name in ("language_perceiver", "vision_perceiver_conv", "multimodal_perceiver"):
        assert name in out
    assert "imagenet_conv_preprocessing.pystate" in out and "82.1%" in out
    assert "deepmind/optical-flow-perceiver" in out


def test_convert_from_transformers_then_export(tmp_path):
    from transformers import PerceiverConfig
    from transformers import PerceiverForMaskedLM

    torch_model = PerceiverForMaskedLM(PerceiverConfig(
        num_latents=6, d_latents=16, d_model=8, num_blocks=1, num_self_attends_per_block=1,
        num_self_attention_heads=2, num_cross_attention_heads=2,
        max_position_embeddings=24, qk_channels=8, v_channels=16))
    torch_model.save_pretrained(tmp_path / "hf")
    out = str(tmp_path / "preset")
    assert cli.main(["convert", "--from", "transformers", str(tmp_path / "hf"),
                     "--output", out]) == 0
    converted = keras_perceiver.models.PerceiverTask.from_preset(out)
    direct = keras_perceiver.convert.from_transformers(str(tmp_path / "hf"))
    assert type(converted).__name__ == "PerceiverMaskedLM"
    ids = np.random.default_rng(0).integers(6, 262, (2, 24)).astype("int32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(converted(ids)),
                               keras.ops.convert_to_numpy(direct(ids)), atol=1e-6)
    cli.main(["export", "--preset", out, "--output", str(tmp_path / "served")])
    served = tf.saved_model.load(str(tmp_path / "served" / "1"))
    filled = served.signatures["serving_default"](text=tf.constant(["ab[MASK]d"]))
    assert filled["filled_text"].numpy()[0].decode() == converted.fill_mask("ab[MASK]d")


def test_console_script_help():
    script = os.path.join(os.path.dirname(sys.executable), "keras-perceiver")
    out = subprocess.run([script, "export", "--help"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "--quantization" in out.stdout and "saved_model" in out.stdout
