"""Synthetic moving shapes with tones, and the subsampled-query pipeline."""

import numpy as np
import pytest

from keras_perceiver.data import multimodal


def test_moving_shapes_content():
    data = multimodal.moving_shapes(24, num_frames=4, image_size=16, audio_samples=256, seed=1)
    video, audio, label = data["image"], data["audio"], data["label"]
    assert video.shape == (24, 4, 16, 16, 3) and 0 <= video.min() and video.max() <= 1
    assert audio.shape == (24, 256, 1) and np.abs(audio).max() <= 1
    np.testing.assert_array_equal(label.sum(1), 1.0)
    classes = label.argmax(1)
    assert set(classes) == {0, 1, 2}
    for i in range(24):
        # The tone's strongest frequency names the class.
        spectrum = np.abs(np.fft.rfft(audio[i, :, 0]))
        assert abs(spectrum.argmax() - multimodal.TONE_CYCLES[classes[i]]) <= 1
        # The shape moves or at least is there in every frame.
        background = video[i, 0, 0, 0]
        foreground = np.any(np.abs(video[i] - background) > 1e-6, axis=-1).sum(axis=(1, 2))
        assert (foreground > 10).all()
    again = multimodal.moving_shapes(24, seed=1)
    np.testing.assert_array_equal(again["image"], video)
    other = multimodal.moving_shapes(24, seed=2)
    assert not np.array_equal(other["audio"], audio)


def test_squares_have_more_pixels_than_triangles():
    data = multimodal.moving_shapes(60, seed=0)
    background = data["image"][:, 0, 0, 0]
    counts = np.any(np.abs(data["image"][:, 0] - background[:, None, None]) > 1e-6, -1).sum((1, 2))
    classes = data["label"].argmax(1)
    assert counts[classes == 0].mean() > counts[classes == 2].mean()


def test_subsampled_pipeline_targets_match_points():
    data = multimodal.moving_shapes(8, seed=0)
    dataset = multimodal.make_dataset(data, 4, image_points=100, audio_points=5,
                                      samples_per_patch=16, seed=7)
    batches = list(dataset)
    assert len(batches) == 2
    x, y = batches[0]
    points = x["image_points"].numpy()
    assert points.shape == (4, 100) and points.max() < 4 * 16 * 16
    assert all(len(set(row)) == 100 for row in points)  # no repeats
    pixels = data["image"][:4].reshape(4, -1, 3)
    np.testing.assert_array_equal(y["image"].numpy(), np.take_along_axis(pixels, points[..., None], 1))
    patches = data["audio"][:4].reshape(4, 16, 16)
    audio_points = x["audio_points"].numpy()
    expected = np.take_along_axis(patches, audio_points[..., None], 1).reshape(4, -1, 1)
    np.testing.assert_array_equal(y["audio"].numpy(), expected)
    np.testing.assert_array_equal(y["label"].numpy(), data["label"][:4])
    # Reproducible: the same seed draws the same points; another seed others.
    again = next(iter(multimodal.make_dataset(data, 4, 100, 5, seed=7)))[0]
    np.testing.assert_array_equal(again["image_points"].numpy(), points)
    other = next(iter(multimodal.make_dataset(data, 4, 100, 5, seed=8)))[0]
    assert not np.array_equal(other["image_points"].numpy(), points)
    with pytest.raises(ValueError, match="at most"):
        multimodal.make_dataset(data, 4, image_points=5000, audio_points=5)
    with pytest.raises(ValueError, match="both"):
        multimodal.make_dataset(data, 4, image_points=5)


def test_psnr_and_mean_baseline():
    target = np.array([[0.0, 1.0], [0.5, 0.5]])
    baseline = multimodal.mean_baseline(target)
    np.testing.assert_array_equal(baseline, [[0.5, 0.5], [0.5, 0.5]])
    np.testing.assert_allclose(multimodal.psnr(target, baseline), [10 * np.log10(4), 120.0])
    video = np.random.default_rng(0).uniform(size=(2, 3, 4, 4, 3))
    means = multimodal.mean_baseline(video)
    np.testing.assert_allclose(means[0, 1, 2, 3], video[0].reshape(-1, 3).mean(0))


def test_points_depend_on_epoch_and_example_only():
    import tensorflow as tf

    data = multimodal.moving_shapes(6, seed=0)
    pairs = tf.data.Dataset.from_tensor_slices(
        (tf.constant([0, 0, 1, 1], tf.int64), tf.constant([2, 5, 2, 5], tf.int64)))
    x, y = next(iter(multimodal.make_dataset(data, 4, 50, 4, seed=3, order=pairs)))
    np.testing.assert_array_equal(y["label"].numpy(), data["label"][[2, 5, 2, 5]])
    points = x["image_points"].numpy()
    assert not np.array_equal(points[0], points[2])  # another epoch, other points
    # A resumed run that starts at epoch 1 draws epoch 1's points again.
    resumed = tf.data.Dataset.from_tensor_slices(
        (tf.constant([1], tf.int64), tf.constant([5], tf.int64)))
    x1, _ = next(iter(multimodal.make_dataset(data, 1, 50, 4, seed=3, order=resumed)))
    np.testing.assert_array_equal(x1["image_points"].numpy()[0], points[3])
