"""The image classification recipe end to end: embedded digits, mock tfds, resume."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from keras_perceiver import cli
from keras_perceiver.recipes import image_classification
from tests.recipes.helpers import check_run_outputs
from tests.recipes.resume import check_killed_run_resumes


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


def test_killed_run_resumes_to_the_uninterrupted_weights(tmp_path, monkeypatch):
    check_killed_run_resumes(image_classification.main, [
        "--smoke", "--epochs", "4", "--steps-per-epoch", "2", "--seed", "3", "--run-eagerly"],
        tmp_path, monkeypatch)


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
