"""TensorFlow graph ops used inside serving signatures (TF-only module).

The preprocessing itself lives in `keras_perceiver.preprocessors` (one
implementation for `fit`/`predict`, tf.data and the exported files); these
functions are the export-side entry points and keep their names.
"""

import tensorflow as tf

from keras_perceiver.preprocessors.checks import check_input  # noqa: F401 - public here
from keras_perceiver.preprocessors.checks import check_values  # noqa: F401
from keras_perceiver.preprocessors.checks import describe  # noqa: F401
from keras_perceiver.preprocessors.image_converter import IMAGE_PREPROCESSING_DEFAULTS  # noqa: F401
from keras_perceiver.preprocessors.image_converter import IMAGENET_MEAN  # noqa: F401
from keras_perceiver.preprocessors.image_converter import IMAGENET_STD  # noqa: F401
from keras_perceiver.preprocessors.image_converter import PerceiverImageConverter
from keras_perceiver.preprocessors.image_converter import image_preprocessing_options
from keras_perceiver.preprocessors.optical_flow_frames_preprocessor import (
    PerceiverOpticalFlowFramesPreprocessor,
)


def image_converter(image_shape, options=None):
    """The `PerceiverImageConverter` for a model's `(H, W, C)` and options."""
    channels = int(image_shape[-1])
    options = image_preprocessing_options(options, channels)
    return PerceiverImageConverter(tuple(image_shape[:2]), num_channels=channels, **options)


def preprocess_images(images, image_shape, options=None, name="images"):
    """`uint8` `[B, h, w, C]` of any size -> normalised float32 `[B, H, W, C]`.

    Graph-safe; the same function runs inside the exported signature and can
    be called eagerly to reproduce exactly what the server computes
    (`PerceiverImageConverter.transform`).

    Args:
        images: `uint8` tensor `[batch, height, width, C]`, `C` the model's
            channels.
        image_shape: the model's `(H, W, C)`.
        options: see `image_preprocessing_options`.

    Example:
    >>> import numpy as np
    >>> from keras_perceiver.export.preprocessing import preprocess_images
    >>> x = np.zeros((1, 32, 48, 3), "uint8")
    >>> preprocess_images(x, (16, 16, 3), {"mode": "resize"}).shape
    TensorShape([1, 16, 16, 3])
    """
    converter = image_converter(image_shape, options)
    images = tf.convert_to_tensor(images)
    if images.dtype != tf.uint8:
        raise TypeError(f"input `{name}` must be uint8, got {images.dtype.name}.")
    images = check_input(
        images, name, (None, None, None, converter.num_channels),
        f" (uint8 [batch, height, width, {converter.num_channels}])",
    )
    return converter.transform(images, name=name)


def preprocess_frames(frames, image_shape, name="frames"):
    """`uint8` `[B, 2, H, W, 3]` -> float32 in `[-1, 1]` (`im / 255 * 2 - 1`)."""
    return PerceiverOpticalFlowFramesPreprocessor(tuple(image_shape[:2])).transform(
        frames, name=name)
