"""Image classification data: scikit-learn's digits and tensorflow_datasets.

TensorFlow-only module (`tf.data`, `tf.image`). Images stay `uint8` until
the pipeline normalises them with `keras_perceiver.export.preprocess_images`
and the same options the exported SavedModel uses, so training and serving
see identical inputs.

- `load_digits_split()`: the 8x8 digits bundled with scikit-learn (no
  network), 75/25 stratified train/test split with `random_state=0` (the
  split of `applications/digits_demo.py`), pixels 0..16 scaled to 0..240.
- `load_tfds(name)`: a `tensorflow_datasets` image classification set
  (`mnist`, `cifar10`, `imagenet2012`, ...) as `(train, test)` datasets of
  `(uint8 image, int label)` and its `DatasetInfo`; `imagenet2012` tests on
  its `validation` split.
- `augment_batch`: shift/rotate/scale/shear each image by a random affine map
  drawn statelessly from a seed, so a resumed run repeats the same draws.
"""

import math

import numpy as np
import tensorflow as tf

from keras_perceiver.export import preprocessing

# Per data set: image size, preprocessing (0..255 units; see
# `keras_perceiver.export.preprocess_images`) and default augmentation.
DATASETS = {
    "digits": dict(image_shape=(8, 8, 1), preprocessing={"mode": "resize", "mean": 120.0,
                                                         "std": 120.0}, flip=False),
    "mnist": dict(image_shape=(28, 28, 1), preprocessing={"mode": "resize", "mean": 33.3,
                                                          "std": 78.6}, flip=False),
    "cifar10": dict(image_shape=(32, 32, 3), preprocessing={
        "mode": "resize", "mean": (125.3, 123.0, 113.9), "std": (63.0, 62.1, 66.7)}, flip=True),
    "imagenet2012": dict(image_shape=(224, 224, 3), preprocessing={"mode": "center_crop"},
                         flip=True),
}
TEST_SPLITS = {"imagenet2012": "validation"}


