import math

import numpy as np
import pytest
from keras import ops

from keras_perceiver.layers import FourierPositionEncoding
from keras_perceiver.layers import TrainablePositionEncoding


def reference_fourier(index_dims, num_bands, max_resolution=None, concat_pos=True,
                      sine_only=False, positions=None):
    """Independent float64 computation of docs/architecture.md section 2."""
    max_resolution = max_resolution or index_dims
    if positions is None:
        axes = [np.linspace(-1.0, 1.0, n) for n in index_dims]
        positions = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(index_dims))
    columns = [positions] if concat_pos else []
    f = np.concatenate(
        [positions[:, d:d + 1] * np.linspace(1.0, max_resolution[d] / 2, num_bands)[None]
         for d in range(len(index_dims))], axis=-1)
    columns.append(np.sin(np.pi * f))
    if not sine_only:
        columns.append(np.cos(np.pi * f))
    return np.concatenate(columns, axis=-1)


CASES = [
    dict(index_dims=(37,), num_bands=5),
    dict(index_dims=(224, 224), num_bands=64),
    dict(index_dims=(6, 20, 28), num_bands=7, max_resolution=(16, 56, 56)),
    dict(index_dims=(30, 40), num_bands=8, concat_pos=False),
    dict(index_dims=(30, 40), num_bands=8, sine_only=True),
    dict(index_dims=(1920,), num_bands=192, max_resolution=(30720,), concat_pos=False,
         sine_only=True),
]


@pytest.mark.parametrize("case", CASES)
def test_fourier_matches_float64_formula(case):
    layer = FourierPositionEncoding(**case)
    out = ops.convert_to_numpy(layer(np.zeros((2, 1))))
    expected = reference_fourier(**case)
    assert out.shape == (2,) + expected.shape
    assert out.shape[-1] == layer.num_channels
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[1], expected, atol=1e-6, rtol=0)
    np.testing.assert_array_equal(out[0], out[1])


def test_fourier_channel_count_2d_64_bands():
    assert FourierPositionEncoding((224, 224), 64).num_channels == 258


@pytest.mark.parametrize("case", CASES[1:3])
def test_subsampled_positions_use_minus1_plus_2i_over_n(case, rng):
    layer = FourierPositionEncoding(**case)
    dims = case["index_dims"]
    indices = rng.choice(math.prod(dims), size=50, replace=False)
    out = ops.convert_to_numpy(layer(np.zeros((3, 1)), indices=indices))
    grid = np.stack(np.unravel_index(indices, dims), axis=1)
    positions = -1 + 2 * grid / np.array(dims)[None]
    expected = reference_fourier(**case, positions=positions)
    assert out.shape == (3, 50, layer.num_channels)
    np.testing.assert_allclose(out[2], expected, atol=1e-6, rtol=0)
    # Per-example indices [B, n] work too.
    per_example = ops.convert_to_numpy(layer(np.zeros((2, 1)), indices=np.stack([indices, indices])))
    np.testing.assert_array_equal(per_example[0], out[0])


def test_fourier_rejects_mismatched_max_resolution():
    with pytest.raises(ValueError, match="one entry per index dim"):
        FourierPositionEncoding((4, 5), 3, max_resolution=(4,))


def test_trainable_position_encoding(rng):
    layer = TrainablePositionEncoding((3, 4), 6)
    out = ops.convert_to_numpy(layer(np.zeros((2, 9))))
    assert out.shape == (2, 12, 6)
    table = ops.convert_to_numpy(layer.embeddings)
    np.testing.assert_array_equal(out[1], table)
    # Truncated normal 0.02 init, as DeepMind.
    assert 0 < table.std() < 0.05 and np.abs(table).max() <= 0.04 + 1e-7
    picked = ops.convert_to_numpy(layer(np.zeros((2, 1)), indices=np.array([5, 0])))
    np.testing.assert_array_equal(picked[0], table[[5, 0]])


@pytest.mark.parametrize("layer", [
    TrainablePositionEncoding(10, 4),
    FourierPositionEncoding((4, 5), 3, max_resolution=(8, 10), concat_pos=False, sine_only=True),
])
def test_config_round_trip(layer):
    config = layer.get_config()
    assert layer.__class__.from_config(config).get_config() == config
