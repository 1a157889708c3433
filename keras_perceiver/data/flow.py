"""Optical-flow data: exact synthetic pairs from bundled photos, or .flo files.

**Flow convention.** `flow[y, x] = (dx, dy)` in pixels maps pixel `p = (x, y)`
of frame 1 to `p + flow(p)` in frame 2 (channel 0 horizontal, +x right;
channel 1 vertical, +y down), as `PerceiverOpticalFlow` returns it.

**Embedded default** (`synthetic_flow_pairs`, no network): scikit-learn's
bundled sample photos (`china.jpg`, `flower.jpg`, downsampled 2x). Per pair, a
smooth random flow field (`random_flow_field`: a global affine motion plus a
few Gaussian bumps) and a random crop. Frame 2 is the crop itself; frame 1 is
frame 2's photo sampled (bilinearly) at `p + flow(p)`, so `frame1(p) =
frame2(p + flow(p))` holds exactly (up to uint8 rounding of the pixels) and
`flow` is the exact ground truth. Training crops come from the top 75% of
each photo, held-out (`split="test"`) crops from the bottom 25%, so the two
never share pixels.

**A directory of pairs** (`load_flow_directory`, `--dataset DIR`): the
FlyingChairs layout, `<stem>_img1.<ext>`, `<stem>_img2.<ext>` and
`<stem>_flow.flo` (Middlebury `.flo`, `read_flo`/`write_flo`), images in any
format Pillow reads. TensorFlow Datasets has no optical-flow dataset, so
there is no tfds path. `make_dataset` turns either into a `tf.data` pipeline
of `(frames in [-1, 1], flow)`.
"""

import glob
import os

import numpy as np

FLO_MAGIC = 202021.25
TRAIN_FRACTION = 0.75  # top rows for training crops, the rest held out


def load_photos(downsample=2):
    """The bundled sample photos as float32 `[H, W, 3]` arrays in [0, 255].

    Each photo is downsampled by averaging `downsample x downsample` blocks.
    """
    from sklearn.datasets import load_sample_images

    photos = []
    for image in load_sample_images().images:
        image = np.asarray(image, np.float32)
        h = image.shape[0] // downsample * downsample
        w = image.shape[1] // downsample * downsample
        image = image[:h, :w].reshape(h // downsample, downsample, w // downsample, downsample, 3)
        photos.append(image.mean(axis=(1, 3)))
    return photos


def random_flow_field(rng, height, width, max_translation=3.0, max_affine=0.04,
                      num_bumps=2, bump_amplitude=1.5, bump_sigma=(3.0, 8.0)):
    """A smooth flow `[height, width, 2]` (float32, pixels).

    `t + A (p - centre)` with `t` uniform in `[-max_translation,
    max_translation]^2` and `A`'s entries uniform in `[-max_affine,
    max_affine]`, plus `num_bumps` Gaussian bumps `a exp(-|p - c|^2 / 2 s^2)`
    (`c` uniform over the image, `s` uniform in `bump_sigma`, `a` uniform in
    `[-bump_amplitude, bump_amplitude]^2`).

    Example:
    >>> import numpy as np
    >>> flow = keras_perceiver.data.flow.random_flow_field(
    ...     np.random.default_rng(0), 4, 6)
    >>> flow.shape, flow.dtype
    ((4, 6, 2), dtype('float32'))
    """
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    points = np.stack([x - (width - 1) / 2, y - (height - 1) / 2], axis=-1)
    translation = rng.uniform(-max_translation, max_translation, 2)
    affine = rng.uniform(-max_affine, max_affine, (2, 2))
    flow = translation + points @ affine.T
    for _ in range(num_bumps):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        sigma = rng.uniform(*bump_sigma)
        amplitude = rng.uniform(-bump_amplitude, bump_amplitude, 2)
        weight = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma**2))
        flow = flow + weight[..., None] * amplitude
    return flow.astype(np.float32)


