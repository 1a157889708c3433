import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

import keras_perceiver
from keras_perceiver.layers import FourierPositionEncoding
from keras_perceiver.layers import FramePatches
from keras_perceiver.layers import OpticalFlowPreprocessor


def numpy_patches(frames):
    """Independent reference: loop over pixels, read the 3x3 neighbourhood."""
    b, t, h, w, c = frames.shape
    padded = np.zeros((b, t, h + 2, w + 2, c), frames.dtype)
    padded[:, :, 1:-1, 1:-1] = frames
    out = np.zeros((b, h, w, t * 9 * c), frames.dtype)
    for i in range(h):
        for j in range(w):
            # rows: frame, patch row, patch column, channel
            out[:, i, j] = padded[:, :, i : i + 3, j : j + 3, :].reshape(b, -1)
    return out


def test_patches_equal_numpy_reference(rng):
    frames = rng.uniform(-1, 1, (2, 2, 5, 7, 3)).astype("float32")
    got = ops.convert_to_numpy(FramePatches()(frames))
    assert got.shape == (2, 5, 7, 54)
    np.testing.assert_array_equal(got, numpy_patches(frames))


def test_patches_equal_tf_extract_patches_same(rng):
    frames = rng.uniform(-1, 1, (2, 2, 6, 9, 3)).astype("float32")
    per_frame = [
        tf.image.extract_patches(
            frames[:, t], sizes=[1, 3, 3, 1], strides=[1, 1, 1, 1],
            rates=[1, 1, 1, 1], padding="SAME",
        ).numpy()
        for t in range(2)
    ]
    expected = np.concatenate(per_frame, axis=-1)  # frame-major
    got = ops.convert_to_numpy(FramePatches()(frames))
    np.testing.assert_array_equal(got, expected)


def test_patch_centre_channels_are_the_pixels(rng):
    frames = rng.uniform(-1, 1, (1, 2, 4, 5, 3)).astype("float32")
    got = ops.convert_to_numpy(FramePatches()(frames))
    centre = 4 * 3  # (kh, kw) = (1, 1)
    np.testing.assert_array_equal(got[0, :, :, centre : centre + 3], frames[0, 0])
    np.testing.assert_array_equal(got[0, :, :, 27 + centre : 27 + centre + 3], frames[0, 1])
    # The border is zero-padded: the top-left patch element of pixel (0, 0).
    np.testing.assert_array_equal(got[0, 0, 0, :3], 0.0)


def test_patches_reject_wrong_rank():
    with pytest.raises(ValueError, match="rank 5"):
        FramePatches(name="patches")(np.zeros((2, 4, 5, 3), "float32"))


def test_preprocessor_is_dense_of_patches_then_fourier(rng):
    pre = OpticalFlowPreprocessor((4, 6), num_channels=5, num_bands=3)
    frames = rng.uniform(-1, 1, (2, 2, 4, 6, 3)).astype("float32")
    out = ops.convert_to_numpy(pre(frames))
    assert out.shape == (2, 24, 5 + 2 + 4 * 3) and pre.output_channels == 19
    kernel = ops.convert_to_numpy(pre.patches_linear.kernel)
    bias = ops.convert_to_numpy(pre.patches_linear.bias)
    tokens = numpy_patches(frames).reshape(2, 24, 54) @ kernel + bias
    np.testing.assert_allclose(out[..., :5], tokens, atol=1e-5)
    fourier = ops.convert_to_numpy(FourierPositionEncoding((4, 6), 3)(frames))
    np.testing.assert_array_equal(out[..., 5:], fourier)


def test_append_positions_makes_any_slice_of_the_tokens(rng):
    pre = OpticalFlowPreprocessor((4, 6), num_channels=5, num_bands=3, fourier_rounding="deepmind")
    frames = rng.uniform(-1, 1, (2, 2, 4, 6, 3)).astype("float32")
    tokens = ops.convert_to_numpy(pre(frames))
    features = pre(frames, positions=False)
    assert tuple(features.shape) == (2, 24, 5)
    np.testing.assert_array_equal(ops.convert_to_numpy(features), tokens[..., :5])
    for start, size in ((0, 24), (0, 7), (5, 6), (17, 7)):
        part = pre.append_positions(features[:, start:start + size], start)
        np.testing.assert_array_equal(ops.convert_to_numpy(part), tokens[:, start:start + size])
    tensor_start = pre.append_positions(features[:, 7:13], ops.convert_to_tensor(7, "int32"))
    np.testing.assert_array_equal(ops.convert_to_numpy(tensor_start), tokens[:, 7:13])


def test_preprocessor_max_resolution_changes_fourier(rng):
    frames = rng.uniform(-1, 1, (1, 2, 4, 6, 3)).astype("float32")
    a = OpticalFlowPreprocessor((4, 6), num_channels=2, num_bands=3)(frames)
    b = OpticalFlowPreprocessor((4, 6), num_channels=2, num_bands=3, max_resolution=(8, 8))(frames)
    expected = FourierPositionEncoding((4, 6), 3, max_resolution=(8, 8))(frames)
    np.testing.assert_array_equal(ops.convert_to_numpy(b)[..., 2:], ops.convert_to_numpy(expected))
    assert not np.allclose(ops.convert_to_numpy(a)[..., 2:], ops.convert_to_numpy(b)[..., 2:])


def test_preprocessor_rejects_wrong_frame_shape():
    pre = OpticalFlowPreprocessor((4, 6), name="flow_pre")
    with pytest.raises(ValueError, match=r"flow_pre: expected frames of shape \[batch, 2, 4, 6, 3\]"):
        pre(np.zeros((1, 2, 4, 7, 3), "float32"))


def test_preprocessor_config_round_trip(rng):
    pre = OpticalFlowPreprocessor((4, 6), num_channels=5, num_bands=3, max_resolution=(8, 9))
    config = pre.get_config()
    clone = OpticalFlowPreprocessor.from_config(config)
    assert clone.get_config() == config
    frames = rng.uniform(-1, 1, (1, 2, 4, 6, 3)).astype("float32")
    pre(frames)
    clone(frames)
    clone.set_weights(pre.get_weights())
    np.testing.assert_array_equal(ops.convert_to_numpy(pre(frames)), ops.convert_to_numpy(clone(frames)))
    serialized = keras.saving.serialize_keras_object(pre)
    assert isinstance(keras.saving.deserialize_keras_object(serialized), OpticalFlowPreprocessor)


def test_public_names():
    assert keras_perceiver.layers.FramePatches is FramePatches
    assert keras_perceiver.layers.OpticalFlowPreprocessor is OpticalFlowPreprocessor
