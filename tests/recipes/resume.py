"""A recipe run killed after half its epochs and resumed ends with the uninterrupted run's weights."""

import json
import os

import h5py
import keras
import numpy as np
import pytest

from keras_perceiver.recipes import common


class Killed(Exception):
    pass


def h5_arrays(path):
    arrays = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: arrays.__setitem__(name, obj[()])
                     if isinstance(obj, h5py.Dataset) else None)
    return arrays


def check_killed_run_resumes(main, flags, tmp_path, monkeypatch, epochs=4):
    """Runs `main(flags)` whole, then killed at the end of epoch `epochs // 2`
    and resumed with `--resume`; asserts equal final weights (atol 1e-6) and
    that the resumed half moved the weights. `flags` must set `--epochs`."""
    whole = str(tmp_path / "whole")
    main(flags + ["--output", whole])

    original = common.Run.callbacks

    def with_kill(self, monitor, mode):
        class Kill(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if epoch == epochs // 2 - 1:
                    raise Killed()
        return original(self, monitor, mode) + [Kill()]

    halves = str(tmp_path / "halves")
    monkeypatch.setattr(common.Run, "callbacks", with_kill)
    with pytest.raises(Killed):
        main(flags + ["--output", halves])
    monkeypatch.setattr(common.Run, "callbacks", original)
    backup = os.path.join(halves, "checkpoints", "backup")
    with open(os.path.join(backup, "training_metadata.json")) as f:
        assert json.load(f)["epoch"] == epochs // 2
    assert not os.path.exists(os.path.join(halves, "checkpoints", "final.weights.h5"))
    at_kill = h5_arrays(os.path.join(backup, "latest.weights.h5"))
    main(flags + ["--output", halves, "--resume"])

    a = h5_arrays(os.path.join(whole, "checkpoints", "final.weights.h5"))
    b = h5_arrays(os.path.join(halves, "checkpoints", "final.weights.h5"))
    assert a.keys() == b.keys() == at_kill.keys() and len(a) > 20
    for name in a:
        np.testing.assert_allclose(b[name], a[name], atol=1e-6, rtol=0, err_msg=name)
    # The second half trained (the comparison is not of the state at the kill).
    assert max(float(np.abs(b[n] - at_kill[n]).max()) for n in a) > 1e-4
    with open(os.path.join(halves, "metrics.json")) as f:
        assert len(json.load(f)["history"]["loss"]) == epochs
