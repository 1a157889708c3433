"""Warm-up + cosine and flat-then-cosine schedules against their formulas."""

import math

import keras
import numpy as np
import pytest

from keras_perceiver.recipes import schedules


def _values(schedule, steps):
    return np.array([float(keras.ops.convert_to_numpy(schedule(s))) for s in steps])


def test_warmup_cosine_matches_optax_formula():
    peak, init, end, warmup, total = 2e-3, 1e-4, 1e-5, 10, 50
    schedule = schedules.WarmupCosine(peak, total, warmup_steps=warmup, initial_value=init,
                                      end_value=end)
    steps = np.arange(0, 60)
    want = np.where(
        steps < warmup, init + (peak - init) * steps / warmup,
        end + (peak - end) * 0.5 * (1 + np.cos(math.pi * np.clip(
            (steps - warmup) / (total - warmup), 0, 1))))
    np.testing.assert_allclose(_values(schedule, steps), want, rtol=1e-5, atol=1e-9)


def test_flat_cosine_is_the_papers_imagenet_schedule():
    schedule = schedules.FlatCosine(5e-4, total_steps=100)  # flat 50%, then cosine to 0
    values = _values(schedule, range(0, 101))
    np.testing.assert_allclose(values[:50], 5e-4, rtol=1e-6)
    want = 5e-4 * 0.5 * (1 + np.cos(math.pi * np.arange(51) / 50))
    np.testing.assert_allclose(values[50:], want, rtol=1e-5, atol=1e-10)
    assert values[-1] == pytest.approx(0.0, abs=1e-10)
    assert np.all(np.diff(values) <= 1e-12)


@pytest.mark.parametrize("schedule", [
    schedules.WarmupCosine(1e-3, 100, warmup_steps=5, end_value=1e-5),
    schedules.FlatCosine(1e-3, 100, flat_fraction=0.3, end_value=1e-6),
])
def test_serialisation_round_trip(schedule):
    config = keras.optimizers.schedules.serialize(schedule)
    clone = keras.optimizers.schedules.deserialize(config)
    assert type(clone) is type(schedule) and clone.get_config() == schedule.get_config()
    np.testing.assert_allclose(_values(clone, range(0, 120, 7)),
                               _values(schedule, range(0, 120, 7)))
    # Inside an optimizer's config too (what a .keras file stores).
    opt = keras.optimizers.Adam(schedule)
    restored = keras.optimizers.Adam.from_config(opt.get_config())
    assert restored.get_config()["learning_rate"] == opt.get_config()["learning_rate"]


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="total_steps"):
        schedules.FlatCosine(1e-3, 0)
    with pytest.raises(ValueError, match="flat_fraction"):
        schedules.FlatCosine(1e-3, 10, flat_fraction=1.5)
    with pytest.raises(ValueError, match="warmup_steps"):
        schedules.WarmupCosine(1e-3, 10, warmup_steps=11)
