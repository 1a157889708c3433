"""The multimodal autoencoding recipe end to end, and its resumable data stream."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from keras_perceiver import cli
from keras_perceiver.data import multimodal
from keras_perceiver.recipes import multimodal_autoencoding as recipe
from tests.recipes.resume import check_killed_run_resumes

KEYS = {"video_psnr", "video_mean_psnr", "video_psnr_gain", "audio_psnr", "audio_mean_psnr",
        "audio_psnr_gain", "label_accuracy", "label_accuracy_label_given"}


def test_smoke_trains_evaluates_and_exports(tmp_path):
    out, export = str(tmp_path / "run"), str(tmp_path / "saved")
    metrics = recipe.main(["--smoke", "--image-points", "32", "--audio-points", "2",
                           "--output", out, "--export", export])
    for path in ("config.json", "metrics.json", "plots/curves.png", "plots/reconstruction.png",
                 "checkpoints/best.weights.h5", "checkpoints/final.weights.h5",
                 "checkpoints/backup/latest.weights.h5", "logs/history.csv"):
        assert os.path.getsize(os.path.join(out, path)) > 0, path
    with open(os.path.join(out, "metrics.json")) as f:
        record = json.load(f)
    assert record["metrics"] == metrics and set(metrics) == KEYS
    assert metrics["video_psnr_gain"] == pytest.approx(
        metrics["video_psnr"] - metrics["video_mean_psnr"])
    assert 0 <= metrics["label_accuracy"] <= 1
    # The export is the full, label-masked autoencoder: it reproduces the reported PSNR.
    test = multimodal.moving_shapes(8, seed=2, **{k: recipe.CONFIGS["smoke"][k] for k in recipe._DATA})
    served = tf.saved_model.load(os.path.join(export, "1")).signatures["serving_default"]
    outputs = served(**{k: tf.constant(v) for k, v in test.items()})
    psnr = multimodal.psnr(test["image"], outputs["image"].numpy()).mean()
    assert psnr == pytest.approx(metrics["video_psnr"], abs=1e-3)
    assert os.path.getsize(os.path.join(export, "multimodal_autoencoding_v1.tflite")) > 1000


def test_killed_run_resumes_to_the_uninterrupted_weights(tmp_path, monkeypatch):
    # The label input is masked at random (probability 0.5): the resumed run
    # must also continue the masking's random state.
    flags = ["--smoke", "--epochs", "4", "--steps-per-epoch", "2", "--seed", "3",
             "--image-points", "32", "--audio-points", "2", "--run-eagerly"]
    check_killed_run_resumes(recipe.main, flags, tmp_path, monkeypatch)


def test_usage_errors(capsys):
    assert cli.main(["train", "multimodal_autoencoding", "--dataset", "kinetics"]) == 2
    assert "embedded synthetic clips" in capsys.readouterr().err
    assert cli.main(["train", "multimodal_autoencoding", "--label-mask", "2"]) == 2


def test_copy_weights_by_path_and_resumed_stream():
    config = recipe.CONFIGS["smoke"]
    source = recipe.build_model(config, {"label": 0.5}, {"image": 8, "audio": 2})
    target = recipe.copy_weights(source, recipe.build_model(config, {"label": 1.0}))
    for variable in target.weights:
        match = [v for v in source.weights if v.path == variable.path]
        np.testing.assert_array_equal(variable.numpy(), match[0].numpy())
    args = recipe.parse(["--smoke", "--seed", "4"])
    data = multimodal.moving_shapes(6, seed=0)

    def epochs(first):
        ds = recipe.train_stream(data, args, {"image": 8, "audio": 2}, 16, first,
                                 epochs=3, steps_per_epoch=2)
        return [x["image_points"].numpy().tolist() for x, _ in ds]

    whole = epochs(0)
    assert len(whole) == 6 and epochs(2) == whole[4:]
