import keras
import numpy as np
import pytest
from keras import ops

from keras_perceiver.layers import ConvDownsample
from keras_perceiver.layers import FourierPositionEncoding
from keras_perceiver.layers import ImagePreprocessor
from keras_perceiver.layers import SpaceToDepth


def np_conv(x, w, stride, pads):
    """Plain NumPy NHWC conv (cross-correlation) with explicit (before, after) pads."""
    x = np.pad(x, [(0, 0), pads[0], pads[1], (0, 0)])
    k = w.shape[0]
    out_h = (x.shape[1] - k) // stride + 1
    out_w = (x.shape[2] - k) // stride + 1
    out = np.zeros((x.shape[0], out_h, out_w, w.shape[-1]))
    for i in range(out_h):
        for j in range(out_w):
            patch = x[:, i * stride:i * stride + k, j * stride:j * stride + k, :]
            out[:, i, j] = np.einsum("bhwc,hwco->bo", patch, w)
    return out


def np_max_pool(x, pads):
    x = np.pad(x, [(0, 0), pads[0], pads[1], (0, 0)], constant_values=-np.inf)
    out_h, out_w = (x.shape[1] - 3) // 2 + 1, (x.shape[2] - 3) // 2 + 1
    return np.stack([np.stack([x[:, 2 * i:2 * i + 3, 2 * j:2 * j + 3].max(axis=(1, 2))
                               for j in range(out_w)], 1) for i in range(out_h)], 1)


