"""Multimodal adapters: patching, padding, masking, splitting, post-processing."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_perceiver.layers import AudioPostprocessor
from keras_perceiver.layers import AudioPreprocessor
from keras_perceiver.layers import FourierPositionEncoding
from keras_perceiver.layers import MultimodalPadding
from keras_perceiver.layers import OneHotPreprocessor
from keras_perceiver.layers import VideoPreprocessor


def numpy(x):
    return ops.convert_to_numpy(x)


def test_video_patches_follow_the_reference_channel_order(rng):
    video = rng.normal(size=(2, 4, 6, 8, 3)).astype("float32")
    layer = VideoPreprocessor(patch_size=2, temporal_patch_size=2, num_bands=3)
    out = numpy(layer(video))
    grid = (2, 3, 4)
    assert out.shape == (2, 24, 24 + 3 + 2 * 3 * 3)
    # Reference: token (t, h, w) holds video[b, 2t+dt, 2h+dh, 2w+dw, c] in (dt, dh, dw, c) order.
    expected = np.zeros((2, 2, 3, 4, 24), "float32")
    for t in range(2):
        for h in range(3):
            for w in range(4):
                block = video[:, 2 * t:2 * t + 2, 2 * h:2 * h + 2, 2 * w:2 * w + 2, :]
                expected[:, t, h, w] = block.reshape(2, -1)
    np.testing.assert_array_equal(out[..., :24], expected.reshape(2, 24, 24))
    fourier = numpy(FourierPositionEncoding(grid, 3)(np.zeros((2, 1))))
    np.testing.assert_array_equal(out[..., 24:], fourier)


def test_video_fourier_max_resolution_is_configurable():
    layer = VideoPreprocessor(patch_size=2, num_bands=2, max_resolution=(2, 8, 8))
    out = numpy(layer(np.zeros((1, 2, 4, 4, 1), "float32")))
    fourier = numpy(FourierPositionEncoding((2, 2, 2), 2, max_resolution=(2, 8, 8))(np.zeros((1, 1))))
    np.testing.assert_array_equal(out[..., 4:], fourier)


@pytest.mark.parametrize("shape", [(1, 2, 6, 8, 3), (1, 2, 8, 8), (1, 3, 8, 8, 3)])
def test_video_bad_shapes_raise(shape):
    layer = VideoPreprocessor(patch_size=4, temporal_patch_size=2, num_bands=2, name="video")
    with pytest.raises(ValueError, match="video"):
        layer(np.zeros(shape, "float32"))


def test_audio_patches_and_fourier(rng):
    audio = rng.normal(size=(2, 12, 1)).astype("float32")
    out = numpy(AudioPreprocessor(samples_per_patch=3, num_bands=2, max_resolution=(12,))(audio))
    assert out.shape == (2, 4, 3 + 1 + 2 * 2)
    np.testing.assert_array_equal(out[..., :3], audio.reshape(2, 4, 3))
    fourier = numpy(FourierPositionEncoding((4,), 2, max_resolution=(12,))(np.zeros((2, 1))))
    np.testing.assert_array_equal(out[..., 3:], fourier)


def test_audio_indivisible_raises():
    with pytest.raises(ValueError, match="samples_per_patch=5"):
        AudioPreprocessor(samples_per_patch=5, num_bands=2)(np.zeros((1, 12, 1), "float32"))


def test_one_hot_is_one_token():
    labels = np.eye(4, dtype="float32")[[1, 3]]
    out = numpy(OneHotPreprocessor()(labels))
    np.testing.assert_array_equal(out, labels[:, None, :])
    with pytest.raises(ValueError, match="rank 2"):
        OneHotPreprocessor()(np.zeros((2, 1, 4)))


def _modalities(rng):
    return {
        "image": rng.normal(size=(2, 3, 5)).astype("float32"),
        "audio": rng.normal(size=(2, 4, 7)).astype("float32"),
        "label": rng.normal(size=(2, 1, 2)).astype("float32"),
    }


def test_padding_concatenates_in_sorted_order_and_splits_back(rng):
    inputs = _modalities(rng)
    layer = MultimodalPadding(min_padding_size=3)
    out = numpy(layer(inputs))
    assert out.shape == (2, 8, 10)
    parts = MultimodalPadding.split(out, {"image": 3, "audio": 4, "label": 1})
    for m, x in inputs.items():
        width = x.shape[-1]
        np.testing.assert_array_equal(parts[m][..., :width], x)
        pad = numpy(layer.paddings[m])
        assert pad.shape == (1, 10 - width)
        np.testing.assert_array_equal(parts[m][..., width:], np.broadcast_to(pad, x.shape[:2] + pad.shape[1:]))
    # audio first, then image, then label
    np.testing.assert_array_equal(out[:, :4, :7], inputs["audio"])
    np.testing.assert_array_equal(out[:, 4:7, :5], inputs["image"])


def test_mask_probabilities_zero_and_one_are_deterministic(rng):
    inputs = _modalities(rng)
    layer = MultimodalPadding(min_padding_size=2, mask_probs={"audio": 0.0, "image": 0.0, "label": 1.0})
    for training in (False, True):
        out = numpy(layer(inputs, training=training))
        parts = MultimodalPadding.split(out, {"image": 3, "audio": 4, "label": 1})
        np.testing.assert_array_equal(parts["label"][:, 0], np.tile(numpy(layer.mask_tokens["label"]), (2, 1)))
        np.testing.assert_array_equal(parts["audio"][..., :7], inputs["audio"])
    assert sorted(layer.mask_tokens) == ["audio", "image", "label"]


def test_intermediate_mask_probability_masks_at_random_in_training_only(rng):
    inputs = {"audio": rng.normal(size=(4, 50, 3)).astype("float32")}
    layer = MultimodalPadding(min_padding_size=1, mask_probs={"audio": 0.5}, seed=1)
    np.testing.assert_array_equal(numpy(layer(inputs))[..., :3], inputs["audio"])
    out = numpy(layer(inputs, training=True))
    token = numpy(layer.mask_tokens["audio"])[0]
    masked = np.all(out == token, axis=-1)
    kept = np.all(out[..., :3] == inputs["audio"], axis=-1)
    assert np.all(masked | kept)
    assert 0.3 < masked.mean() < 0.7


def test_padding_errors_name_the_problem(rng):
    with pytest.raises(ValueError, match=r"mask_probs\['audio'\]"):
        MultimodalPadding(mask_probs={"audio": 1.5})
    with pytest.raises(ValueError, match="'video'"):
        MultimodalPadding(mask_probs={"video": 0.5})(_modalities(rng))
    layer = MultimodalPadding()
    layer(_modalities(rng))
    with pytest.raises(ValueError, match="expected modalities"):
        layer({"audio": np.zeros((1, 2, 7), "float32")})


def test_audio_postprocessor_orders_samples_patch_major(rng):
    x = rng.normal(size=(2, 3, 8)).astype("float32")
    layer = AudioPostprocessor(samples_per_patch=4)
    out = numpy(layer(x))
    dense = layer.projection
    per_patch = x @ numpy(dense.kernel) + numpy(dense.bias)
    np.testing.assert_allclose(out, per_patch.reshape(2, 12, 1), atol=1e-6)


@pytest.mark.parametrize(
    "layer",
    [
        VideoPreprocessor(patch_size=2, temporal_patch_size=1, num_bands=3, max_resolution=(1, 2, 2)),
        AudioPreprocessor(samples_per_patch=4, num_bands=5, max_resolution=(16,)),
        OneHotPreprocessor(),
        MultimodalPadding(min_padding_size=3, mask_probs={"a": 0.5}, seed=3),
        AudioPostprocessor(samples_per_patch=6),
    ],
)
def test_config_round_trip(layer):
    config = layer.get_config()
    clone = layer.__class__.from_config(config)
    assert clone.get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert restored.get_config() == config
