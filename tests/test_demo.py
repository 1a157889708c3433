"""`applications/digits_demo.py` (`make demo`): augmentation, seeded deterministic training."""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "applications", "digits_demo.py")

# Trains on 192 digits for 2 epochs with each seed in argv, prints a digest of the weights per seed.
TRAIN = r"""
import hashlib, importlib.util, json, sys
spec = importlib.util.spec_from_file_location("digits_demo", sys.argv[1])
demo = importlib.util.module_from_spec(spec)
spec.loader.exec_module(demo)
x, _, y, _ = demo.load_data()
digests = []
for seed in sys.argv[2:]:
    model = demo.train(int(seed), (x[:192], y[:192]), epochs=2)
    weights = b"".join(w.tobytes() for w in model.get_weights())
    digests.append(hashlib.sha256(weights).hexdigest())
print(json.dumps(digests))
"""


@pytest.fixture(scope="module")
def demo():
    spec = importlib.util.spec_from_file_location("digits_demo", DEMO)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _shifted(images, dy, dx):
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)))
    return padded[:, 1 - dy : 9 - dy, 1 - dx : 9 - dx]


def test_augment_shifts_by_whole_pixels(demo, monkeypatch):
    """Without the affine part, each image is moved by a whole pixel exactly (zeros move in)."""
    monkeypatch.setattr(demo, "AUGMENT_PROB", 1.0)
    monkeypatch.setattr(demo, "AFFINE_PROB", 0.0)
    x = demo.load_data()[0][:64].astype("float32")
    out = demo.augment(x, np.random.default_rng(0))
    assert out.shape == x.shape and out.dtype == np.float32
    shifts = set()
    for image, augmented in zip(x, out):
        matches = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                   if np.array_equal(_shifted(image[None], dy, dx)[0], augmented)]
        assert matches, "an augmented image is not a whole-pixel shift of its original"
        shifts.add(matches[0])
    assert len(shifts) > 4  # the shifts vary across images
    monkeypatch.setattr(demo, "MAX_SHIFT", 0)
    np.testing.assert_array_equal(demo.augment(x, np.random.default_rng(0)), x)


def test_augment_leaves_a_fraction_unchanged(demo, monkeypatch):
    monkeypatch.setattr(demo, "AUGMENT_PROB", 0.5)
    x = demo.load_data()[0][:400].astype("float32")
    out = demo.augment(x, np.random.default_rng(1))
    unchanged = np.mean([np.array_equal(a, b) for a, b in zip(x, out)])
    assert 0.4 <= unchanged <= 0.65  # expected 53%: half kept, plus some shifts by (0, 0)


def test_augment_affine_stays_in_range_and_is_seeded(demo, monkeypatch):
    monkeypatch.setattr(demo, "AUGMENT_PROB", 1.0)
    monkeypatch.setattr(demo, "AFFINE_PROB", 1.0)
    x = demo.load_data()[0][:64]
    out = demo.augment(x, np.random.default_rng(3))
    assert out.min() >= 0.0 and out.max() <= 240.0 + 1e-3
    assert not np.array_equal(out, x.astype("float32"))
    np.testing.assert_array_equal(out, demo.augment(x, np.random.default_rng(3)))


def test_training_stream_is_seeded(demo):
    x, _, y, _ = demo.load_data()
    a, la = demo.training_stream(x[:100], y[:100], 2, seed=5)
    b, lb = demo.training_stream(x[:100], y[:100], 2, seed=5)
    c, _ = demo.training_stream(x[:100], y[:100], 2, seed=6)
    assert a.shape == (200, 8, 8, 1)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)
    assert not np.array_equal(a, c)
    assert sorted(la[:100]) == sorted(y[:100])  # each epoch is a permutation of the data


@pytest.mark.large
def test_training_is_deterministic_across_processes():
    """Two processes training with seed 1 get bit-identical weights; seed 2 differs."""
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "PYTHONPATH": ROOT}
    processes = [
        subprocess.Popen([sys.executable, "-c", TRAIN, DEMO, *seeds], env=env, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for seeds in (["1", "2"], ["1"])
    ]
    runs = []
    for process in processes:
        stdout, stderr = process.communicate()
        assert process.returncode == 0, stderr[-3000:]
        runs.append(json.loads(stdout.strip().splitlines()[-1]))
    assert runs[0][0] == runs[1][0]
    assert runs[0][0] != runs[0][1]  # the seed matters


def test_weight_averaging_is_the_mean_of_the_last_epochs(demo):
    """The model ends with the mean of its weights at the end of the last 2 of 4 epochs."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    seen = []
    record = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: seen.append([v.numpy().copy() for v in model.weights]))
    x = np.random.default_rng(0).normal(size=(32, 3)).astype("float32")
    model.fit(x, x[:, :2] * 3.0, batch_size=8, epochs=4, shuffle=False, verbose=0,
              callbacks=[record, demo.WeightAveraging(2, 4)])
    assert len(seen) == 4 and not np.allclose(seen[2][0], seen[3][0])
    for i, variable in enumerate(model.weights):
        np.testing.assert_allclose(variable.numpy(), (seen[2][i] + seen[3][i]) / 2, atol=1e-7)
