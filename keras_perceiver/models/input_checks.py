"""Eager input checks of the task models (dtype, range, NaN/Inf).

`CheckedInputs` is mixed into each task model before `PerceiverTask`. Each
model lists its inputs in `input_checks()`: `{name: spec}` with spec keys
`kind` (`"ids"`: integer values in `[0, high)`; `"float"`: a float dtype,
finite values, optionally within `range`; `"one_hot"`: rows that are one-hot
or all zeros).

Dtype checks are static and always run (also when `fit`/`predict` trace the
model, so a wrong dtype fails once, at trace time). Value checks read the
data, so they run only on concrete inputs outside training: a direct eager
call (`model(x)`), and `predict(x)` on NumPy arrays or eager tensors (checked
once, before batching). Inside `fit` and compiled graphs they cost nothing.
"""

import numpy as np

from keras_perceiver.layers import validation as v


def _values(x):
    return x if isinstance(x, np.ndarray) else np.asarray(v._to_numpy(x))


class CheckedInputs:
    """Mixin: `__call__` and `predict` check the inputs named by `input_checks`.

    Example:
    >>> import numpy as np
    >>> model = keras_perceiver.models.PerceiverImageClassifier(
    ...     num_classes=2, image_shape=(4, 4, 1), num_bands=2, num_latents=2, num_latent_channels=4,
    ...     num_blocks=1, num_self_attends_per_block=1, num_self_attention_heads=1)
    >>> model(np.zeros((1, 4, 4, 1), "uint8"))
    Traceback (most recent call last):
    ...
    TypeError: ...: expected `images` of a float dtype (float32) ...
    """

    def input_checks(self):
        return {}

    def _named_inputs(self, inputs):
        specs = self.input_checks()
        if isinstance(inputs, dict):
            return [(k, inputs[k], specs[k]) for k in specs if k in inputs]
        if len(specs) == 1:
            name, spec = next(iter(specs.items()))
            return [(name, inputs, spec)]
        return []

    def check_input_values(self, inputs, training=None):
        """Raises a clear error for a wrong dtype or bad values of `inputs`."""
        for name, x, spec in self._named_inputs(inputs):
            if x is None or not hasattr(x, "dtype") and not isinstance(x, (list, tuple)):
                continue
            if isinstance(x, (list, tuple)):
                x = np.asarray(x)
            kind = spec["kind"]
            if kind == "ids":
                v.check_integer_dtype(self, name, x)
            else:
                v.check_float_dtype(self, name, x, spec.get("hint", ""))
            if not v.should_check_values(x, training):
                continue
            values = _values(x)
            if kind == "ids":
                v.check_index_range(self, name, values, spec["high"])
                continue
            v.check_finite(self, name, values)
            if "range" in spec:
                v.check_value_range(self, name, values, *spec["range"])
            if kind == "one_hot":
                rows = values.reshape(-1, values.shape[-1]) if values.ndim else values
                ok = np.isin(rows, (0, 1)).all() and (rows.sum(-1) <= 1).all()
                if not ok:
                    raise ValueError(
                        f"{self.name}: expected `{name}` rows that are one-hot (a "
                        f"single 1, zeros elsewhere) or all zeros (no label), "
                        f"received values in [{rows.min()}, {rows.max()}] with row "
                        f"sums in [{rows.sum(-1).min()}, {rows.sum(-1).max()}]."
                    )

    def __call__(self, *args, **kwargs):
        inputs = args[0] if args else kwargs.get("inputs")
        if inputs is not None:
            self.check_input_values(inputs, kwargs.get("training"))
        return super().__call__(*args, **kwargs)

    def predict(self, x, *args, **kwargs):
        if getattr(self, "preprocessor", None) is not None:  # raw data: it checks
            return super().predict(x, *args, **kwargs)
        if isinstance(x, dict) or hasattr(x, "dtype") or isinstance(x, (list, tuple)):
            if not isinstance(x, (list, tuple)) or len(self.input_checks()) == 1:
                self.check_input_values(x)
        return super().predict(x, *args, **kwargs)
