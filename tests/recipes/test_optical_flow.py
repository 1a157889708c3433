"""The optical-flow recipe end to end: synthetic pairs, a .flo directory, resumable data."""

import os

import numpy as np
import pytest
import tensorflow as tf

from keras_perceiver import cli
from keras_perceiver.data import flow as flow_data
from keras_perceiver.recipes import optical_flow
from tests.recipes.helpers import check_run_outputs
from tests.recipes.resume import check_killed_run_resumes


def test_smoke_on_synthetic_pairs_trains_evaluates_and_exports(tmp_path):
    out, export = str(tmp_path / "run"), str(tmp_path / "saved")
    metrics = optical_flow.main(["--smoke", "--output", out, "--export", export])
    record = check_run_outputs(out, ("curves.png", "flow.png"))
    assert record["metrics"] == metrics
    assert set(metrics) == {"test_epe", "zero_flow_epe", "epe_ratio"}
    assert len(record["history"]["loss"]) == 2
    assert metrics["epe_ratio"] == pytest.approx(metrics["test_epe"] / metrics["zero_flow_epe"])
    # The exported SavedModel takes uint8 frame pairs and scores what the recipe reported.
    frames, flow = optical_flow.load_data(optical_flow.parse(["--smoke"]), (12, 16))["test"]
    assert metrics["zero_flow_epe"] == pytest.approx(np.sqrt((flow**2).sum(-1)).mean(), rel=1e-6)
    served = tf.saved_model.load(os.path.join(export, "1")).signatures["serving_default"]
    predicted = served(frames=tf.constant(frames))["flow"].numpy()
    epe = np.sqrt(((predicted - flow) ** 2).sum(-1)).mean()
    assert epe == pytest.approx(metrics["test_epe"], abs=1e-4)
    assert os.path.getsize(os.path.join(export, "optical_flow_v1.tflite")) > 1000


def test_killed_run_resumes_to_the_uninterrupted_weights(tmp_path, monkeypatch):
    flags = ["--smoke", "--epochs", "4", "--steps-per-epoch", "2", "--seed", "3",
             "--run-eagerly"]
    check_killed_run_resumes(optical_flow.main, flags, tmp_path, monkeypatch)


def test_flo_directory_through_the_cli(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    data_dir = tmp_path / "pairs"
    data_dir.mkdir()
    for i in range(12):
        for index in (1, 2):
            image = rng.integers(0, 255, (14, 18, 3), dtype=np.uint8)
            Image.fromarray(image).save(str(data_dir / f"{i:05d}_img{index}.png"))
        flow_data.write_flo(str(data_dir / f"{i:05d}_flow.flo"),
                            np.full((14, 18, 2), [i, -1.0], np.float32))
    out = str(tmp_path / "run")
    status = cli.main(["train", "optical_flow", "--smoke", "--dataset", str(data_dir),
                       "--output", out])
    assert status == 0
    record = check_run_outputs(out, ("curves.png", "flow.png"))
    # The held-out pairs: 10% of 12 (one pair), chosen by a fixed permutation.
    held = np.random.default_rng(0).permutation(12)[0]
    assert record["metrics"]["zero_flow_epe"] == pytest.approx(np.hypot(held, 1.0), rel=1e-6)


def test_dataset_must_be_a_directory(capsys):
    assert cli.main(["train", "optical_flow", "--dataset", "mnist"]) == 2
    assert "no optical-flow set" in capsys.readouterr().err


def test_a_resumed_stream_repeats_the_uninterrupted_epochs():
    frames, flow = flow_data.synthetic_flow_pairs(10, (8, 12), photos=[np.zeros((80, 80, 3))])
    flow = np.arange(10, dtype=np.float32)[:, None, None, None] + 0 * flow  # names each pair

    def epochs(first):
        ds = optical_flow.train_stream(frames, flow, 4, 5, first, epochs=3, steps_per_epoch=3)
        return [y.numpy()[:, 0, 0, 0].tolist() for _, y in ds]

    whole, resumed = epochs(0), epochs(1)
    assert len(whole) == 9 and resumed == whole[3:]
    # 3 steps of 4 > 10 pairs: an epoch continues with a second permutation.
    assert sorted(whole[0] + whole[1] + whole[2][:2]) == list(range(10))
    assert whole[:3] != whole[3:6]  # each epoch its own order


def test_optimizer_choice(tmp_path):
    from keras_perceiver.recipes import common

    args = optical_flow.parse(["--output", str(tmp_path / "a")])
    adamw = optical_flow.make_optimizer(common.Run("optical_flow", args), 1000)
    assert type(adamw).__name__ == "AdamW" and adamw.global_clipnorm == 10.0
    assert float(adamw.learning_rate) == 0.0  # warm-up starts at 0
    args = optical_flow.parse(["--optimizer", "lamb", "--learning-rate", "4e-4",
                               "--output", str(tmp_path / "b")])
    lamb = optical_flow.make_optimizer(common.Run("optical_flow", args), 1000)
    assert type(lamb).__name__ == "Lamb"


@pytest.mark.parametrize("optimizer", ["adamw", "lamb"])
def test_default_warmup_is_capped_for_short_runs_but_a_given_one_is_not(tmp_path, capsys, optimizer):
    from keras_perceiver.recipes import common

    def run_with(*flags):
        output = str(tmp_path / str(len(os.listdir(tmp_path))))
        args = optical_flow.parse(["--optimizer", optimizer, "--output", output, *flags])
        return common.Run("optical_flow", args)

    assert optical_flow.DEFAULTS["warmup_steps"] == 200
    assert run_with().warmup_steps(1000) == 200  # the default, within 25% of the run
    assert "capped" not in capsys.readouterr().out
    assert run_with().warmup_steps(120) == 30  # `--epochs 1`: capped to 25% of 120 steps
    assert "default 200 warm-up steps capped to 30" in capsys.readouterr().out
    assert run_with("--warmup-steps", "100").warmup_steps(120) == 100
    optical_flow.make_optimizer(run_with(), 120)  # builds: the capped warm-up fits
    with pytest.raises(ValueError, match=r"warmup_steps must be an integer in \[0, total_steps=120\]"):
        optical_flow.make_optimizer(run_with("--warmup-steps", "200"), 120)  # given: kept
    capsys.readouterr()
    for schedule in ("flat_cosine", "constant"):  # no warm-up: nothing to cap, nothing printed
        opt = optical_flow.make_optimizer(run_with("--schedule", schedule), 120)
        assert "capped" not in capsys.readouterr().out
        rate = opt.learning_rate if schedule == "constant" else opt._learning_rate(0)
        assert float(rate) == pytest.approx(optical_flow.DEFAULTS["learning_rate"])
