"""`PerceiverImageConverter`: raw images -> the image models' normalised floats.

The one implementation of the image preprocessing: `PerceiverImageClassifier
Preprocessor`, `task.predict` on raw images, the exported SavedModel and
LiteRT signatures (`keras_perceiver.export`) all run `transform` below.
"""

import math

import keras
import numpy as np
import tensorflow as tf

from keras_perceiver.preprocessors.checks import check_input
from keras_perceiver.preprocessors.preprocessor import PerceiverPreprocessor

IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)

IMAGE_PREPROCESSING_DEFAULTS = {
    "mode": "center_crop",  # or "resize"
    "crop_fraction": 224 / 256,
    "mean": IMAGENET_MEAN,
    "std": IMAGENET_STD,
    "method": "bicubic",
}

_RESIZE_METHODS = ("bilinear", "nearest", "bicubic", "area", "lanczos3", "lanczos5",
                   "gaussian", "mitchellcubic")


def _per_channel(options, key, channels, positive):
    value = options[key]
    try:
        array = np.asarray(value, dtype="float64")
    except (TypeError, ValueError):
        raise ValueError(
            f"image_preprocessing: {key} must be a number or one number per channel, "
            f"got {value!r}."
        ) from None
    if array.ndim > 1 or not np.all(np.isfinite(array)) or (positive and np.any(array <= 0)):
        allowed = "positive finite" if positive else "finite"
        raise ValueError(
            f"image_preprocessing: {key} must be {allowed} (a number or one per "
            f"channel), got {value!r}."
        )
    if channels is not None and array.ndim == 1 and array.shape[0] not in (1, channels):
        default = "; the default is ImageNet's RGB statistics" if key in (
            "mean", "std") and tuple(np.atleast_1d(value)) == IMAGE_PREPROCESSING_DEFAULTS[
                key] else ""
        raise ValueError(
            f"image_preprocessing: {key} has {array.shape[0]} values but the model "
            f"takes {channels}-channel images{default}; pass image_preprocessing="
            f'{{"mean": ..., "std": ...}} with 1 or {channels} values.'
        )


def image_preprocessing_options(options=None, channels=None):
    """Merges user options into `IMAGE_PREPROCESSING_DEFAULTS`, validated.

    Keys: `mode` (`"center_crop"`: crop the central square of side
    `floor(crop_fraction * min(h, w))`, offsets rounded down, then resize to
    the model's size, as `transformers`' Perceiver image processor; `"resize"`: resize the whole image),
    `crop_fraction`, `mean` and `std` (per channel, in 0..255 units; the
    model sees `(pixel - mean) / std`), `method` (a `tf.image.resize` method).
    """
    merged = dict(IMAGE_PREPROCESSING_DEFAULTS)
    if options is not None and not isinstance(options, dict):
        raise TypeError(
            f"image_preprocessing must be a dict of options, got {type(options).__name__}."
        )
    unknown = set(options or {}) - set(merged)
    if unknown:
        raise ValueError(
            f"image_preprocessing: unknown option(s) {sorted(unknown)}; "
            f"expected some of {sorted(merged)}."
        )
    merged.update(options or {})
    if merged["mode"] not in ("center_crop", "resize"):
        raise ValueError(
            "image_preprocessing: mode must be 'center_crop' or 'resize', "
            f"got {merged['mode']!r}."
        )
    fraction = merged["crop_fraction"]
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not (
            0.0 < float(fraction) <= 1.0):
        raise ValueError(
            f"image_preprocessing: crop_fraction must be a number in (0, 1], got {fraction!r}."
        )
    if merged["method"] not in _RESIZE_METHODS:
        raise ValueError(
            f"image_preprocessing: method must be one of {_RESIZE_METHODS}, "
            f"got {merged['method']!r}."
        )
    _per_channel(merged, "mean", channels, positive=False)
    _per_channel(merged, "std", channels, positive=True)
    return merged


def _resize(images, size, method):
    size = tf.constant(size, tf.int32)
    same = tf.reduce_all(tf.equal(tf.shape(images)[1:3], size))

    def resized():
        out = tf.image.resize(images, size, method=method, antialias=True)
        return tf.clip_by_value(out, 0.0, 255.0)

    out = tf.cond(same, lambda: images, resized)
    return out


def _number_or_tuple(value):
    array = np.asarray(value, dtype="float64")
    return float(array) if array.ndim == 0 else tuple(float(v) for v in array)


