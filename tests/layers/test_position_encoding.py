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
    FourierPositionEncoding((4, 5), 3, rounding="deepmind"),
])
def test_config_round_trip(layer):
    config = layer.get_config()
    assert layer.__class__.from_config(config).get_config() == config


def test_fourier_rounding_is_saved_and_defaults_to_exact():
    assert FourierPositionEncoding((4, 5), 3).rounding == "exact"
    config = FourierPositionEncoding((4, 5), 3, rounding="transformers").get_config()
    assert config["rounding"] == "transformers"
    assert FourierPositionEncoding.from_config(config).rounding == "transformers"


def test_fourier_rejects_unknown_rounding():
    with pytest.raises(ValueError, match="rounding must be one of"):
        FourierPositionEncoding((4, 5), 3, rounding="float32")


# --- Rounding like the references (REFERENCE.md section 2, bit-level note) ---
# The references are the two codes' formulas written literally in jax.numpy
# (jitted, as DeepMind's Haiku forward runs) and torch.


def _deepmind_features(pos, num_bands, max_resolution):
    import jax
    import jax.numpy as jnp

    def one(p):
        freq = jnp.stack([jnp.linspace(1.0, r / 2, num=num_bands, endpoint=True)
                          for r in max_resolution], axis=0)
        f = jnp.reshape(p[:, :, None] * freq[None], [p.shape[0], -1])
        return jnp.concatenate([p, jnp.sin(jnp.pi * f), jnp.cos(jnp.pi * f)], axis=-1)

    return jax.vmap(one)(pos)


def deepmind_reference(dims, num_bands, max_resolution, points=None):
    import jax
    import jax.numpy as jnp

    @jax.jit
    def full():
        axes = [jnp.linspace(-1.0, 1.0, num=n, endpoint=True, dtype=jnp.float32) for n in dims]
        pos = jnp.stack(jnp.meshgrid(*axes, indexing="ij"), axis=-1).reshape(1, -1, len(dims))
        return _deepmind_features(pos, num_bands, max_resolution)

    @jax.jit
    def subsampled():
        # The points are constants, as in the colab's jitted chunk loop.
        pos = jnp.stack(jnp.unravel_index(jnp.asarray(points), dims), axis=1)
        pos = -1 + 2 * pos / jnp.array(dims)[None, :]
        return _deepmind_features(pos[None], num_bands, max_resolution)

    return np.asarray(full() if points is None else subsampled())[0]


def transformers_reference(dims, num_bands, max_resolution, points=None):
    import torch

    if points is None:
        axes = [torch.linspace(-1.0, 1.0, steps=n, dtype=torch.float32) for n in dims]
        pos = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, len(dims))
    else:
        pos = torch.stack(torch.unravel_index(torch.from_numpy(points).long(), dims), dim=1)
        pos = -1 + 2 * pos / torch.tensor(dims)[None, :]
    freq = torch.stack([torch.linspace(start=1.0, end=r / 2, steps=num_bands)
                        for r in max_resolution])
    f = (pos[:, :, None] * freq[None]).reshape(pos.shape[0], -1)
    return torch.cat([pos, torch.sin(np.pi * f), torch.cos(np.pi * f)], dim=-1).numpy()


REFERENCES = {"deepmind": deepmind_reference, "transformers": transformers_reference}


def assert_matches_reference(got, expected, rank):
    """Positions bit for bit; sines and cosines within 1 ulp (or 2**-24 near zero)."""
    assert got.shape == expected.shape and got.dtype == expected.dtype == np.float32
    np.testing.assert_array_equal(got[:, :rank], expected[:, :rank])
    diff = np.abs(got[:, rank:] - expected[:, rank:])
    tolerance = np.maximum(np.spacing(np.abs(expected[:, rank:])), 2.0**-24)
    assert (diff <= tolerance).all(), f"{(diff > tolerance).sum()} entries off, max {diff.max()}"


def check_rounding(rounding, dims, num_bands, max_resolution, rng, grid=True, points=True):
    """The full grid and/or 2048 random subsampled points against the reference."""
    layer = FourierPositionEncoding(dims, num_bands, max_resolution=max_resolution,
                                    rounding=rounding)
    exact = FourierPositionEncoding(dims, num_bands, max_resolution=max_resolution)
    reference = REFERENCES[rounding]
    cases = []
    if grid:
        cases.append(None)
    if points:
        cases.append(rng.permutation(math.prod(dims))[:2048].astype("int32"))
    for indices in cases:
        got = ops.convert_to_numpy(layer(np.zeros((1, 1)), indices=indices))[0]
        expected = reference(dims, num_bands, max_resolution, indices)
        assert_matches_reference(got, expected, len(dims))
        # The float64 tables are measurably not what the reference computes.
        assert not np.array_equal(
            ops.convert_to_numpy(exact(np.zeros((1, 1)), indices=indices))[0], expected)


@pytest.mark.parametrize("rounding", ["deepmind", "transformers"])
@pytest.mark.parametrize("dims, num_bands, max_resolution", [
    ((37,), 9, (3000,)), ((13, 9), 6, (40, 30)), ((3, 5, 7), 4, (3, 20, 28)),
])
def test_rounding_matches_reference_small(rounding, dims, num_bands, max_resolution, rng):
    check_rounding(rounding, dims, num_bands, max_resolution, rng)


# The released grids, each where its code evaluates it: full grids for the
# inputs, subsampled points for the multimodal decoder queries. (XLA's
# rounding of DeepMind's `-1 + 2 * i / n` depends on the computation around it:
# a multiply-add when compiled, each operation rounded when constant-folded as
# in the multimodal decoder, the one DeepMind model that decodes subsampled
# Fourier queries.)
RELEASED = {
    "deepmind": [
        ((1920,), 192, (30720,), True, True),  # audio: 30720 samples, patches of 16
        ((16, 56, 56), 32, (16, 56, 56), True, False),  # video patches
        ((16, 224, 224), 32, (16, 56, 56), False, True),  # video queries
        ((224, 224), 64, (224, 224), True, False),  # ImageNet Fourier
        ((368, 496), 64, (368, 496), True, False),  # optical flow
    ],
    "transformers": [
        ((1920,), 192, (30720,), True, True),
        ((16, 56, 56), 32, (16, 224, 224), True, False),
        ((16, 224, 224), 32, (16, 224, 224), False, True),
        ((224, 224), 64, (224, 224), True, True),
        ((368, 496), 64, (368, 496), True, True),
    ],
}


@pytest.mark.large
@pytest.mark.parametrize("rounding, case", [
    (rounding, case) for rounding, cases in RELEASED.items() for case in cases])
def test_rounding_matches_reference_released_sizes(rounding, case, rng):
    dims, num_bands, max_resolution, grid, points = case
    check_rounding(rounding, dims, num_bands, max_resolution, rng, grid=grid, points=points)
