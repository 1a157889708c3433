"""PerceiverMultimodalAutoencoder: structure, subsampled and chunked decoding, presets."""

import inspect
import resource
import time

import numpy as np
import pytest
from keras import ops

from keras_perceiver.models import PerceiverMultimodalAutoencoder
from keras_perceiver.models import PerceiverTask

TINY = dict(
    num_frames=2, image_size=8, audio_samples=32, samples_per_patch=4, num_classes=5,
    image_num_bands=2, audio_num_bands=3, num_latents=4, num_latent_channels=8,
    num_self_attends_per_block=2, num_self_attention_heads=2, label_query_channels=6,
    decoder_channels=8,
)


def numpy(tree):
    return {k: ops.convert_to_numpy(v) for k, v in tree.items()}


def copy_weights(source, target):
    """By weight path: the two graphs may track their layers in another order."""
    values = {w.path: w for w in source.weights}
    for w in target.weights:
        w.assign(values[w.path])


def random_inputs(rng, batch=2, image_shape=(2, 8, 8, 3), audio_samples=32, classes=5):
    return {
        "image": rng.uniform(size=(batch,) + image_shape).astype("float32"),
        "audio": rng.uniform(-1, 1, size=(batch, audio_samples, 1)).astype("float32"),
        "label": np.eye(classes, dtype="float32")[rng.integers(0, classes, size=batch)],
    }


@pytest.fixture(scope="module")
def model():
    return PerceiverMultimodalAutoencoder(**TINY)


def test_outputs_have_the_input_structure(model, rng):
    inputs = random_inputs(rng)
    out = numpy(model(inputs))
    assert {k: v.shape for k, v in out.items()} == {
        "image": (2, 2, 8, 8, 3), "audio": (2, 32, 1), "label": (2, 5)}
    assert all(np.isfinite(v).all() for v in out.values())


@pytest.mark.parametrize("num_chunks", [1, 4, 3])
def test_chunked_reconstruction_equals_the_full_output(model, rng, num_chunks):
    inputs = random_inputs(rng)
    full = numpy(model(inputs))
    chunked = model.reconstruct(inputs, num_chunks=num_chunks)
    for key in full:
        assert chunked[key].shape == full[key].shape
        # Same queries, same weights; only matmul blocking differs.
        np.testing.assert_allclose(chunked[key], full[key], atol=1e-5, rtol=0)


def test_subsampled_points_decode_those_points(model, rng):
    inputs = random_inputs(rng)
    full = numpy(model(inputs))
    points = {"image": np.array([5, 0, 127, 64], "int32"), "audio": np.array([7, 2], "int32")}
    out = numpy(model.decode_points(inputs, points))
    assert out["image"].shape == (2, 4, 3) and out["audio"].shape == (2, 8, 1)
    np.testing.assert_allclose(out["image"], full["image"].reshape(2, 128, 3)[:, points["image"]], atol=1e-5)
    patches = full["audio"].reshape(2, 8, 4)[:, points["audio"]].reshape(2, 8, 1)
    np.testing.assert_allclose(out["audio"], patches, atol=1e-5)
    np.testing.assert_allclose(out["label"], full["label"], atol=1e-5)


@pytest.mark.filterwarnings("ignore:Gradients do not exist")  # masked-out tokens
def test_per_example_points_in_the_training_graph(rng):
    config = dict(TINY, num_subsampled_points={"image": 3, "audio": 2})
    sub = PerceiverMultimodalAutoencoder(**config)
    full_model = PerceiverMultimodalAutoencoder(**TINY)
    copy_weights(sub, full_model)
    inputs = random_inputs(rng)
    image_points = np.array([[1, 2, 3], [100, 50, 0]], "int32")
    audio_points = np.array([[0, 1], [6, 7]], "int32")
    out = numpy(sub({**inputs, "image_points": image_points, "audio_points": audio_points}))
    full = numpy(full_model(inputs))
    for b in range(2):
        np.testing.assert_allclose(out["image"][b], full["image"].reshape(2, 128, 3)[b, image_points[b]], atol=1e-5)
        np.testing.assert_allclose(
            out["audio"][b].reshape(2, 4), full["audio"].reshape(2, 8, 4)[b, audio_points[b]], atol=1e-5)
    # Trainable: a gradient step on the subsampled outputs changes the weights.
    sub.compile(optimizer="sgd", loss={"image": "mae", "audio": "mae", "label": "mse"},
                run_eagerly=True)
    before = [ops.convert_to_numpy(w).copy() for w in sub.trainable_weights]
    targets = {"image": np.zeros((2, 3, 3)), "audio": np.zeros((2, 8, 1)), "label": np.zeros((2, 5))}
    sub.train_on_batch({**inputs, "image_points": image_points, "audio_points": audio_points}, targets)
    changed = [not np.array_equal(b, ops.convert_to_numpy(w)) for b, w in zip(before, sub.trainable_weights)]
    assert sum(changed) > len(changed) // 2


def test_label_is_masked_by_default_and_used_without_mask(rng):
    inputs = random_inputs(rng, batch=1)
    other = dict(inputs, label=np.roll(inputs["label"], 1, axis=-1))
    masked = PerceiverMultimodalAutoencoder(**TINY)
    for key, a in numpy(masked(inputs)).items():
        np.testing.assert_array_equal(a, ops.convert_to_numpy(masked(other)[key]))
    unmasked = PerceiverMultimodalAutoencoder(**dict(TINY, mask_probs={}))
    assert not unmasked.input_padding.mask_tokens
    assert not np.allclose(numpy(unmasked(inputs))["label"], numpy(unmasked(other))["label"])


