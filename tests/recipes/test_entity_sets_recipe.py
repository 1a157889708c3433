"""The entity-sets recipe end to end (--smoke --compare): outputs, metrics, costs."""

import json
import os

import keras
import pytest

from keras_perceiver.recipes import entity_sets


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="recipes: TF suite")
def test_smoke_compare_trains_both_models_and_writes_the_comparison(tmp_path):
    out = str(tmp_path / "run")
    metrics = entity_sets.main(["--smoke", "--compare", "--output", out, "--verbose", "0"])
    keys = ["test_accuracy", "transformer_test_accuracy"] + [
        f"{model}test_accuracy_n{n}" for model in ("", "transformer_") for n in (64, 256, 512, 2048)]
    for key in keys:  # held-out per-entity accuracy, overall and on sets of exactly N
        assert 0.0 <= metrics[key] <= 1.0, key
    with open(os.path.join(out, "metrics.json")) as f:
        assert json.load(f)["metrics"] == metrics
    for path in ("checkpoints/best.weights.h5", "transformer/checkpoints/final.weights.h5",
                 "logs/history.csv"):
        assert os.path.getsize(os.path.join(out, path)) > 0, path
    with open(os.path.join(out, "comparison.json")) as f:
        rows = json.load(f)
    assert [r["n"] for r in rows] == [16, 32]
    config = entity_sets.CONFIGS["smoke"]
    for row in rows:
        assert row["perceiver_flops"] == entity_sets.perceiver_flops(config, row["n"])
        assert row["transformer_flops"] == entity_sets.transformer_flops(config, row["n"])
        assert row["perceiver_s"] > 0 and row["transformer_s"] > 0
    assert metrics["flops_ratio_n32"] == rows[1]["flops_ratio"]
    with pytest.raises(FileExistsError, match="--resume"):
        entity_sets.main(["--smoke", "--output", out])