@keras.saving.register_keras_serializable(package="keras_perceiver")
class PerceiverImageConverter(PerceiverPreprocessor):
    """uint8 images of any size -> normalised float32 at the model's size.

    `mode="center_crop"` (default) crops the central square of side
    `floor(crop_fraction * min(h, w))` (offsets rounded down), as
    `transformers`' Perceiver image processor, then resizes it to
    `image_size`; `"resize"` resizes the whole image. The model then sees
    `(pixel - mean) / std` (per channel, in 0..255 units).

    Args:
        image_size: the model's `(height, width)`.
        mode: `"center_crop"` or `"resize"`.
        crop_fraction: the central crop's side over the shorter side.
        mean, std: one number, or one per channel (default ImageNet RGB).
        method: a `tf.image.resize` method (default `"bicubic"`,
            antialiased; the result is clipped to [0, 255] before
            normalising, as PIL's uint8 output).
        num_channels: the channels the model takes (None: any; checked
            against `mean`/`std` and the images).

    Call arguments:
        x: uint8 (or float in 0..255) images `[B, h, w, C]`, or one image
            `[h, w, C]`; NumPy or tensors.

    Returns float32 `[B, H, W, C]` (or `[H, W, C]`).

    Example:
    >>> import numpy as np
    >>> converter = keras_perceiver.preprocessors.PerceiverImageConverter(
    ...     image_size=(16, 16))
    >>> converter(np.zeros((1, 32, 48, 3), "uint8")).shape
    TensorShape([1, 16, 16, 3])
    """

    def __init__(self, image_size, mode=IMAGE_PREPROCESSING_DEFAULTS["mode"],
                 crop_fraction=IMAGE_PREPROCESSING_DEFAULTS["crop_fraction"],
                 mean=IMAGE_PREPROCESSING_DEFAULTS["mean"], std=IMAGE_PREPROCESSING_DEFAULTS["std"],
                 method=IMAGE_PREPROCESSING_DEFAULTS["method"], num_channels=None):
        size = tuple(int(d) for d in np.atleast_1d(image_size))
        if len(size) != 2 or min(size) < 1:
            raise ValueError(
                f"PerceiverImageConverter: image_size must be (height, width), received "
                f"{image_size!r}."
            )
        options = image_preprocessing_options(
            dict(mode=mode, crop_fraction=crop_fraction, mean=mean, std=std, method=method),
            num_channels)
        self.image_size = size
        self.mode = options["mode"]
        self.crop_fraction = float(options["crop_fraction"])
        self.mean = _number_or_tuple(options["mean"])
        self.std = _number_or_tuple(options["std"])
        self.method = options["method"]
        self.num_channels = None if num_channels is None else int(num_channels)

    @property
    def options(self):
        """The `image_preprocessing` dict of these settings."""
        return dict(mode=self.mode, crop_fraction=self.crop_fraction, mean=self.mean,
                    std=self.std, method=self.method)

    def get_config(self):
        return dict(image_size=self.image_size, num_channels=self.num_channels, **self.options)

    def transform(self, x, name="images"):
        images = tf.convert_to_tensor(x)
        if images.dtype == tf.string or images.dtype.is_bool or images.dtype.is_complex:
            raise TypeError(f"input `{name}` must be uint8 images, got {images.dtype.name}.")
        single = images.shape.rank == 3
        if single:
            images = images[None]
        channels = self.num_channels
        images = check_input(
            images, name, (None, None, None, channels),
            f" ({images.dtype.name} [batch, height, width, {channels or 'C'}])",
        )
        x = self._normalise(tf.cast(images, tf.float32))
        return x[0] if single else x

    def _normalise(self, x):
        height, width = self.image_size
        if self.mode == "center_crop":
            hw = tf.shape(x)[1:3]
            # Truncated, as both reference codes do (int(0.875 * 427) = 373).
            side = tf.cast(
                tf.floor(tf.cast(tf.reduce_min(hw), tf.float64) * self.crop_fraction),
                tf.int32,
            )
            side = tf.maximum(side, 1)
            top = (hw[0] - side) // 2
            left = (hw[1] - side) // 2
            x = x[:, top : top + side, left : left + side, :]
        x = _resize(x, (height, width), self.method)
        mean = tf.constant(self.mean, tf.float32)
        std = tf.constant(self.std, tf.float32)
        x = (x - mean) / std
        x.set_shape((None, height, width, x.shape[-1]))
        return x

    def transform_fixed_size(self, x, input_size, name="images"):
        """`transform` for images of one known size `(h, w)`, in LiteRT ops.

        The crop is a static slice and the resize two matrix products whose
        matrices are `tf.image.resize` (same method, antialiased) applied to
        the identity at export time, since resizing is linear and separable:
        the same operator as `transform` (equal up to float rounding), but
        no `ScaleAndTranslate` op, which LiteRT lacks.
        """
        h, w = (int(d) for d in input_size)
        height, width = self.image_size
        images = tf.convert_to_tensor(x)
        images.shape.assert_is_compatible_with((None, h, w, self.num_channels))
        x = tf.cast(images, tf.float32)
        if self.mode == "center_crop":
            side = max(math.floor(float(min(h, w)) * self.crop_fraction), 1)
            top, left = (h - side) // 2, (w - side) // 2
            x = x[:, top : top + side, left : left + side, :]
            h = w = side
        if (h, w) != (height, width):
            rows = tf.constant(self._resize_matrix(h, height).T, tf.float32)  # [h, H]
            cols = tf.constant(self._resize_matrix(w, width).T, tf.float32)  # [w, W]
            c = x.shape[-1]
            # 2-D products with static reshapes (LiteRT FULLY_CONNECTED).
            t = tf.reshape(tf.transpose(x, [0, 2, 3, 1]), [-1, h]) @ rows  # [B*w*C, H]
            t = tf.transpose(tf.reshape(t, [-1, w, c, height]), [0, 3, 2, 1])  # [B, H, C, w]
            t = tf.reshape(tf.reshape(t, [-1, w]) @ cols, [-1, height, c, width])
            x = tf.clip_by_value(tf.transpose(t, [0, 1, 3, 2]), 0.0, 255.0)
        x = (x - tf.constant(self.mean, tf.float32)) / tf.constant(self.std, tf.float32)
        x.set_shape((None, height, width, x.shape[-1]))
        return x

    def _resize_matrix(self, size, new_size):
        """`[new_size, size]`: one axis of `tf.image.resize` as a matrix."""
        with tf.init_scope():  # eager, also while tracing
            eye = tf.eye(size)[:, :, None, None]  # `size` images of size x 1
            out = tf.image.resize(eye, (new_size, 1), method=self.method, antialias=True)
            return out[:, :, 0, 0].numpy().T
