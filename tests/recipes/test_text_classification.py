"""The text classification recipe end to end: embedded task, multitask mock tfds, MLM init, export."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

import keras_perceiver
from keras_perceiver import cli
from keras_perceiver.data import text
from keras_perceiver.recipes import common
from keras_perceiver.recipes import masked_lm
from keras_perceiver.recipes import text_classification
from tests.recipes.helpers import check_run_outputs
from tests.recipes.resume import check_killed_run_resumes


@pytest.fixture(scope="module")
def mlm_run(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("mlm") / "run")
    masked_lm.main(["--smoke", "--output", out, "--verbose", "0"])
    return out


def test_smoke_from_the_masked_lm_trains_evaluates_and_exports(tmp_path, mlm_run):
    out, export = str(tmp_path / "run"), str(tmp_path / "saved")
    metrics = text_classification.main(["--smoke", "--output", out, "--export", export,
                                        "--init-from-mlm", mlm_run, "--verbose", "0"])
    record = check_run_outputs(out, ("curves.png",))
    assert record["metrics"] == metrics
    assert set(metrics) == {"test_shift_accuracy", "test_order_accuracy", "test_accuracy",
                            "test_examples"}
    assert metrics["test_accuracy"] == pytest.approx(
        (metrics["test_shift_accuracy"] + metrics["test_order_accuracy"]) / 2)
    # The classifier started from the masked LM's encoder: with a learning rate of ~0 the
    # encoder weights are the masked LM's.
    mlm_config = json.load(open(os.path.join(mlm_run, "config.json")))["model_config"]
    mlm = keras_perceiver.models.PerceiverMaskedLM(**mlm_config)
    mlm.load_weights(os.path.join(mlm_run, "checkpoints/final.weights.h5"))
    start = str(tmp_path / "start")
    text_classification.main(["--smoke", "--output", start, "--init-from-mlm", mlm_run,
                              "--learning-rate", "1e-12", "--verbose", "0"])
    config = json.load(open(os.path.join(start, "config.json")))["model_config"]
    assert config["max_length"] == mlm_config["max_length"]
    loaded = text_classification.load_masked_lm(mlm_run)
    for a, b in zip(loaded.get_weights(), mlm.get_weights()):
        np.testing.assert_array_equal(a, b)
    tasks = dict(text.EMBEDDED_TASKS)
    decoder = {k: v for k, v in text_classification.CONFIGS["smoke"].items() if k.startswith("decoder_")}
    model = keras_perceiver.models.PerceiverTextClassifier.from_masked_lm(mlm, tasks, **decoder)
    model.load_weights(os.path.join(start, "checkpoints/final.weights.h5"))
    assert len(model.input_adapter.get_weights()) == 2  # byte and position embeddings
    for a, b in zip(model.input_adapter.get_weights() + model.encoder.get_weights(),
                    mlm.input_adapter.get_weights() + mlm.encoder.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)
    # The SavedModel classifies raw text as the final weights do.
    trained = keras_perceiver.models.PerceiverTextClassifier.from_masked_lm(mlm, tasks, **decoder)
    trained.load_weights(os.path.join(out, "checkpoints/final.weights.h5"))
    served = tf.saved_model.load(os.path.join(export, "1")).signatures["serving_default"]
    texts = ["The if statement", "Tif jg tubufnfou"]
    result = served(text=tf.constant(texts))
    ids = keras_perceiver.tokenizers.BytesTokenizer().encode(
        texts, add_special_tokens=True, max_length=32, pad=True)
    expected = trained.predict_on_batch(ids)
    for task in tasks:
        np.testing.assert_allclose(result[f"{task}_logits"].numpy(), expected[task], atol=1e-4)


def test_multitask_mock_glue_through_the_cli(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    out = str(tmp_path / "glue")
    with tfds.testing.mock_data(num_examples=16):
        status = cli.main(["train", "text_classification", "--dataset", "glue/sst2,glue/mnli",
                           "--smoke", "--output", out, "--verbose", "0"])
    assert status == 0
    record = check_run_outputs(out, ("curves.png",))
    assert set(record["metrics"]) == {"test_sst2_accuracy", "test_mnli_accuracy", "test_accuracy",
                                      "test_examples"}


def test_multitask_examples_weight_only_their_own_task():
    tfds = pytest.importorskip("tensorflow_datasets")
    args = text_classification.make_parser().parse_args(["--dataset", "imdb_reviews,glue/mnli"])
    with tfds.testing.mock_data(num_examples=6):
        train, count, _, tasks = text_classification.load_data(args, 24)
        examples = list(train)
    assert tasks == {"imdb_reviews": 2, "mnli": 3} and count == 12
    for ids, labels, weights in examples:
        assert ids.shape == (24,) and ids[0] == 4  # [CLS]
        owned = [t for t in tasks if weights[t] == 1.0]
        assert len(owned) == 1 and sum(float(weights[t]) for t in tasks) == 1.0
        other = [t for t in tasks if t not in owned][0]
        assert labels[other] == 0


def test_test_copies_add_labelled_variants_of_the_held_out_passages():
    def held_out(*flags):
        args = common.parse_args(text_classification.make_parser(), ["--smoke", *flags])
        _, _, test, tasks = text_classification.load_data(args, 32)
        return [(ids.numpy(), {t: int(labels[t]) for t in tasks}) for ids, labels, _ in test]

    one, three = held_out(), held_out("--test-copies", "3")
    assert len(three) == 3 * len(one) and len(one) > 100
    for (a, la), (b, lb) in zip(one, three):  # the first block is the one-copy held-out set
        np.testing.assert_array_equal(a, b)
        assert la == lb
    assert any(la != lb for (_, la), (_, lb) in zip(one, three[len(one):]))  # fresh draws
    with pytest.raises(SystemExit):
        text_classification.make_parser().parse_args(["--test-copies", "0"])


def test_bad_init_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="masked_lm run directory"):
        text_classification.load_masked_lm(str(tmp_path / "missing"))


def test_killed_run_resumes_to_the_uninterrupted_weights(tmp_path, monkeypatch):
    check_killed_run_resumes(text_classification.main, [
        "--smoke", "--epochs", "4", "--steps-per-epoch", "2", "--seed", "3", "--run-eagerly",
        "--max-eval-batches", "1", "--verbose", "0"], tmp_path, monkeypatch)
