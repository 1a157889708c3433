"""The image classification recipe end to end: embedded digits, mock tfds, resume."""

import json
import os

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_perceiver import cli
from keras_perceiver.recipes import common
from keras_perceiver.recipes import image_classification
from tests.recipes.helpers import check_run_outputs


def _h5_arrays(path):
    arrays = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: arrays.__setitem__(name, obj[()])
                     if isinstance(obj, h5py.Dataset) else None)
    return arrays


def test_smoke_on_embedded_digits_trains_evaluates_and_exports(tmp_path):
    out, export = str(tmp_path / "run"), str(tmp_path / "saved")
    metrics = image_classification.main(["--smoke", "--output", out, "--export", export])
    record = check_run_outputs(out, ("curves.png", "attention.png"))
    assert record["metrics"] == metrics and 0.0 <= metrics["test_accuracy"] <= 1.0
    assert len(record["history"]["loss"]) == 2  # --smoke: 2 epochs
    assert record["export"]["saved_model"] == os.path.join(export, "1")
    assert os.path.getsize(os.path.join(export, "image_classification_v1.tflite")) > 1000
    # The SavedModel takes raw uint8 digits and scores what the recipe reported.
    from keras_perceiver.data import images

    _, (x_test, y_test) = images.load_digits_split()
    served = tf.saved_model.load(os.path.join(export, "1")).signatures["serving_default"]
    classes = served(images=tf.constant(x_test))["top_5_classes"].numpy()[:, 0]
    assert float(np.mean(classes == y_test)) == pytest.approx(metrics["test_accuracy"], abs=1e-9)
    # A second run never overwrites the first: refused without --resume.
    with pytest.raises(FileExistsError, match="--resume"):
        image_classification.main(["--smoke", "--output", out])


class _Killed(Exception):
    pass


def test_killed_run_resumes_to_the_uninterrupted_weights(tmp_path, monkeypatch):
    flags = ["--smoke", "--epochs", "4", "--steps-per-epoch", "2", "--seed", "3",
             "--run-eagerly"]
    whole = str(tmp_path / "whole")
    image_classification.main(flags + ["--output", whole])

    original = common.Run.callbacks

    def with_kill(self, monitor, mode):
        class Kill(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if epoch == 1:
                    raise _Killed()
        return original(self, monitor, mode) + [Kill()]

    halves = str(tmp_path / "halves")
    monkeypatch.setattr(common.Run, "callbacks", with_kill)
    with pytest.raises(_Killed):
        image_classification.main(flags + ["--output", halves])
    monkeypatch.setattr(common.Run, "callbacks", original)
    with open(os.path.join(halves, "checkpoints/backup/training_metadata.json")) as f:
        assert json.load(f)["epoch"] == 2
    assert not os.path.exists(os.path.join(halves, "checkpoints/final.weights.h5"))
    image_classification.main(flags + ["--output", halves, "--resume"])

    a = _h5_arrays(os.path.join(whole, "checkpoints/final.weights.h5"))
    b = _h5_arrays(os.path.join(halves, "checkpoints/final.weights.h5"))
    assert a.keys() == b.keys() and len(a) > 40
    moved = _h5_arrays(os.path.join(halves, "checkpoints/backup/latest.weights.h5"))
    for name in a:
        np.testing.assert_allclose(b[name], a[name], atol=1e-6, rtol=0, err_msg=name)
    # Training moved the weights (dropout on): the comparison is not of initial states.
    with open(os.path.join(halves, "metrics.json")) as f:
        assert len(json.load(f)["history"]["loss"]) == 4


def test_mock_tfds_mnist_through_the_cli(tmp_path):
    import tensorflow_datasets as tfds

    out = str(tmp_path / "mnist")
    with tfds.testing.mock_data(num_examples=48):
        status = cli.main(["train", "image_classification", "--dataset", "mnist", "--smoke",
                           "--batch-size", "8", "--output", out, "--export",
                           str(tmp_path / "saved")])
    assert status == 0
    record = check_run_outputs(out, ("curves.png", "attention.png"))
    assert set(record["metrics"]) == {"test_accuracy"}
    with open(os.path.join(out, "config.json")) as f:
        config = json.load(f)
    assert config["flags"]["dataset"] == "mnist" and config["flags"]["label_smoothing"] == 0.1
    assert os.path.isdir(tmp_path / "saved" / "1")


def test_usage_errors_exit_2(tmp_path, capsys):
    assert cli.main(["train", "image_classification", "--epochs", "0"]) == 2
    assert "expected a positive int" in capsys.readouterr().err
    assert cli.main(["train", "no_such_recipe"]) == 2
    assert "unknown recipe 'no_such_recipe'" in capsys.readouterr().err


def test_mirrored_on_two_logical_cpus(tmp_path):
    """`--distribution mirrored` over 2 logical CPUs (own process: devices are fixed
    once TensorFlow starts)."""
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=root, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
    out = str(tmp_path / "mirrored")
    result = subprocess.run(
        [sys.executable, "-m", "keras_perceiver.cli", "train", "image_classification", "--smoke",
         "--distribution", "mirrored", "--cpu-replicas", "2", "--batch-size", "16",
         "--output", out, "--verbose", "0"],
        cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    record = check_run_outputs(out, ("curves.png", "attention.png"))
    assert record["replicas"] == 2 and record["distribution"] == "mirrored"
    assert "test_accuracy = " in result.stdout