def bilinear_sample(image, x, y):
    """`image` `[H, W, C]` sampled at float coordinates `x`, `y` (same shape).

    Coordinates must lie in `[0, W - 1] x [0, H - 1]`.
    """
    x0 = np.clip(np.floor(x).astype(np.int64), 0, image.shape[1] - 2)
    y0 = np.clip(np.floor(y).astype(np.int64), 0, image.shape[0] - 2)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    top = image[y0, x0] * (1 - fx) + image[y0, x0 + 1] * fx
    bottom = image[y0 + 1, x0] * (1 - fx) + image[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def synthetic_flow_pairs(num_pairs, crop_size=(32, 48), split="train", seed=0,
                         photos=None, **flow_kwargs):
    """`num_pairs` exact frame pairs and flows from the bundled photos.

    Args:
        num_pairs: how many pairs.
        crop_size: `(height, width)` of the frames.
        split: `"train"` (crops from the top 75% of each photo) or `"test"`
            (the bottom 25%).
        seed: the NumPy seed; the same seed gives the same pairs.
        photos: optional list of float `[H, W, 3]` photos (default
            `load_photos()`).
        **flow_kwargs: passed to `random_flow_field`.

    Returns:
        `(frames, flow)`: uint8 `[N, 2, H, W, 3]` and float32 `[N, H, W, 2]`
        with `frame1(p) = frame2(p + flow(p))` (bilinear, before rounding).

    Example:
    >>> frames, flow = keras_perceiver.data.flow.synthetic_flow_pairs(2, (8, 12))
    >>> frames.shape, frames.dtype, flow.shape
    ((2, 2, 8, 12, 3), dtype('uint8'), (2, 8, 12, 2))
    """
    if split not in ("train", "test"):
        raise ValueError(f"synthetic_flow_pairs: split must be 'train' or 'test', received {split!r}.")
    height, width = (int(n) for n in crop_size)
    photos = load_photos() if photos is None else photos
    rng = np.random.default_rng([seed, 0 if split == "train" else 1])
    frames = np.zeros((num_pairs, 2, height, width, 3), np.uint8)
    flows = np.zeros((num_pairs, height, width, 2), np.float32)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    for i in range(num_pairs):
        photo = photos[rng.integers(len(photos))]
        flow = random_flow_field(rng, height, width, **flow_kwargs)
        margin = int(np.ceil(np.abs(flow).max())) + 1
        cut = int(photo.shape[0] * TRAIN_FRACTION)
        top, bottom = (0, cut) if split == "train" else (cut, photo.shape[0])
        if bottom - top < height + 2 * margin or photo.shape[1] < width + 2 * margin:
            raise ValueError(
                f"synthetic_flow_pairs: crops of {height}x{width} with flows up to "
                f"{margin - 1} px do not fit the {split} part of a "
                f"{photo.shape[0]}x{photo.shape[1]} photo; use a smaller crop_size."
            )
        oy = rng.integers(top + margin, bottom - height - margin + 1)
        ox = rng.integers(margin, photo.shape[1] - width - margin + 1)
        frame2 = photo[oy : oy + height, ox : ox + width]
        frame1 = bilinear_sample(photo, ox + x + flow[..., 0], oy + y + flow[..., 1])
        frames[i, 0] = np.clip(np.round(frame1), 0, 255)
        frames[i, 1] = np.clip(np.round(frame2), 0, 255)
        flows[i] = flow
    return frames, flows


def read_flo(path):
    """A Middlebury `.flo` file as float32 `[H, W, 2]`; a clear error if malformed."""
    with open(path, "rb") as f:
        header = f.read(12)
        if len(header) != 12 or np.frombuffer(header[:4], "<f4")[0] != FLO_MAGIC:
            raise ValueError(
                f"read_flo: {path} is not a .flo file (expected the magic number "
                f"{FLO_MAGIC} as little-endian float32, then int32 width, height)."
            )
        width, height = (int(n) for n in np.frombuffer(header[4:], "<i4"))
        data = np.frombuffer(f.read(), "<f4")
    if width < 1 or height < 1 or data.size != width * height * 2:
        raise ValueError(
            f"read_flo: {path} declares {width}x{height} but holds {data.size} "
            f"float32 values (expected {max(width, 0) * max(height, 0) * 2})."
        )
    return data.reshape(height, width, 2).copy()


def write_flo(path, flow, overwrite=False):
    """Writes float `[H, W, 2]` as a Middlebury `.flo` file (written aside, renamed).

    An existing `path` raises `FileExistsError` unless `overwrite`.
    """
    from keras_perceiver import files

    files.check_new_file(path, overwrite, "write_flo")
    flow = np.asarray(flow, np.float32)
    if flow.ndim != 3 or flow.shape[-1] != 2:
        raise ValueError(f"write_flo: expected a flow of shape [H, W, 2], received {flow.shape}.")
    header = np.array([FLO_MAGIC], "<f4").tobytes() + np.array(
        [flow.shape[1], flow.shape[0]], "<i4").tobytes()
    files.write_bytes_aside(path, header + flow.astype("<f4").tobytes(), what="write_flo")
    return path


def load_flow_directory(directory, crop_size=(32, 48), max_pairs=None, seed=0):
    """Pairs `<stem>_img1.*`, `<stem>_img2.*`, `<stem>_flow.flo` from `directory`.

    Each pair is cropped at a random position (fixed by `seed`) to
    `crop_size`; returns `(frames, flow)` like `synthetic_flow_pairs`.
    """
    from PIL import Image

    flo_files = sorted(glob.glob(os.path.join(directory, "*_flow.flo")))
    if not flo_files:
        raise ValueError(
            f"load_flow_directory: no '<stem>_flow.flo' files in {directory!r} (expected "
            f"the FlyingChairs layout: <stem>_img1.<ext>, <stem>_img2.<ext>, <stem>_flow.flo)."
        )
    flo_files = flo_files[:max_pairs] if max_pairs else flo_files
    height, width = crop_size
    rng = np.random.default_rng(seed)
    frames, flows = [], []
    for flo in flo_files:
        stem = flo[: -len("_flow.flo")]
        images = []
        for index in (1, 2):
            matches = sorted(glob.glob(f"{glob.escape(stem)}_img{index}.*"))
            if not matches:
                raise ValueError(f"load_flow_directory: {flo} has no {os.path.basename(stem)}_img{index}.* beside it.")
            images.append(np.asarray(Image.open(matches[0]).convert("RGB"), np.uint8))
        flow = read_flo(flo)
        if images[0].shape[:2] != flow.shape[:2] or images[1].shape != images[0].shape:
            raise ValueError(
                f"load_flow_directory: {os.path.basename(stem)}: the images "
                f"{images[0].shape[:2]}, {images[1].shape[:2]} and the flow {flow.shape[:2]} differ in size."
            )
        if flow.shape[0] < height or flow.shape[1] < width:
            raise ValueError(
                f"load_flow_directory: {os.path.basename(stem)} is {flow.shape[0]}x{flow.shape[1]}, "
                f"smaller than the crop {height}x{width}."
            )
        y = rng.integers(0, flow.shape[0] - height + 1)
        x = rng.integers(0, flow.shape[1] - width + 1)
        frames.append(np.stack([im[y : y + height, x : x + width] for im in images]))
        flows.append(flow[y : y + height, x : x + width])
    return np.stack(frames), np.stack(flows).astype(np.float32)


def to_model_frames(frames):
    """uint8 `[..., 2, H, W, 3]` to float32 in [-1, 1] (`x / 255 * 2 - 1`)."""
    return np.asarray(frames, np.float32) / 255.0 * 2.0 - 1.0


def make_dataset(frames, flow, batch_size, order=None, drop_remainder=False):
    """A `tf.data.Dataset` of `(frames [B, 2, H, W, 3] in [-1, 1], flow [B, H, W, 2])`.

    `order`: optional `tf.data.Dataset` of example indices (int64; e.g. one
    permutation per epoch); default each pair once, in order.
    """
    import tensorflow as tf

    frames, flow = tf.constant(frames), tf.constant(flow)
    if order is None:
        order = tf.data.Dataset.range(int(frames.shape[0]))
    dataset = order.batch(batch_size, drop_remainder=drop_remainder)
    dataset = dataset.map(
        lambda i: (tf.cast(tf.gather(frames, i), tf.float32) / 255.0 * 2.0 - 1.0,
                   tf.gather(flow, i)),
        num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)
