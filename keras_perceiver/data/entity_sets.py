"""Embedded synthetic set task: which Gaussian blob each 2-D point belongs to.

Each example is a set of `N` 2-D points (`N` drawn in `[min_entities,
max_entities]`) sampled from `num_clusters` Gaussian blobs whose centers are
drawn at random, with at least `min_gap` between the centers' x coordinates.
The label of a point is the rank, by x coordinate, of the blob center
nearest to it (exact: computed from the sampled centers). A point's label
depends on where the other blobs are, so it needs the whole set: a model
that sees one point at a time reaches much less (`context_free_accuracy`).

Sets are padded to a fixed length with `mask` False and label -1; the
padded entities hold random features (they must not matter).

Example:
>>> from keras_perceiver.data import entity_sets
>>> data = entity_sets.blob_sets(3, max_entities=64, seed=0)
>>> data["entities"].shape, data["mask"].shape, data["labels"].shape
((3, 64, 2), (3, 64), (3, 64))
>>> bool(((data["labels"] >= 0) == data["mask"]).all())
True
"""

import numpy as np

NUM_FEATURES = 2


def _centers(rng, num_clusters, min_gap, margin=0.15):
    span = 2.0 - 2 * margin - (num_clusters - 1) * min_gap
    if span < 0:
        raise ValueError(f"entity_sets: {num_clusters} clusters with min_gap={min_gap} "
                         "do not fit in [-1, 1].")
    x = np.sort(rng.uniform(0.0, span, num_clusters)) + np.arange(num_clusters) * min_gap
    x = x - 1.0 + margin
    y = rng.uniform(-1.0 + margin, 1.0 - margin, num_clusters)
    return np.stack([x, y], axis=-1)


def blob_sets(num_sets, min_entities=32, max_entities=512, num_clusters=4, min_gap=0.4,
              std_range=(0.05, 0.15), shift=2.0, scale_range=(0.5, 1.5), pad_to=None, seed=0):
    """`num_sets` padded point sets and their exact per-point labels.

    Args:
        num_sets: examples to draw.
        min_entities, max_entities: the range of the set size `N`.
        num_clusters: `K` blobs = classes.
        min_gap: least distance between the centers' x coordinates.
        std_range: each blob's standard deviation is drawn in this range.
        shift: the whole set is moved by an offset drawn in `[-shift,
            shift]^2` and scaled by a factor drawn in `scale_range`, so a
            point's own coordinates say little about its label.
        pad_to: padded length (None: `max_entities`).
        seed: the NumPy seed (the same seed gives the same sets).

    Returns:
        `{"entities": float32 [S, P, 2], "mask": bool [S, P], "labels":
        int32 [S, P] (-1 for padding), "sizes": int32 [S]}`.
    """
    if not 1 <= min_entities <= max_entities:
        raise ValueError(f"entity_sets: need 1 <= min_entities <= max_entities, received "
                         f"{min_entities}, {max_entities}.")
    pad_to = pad_to or max_entities
    if pad_to < max_entities:
        raise ValueError(f"entity_sets: pad_to={pad_to} < max_entities={max_entities}.")
    rng = np.random.default_rng(seed)
    entities = rng.uniform(-4.0, 4.0, (num_sets, pad_to, NUM_FEATURES)).astype("float32")
    mask = np.zeros((num_sets, pad_to), bool)
    labels = np.full((num_sets, pad_to), -1, "int32")
    sizes = rng.integers(min_entities, max_entities + 1, num_sets).astype("int32")
    for s, n in enumerate(sizes):
        centers = _centers(rng, num_clusters, min_gap)
        std = rng.uniform(*std_range, num_clusters)
        # At least n / (2K) points per blob, so every blob is visible.
        fixed = np.repeat(np.arange(num_clusters), max(1, n // (2 * num_clusters)))[:n]
        weights = rng.dirichlet(np.full(num_clusters, 2.0))
        assign = np.concatenate([fixed, rng.choice(num_clusters, n - len(fixed), p=weights)])
        points = centers[assign] + std[assign, None] * rng.normal(size=(n, NUM_FEATURES))
        order = rng.permutation(n)
        points = points[order]
        distances = ((points[:, None, :] - centers[None]) ** 2).sum(-1)
        points = points * rng.uniform(*scale_range) + rng.uniform(-shift, shift, 2)
        entities[s, :n] = points
        mask[s, :n] = True
        labels[s, :n] = np.argmin(distances, axis=-1)
    return {"entities": entities, "mask": mask, "labels": labels, "sizes": sizes}


def context_free_accuracy(data, standardized=False):
    """Accuracy of the best rule that sees one point alone (its x coordinate
    binned into 100 bins, majority label per bin, fit on `data` itself).

    With `standardized`, the coordinates are first standardized per set (its
    mean and one standard deviation, like `PerceiverSetModel(
    entity_normalization="isotropic")`): what a set's location and size
    alone give away."""
    entities, mask = data["entities"].astype("float64"), data["mask"]
    if standardized:
        weight = mask[..., None]
        count = np.maximum(weight.sum(1, keepdims=True), 1)
        centered = entities - (entities * weight).sum(1, keepdims=True) / count
        variance = ((centered ** 2) * weight).sum((1, 2), keepdims=True) / count
        std = np.sqrt(variance / entities.shape[-1])
        entities = centered / np.maximum(std, 1e-12)
    x = entities[..., 0][mask]
    y = data["labels"][mask]
    bins = np.clip(((x + 5.0) * 10).astype(int), 0, 99)
    correct = 0
    for b in np.unique(bins):
        correct += np.bincount(y[bins == b]).max()
    return correct / len(y)


def dataset(data, batch_size, shuffle=False, seed=0):
    """A `tf.data.Dataset` of `({"entities", "mask"}, labels, sample_weight)`.

    Padded entities get label 0 and sample weight 0 (TensorFlow only).
    """
    import tensorflow as tf

    labels = np.maximum(data["labels"], 0)
    weights = data["mask"].astype("float32")
    ds = tf.data.Dataset.from_tensor_slices(
        ({"entities": data["entities"], "mask": data["mask"]}, labels, weights))
    if shuffle:
        ds = ds.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(2)