def tf_same_pads(n, k, s):
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return (total // 2, total - total // 2)


@pytest.mark.parametrize("size,padding,grid", [
    (224, "deepmind", 56), (224, "transformers", 55), (32, "deepmind", 8),
    (32, "transformers", 7), (8, "deepmind", 2), (9, "deepmind", 3)])
def test_conv_stem_grid(size, padding, grid):
    stem = ConvDownsample(num_channels=4, padding=padding)
    assert stem.output_grid(size, size) == (grid, grid)
    if size < 224:  # the 224 forward pass runs in the token-count test below
        assert tuple(stem(np.zeros((1, size, size, 3), "float32")).shape) == (1, grid, grid, 4)


def test_conv_stem_224_gives_3136_or_3025_tokens():
    for padding, tokens in (("deepmind", 3136), ("transformers", 3025)):
        pre = ImagePreprocessor("conv", stem_padding=padding)
        out = pre(np.zeros((1, 224, 224, 3), "float32"))
        assert tuple(out.shape) == (1, tokens, 64 + 258)


@pytest.mark.parametrize("padding", ["deepmind", "transformers"])
@pytest.mark.parametrize("size", [10, 11])
def test_conv_stem_matches_numpy(padding, size, rng):
    stem = ConvDownsample(num_channels=5, padding=padding)
    x = rng.normal(size=(2, size, size, 3)).astype("float32")
    stem.build(x.shape)
    bn = stem.batchnorm
    w = rng.normal(size=(7, 7, 3, 5)).astype("float32") / np.sqrt(147)
    gamma, beta, mean = (rng.normal(size=5).astype("float32") for _ in range(3))
    var = (rng.random(5) + 0.5).astype("float32")
    stem.conv.kernel.assign(w)
    for v, value in ((bn.gamma, gamma), (bn.beta, beta), (bn.moving_mean, mean),
                     (bn.moving_variance, var)):
        v.assign(value)
    if padding == "deepmind":  # TF SAME: asymmetric, the extra pad goes after
        conv_pads = [tf_same_pads(size, 7, 2)] * 2
        h = -(-size // 2)
        pool_pads = [tf_same_pads(h, 3, 2)] * 2
    else:
        conv_pads, pool_pads = [(3, 3)] * 2, [(0, 0)] * 2
    y = np_conv(x.astype(np.float64), w, 2, conv_pads)
    y = (y - mean) / np.sqrt(var + 1e-5) * gamma + beta
    expected = np_max_pool(np.maximum(y, 0), pool_pads)
    got = ops.convert_to_numpy(stem(x))
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_conv_stem_batchnorm_momentum_and_stats(rng):
    stem = ConvDownsample(num_channels=3)
    x = rng.normal(size=(4, 16, 16, 3)).astype("float32")
    stem(x, training=True)
    bn = stem.batchnorm
    assert bn.epsilon == 1e-5 and bn.momentum == 0.9
    assert len(stem.non_trainable_weights) == 2
    conv = ops.convert_to_numpy(stem.conv(x))
    np.testing.assert_allclose(ops.convert_to_numpy(bn.moving_mean),
                               0.1 * conv.mean(axis=(0, 1, 2)), atol=1e-5)


def test_space_to_depth_matches_reference_order(rng):
    x = rng.normal(size=(2, 8, 12, 3)).astype("float32")
    got = ops.convert_to_numpy(SpaceToDepth(4)(x))
    # b (h dh) (w dw) c -> b h w (dh dw c)
    ref = x.reshape(2, 2, 4, 3, 4, 3).transpose(0, 1, 3, 2, 4, 5).reshape(2, 2, 3, 48)
    np.testing.assert_array_equal(got, ref)
    assert got[0, 1, 2, 3 * 4 * 1 + 3 * 2 + 1] == x[0, 4 + 1, 8 + 2, 1]
    video = rng.normal(size=(2, 4, 8, 8, 3)).astype("float32")
    got = ops.convert_to_numpy(SpaceToDepth(4, temporal_block_size=2)(video))
    ref = video.reshape(2, 2, 2, 2, 4, 2, 4, 3).transpose(0, 1, 3, 5, 2, 4, 6, 7)
    np.testing.assert_array_equal(got, ref.reshape(2, 2, 2, 2, 96))
    with pytest.raises(ValueError, match="divisible"):
        SpaceToDepth(3)(x)


def test_pixels_with_fourier_is_concat_of_pixels_and_features(rng):
    x = rng.normal(size=(2, 6, 5, 1)).astype("float32")
    pre = ImagePreprocessor("pixels", num_bands=3, max_resolution=(224, 224))
    out = ops.convert_to_numpy(pre(x))
    features = ops.convert_to_numpy(
        FourierPositionEncoding((6, 5), 3, max_resolution=(224, 224))(x))
    assert out.shape == (2, 30, 1 + 2 + 12)
    np.testing.assert_array_equal(out[..., :1], x.reshape(2, 30, 1))
    np.testing.assert_array_equal(out[..., 1:], features)


def test_conv1x1_trainable_projected_and_added(rng):
    x = rng.normal(size=(2, 4, 4, 3)).astype("float32")
    pre = ImagePreprocessor("conv1x1", num_channels=8, position_encoding_type="trainable",
                            position_channels=6, project_pos_dim=5)
    out = ops.convert_to_numpy(pre(x))
    w, b = (ops.convert_to_numpy(v) for v in (pre.conv1x1.kernel, pre.conv1x1.bias))
    pos = ops.convert_to_numpy(pre.position_projection(pre.position_encoding.embeddings[None]))
    np.testing.assert_allclose(out[..., :8], x.reshape(2, 16, 3) @ w[0, 0] + b, atol=1e-5)
    np.testing.assert_allclose(out[..., 8:], np.broadcast_to(pos, (2, 16, 5)), atol=1e-6)
    add = ImagePreprocessor("conv1x1", num_channels=6, spatial_downsample=2,
                            position_encoding_type="trainable", position_channels=6,
                            concat_or_add_pos="add")
    out = ops.convert_to_numpy(add(x))
    assert out.shape == (2, 4, 6)
    feats = ops.convert_to_numpy(add.conv1x1(x)).reshape(2, 4, 6)
    np.testing.assert_allclose(out - feats, np.broadcast_to(
        ops.convert_to_numpy(add.position_encoding.embeddings), (2, 4, 6)), atol=1e-6)


def test_patches_on_video_with_3d_fourier(rng):
    video = rng.normal(size=(1, 2, 8, 8, 3)).astype("float32")
    pre = ImagePreprocessor("patches", spatial_downsample=4, num_bands=2,
                            max_resolution=(2, 2, 2))
    out = ops.convert_to_numpy(pre(video))
    assert pre.index_dims == (2, 2, 2)
    assert out.shape == (1, 8, 48 + 3 + 2 * 3 * 2)
    projected = ImagePreprocessor("patches", spatial_downsample=4, num_channels=7,
                                  conv_after_patching=True, num_bands=2)
    assert tuple(projected(video).shape) == (1, 8, 7 + 15)


def test_errors_name_the_layer_and_shapes():
    with pytest.raises(ValueError, match="prep_type"):
        ImagePreprocessor("resnet")
    with pytest.raises(ValueError, match="padding"):
        ConvDownsample(padding="valid")
    with pytest.raises(ValueError, match="spatial_downsample=2"):
        ImagePreprocessor("conv", spatial_downsample=2)
    with pytest.raises(ValueError, match="position_channels"):
        ImagePreprocessor("pixels", position_encoding_type="trainable")
    pre = ImagePreprocessor("pixels", num_bands=2, name="prep")
    pre(np.zeros((1, 4, 4, 3), "float32"))
    with pytest.raises(ValueError, match=r"prep: expected images of shape \[batch, 4, 4, 3\]"):
        pre(np.zeros((1, 5, 4, 3), "float32"))
    with pytest.raises(ValueError, match="expects images"):
        ImagePreprocessor("conv")(np.zeros((1, 2, 8, 8, 3), "float32"))
    with pytest.raises(ValueError, match="add"):
        ImagePreprocessor("pixels", num_bands=2, concat_or_add_pos="add")(
            np.zeros((1, 4, 4, 3), "float32"))


@pytest.mark.parametrize("layer", [
    ConvDownsample(num_channels=4, padding="transformers"),
    SpaceToDepth(2, temporal_block_size=1),
    ImagePreprocessor("conv1x1", num_channels=4, position_encoding_type="trainable",
                      position_channels=3, project_pos_dim=2),
    ImagePreprocessor("conv", num_channels=4, max_resolution=(56, 56)),
])
def test_config_round_trip(layer, rng):
    x = rng.normal(size=(2, 8, 8, 3)).astype("float32")
    layer(x)
    clone = layer.__class__.from_config(layer.get_config())
    clone(x)
    assert clone.get_config() == layer.get_config()
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(ops.convert_to_numpy(clone(x)), ops.convert_to_numpy(layer(x)))
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is type(layer)
