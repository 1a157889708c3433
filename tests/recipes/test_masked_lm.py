"""The masked language model recipe end to end: embedded pydoc text, mock tfds, export, CLI."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

import keras_perceiver
from keras_perceiver import cli
from keras_perceiver.recipes import masked_lm
from tests.recipes.helpers import check_run_outputs
from tests.recipes.resume import check_killed_run_resumes


def test_smoke_on_embedded_text_trains_evaluates_and_exports(tmp_path):
    out, export = str(tmp_path / "run"), str(tmp_path / "saved")
    metrics = masked_lm.main(["--smoke", "--output", out, "--export", export, "--verbose", "0"])
    record = check_run_outputs(out, ("curves.png", "masked_text.png"))
    assert record["metrics"] == metrics
    assert 0 <= metrics["test_masked_accuracy"] <= 1 and 0 < metrics["baseline_accuracy"] < 0.3
    assert metrics["masked_bytes"] > 100
    assert metrics["accuracy_over_baseline"] == pytest.approx(
        metrics["test_masked_accuracy"] / metrics["baseline_accuracy"])
    assert len(record["history"]["loss"]) == 2
    with open(os.path.join(out, "config.json")) as f:
        config = json.load(f)
    assert config["flags"]["weight_decay"] == 0.01 and config["flags"]["schedule"] == "warmup_cosine"
    assert (config["flags"]["copy_loss_weight"], config["flags"]["copy_loss_epochs"]) == (1.0, 20)
    # The export holds the trained weights: the SavedModel fills masks as the final weights do.
    model = keras_perceiver.models.PerceiverMaskedLM(**config["model_config"])
    model.load_weights(os.path.join(out, "checkpoints/final.weights.h5"))
    served = tf.saved_model.load(os.path.join(export, "1")).signatures["serving_default"]
    texts = ["The [MASK][MASK][MASK] statement", "a [MASK]"]
    filled = [t.decode() for t in served(text=tf.constant(texts))["filled_text"].numpy()]
    assert filled == model.fill_mask(texts)
    assert os.path.getsize(os.path.join(export, "masked_lm_v1.tflite")) > 1000
    with pytest.raises(FileExistsError, match="--resume"):
        masked_lm.main(["--smoke", "--output", out])


def test_mock_tfds_text_through_the_cli(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    out = str(tmp_path / "imdb")
    with tfds.testing.mock_data(num_examples=16):
        status = cli.main(["train", "masked_lm", "--dataset", "imdb_reviews", "--smoke",
                           "--mask-strategy", "byte", "--output", out, "--verbose", "0"])
    assert status == 0
    record = check_run_outputs(out, ("curves.png", "masked_text.png"))
    assert record["metrics"]["masked_bytes"] > 0
    with open(os.path.join(out, "config.json")) as f:
        assert json.load(f)["flags"]["mask_strategy"] == "byte"


def test_training_batches_are_masked_and_fixed_by_the_seed():
    args = masked_lm.parse(["--smoke", "--batch-size", "4"])
    train, count, _ = masked_lm.load_text(args, 32)
    from keras_perceiver.data import text

    def first(seed):
        stream = text.mask_stream(text.epoch_stream(train, 4, 2, seed, 0, 1), seed)
        return [tuple(t.numpy() for t in batch) for batch in stream]

    a, b, c = first(0), first(0), first(1)
    assert count > 1000 and len(a) == 2
    for x, y in zip(a, b):
        for u, v in zip(x, y):
            np.testing.assert_array_equal(u, v)
    assert any((x[0] != y[0]).any() for x, y in zip(a, c))
    masked, labels, weights = a[0]
    assert masked.shape == labels.shape == weights.shape == (4, 32)
    assert weights.sum() > 0 and ((masked != labels) <= (weights > 0)).all()


def test_preset_selects_the_paper_settings():
    args = masked_lm.parse(["--preset", "language_perceiver"])
    assert (args.batch_size, args.learning_rate, args.warmup_steps, args.steps) == (
        2048, 1.25e-3, 1000, 500_000)
    assert args.copy_loss_weight == 0.0  # the paper: masked bytes only
    given = masked_lm.parse(["--preset", "language_perceiver", "--copy-loss-weight", "0.5"])
    assert given.copy_loss_weight == 0.5
    config = masked_lm.model_config(args, {})
    assert config["max_length"] == 2048 and config["num_latent_channels"] == 1280
    assert masked_lm.parse(["--preset", "language_perceiver", "--batch-size", "8"]).batch_size == 8
    with pytest.raises(ValueError, match="--preset"):
        masked_lm.model_config(masked_lm.parse(["--preset", "nope"]), {})


def test_usage_errors_exit_2(capsys):
    assert cli.main(["train", "masked_lm", "--mask-rate", "0"]) == 2
    assert "--mask-rate" in capsys.readouterr().err
    assert cli.main(["train", "masked_lm", "--mask-strategy", "span"]) == 2


@pytest.mark.parametrize("recipe", ["masked_lm", "text_classification"])
def test_text_recipes_run_on_the_jax_backend(tmp_path, recipe):
    """The held-out evaluation feeds the model NumPy, not TF tensors (JAX rejects those)."""
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = str(tmp_path / "run")
    result = subprocess.run(
        [sys.executable, "-m", "keras_perceiver.cli", "train", recipe, "--smoke", "--output", out],
        env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(os.path.join(out, "metrics.json")) as f:
        metrics = json.load(f)
    assert metrics and all(np.isfinite(v) for v in metrics.values() if isinstance(v, float))


def test_killed_run_resumes_to_the_uninterrupted_weights(tmp_path, monkeypatch):
    check_killed_run_resumes(masked_lm.main, [
        "--smoke", "--epochs", "4", "--steps-per-epoch", "2", "--seed", "3", "--run-eagerly",
        "--max-eval-batches", "1", "--verbose", "0"], tmp_path, monkeypatch)
