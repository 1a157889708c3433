"""Presets hold their weights; user files are never overwritten or truncated."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import keras_perceiver
from keras_perceiver.models import PerceiverImageClassifier
from keras_perceiver.models import PerceiverTask

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = dict(num_classes=3, image_shape=(8, 8, 3), num_bands=2, num_latents=4, num_latent_channels=8,
            num_blocks=1, num_self_attends_per_block=1, num_self_attention_heads=2)


def tiny():
    return PerceiverImageClassifier(**TINY)


def snapshot(directory):
    return {name: open(os.path.join(directory, name), "rb").read()
            for name in sorted(os.listdir(directory))}


def logits(model):
    x = np.linspace(0, 1, 2 * 8 * 8 * 3, dtype="float32").reshape(2, 8, 8, 3)
    return keras.ops.convert_to_numpy(model(x))


def test_preset_round_trip_and_missing_weights_is_an_error(tmp_path):
    model = tiny()
    path = str(tmp_path / "preset")
    model.save_to_preset(path)
    np.testing.assert_array_equal(logits(PerceiverTask.from_preset(path)), logits(model))
    os.remove(os.path.join(path, "model.weights.h5"))
    with pytest.raises(FileNotFoundError, match="model.weights.h5"):
        PerceiverImageClassifier.from_preset(path)
    assert PerceiverImageClassifier.from_preset(path, load_weights=False).count_params() > 0
    with pytest.raises(FileNotFoundError, match="nothing.weights.h5"):
        PerceiverImageClassifier.from_preset(path, weights=str(tmp_path / "nothing.weights.h5"))


def test_config_only_preset_is_explicit(tmp_path):
    path = str(tmp_path / "config_only")
    tiny().save_to_preset(path, weights=False)
    assert os.listdir(path) == ["config.json"]
    assert json.load(open(os.path.join(path, "config.json")))["weights"] is None
    assert type(PerceiverTask.from_preset(path)) is PerceiverImageClassifier


@pytest.mark.parametrize("damage, message", [
    ("{not json", "not valid JSON"),
    ('{"config": {}}', r"missing key\(s\) \['class_name'\]"),
    ('{"class_name": "os.system", "config": {}}', "unknown task class 'os.system'"),
    ("[1, 2]", "got a JSON list"),
])
def test_corrupt_preset_config_names_the_file(tmp_path, damage, message):
    path = tmp_path / "preset"
    path.mkdir()
    (path / "config.json").write_text(damage)
    with pytest.raises(ValueError, match=message) as info:
        PerceiverTask.from_preset(str(path))
    assert "config.json" in str(info.value)


def test_truncated_weights_file_names_the_file(tmp_path):
    path = str(tmp_path / "preset")
    tiny().save_to_preset(path)
    weights = os.path.join(path, "model.weights.h5")
    data = open(weights, "rb").read()
    open(weights, "wb").write(data[: len(data) // 3])
    with pytest.raises(ValueError, match="could not load weights from .*model.weights.h5"):
        PerceiverTask.from_preset(path)


def test_save_to_preset_never_replaces_without_overwrite(tmp_path):
    first, second = tiny(), tiny()
    path = str(tmp_path / "preset")
    first.save_to_preset(path)
    (tmp_path / "preset" / "notes.txt").write_text("mine")
    before = snapshot(path)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        second.save_to_preset(path)
    assert snapshot(path) == before
    other = tmp_path / "other"
    other.mkdir()
    (other / "data.csv").write_text("1,2")
    with pytest.raises(FileExistsError, match="not empty"):
        second.save_to_preset(str(other))
    assert snapshot(str(other)) == {"data.csv": b"1,2"}
    second.save_to_preset(path, overwrite=True)
    np.testing.assert_array_equal(logits(PerceiverTask.from_preset(path)), logits(second))
    assert sorted(os.listdir(tmp_path)) == ["other", "preset"]  # nothing left aside
    empty = tmp_path / "empty"
    empty.mkdir()
    second.save_to_preset(str(empty))
    assert sorted(os.listdir(empty)) == ["config.json", "model.weights.h5"]


# Runs the writer in a child process whose file size limit is below what it
# writes (what a full disk does to it): the parent checks the outcome.
CHILD = textwrap.dedent("""
    import os, resource, signal, sys
    sys.path.insert(0, {root!r})
    import numpy as np
    import keras_perceiver, keras_perceiver.export, keras_perceiver.files
    from keras_perceiver.models import PerceiverImageClassifier
    model = PerceiverImageClassifier(**{tiny!r})
    model(np.zeros((1, 8, 8, 3), "float32"))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
    failures = 0
    for label, call in {calls!r}:
        try:
            exec(call)
        except OSError as error:
            print(label, "OSError", error)
            failures += 1
    sys.exit(10 + failures)
