"""Multimodal data: synthetic videos of moving shapes with matching tones.

**Embedded default** (`moving_shapes`, no network). Each example is one
shape (`SHAPES`: square, circle, triangle; the class label) of a random
colour on a random grey background, moving in a straight line (bouncing off
the edges) over `num_frames` frames, and a tone whose pitch names the shape
(`TONE_CYCLES[label]` cycles per clip) and whose loudness follows the shape's
height in the frame (louder near the top), with a random phase. Video in
[0, 1] `[T, H, W, 3]`, audio in [-1, 1] `[S, 1]`, label one-hot `[K]`: the
inputs of `keras_perceiver.models.PerceiverMultimodalAutoencoder`. The label
can be read from the video (the shape) and from the audio (the pitch).
Train and held-out sets use different seeds.

`make_dataset` builds the subsampled-query training pipeline of the paper:
per example, a random subset of `image_points` pixels and `audio_points`
audio patches (without repetition, reproducible from the seed, the epoch and
the example), with the targets at those points, for the model built with
`num_subsampled_points`. TensorFlow Datasets has no
video-with-audio dataset that fits in a CPU recipe, so there is no tfds path.
"""

import numpy as np

SHAPES = ("square", "circle", "triangle")
TONE_CYCLES = (3.0, 7.0, 12.0)  # tone frequency per class, in cycles per clip


def _shape_mask(label, size, cy, cx, radius):
    y, x = np.mgrid[0:size[0], 0:size[1]].astype(np.float64)
    dy, dx = y - cy, x - cx
    if SHAPES[label] == "square":
        return (np.abs(dy) <= radius * 0.85) & (np.abs(dx) <= radius * 0.85)
    if SHAPES[label] == "circle":
        return dy**2 + dx**2 <= radius**2
    # Triangle pointing up: below the apex and inside the two slanted edges.
    return (dy <= radius) & (np.abs(dx) <= (dy + radius) / 2)


def moving_shapes(num_examples, num_frames=4, image_size=(16, 16), audio_samples=256,
                  radius=4.0, max_speed=2.0, seed=0):
    """`num_examples` videos, tones and labels (NumPy, float32).

    Args:
        num_examples: how many examples.
        num_frames, image_size: the video `[num_frames, H, W, 3]`.
        audio_samples: samples of the tone per clip.
        radius: the shapes' half size in pixels.
        max_speed: the largest speed in pixels per frame (each axis).
        seed: the NumPy seed; the same seed gives the same examples.

    Returns:
        `{"image": [N, T, H, W, 3] in [0, 1], "audio": [N, S, 1] in [-1, 1],
        "label": [N, 3] one-hot}`.

    Example:
    >>> data = keras_perceiver.data.multimodal.moving_shapes(2)
    >>> {k: v.shape for k, v in data.items()}
    {'image': (2, 4, 16, 16, 3), 'audio': (2, 256, 1), 'label': (2, 3)}
    """
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    rng = np.random.default_rng(seed)
    video = np.zeros((num_examples, num_frames, height, width, 3), np.float32)
    audio = np.zeros((num_examples, audio_samples, 1), np.float32)
    labels = rng.integers(len(SHAPES), size=num_examples)
    t = np.arange(audio_samples) / audio_samples
    low, high_y, high_x = radius, height - 1 - radius, width - 1 - radius
    if high_y < low or high_x < low:
        raise ValueError(
            f"moving_shapes: a shape of radius {radius} does not fit a "
            f"{height}x{width} frame."
        )
    for i, label in enumerate(labels):
        background = rng.uniform(0.0, 0.4)
        color = rng.uniform(0.5, 1.0, 3)
        y, x = rng.uniform(low, high_y), rng.uniform(low, high_x)
        vy, vx = rng.uniform(-max_speed, max_speed, 2)
        heights = []
        for frame in range(num_frames):
            mask = _shape_mask(label, (height, width), y, x, radius)
            video[i, frame] = background
            video[i, frame][mask] = color
            heights.append(y)
            # Move, bouncing off the edges.
            y, vy = _bounce(y + vy, vy, low, high_y)
            x, vx = _bounce(x + vx, vx, low, high_x)
        # Loudness follows the height over time (1 at the top, 0.4 at the bottom).
        position = np.interp(t * (num_frames - 1), np.arange(num_frames), heights)
        loudness = 1.0 - 0.6 * (position - low) / max(high_y - low, 1e-6)
        phase = rng.uniform(0, 2 * np.pi)
        audio[i, :, 0] = loudness * np.sin(2 * np.pi * TONE_CYCLES[label] * t + phase)
    return {"image": video, "audio": audio,
            "label": np.eye(len(SHAPES), dtype=np.float32)[labels]}


