"""Synthetic flow pairs (exact ground truth), .flo files and the directory loader."""

import os

import numpy as np
import pytest

from keras_perceiver.data import flow as flow_data


def ramp_photo(height=120, width=160):
    """Channel 0 = x, channel 1 = y: bilinear sampling of it is exact."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    return np.stack([x, y, np.full_like(x, 50.0)], axis=-1)


def test_convention_frame1_at_p_is_frame2_at_p_plus_flow():
    photo = ramp_photo()
    frames, flow = flow_data.synthetic_flow_pairs(8, (16, 24), photos=[photo], seed=3)
    f1, f2 = frames[:, 0].astype(np.float64), frames[:, 1].astype(np.float64)
    # frame1(p) = photo(origin + p + flow(p)), frame2(p) = photo(origin + p): on
    # the ramp their difference is the flow itself, up to uint8 rounding.
    np.testing.assert_array_less(np.abs(f1[..., 0] - f2[..., 0] - flow[..., 0]), 1.0)
    np.testing.assert_array_less(np.abs(f1[..., 1] - f2[..., 1] - flow[..., 1]), 1.0)
    assert np.abs(flow).max() > 1.0  # the test would not see a swapped sign otherwise
    # frame 2 is the crop itself: consecutive integer ramps.
    np.testing.assert_array_equal(np.diff(f2[..., 0], axis=2), 1.0)


def test_splits_use_disjoint_rows_and_seeds_repeat():
    photo = ramp_photo()
    cut = int(photo.shape[0] * flow_data.TRAIN_FRACTION)
    train, _ = flow_data.synthetic_flow_pairs(6, (8, 12), photos=[photo], seed=0)
    test, _ = flow_data.synthetic_flow_pairs(6, (8, 12), photos=[photo], split="test", seed=0)
    assert train[..., 1].max() < cut <= test[..., 1].min()
    again, _ = flow_data.synthetic_flow_pairs(6, (8, 12), photos=[photo], seed=0)
    np.testing.assert_array_equal(train, again)
    with pytest.raises(ValueError, match="split"):
        flow_data.synthetic_flow_pairs(1, split="val", photos=[photo])
    with pytest.raises(ValueError, match="smaller crop_size"):
        flow_data.synthetic_flow_pairs(1, (64, 24), split="test", photos=[photo])


def test_bundled_photos_give_moving_pairs():
    frames, flow = flow_data.synthetic_flow_pairs(4, (16, 24))
    assert frames.shape == (4, 2, 16, 24, 3) and frames.dtype == np.uint8
    assert flow.shape == (4, 16, 24, 2) and flow.dtype == np.float32
    assert 0.3 < np.sqrt((flow**2).sum(-1)).mean() < 6.0


def test_random_flow_field_is_smooth():
    flow = flow_data.random_flow_field(np.random.default_rng(0), 32, 48)
    # Neighbouring pixels differ by far less than a pixel.
    assert np.abs(np.diff(flow, axis=0)).max() < 0.5
    assert np.abs(np.diff(flow, axis=1)).max() < 0.5


def test_flo_round_trip_and_errors(tmp_path):
    flow = np.random.default_rng(0).normal(size=(5, 7, 2)).astype(np.float32)
    path = str(tmp_path / "a_flow.flo")
    flow_data.write_flo(path, flow)
    np.testing.assert_array_equal(flow_data.read_flo(path), flow)
    with open(path, "rb") as f:
        assert f.read(4) == np.array([202021.25], "<f4").tobytes()
    with pytest.raises(FileExistsError, match="already exists"):
        flow_data.write_flo(path, flow * 2)
    np.testing.assert_array_equal(flow_data.read_flo(path), flow)  # not overwritten
    bad = tmp_path / "bad.flo"
    bad.write_bytes(b"P6\n5 7\n" + b"\0" * 20)  # a PPM, not a .flo
    with pytest.raises(ValueError, match="not a .flo file"):
        flow_data.read_flo(str(bad))
    short = tmp_path / "short.flo"
    short.write_bytes(open(path, "rb").read()[:-4])
    with pytest.raises(ValueError, match="declares 7x5"):
        flow_data.read_flo(str(short))


def write_pair(directory, stem, flow, seed):
    from PIL import Image

    rng = np.random.default_rng(seed)
    for index in (1, 2):
        image = rng.integers(0, 255, flow.shape[:2] + (3,), dtype=np.uint8)
        Image.fromarray(image).save(os.path.join(directory, f"{stem}_img{index}.png"))
    flow_data.write_flo(os.path.join(directory, f"{stem}_flow.flo"), flow)


def test_load_flow_directory(tmp_path):
    from PIL import Image

    flows = [np.full((10, 14, 2), float(i), np.float32) for i in range(3)]
    for i, flow in enumerate(flows):
        write_pair(str(tmp_path), f"{i:05d}", flow, i)
    frames, flow = flow_data.load_flow_directory(str(tmp_path), crop_size=(8, 12))
    assert frames.shape == (3, 2, 8, 12, 3) and flow.shape == (3, 8, 12, 2)
    np.testing.assert_array_equal(flow[:, 0, 0, 0], [0.0, 1.0, 2.0])  # sorted by stem
    image = np.asarray(Image.open(str(tmp_path / "00001_img2.png")))
    window = frames[1, 1]
    found = any((image[y : y + 8, x : x + 12] == window).all()
                for y in range(3) for x in range(3))
    assert found  # a crop of the second image of pair 00001
    dataset = flow_data.make_dataset(frames, flow, batch_size=2)
    x, y = next(iter(dataset))
    np.testing.assert_allclose(x.numpy(), frames[:2] / 255.0 * 2 - 1, atol=1e-6)
    np.testing.assert_array_equal(y.numpy(), flow[:2])
    import tensorflow as tf

    order = tf.data.Dataset.from_tensor_slices(tf.constant([2, 0], tf.int64))
    _, y = next(iter(flow_data.make_dataset(frames, flow, 2, order=order)))
    np.testing.assert_array_equal(y.numpy(), flow[[2, 0]])
    with pytest.raises(ValueError, match="smaller than the crop"):
        flow_data.load_flow_directory(str(tmp_path), crop_size=(12, 12))
    os.remove(str(tmp_path / "00002_img1.png"))
    with pytest.raises(ValueError, match="00002_img1"):
        flow_data.load_flow_directory(str(tmp_path), crop_size=(8, 12))
    with pytest.raises(ValueError, match="FlyingChairs"):
        flow_data.load_flow_directory(str(tmp_path / "missing"))