""")


def run_limited(calls):
    code = CHILD.format(root=ROOT, tiny=TINY, calls=calls)
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=300)


def test_full_disk_leaves_user_files_intact(tmp_path):
    preset = str(tmp_path / "preset")
    tiny().save_to_preset(preset)
    tflite = tmp_path / "model.tflite"
    tflite.write_bytes(b"the user's model")
    before = snapshot(preset)
    result = run_limited([
        ("PRESET", f"model.save_to_preset({preset!r}, overwrite=True)"),
        ("TFLITE", f"keras_perceiver.export.export_litert(model, {str(tflite)!r}, "
                   "overwrite=True)"),
        ("BYTES", "keras_perceiver.files.write_bytes_aside("
                  f"{str(tflite)!r}, bytes(10000), 'export_litert')"),
    ])
    # All writes fail cleanly (exit 13), no segfault inside h5py.
    assert result.returncode == 13, result.stdout + result.stderr[-2000:]
    assert "PRESET OSError" in result.stdout and "save_to_preset: could not write" in result.stdout
    assert "TFLITE OSError" in result.stdout and "model.tflite" in result.stdout
    assert "BYTES OSError" in result.stdout
    assert result.stdout.count("unchanged") == 3
    assert snapshot(preset) == before
    assert tflite.read_bytes() == b"the user's model"
    assert sorted(os.listdir(tmp_path)) == ["model.tflite", "preset"]  # no partial files


def test_exports_refuse_to_replace_existing_files(tmp_path):
    from keras_perceiver import export

    model = tiny()
    tflite, onnx = tmp_path / "m.tflite", tmp_path / "m.onnx"
    tflite.write_bytes(b"mine")
    onnx.write_bytes(b"mine too")
    with pytest.raises(FileExistsError, match="m.tflite already exists.*overwrite=True"):
        export.export_litert(model, str(tflite))
    with pytest.raises(FileExistsError, match="m.onnx already exists.*overwrite=True"):
        export.export_onnx(model, str(onnx))
    assert tflite.read_bytes() == b"mine" and onnx.read_bytes() == b"mine too"
    export.export_litert(model, str(tflite), overwrite=True)
    assert tflite.read_bytes()[4:8] == b"TFL3"
    assert sorted(os.listdir(tmp_path)) == ["m.onnx", "m.tflite"]  # nothing left aside


def test_int8_needs_calibration_examples(tmp_path):
    from keras_perceiver import export

    model = tiny()
    for data in (np.zeros((0, 8, 8, 3), "float32"), {"images": np.zeros((0, 8, 8, 3))}):
        with pytest.raises(ValueError, match="at least one calibration example"):
            export.export_litert(model, str(tmp_path / "q.tflite"), quantization="int8",
                                 representative_data=data)
    assert not os.listdir(tmp_path)


def test_exports_check_the_backend(tmp_path, monkeypatch):
    from keras_perceiver import export

    model = tiny()
    monkeypatch.setattr(keras.backend, "backend", lambda: "torch")
    for function, name in ((export.export_onnx, "m.onnx"), (export.export_litert, "m.tflite")):
        with pytest.raises(ValueError, match="needs the TensorFlow backend.*'torch'"):
            function(model, str(tmp_path / name))
    with pytest.raises(ValueError, match="needs the TensorFlow backend.*'torch'"):
        export.export_saved_model(model, str(tmp_path / "sm"))
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize("options, message", [
    ({"std": 0}, "std must be positive finite"),
    ({"std": [1.0, -2.0, 3.0]}, "std must be positive finite"),
    ({"mean": float("nan")}, "mean must be finite"),
    ({"colour": 1}, r"unknown option\(s\) \['colour'\]"),
    ({"mode": "stretch"}, "mode must be 'center_crop' or 'resize'"),
    ({"crop_fraction": 0}, r"crop_fraction must be a number in \(0, 1\]"),
    ({"method": "cubic"}, "method must be one of"),
    ("resize", "must be a dict"),
])
def test_bad_image_preprocessing_is_rejected(options, message):
    from keras_perceiver.export import preprocessing

    with pytest.raises((ValueError, TypeError), match=message):
        preprocessing.image_preprocessing_options(options)


def test_non_rgb_classifier_needs_its_own_normalisation(tmp_path):
    from keras_perceiver import export

    model = PerceiverImageClassifier(**dict(TINY, image_shape=(8, 8, 1)))
    with pytest.raises(ValueError, match="mean has 3 values but the model takes 1-channel"):
        export.export_saved_model(model, str(tmp_path / "sm"))
    assert not os.path.exists(tmp_path / "sm" / "1")
    from keras_perceiver.export import preprocessing

    x = preprocessing.preprocess_images(np.full((1, 8, 8, 1), 255, "uint8"), (8, 8, 1),
                                        {"mean": 0, "std": 255})
    np.testing.assert_allclose(x.numpy(), 1.0)
