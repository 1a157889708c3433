"""`PerceiverMultimodalPreprocessor`: raw video, audio and labels -> model inputs."""

import keras
import tensorflow as tf

from keras_perceiver.preprocessors.preprocessor import PerceiverPreprocessor


@keras.saving.register_keras_serializable(package="keras_perceiver")
class PerceiverMultimodalPreprocessor(PerceiverPreprocessor):
    """`{"image", "audio", "label"}` raw -> `PerceiverMultimodalAutoencoder` inputs.

    `image`: uint8 video `[B, T, H, W, 3]` -> float32 `/ 255` in [0, 1];
    `audio`: int16 samples `[B, N, 1]` (or `[B, N]`, N > 1) -> float32 `/ 32768` in
    [-1, 1) (float audio passes unchanged); `label`: int class ids `[B]` ->
    one-hot float32 `[B, num_classes]` (a negative id: all zeros, no label).
    Other keys (e.g. `*_points`) pass unchanged.

    Args:
        num_classes: the model's label classes (Kinetics-700: 700).

    Example:
    >>> import numpy as np
    >>> p = keras_perceiver.preprocessors.PerceiverMultimodalPreprocessor(num_classes=3)
    >>> out = p({"image": np.full((1, 1, 2, 2, 3), 255, "uint8"),
    ...          "audio": np.full((1, 4), -32768, "int16"), "label": np.array([2])})
    >>> float(out["image"][0, 0, 0, 0, 0]), tuple(out["audio"].shape), out["label"].numpy().tolist()
    (1.0, (1, 4, 1), [[0.0, 0.0, 1.0]])
    """

    def __init__(self, num_classes=700):
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(
                f"{type(self).__name__}: num_classes must be a positive int, received "
                f"{num_classes!r}."
            )
        self.num_classes = num_classes

    def get_config(self):
        return {"num_classes": self.num_classes}

    def transform(self, x):
        if not isinstance(x, dict):
            raise TypeError(
                f"{type(self).__name__}: expected a dict with keys image, audio, label, "
                f"received {type(x).__name__}."
            )
        out = dict(x)
        if "image" in x:
            image = tf.convert_to_tensor(x["image"])
            if image.dtype != tf.uint8:
                raise TypeError(f"input `image` must be uint8 video, got {image.dtype.name}.")
            out["image"] = tf.cast(image, tf.float32) / 255.0
        if "audio" in x:
            audio = tf.convert_to_tensor(x["audio"])
            if audio.dtype == tf.int16:
                audio = tf.cast(audio, tf.float32) / 32768.0
            elif not audio.dtype.is_floating:
                raise TypeError(f"input `audio` must be int16 or float, got {audio.dtype.name}.")
            if audio.shape[-1] != 1:  # [B, N] (or one clip [N]) -> add the channel axis
                audio = audio[..., None]
            out["audio"] = tf.cast(audio, tf.float32)
        if "label" in x:
            label = tf.convert_to_tensor(x["label"])
            if not label.dtype.is_integer:
                raise TypeError(f"input `label` must be integer class ids, got {label.dtype.name}.")
            out["label"] = tf.one_hot(tf.cast(label, tf.int32), self.num_classes)
        return out
