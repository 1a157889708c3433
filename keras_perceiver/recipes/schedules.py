"""The paper's learning-rate schedules as Keras `LearningRateSchedule`s.

- `WarmupCosine`: linear warm-up from `initial_value` to `peak_value` over
  `warmup_steps`, then cosine decay to `end_value` at `total_steps` (optax's
  `warmup_cosine_decay_schedule`; the paper's MLM and flow training).
- `FlatCosine`: `peak_value` for the first `flat_fraction` of
  `total_steps`, then cosine decay to `end_value` (the paper's ImageNet
  schedule, DeepMind's `constant_cosine`: flat for 50%, then cosine to 0).

Both are serialisable (`get_config`/`from_config`), run on every backend
(`keras.ops`), and hold `end_value` after `total_steps`.
"""

import math

import keras
from keras import ops


def _check(name, total_steps, **values):
    if not isinstance(total_steps, int) or total_steps < 1:
        raise ValueError(f"{name}: total_steps must be a positive integer, received {total_steps!r}.")
    for key, value in values.items():
        if not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"{name}: {key} must be a number >= 0, received {value!r}.")


def _cosine(progress, peak, end):
    progress = ops.clip(progress, 0.0, 1.0)
    return end + (peak - end) * 0.5 * (1.0 + ops.cos(math.pi * progress))


@keras.saving.register_keras_serializable(package="keras_perceiver")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to `peak_value`, then cosine decay to `end_value`.

    Step `s < warmup_steps`: `initial + (peak - initial) * s / warmup_steps`;
    then `end + (peak - end) * (1 + cos(pi * p)) / 2` with
    `p = (s - warmup_steps) / (total_steps - warmup_steps)`.

    Example:
    >>> schedule = keras_perceiver.recipes.schedules.WarmupCosine(
    ...     1.0, total_steps=10, warmup_steps=2)
    >>> [round(float(schedule(s)), 3) for s in (0, 1, 2, 6, 10, 20)]
    [0.0, 0.5, 1.0, 0.5, 0.0, 0.0]
    """

    def __init__(self, peak_value, total_steps, warmup_steps=0, initial_value=0.0,
                 end_value=0.0, name="warmup_cosine"):
        _check("WarmupCosine", total_steps, peak_value=peak_value,
               initial_value=initial_value, end_value=end_value)
        if not isinstance(warmup_steps, int) or not 0 <= warmup_steps <= total_steps:
            raise ValueError(
                f"WarmupCosine: warmup_steps must be an integer in [0, total_steps={total_steps}], "
                f"received {warmup_steps!r}."
            )
        self.peak_value = peak_value
        self.total_steps = total_steps
        self.warmup_steps = warmup_steps
        self.initial_value = initial_value
        self.end_value = end_value
        self.name = name

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warmup = max(self.warmup_steps, 1)
        rising = self.initial_value + (self.peak_value - self.initial_value) * step / warmup
        decay = max(self.total_steps - self.warmup_steps, 1)
        falling = _cosine((step - self.warmup_steps) / decay, self.peak_value, self.end_value)
        return ops.where(step < self.warmup_steps, rising, falling)

    def get_config(self):
        return dict(peak_value=self.peak_value, total_steps=self.total_steps,
                    warmup_steps=self.warmup_steps, initial_value=self.initial_value,
                    end_value=self.end_value, name=self.name)


@keras.saving.register_keras_serializable(package="keras_perceiver")
class FlatCosine(keras.optimizers.schedules.LearningRateSchedule):
    """`peak_value` for `flat_fraction` of the steps, then cosine to `end_value`.

    With `F = int(flat_fraction * total_steps)`: step `s < F` gives
    `peak_value`; then `end + (peak - end) * (1 + cos(pi * (s - F) /
    (total_steps - F))) / 2` (optax's `join_schedules` of a constant and a
    `cosine_decay_schedule`, as DeepMind's ImageNet training).

    Example:
    >>> schedule = keras_perceiver.recipes.schedules.FlatCosine(2.0, total_steps=8)
    >>> [round(float(schedule(s)), 3) for s in (0, 3, 4, 6, 8)]
    [2.0, 2.0, 2.0, 1.0, 0.0]
    """

    def __init__(self, peak_value, total_steps, flat_fraction=0.5, end_value=0.0,
                 name="flat_cosine"):
        _check("FlatCosine", total_steps, peak_value=peak_value, end_value=end_value)
        if not isinstance(flat_fraction, (int, float)) or not 0 <= flat_fraction <= 1:
            raise ValueError(
                f"FlatCosine: flat_fraction must be in [0, 1], received {flat_fraction!r}."
            )
        self.peak_value = peak_value
        self.total_steps = total_steps
        self.flat_fraction = flat_fraction
        self.end_value = end_value
        self.name = name

    @property
    def flat_steps(self):
        return int(self.flat_fraction * self.total_steps)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        decay = max(self.total_steps - self.flat_steps, 1)
        falling = _cosine((step - self.flat_steps) / decay, self.peak_value, self.end_value)
        return ops.where(step < self.flat_steps, ops.cast(self.peak_value, "float32"), falling)

    def get_config(self):
        return dict(peak_value=self.peak_value, total_steps=self.total_steps,
                    flat_fraction=self.flat_fraction, end_value=self.end_value, name=self.name)