def test_bad_inputs_raise(model, rng):
    inputs = random_inputs(rng)
    with pytest.raises(ValueError, match=r"`image` of shape \[batch, 2, 8, 8, 3\]"):
        model.reconstruct(dict(inputs, image=inputs["image"][:, :, :4]))
    with pytest.raises(ValueError, match="keys"):
        model.encode({"image": inputs["image"]})
    with pytest.raises(ValueError, match="num_chunks"):
        model.reconstruct(inputs, num_chunks=9)  # only 8 audio patches
    out_of_range = r"subsampled_points\['image'\] must be flat indices in \[0, 128\)"
    with pytest.raises(ValueError, match=out_of_range):
        model.decode_points(inputs, {"image": np.array([3, 128])})
    with pytest.raises(ValueError, match=r"subsampled_points\['audio'\] of shape"):
        model.decode_points(inputs, {"audio": np.zeros((1, 2, 3), "int32")})
    with pytest.raises(ValueError, match="divisible"):
        PerceiverMultimodalAutoencoder(**dict(TINY, audio_samples=30))
    with pytest.raises(ValueError, match="num_subsampled_points"):
        PerceiverMultimodalAutoencoder(**dict(TINY, num_subsampled_points={"image": 3}))


def test_trainable_count_of_a_small_config(model):
    # inputs: audio 4+7=11, image 48+15=63, label 5 -> width 67; queries 7/15/6 -> 17
    padding = (67 - 11) + (67 - 63) + (67 - 5) + 3 * 67 + (17 - 7) + (17 - 15) + (17 - 6)
    encoder = 4 * 8 + 2 * (8 + 67 + 8) + (8 * 67 + 67) + 2 * (67 * 67 + 67) + (67 * 8 + 8) + 2 * (8 * 8 + 8)
    encoder += 2 * (4 * (8 * 8 + 8) + 2 * 2 * 8 + 2 * (8 * 8 + 8))
    decoder = 6 + 2 * (17 + 8 + 17) + (17 * 8 + 8) + 2 * (8 * 8 + 8) + (8 * 17 + 17) + 2 * (17 * 17 + 17)
    decoder += 17 * 8 + 8
    post = (8 * 4 + 4) + (8 * 3 + 3) + (8 * 5 + 5)
    assert model.count_params() == padding + encoder + decoder + post


def test_preset_listing_and_round_trip(model, rng, tmp_path):
    assert "multimodal_perceiver" in PerceiverMultimodalAutoencoder.presets
    model.save_to_preset(tmp_path)
    restored = PerceiverTask.from_preset(str(tmp_path))
    assert isinstance(restored, PerceiverMultimodalAutoencoder)
    assert restored.get_config() == model.get_config()
    for a, b in zip(model.get_weights(), restored.get_weights()):
        np.testing.assert_array_equal(a, b)
    inputs = random_inputs(rng, batch=1)
    for key, value in numpy(model(inputs)).items():
        np.testing.assert_array_equal(value, ops.convert_to_numpy(restored(inputs)[key]))


def test_config_round_trip(model):
    config = model.get_config()
    arguments = set(inspect.signature(PerceiverMultimodalAutoencoder.__init__).parameters)
    assert set(config) == arguments - {"self", "kwargs"} | {"name"}
    clone = PerceiverMultimodalAutoencoder.from_config(config)
    assert clone.get_config() == config
    assert clone.count_params() == model.count_params()


@pytest.mark.large
def test_full_preset(rng, tmp_path):
    """Exact count, the first and last of the paper's 128 decoder chunks on one
    example, bit-exact round trip of the weights.

    Chunked decoding equals the full output at small size
    (`test_chunked_reconstruction_equals_the_full_output`), so two chunks of
    6,272 pixels and 15 audio patches stand for the 128 here.
    """
    model = PerceiverMultimodalAutoencoder.from_preset("multimodal_perceiver", load_weights=False)
    # transformers' count; the never-used mask tokens (audio, image) and the
    # always-masked label's padding, 704 + 704 + 4, are frozen here.
    assert model.count_params() == 19_858_855
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == 19_858_855 - 1_412
    assert model.input_padding.num_channels == 704
    assert model.query_padding.num_channels == 1026
    assert model.encoder.cross_attention.attention.query_dense.kernel.shape == (512, 704)
    inputs = random_inputs(rng, batch=1, image_shape=(16, 224, 224, 3), audio_samples=30720,
                           classes=700)
    start = time.perf_counter()
    latents = model.encode(inputs)
    chunks = {
        "first": {"image": np.arange(0, 6272), "audio": np.arange(0, 15)},
        "last": {"image": np.arange(802816 - 6272, 802816), "audio": np.arange(1905, 1920)},
    }
    outputs = {name: numpy(model.decode(latents, points)) for name, points in chunks.items()}
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"multimodal_perceiver: encode + 2 chunks in {elapsed:.1f} s, peak RSS {peak:.1f} GiB")
    for out in outputs.values():
        assert out["image"].shape == (1, 6272, 3) and out["audio"].shape == (1, 240, 1)
        assert out["label"].shape == (1, 700)
        assert all(np.isfinite(v).all() for v in out.values())
    assert not np.allclose(outputs["first"]["image"], outputs["last"]["image"])
    # The label query is the same in every chunk.
    np.testing.assert_array_equal(outputs["first"]["label"], outputs["last"]["label"])

    model.save_to_preset(tmp_path)
    restored = PerceiverMultimodalAutoencoder.from_preset(str(tmp_path))
    for a, b in zip(model.weights, restored.weights):  # equal weights: no second forward
        np.testing.assert_array_equal(ops.convert_to_numpy(a), ops.convert_to_numpy(b))
