"""`PerceiverPreprocessor`: the base class of the data preprocessors.

A data preprocessor turns raw data (uint8 images, strings, uint8 frames)
into what a task model takes, with TensorFlow ops: it can be called eagerly,
mapped over a `tf.data.Dataset` (batched or not) and traced into a serving
signature, so training, `predict` and the exported files share one
implementation. It holds no weights (trainable input adapters such as
`keras_perceiver.layers.ImagePreprocessor` live in the models).

Unlike keras-hub's `Preprocessor` it is a plain serialisable object, not a
Keras layer: it never becomes part of a model's weights, and its TF ops run
unchanged whatever the Keras backend.
"""

import json
import os

import keras

from keras_perceiver import files

PREPROCESSOR_FILE = "preprocessor.json"


class PerceiverPreprocessor:
    """Raw data -> model inputs; `__call__(x, y=None, sample_weight=None)`.

    Subclasses implement `transform(x)` (TF ops only) and `get_config()`
    (their constructor arguments). `__call__` returns `transform(x)` alone,
    or the tuple `(x, y)` / `(x, y, sample_weight)` when those are given,
    so `dataset.map(preprocessor)` works on `x` and on `(x, y)` datasets.

    Example:
    >>> import numpy as np
    >>> p = keras_perceiver.preprocessors.PerceiverImageClassifierPreprocessor(
    ...     keras_perceiver.preprocessors.PerceiverImageConverter(
    ...         image_size=(4, 4), mode="resize", mean=127.5, std=127.5))
    >>> x, y = p(np.full((2, 8, 8, 3), 255, "uint8"), np.array([0, 1]))
    >>> tuple(x.shape), float(x[0, 0, 0, 0])
    ((2, 4, 4, 3), 1.0)
    """

    def transform(self, x):
        raise NotImplementedError

    def __call__(self, x, y=None, sample_weight=None):
        return keras.utils.pack_x_y_sample_weight(self.transform(x), y, sample_weight)

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other):
        return type(self) is type(other) and _json(self) == _json(other)

    __hash__ = object.__hash__

    def save_to_preset(self, preset_dir):
        """Writes `preprocessor.json` into the existing directory `preset_dir`."""
        path = os.path.join(os.fspath(preset_dir), PREPROCESSOR_FILE)
        with open(path + ".tmp", "w") as f:
            f.write(_json(self))
        os.replace(path + ".tmp", path)
        return path


def _json(preprocessor):
    return json.dumps(keras.saving.serialize_keras_object(preprocessor), indent=2,
                      sort_keys=True, default=files.json_default)


def serialize(preprocessor):
    """The JSON-ready config of `preprocessor` (None stays None)."""
    if preprocessor is None:
        return None
    return json.loads(_json(preprocessor))


def deserialize(config):
    """A preprocessor from `serialize`'s output (an instance or None passes)."""
    if config is None or isinstance(config, PerceiverPreprocessor):
        return config
    import keras_perceiver.preprocessors  # noqa: F401 - registers the classes

    if not isinstance(config, dict):
        raise TypeError(
            f"expected a preprocessor config dict (from `serialize`), received "
            f"{type(config).__name__}."
        )
    preprocessor = keras.saving.deserialize_keras_object(config)
    if not isinstance(preprocessor, PerceiverPreprocessor):
        raise TypeError(f"{config.get('class_name')!r} is not a PerceiverPreprocessor.")
    return preprocessor


def load_preset_preprocessor(preset_dir):
    """The preprocessor saved in `preset_dir/preprocessor.json`, or None."""
    path = os.path.join(os.fspath(preset_dir), PREPROCESSOR_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not valid JSON ({error}).") from None
    return deserialize(config)
