"""TensorFlow graph ops used inside serving signatures (TF-only module).

Everything here runs inside an exported SavedModel, so it uses `tf.*` only:
request validation with messages naming the input, and the image / frame
preprocessing that turns raw `uint8` pixels into what the models expect.
"""

import tensorflow as tf

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
    import numpy as np

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
            "mean", "std") and value == IMAGE_PREPROCESSING_DEFAULTS[key] else ""
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


def describe(shape):
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def check_input(x, name, shape, what=""):
    """Asserts (at run time, in the graph) that `x` has `shape`'s rank and dims.

    `shape` lists every axis, `None` for free ones. A failure raises
    `InvalidArgumentError` whose message names the input and gives the
    expected and received shapes. Returns `x` with the static shape set.
    """
    rank = len(shape)
    received = tf.shape(x)
    # Pad with -1 so that a wrong rank never indexes out of bounds.
    padded = tf.concat([received, -tf.ones([rank], tf.int32)], axis=0)[:rank]
    ok = tf.equal(tf.size(received), rank)
    for axis, size in enumerate(shape):
        if size is not None:
            ok = tf.logical_and(ok, tf.equal(padded[axis], size))
    check = tf.debugging.Assert(
        ok,
        [f"input `{name}` must have shape {describe(shape)}{what}; received shape", received],
        summarize=16,
    )
    with tf.control_dependencies([check]):
        x = tf.identity(x)
    x.set_shape(shape)
    return x


def check_values(x, name, low, high):
    """Asserts `low <= x <= high` element-wise, naming the input."""
    message = f"input `{name}` must have values in [{low}, {high}]."
    checks = [
        tf.debugging.assert_greater_equal(x, tf.cast(low, x.dtype), message=message),
        tf.debugging.assert_less_equal(x, tf.cast(high, x.dtype), message=message),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(x)


def _resize(images, size, method):
    size = tf.constant(size, tf.int32)
    same = tf.reduce_all(tf.equal(tf.shape(images)[1:3], size))

    def resized():
        out = tf.image.resize(images, size, method=method, antialias=True)
        return tf.clip_by_value(out, 0.0, 255.0)

    out = tf.cond(same, lambda: images, resized)
    return out


def preprocess_images(images, image_shape, options=None, name="images"):
    """`uint8` `[B, h, w, C]` of any size -> normalised float32 `[B, H, W, C]`.

    Graph-safe; the same function runs inside the exported signature and can
    be called eagerly to reproduce exactly what the server computes.

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
    height, width, channels = (int(d) for d in image_shape)
    options = image_preprocessing_options(options, channels)
    images = tf.convert_to_tensor(images)
    if images.dtype != tf.uint8:
        raise TypeError(f"input `{name}` must be uint8, got {images.dtype.name}.")
    images = check_input(
        images, name, (None, None, None, channels),
        f" (uint8 [batch, height, width, {channels}])",
    )
    x = tf.cast(images, tf.float32)
    if options["mode"] == "center_crop":
        hw = tf.shape(x)[1:3]
        # Truncated, as both reference codes do (int(0.875 * 427) = 373).
        side = tf.cast(
            tf.floor(tf.cast(tf.reduce_min(hw), tf.float64) * options["crop_fraction"]),
            tf.int32,
        )
        side = tf.maximum(side, 1)
        top = (hw[0] - side) // 2
        left = (hw[1] - side) // 2
        x = x[:, top : top + side, left : left + side, :]
    x = _resize(x, (height, width), options["method"])
    mean = tf.constant(options["mean"], tf.float32)
    std = tf.constant(options["std"], tf.float32)
    x = (x - mean) / std
    x.set_shape((None, height, width, channels))
    return x


def preprocess_frames(frames, image_shape, name="frames"):
    """`uint8` `[B, 2, H, W, 3]` -> float32 in `[-1, 1]` (`im / 255 * 2 - 1`)."""
    height, width = (int(d) for d in image_shape[:2])
    frames = check_input(
        frames, name, (None, 2, height, width, 3),
        " (uint8 [batch, 2 frames, height, width, 3])",
    )
    return tf.cast(frames, tf.float32) / 255.0 * 2.0 - 1.0