def _bounce(position, velocity, low, high):
    if position < low:
        return 2 * low - position, -velocity
    if position > high:
        return 2 * high - position, -velocity
    return position, velocity


def psnr(target, prediction, peak=1.0):
    """Per-example PSNR in dB, `10 log10(peak^2 / MSE)` over all but axis 0.

    Example:
    >>> import numpy as np
    >>> keras_perceiver.data.multimodal.psnr(np.zeros((1, 4)), np.full((1, 4), 0.1)).round(3).tolist()
    [20.0]
    """
    target, prediction = np.asarray(target, np.float64), np.asarray(prediction, np.float64)
    mse = ((target - prediction) ** 2).reshape(len(target), -1).mean(axis=1)
    return 10.0 * np.log10(peak**2 / np.maximum(mse, 1e-12))


def mean_baseline(values):
    """Each example's own mean value, broadcast to its shape (the PSNR baseline)."""
    values = np.asarray(values)
    axes = tuple(range(1, values.ndim - 1)) if values.ndim > 2 else tuple(range(1, values.ndim))
    return np.broadcast_to(values.mean(axis=axes, keepdims=True), values.shape)


def make_dataset(data, batch_size, image_points=None, audio_points=None,
                 samples_per_patch=16, seed=0, order=None, drop_remainder=False):
    """A `tf.data.Dataset` of `(inputs, targets)` for the autoencoder.

    Args:
        data: `{"image", "audio", "label"}` arrays (`moving_shapes`).
        batch_size: examples per batch.
        image_points, audio_points: the subsampled queries (both or
            neither). Each example gets `image_points` `[n]` (flat pixel
            indices) and `audio_points` `[m]` (audio patch indices) drawn
            without repetition from the stateless seed `(seed, epoch * N +
            index)`, so a resumed run draws the same points, and its targets
            are the pixels `[n, 3]` and samples `[m * samples_per_patch, 1]`
            at those points. Without them the targets are the full inputs.
        samples_per_patch: the model's audio patch length.
        seed: seeds the points.
        order: optional `tf.data.Dataset` of `(epoch, index)` int64 pairs
            (which examples, in which order); default each example once.
        drop_remainder: drop a last partial batch.
    """
    import tensorflow as tf

    num_examples = len(data["image"])
    num_pixels = int(np.prod(data["image"].shape[1:4]))
    num_patches = data["audio"].shape[1] // samples_per_patch
    subsample = image_points is not None or audio_points is not None
    if subsample and (image_points is None or audio_points is None):
        raise ValueError("make_dataset: pass both image_points and audio_points, or neither.")
    if subsample and (image_points > num_pixels or audio_points > num_patches):
        raise ValueError(
            f"make_dataset: image_points={image_points} and audio_points={audio_points} must "
            f"be at most the {num_pixels} pixels and {num_patches} audio patches."
        )
    tensors = {k: tf.constant(data[k]) for k in ("image", "audio", "label")}
    if order is None:
        order = tf.data.Dataset.range(num_examples).map(lambda i: (tf.constant(0, tf.int64), i))

    def _pick(count, n, key):
        return tf.cast(tf.argsort(tf.random.stateless_uniform([count], key))[:n], tf.int32)

    def _example(epoch, index):
        example = {k: tf.gather(v, index) for k, v in tensors.items()}
        if not subsample:
            return example, dict(example)
        key = tf.stack([tf.cast(seed, tf.int64), epoch * num_examples + index])
        image_idx = _pick(num_pixels, image_points, key)
        audio_idx = _pick(num_patches, audio_points, key + tf.constant([0, 1 << 40], tf.int64))
        pixels = tf.reshape(example["image"], (num_pixels, -1))
        patches = tf.reshape(example["audio"], (num_patches, samples_per_patch))
        targets = {
            "image": tf.gather(pixels, image_idx),
            "audio": tf.reshape(tf.gather(patches, audio_idx), (-1, 1)),
            "label": example["label"],
        }
        return dict(example, image_points=image_idx, audio_points=audio_idx), targets

    dataset = order.map(_example, num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    return dataset.prefetch(tf.data.AUTOTUNE)