def load_digits_split(split_seed=0):
    """`(x_train, y_train), (x_test, y_test)`: uint8 `[N, 8, 8, 1]`, int labels.

    Example:
    >>> from keras_perceiver.data import images
    >>> (x, y), (xt, yt) = images.load_digits_split()
    >>> x.shape, xt.shape, x.dtype.name, int(x.max())
    ((1347, 8, 8, 1), (450, 8, 8, 1), 'uint8', 240)
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images * 15).astype("uint8")[..., None]
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target, test_size=0.25, random_state=split_seed, stratify=digits.target)
    return (x_train, y_train.astype("int32")), (x_test, y_test.astype("int32"))


def hold_out(x, y, fraction, seed=0):
    """Splits `(x, y)` into `(train, validation)` with a stratified `fraction`
    held out (a fixed function of `seed`); `fraction=0` holds out nothing."""
    if not 0 <= fraction < 1:
        raise ValueError(f"hold_out: fraction must be in [0, 1), received {fraction!r}.")
    if fraction == 0:
        return (x, y), (x[:0], y[:0])
    rng = np.random.default_rng(seed)
    held = np.zeros(len(y), bool)
    for label in np.unique(y):
        where = np.flatnonzero(y == label)
        held[rng.choice(where, max(1, round(fraction * len(where))), replace=False)] = True
    return (x[~held], y[~held]), (x[held], y[held])


def load_tfds(name, data_dir=None, validation_fraction=0.0):
    """`(train, validation, test, info)` for a tensorflow_datasets image set.

    Each split is a `tf.data.Dataset` of `(uint8 image [H, W, C], int32
    label)`; `validation` is the last `validation_fraction` of `train` (None
    if 0). Reads local data, downloading it if tfds can.
    """
    import tensorflow_datasets as tfds

    builder = tfds.builder(name, data_dir=data_dir)
    features = builder.info.features
    if "image" not in features or "label" not in features:
        raise ValueError(
            f"--dataset {name}: expected an image classification set with 'image' and "
            f"'label' features; it has {sorted(features.keys())}.")
    builder.download_and_prepare()
    test_split = TEST_SPLITS.get(name, "test")
    if builder.info.splits and test_split not in builder.info.splits:
        raise ValueError(f"--dataset {name}: no {test_split!r} split; it has "
                         f"{sorted(builder.info.splits)}.")
    percent = int(round(100 * validation_fraction))
    train_split = f"train[:{100 - percent}%]" if percent else "train"

    def load(split):
        ds = builder.as_dataset(split=split, as_supervised=True, shuffle_files=False)
        return ds.map(lambda x, y: (x, tf.cast(y, tf.int32)))

    validation = load(f"train[{100 - percent}%:]") if percent else None
    return load(train_split), validation, load(test_split), builder.info


def settings_for(name, info=None, image_size=None):
    """Image shape and preprocessing options for data set `name` (known ones
    from `DATASETS`, others from the tfds features, scaled to [-1, 1])."""
    if name in DATASETS:
        settings = dict(DATASETS[name])
    else:
        shape = tuple(info.features["image"].shape)
        if None in shape[:2] and image_size is None:
            raise ValueError(f"--dataset {name}: images have no fixed size {shape}; "
                             "pass --image-size.")
        settings = dict(image_shape=shape, flip=True,
                        preprocessing={"mode": "resize", "mean": 127.5, "std": 127.5})
    if image_size:
        settings["image_shape"] = (image_size, image_size, settings["image_shape"][2])
    return settings


def normalise(images, image_shape, options):
    """uint8 `[B, h, w, C]` -> float32 `[B, H, W, C]` (the serving preprocessing)."""
    return preprocessing.preprocess_images(images, image_shape, options)


def affine_transforms(seed, batch, size, max_shift, max_rotation=8.0, max_scale=0.05,
                      max_shear=0.1, affine_prob=0.5, augment_prob=0.5):
    """Projective transforms `[batch, 8]` (TF's convention: output pixel `(x, y)`
    samples the input at `A (x, y) + b`) drawn statelessly from `seed` (a
    `[2]` int tensor). A fraction `augment_prob` of the images is shifted by
    whole pixels, and a fraction `affine_prob` of those also rotated, scaled
    and sheared about the centre (the digits demo's augmentation)."""
    seeds = tf.random.experimental.stateless_split(seed, 7)
    u = [tf.random.stateless_uniform([batch], seed=seeds[i]) for i in range(5)]
    augmented = tf.cast(u[0] < augment_prob, tf.float32)
    affine = augmented * tf.cast(u[1] < affine_prob, tf.float32)
    angle = (u[2] * 2 - 1) * math.radians(max_rotation) * affine
    scale = 1.0 + (u[3] * 2 - 1) * max_scale * affine
    shear = (u[4] * 2 - 1) * max_shear * affine
    shift = tf.random.stateless_uniform([batch, 2], seed=seeds[6], minval=-max_shift,
                                        maxval=max_shift + 1, dtype=tf.int32)
    shift = tf.cast(shift, tf.float32) * augmented[:, None]
    cos, sin = tf.cos(angle), tf.sin(angle)
    # Inverse map about the centre c: src = M (dst - c) + c - shift, M = R S_h / s.
    a00, a01 = cos / scale, (cos * shear - sin) / scale
    a10, a11 = sin / scale, (sin * shear + cos) / scale
    cy, cx = (size[0] - 1) / 2, (size[1] - 1) / 2
    # TF transforms act on (x, y) = (column, row).
    b0 = cx - a11 * cx - a10 * cy - shift[:, 1]
    b1 = cy - a01 * cx - a00 * cy - shift[:, 0]
    zeros = tf.zeros_like(angle)
    return tf.stack([a11, a10, b0, a01, a00, b1, zeros, zeros], axis=1)


def augment_batch(images, seed, max_shift=1, flip=False, **affine):
    """Random affine maps (bilinear, zero outside) and optional horizontal
    flips for a float batch `[B, H, W, C]`, drawn from `seed` (`[2]` ints)."""
    shape = tf.shape(images)
    size = (images.shape[1], images.shape[2])
    transforms = affine_transforms(seed, shape[0], size, max_shift, **affine)
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=shape[1:3],
        fill_value=0.0, interpolation="BILINEAR", fill_mode="CONSTANT")
    if flip:
        flip_seed = tf.random.experimental.stateless_fold_in(seed, 1)
        mask = tf.random.stateless_uniform([shape[0], 1, 1, 1], seed=flip_seed) < 0.5
        out = tf.where(mask, tf.reverse(out, axis=[2]), out)
    return out


def random_resized_crop(image, seed, size, area=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    """Inception-style random resized crop of one uint8 image to `size`, from `seed`."""
    box = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image), tf.zeros([1, 0, 4]), seed=seed, area_range=area,
        aspect_ratio_range=ratio, min_object_covered=0.0, max_attempts=10,
        use_image_if_no_bounding_boxes=True)
    crop = tf.slice(image, box[0], box[1])
    out = tf.image.resize(tf.cast(crop, tf.float32), size, method="bicubic", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(out), 0, 255), tf.uint8)
