"""`PerceiverOpticalFlowFramesPreprocessor`: uint8 frame pairs -> [-1, 1]."""

import keras
import tensorflow as tf

from keras_perceiver.preprocessors.checks import check_input
from keras_perceiver.preprocessors.preprocessor import PerceiverPreprocessor


@keras.saving.register_keras_serializable(package="keras_perceiver")
class PerceiverOpticalFlowFramesPreprocessor(PerceiverPreprocessor):
    """uint8 frame pairs `[B, 2, H, W, 3]` -> float32 `im / 255 * 2 - 1`.

    The data side of `PerceiverOpticalFlow` (the paper's scaling to
    [-1, 1]). Not to be confused with `keras_perceiver.layers.
    OpticalFlowPreprocessor`, the model's trainable input adapter (patches
    and Fourier features).

    Args:
        image_size: the model's `(height, width)`.

    Call arguments:
        x: uint8 frames `[B, 2, H, W, 3]` or one pair `[2, H, W, 3]`.

    Example:
    >>> import numpy as np
    >>> p = keras_perceiver.preprocessors.PerceiverOpticalFlowFramesPreprocessor((4, 6))
    >>> float(p(np.full((1, 2, 4, 6, 3), 255, "uint8"))[0, 0, 0, 0, 0])
    1.0
    """

    def __init__(self, image_size):
        size = tuple(int(d) for d in image_size)
        if len(size) != 2 or min(size) < 1:
            raise ValueError(
                f"{type(self).__name__}: image_size must be (height, width), received "
                f"{image_size!r}."
            )
        self.image_size = size

    def get_config(self):
        return {"image_size": self.image_size}

    def transform(self, x, name="frames"):
        height, width = self.image_size
        frames = tf.convert_to_tensor(x)
        single = frames.shape.rank == 4
        if single:
            frames = frames[None]
        frames = check_input(
            frames, name, (None, 2, height, width, 3),
            " (uint8 [batch, 2 frames, height, width, 3])",
        )
        if frames.dtype != tf.uint8:
            raise TypeError(f"input `{name}` must be uint8 frames, got {frames.dtype.name}.")
        out = tf.cast(frames, tf.float32) / 255.0 * 2.0 - 1.0
        return out[0] if single else out
