"""`PerceiverImageClassifierPreprocessor`: raw images (+ labels) -> model inputs."""

import keras

from keras_perceiver.preprocessors.image_converter import PerceiverImageConverter
from keras_perceiver.preprocessors.preprocessor import PerceiverPreprocessor


@keras.saving.register_keras_serializable(package="keras_perceiver")
class PerceiverImageClassifierPreprocessor(PerceiverPreprocessor):
    """Raw uint8 images -> the normalised images of `PerceiverImageClassifier`.

    Labels and sample weights pass through unchanged.

    Args:
        image_converter: a `PerceiverImageConverter` (or its config dict).

    Call arguments:
        x: uint8 images `[B, h, w, C]` of any size (or one `[h, w, C]`).
        y, sample_weight: optional, returned unchanged.

    Example:
    >>> import numpy as np
    >>> model = keras_perceiver.models.PerceiverImageClassifier(
    ...     num_classes=3, image_shape=(8, 8, 3), num_bands=2, num_latents=4,
    ...     num_latent_channels=8, num_blocks=1, num_self_attends_per_block=1,
    ...     num_self_attention_heads=2)
    >>> model.preprocessor = model.default_preprocessor()
    >>> model.predict(np.zeros((2, 20, 30, 3), "uint8"), verbose=0).shape
    (2, 3)
    """

    def __init__(self, image_converter):
        if isinstance(image_converter, dict):
            image_converter = keras.saving.deserialize_keras_object(image_converter)
        if not isinstance(image_converter, PerceiverImageConverter):
            raise TypeError(
                f"{type(self).__name__}: expected a PerceiverImageConverter, received "
                f"{type(image_converter).__name__}."
            )
        self.image_converter = image_converter

    def transform(self, x):
        return self.image_converter.transform(x)

    def get_config(self):
        return {"image_converter": keras.saving.serialize_keras_object(self.image_converter)}
