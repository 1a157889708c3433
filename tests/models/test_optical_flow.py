import itertools
import time

import numpy as np
import pytest
from keras import ops

import keras_perceiver
from keras_perceiver.models import PerceiverOpticalFlow
from keras_perceiver.models.optical_flow import blending_weights
from keras_perceiver.models.optical_flow import tile_origins

SMALL = dict(
    image_shape=(6, 8), num_latents=4, num_latent_channels=16,
    num_self_attends_per_block=2, num_self_attention_heads=2,
    num_patch_channels=8, num_bands=3,
)


def small_model(**kwargs):
    return PerceiverOpticalFlow(**{**SMALL, **kwargs})


def frames_for(model, rng, batch=2):
    return rng.uniform(-1, 1, (batch, 2) + model.image_shape + (3,)).astype("float32")


def test_output_shape_and_tokens(rng):
    model = small_model()
    flow = model(frames_for(model, rng))
    assert tuple(flow.shape) == (2, 6, 8, 2)
    # 8 patch channels + 2 positions + 2 * 2 * 3 Fourier features, one token per pixel.
    assert model.input_adapter.output_channels == 8 + 2 + 12


def test_flow_is_decoder_output_over_100_times_20(rng):
    model = small_model()
    final = model.decoder.final_layer
    final.kernel.assign(np.zeros(final.kernel.shape, "float32"))
    final.bias.assign(np.array([3.0, -7.0], "float32"))
    flow = ops.convert_to_numpy(model(frames_for(model, rng)))
    np.testing.assert_allclose(flow[..., 0], 3.0 / 100 * 20, rtol=1e-6)
    np.testing.assert_allclose(flow[..., 1], -7.0 / 100 * 20, rtol=1e-6)
    custom = small_model(rescale_factor=10.0, flow_scale_factor=1.0)
    custom.set_weights(model.get_weights())
    flow = ops.convert_to_numpy(custom(frames_for(model, rng)))
    np.testing.assert_allclose(flow[..., 0], 0.3, rtol=1e-6)


@pytest.mark.parametrize("chunked", [False, True])
def test_chunked_token_making_equals_whole_tokens(rng, chunked):
    # The model appends the Fourier features to the projected patches inside
    # the encoder's streamed keys and the decoder's query chunks (forced here
    # by small chunk sizes: 6 of 48 pixels), else once for all pixels; same
    # flow as the encoder and decoder run on the whole tokens.
    model = small_model()
    if chunked:
        encoder_attention = model.encoder.cross_attention.attention
        encoder_attention.key_chunk_size = 7
        assert encoder_attention._streams_keys(encoder_attention.chunk_sizes(4, 48), 4, 48)
        model.decoder.decoding_cross_attention.attention.query_chunk_size = 7
        assert model.decoder.decoding_cross_attention._query_chunk(48, 4, None) == 7
    frames = frames_for(model, rng)
    tokens = model.input_adapter(frames)
    whole = model.decoder(model.encoder(tokens), inputs=tokens)
    whole = ops.convert_to_numpy(whole).reshape((2, 6, 8, 2)) / 100 * 20
    np.testing.assert_allclose(ops.convert_to_numpy(model(frames)), whole, atol=1e-6)


def test_pixel_flow_depends_on_its_own_neighbourhood(rng):
    """A pixel's query is its own 3x3 neighbourhood in both frames: with the
    latents held fixed, changing pixel (3, 4) of frame 0 changes the flow at
    exactly the 3x3 pixels around it; through the latents, every pixel's."""
    model = small_model()
    config = model.get_config()
    scale = config["flow_scale_factor"] / config["rescale_factor"]
    x = frames_for(model, rng, batch=1)
    y = x.copy()
    y[0, 0, 3, 4] += 0.5

    def flow(latents_from, queries_from):
        latents = model.encoder(model.input_adapter(latents_from))
        out = model.decoder(latents, inputs=model.input_adapter(queries_from))
        return ops.convert_to_numpy(out).reshape(6, 8, 2) * scale

    a, b = ops.convert_to_numpy(model(x))[0], ops.convert_to_numpy(model(y))[0]
    np.testing.assert_allclose(flow(x, x), a, atol=1e-6)
    np.testing.assert_allclose(flow(y, y), b, atol=1e-6)
    neighbourhood = np.zeros((6, 8), bool)
    neighbourhood[2:5, 3:6] = True
    np.testing.assert_array_equal(np.abs(flow(x, y) - a).max(-1) > 1e-6, neighbourhood)
    assert (np.abs(flow(y, x) - a).max(-1) > 1e-6).all()


def test_config_round_trip(rng):
    model = small_model(max_resolution=(12, 16), activation="gelu")
    config = model.get_config()
    clone = PerceiverOpticalFlow(**config)
    assert clone.get_config() == config
    clone.set_weights(model.get_weights())
    x = frames_for(model, rng)
    np.testing.assert_array_equal(ops.convert_to_numpy(model(x)), ops.convert_to_numpy(clone(x)))


@pytest.mark.parametrize("budget", [None, 256])  # one-shot, and chunked attention
def test_clone_model_rebuilds_from_the_raw_patch_features(rng, budget):
    # clone_model re-calls the graph with fresh layers, which build from the
    # call's first input: the raw patch features, narrower than the tokens.
    import keras

    model = small_model(attention_memory_budget=budget)
    clone = keras.models.clone_model(model)
    assert [w.shape for w in clone.weights] == [w.shape for w in model.weights]
    clone.set_weights(model.get_weights())
    x = frames_for(model, rng)
    np.testing.assert_array_equal(ops.convert_to_numpy(model(x)), ops.convert_to_numpy(clone(x)))
    assert model.encoder.get_config()["inputs_channels"] == model.input_adapter.compute_output_shape(
        x.shape)[-1]


def test_small_preset_round_trip_bit_exact(tmp_path, rng):
    model = PerceiverOpticalFlow.from_preset("optical_flow_perceiver", load_weights=False, **SMALL)
    model.save_to_preset(str(tmp_path))
    again = PerceiverOpticalFlow.from_preset(str(tmp_path))
    generic = keras_perceiver.models.PerceiverTask.from_preset(str(tmp_path))
    assert isinstance(generic, PerceiverOpticalFlow)
    for a, b in zip(model.weights, again.weights):
        np.testing.assert_array_equal(ops.convert_to_numpy(a), ops.convert_to_numpy(b))
    x = frames_for(model, rng)
    np.testing.assert_array_equal(ops.convert_to_numpy(model(x)), ops.convert_to_numpy(again(x)))


def test_presets_listed():
    assert "optical_flow_perceiver" in PerceiverOpticalFlow.presets


def test_bad_image_shape():
    with pytest.raises(ValueError, match="PerceiverOpticalFlow: image_shape"):
        PerceiverOpticalFlow(image_shape=(6,))


# ---------------------------------------------------------------- tiling


def colab_grid_indices(image_shape, patch_size, min_overlap=20):
    """DeepMind's colab `compute_grid_indices`, restated."""
    ys = list(range(0, image_shape[0], patch_size[0] - min_overlap))
    xs = list(range(0, image_shape[1], patch_size[1] - min_overlap))
    ys[-1] = image_shape[0] - patch_size[0]
    xs[-1] = image_shape[1] - patch_size[1]
    return list(itertools.product(ys, xs))


def test_tile_origins_match_colab():
    for size in [(368, 496), (436, 1024), (375, 1242), (400, 500), (716, 496)]:
        assert tile_origins(size) == colab_grid_indices(size, (368, 496))
    # An axis exactly one tile long repeats its start, as in the colab.
    assert tile_origins((368, 496)) == [(0, 0)] * 4
    # Sintel: 2 x 3 tiles.
    assert tile_origins((436, 1024)) == [(0, 0), (0, 476), (0, 528), (68, 0), (68, 476), (68, 528)]


def test_tile_origins_stay_inside_where_the_colab_overflows():
    # The colab's middle start 348 would cut a 368 tile past row 700.
    assert [y for y, _ in colab_grid_indices((700, 500), (368, 496))] == [0, 0, 348, 348, 332, 332]
    origins = tile_origins((700, 500))
    assert origins == [(0, 0), (0, 4), (332, 0), (332, 4), (332, 0), (332, 4)]


def test_tile_origins_errors():
    with pytest.raises(ValueError, match="min_overlap"):
        tile_origins((400, 500), (10, 10), min_overlap=10)
    with pytest.raises(ValueError, match="at least"):
        tile_origins((300, 500))


def test_blending_weights_are_edge_distance():
    w = blending_weights((5, 7))
    expected = np.array(
        [[min(i + 1, 5 - i, j + 1, 7 - j) for j in range(7)] for i in range(5)], float
    )
    np.testing.assert_array_equal(w, expected)
    assert w.min() == 1.0


def uint8_frames(rng, shape, batch=None):
    full = shape if batch is None else (batch,) + shape
    return (rng.integers(0, 256, full + (3,)).astype(np.uint8),
            rng.integers(0, 256, full + (3,)).astype(np.uint8))


def test_predict_flow_on_exact_size_equals_model(rng):
    model = small_model()
    f1, f2 = uint8_frames(rng, (6, 8))
    frames = (np.stack([f1, f2])[None].astype(np.float32) / 255.0 * 2 - 1)
    expected = ops.convert_to_numpy(model(frames))[0]
    got = model.predict_flow(f1, f2, min_overlap=2)
    assert got.shape == (6, 8, 2) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-6)
    batched = model.predict_flow(f1[None], f2[None], min_overlap=2)
    assert batched.shape == (1, 6, 8, 2)
    np.testing.assert_array_equal(batched[0], got)


def test_predict_flow_blends_tiles_like_the_colab(rng):
    model = small_model()
    f1, f2 = uint8_frames(rng, (11, 20), batch=2)
    got = model.predict_flow(f1, f2, min_overlap=2)
    # xs [0, 6, 12, 12]: the colab's repeated start is weighted twice.
    # Independent restatement of the colab's compute_optical_flow.
    frames = np.stack([f1, f2], axis=1).astype(np.float32) / 255.0 * 2 - 1
    ph, pw = 6, 8
    flows = np.zeros((2, 11, 20, 2))
    count = np.zeros((1, 11, 20, 1))
    wx, wy = np.meshgrid(np.arange(pw), np.arange(ph))
    weights = np.minimum(np.minimum(wx + 1, pw - wx), np.minimum(wy + 1, ph - wy))[None, :, :, None]
    for y, x in colab_grid_indices((11, 20), (ph, pw), min_overlap=2):
        piece = ops.convert_to_numpy(model(frames[:, :, y : y + ph, x : x + pw]))
        pad = [(0, 0), (y, 11 - y - ph), (x, 20 - x - pw), (0, 0)]
        flows += np.pad(piece * weights, pad)
        count += np.pad(weights, pad)
    np.testing.assert_allclose(got, flows / count, atol=1e-5)


def test_predict_flow_evaluates_each_distinct_tile_once(rng, monkeypatch):
    model = small_model()
    seen = []
    real = model.predict_on_batch

    def counting(tile):
        seen.append(tile.copy())
        return real(tile)

    monkeypatch.setattr(model, "predict_on_batch", counting)
    f1, f2 = uint8_frames(rng, (6, 8))
    model.predict_flow(f1, f2, min_overlap=2)  # origins [(0, 0)] * 4
    assert len(seen) == 1
    seen.clear()
    model.predict_flow(*uint8_frames(rng, (12, 8)), min_overlap=2)
    assert len(seen) == 3  # ys [0, 4, 6] (colab: [0, 4, 8] -> last 6), xs [0]


def test_predict_flow_tiles_cover_every_pixel_exactly(rng, monkeypatch):
    """A tile "model" whose flow is a function of each pixel's own value gives
    that function of the full image: every pixel is covered, weights sum to 1."""
    model = small_model()

    def pixel_flow(tile):
        # flow = (first frame red, second frame blue), a per-pixel function.
        return np.stack([tile[:, 0, :, :, 0], 3.0 * tile[:, 1, :, :, 2]], axis=-1)

    monkeypatch.setattr(model, "predict_on_batch", pixel_flow)
    f1, f2 = uint8_frames(rng, (17, 29))
    got = model.predict_flow(f1, f2, min_overlap=3)
    scaled1 = f1.astype(np.float32) / 255.0 * 2 - 1
    scaled2 = f2.astype(np.float32) / 255.0 * 2 - 1
    expected = np.stack([scaled1[..., 0], 3.0 * scaled2[..., 2]], axis=-1)
    np.testing.assert_allclose(got, expected, atol=1e-6)

    monkeypatch.setattr(model, "predict_on_batch", lambda t: np.full(t.shape[:1] + (6, 8, 2), 2.5))
    np.testing.assert_allclose(model.predict_flow(f1, f2, min_overlap=1), 2.5, atol=1e-6)


def test_predict_flow_input_errors(rng):
    model = small_model(name="flow")
    f1, f2 = uint8_frames(rng, (6, 8))
    with pytest.raises(ValueError, match="flow.predict_flow: expected uint8"):
        model.predict_flow(f1.astype(np.float32), f2)
    with pytest.raises(ValueError, match="at least 6x8"):
        model.predict_flow(f1[:5], f2[:5])
    with pytest.raises(ValueError, match="shapes differ"):
        model.predict_flow(f1, f2[:, :7])
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        model.predict_flow(f1[..., :2], f2[..., :2])


# ---------------------------------------------------------------- full size


@pytest.mark.large
def test_full_preset_count_forward_and_round_trip(tmp_path):
    model = PerceiverOpticalFlow.from_preset("optical_flow_perceiver", load_weights=False)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == 41_057_134
    assert model.input_adapter.output_channels == 322
    frames = np.random.default_rng(0).uniform(-1, 1, (1, 2, 368, 496, 3)).astype("float32")
    # One forward pass (TensorFlow, CPU): ~45-70 CPU-seconds, ~3.7 GB peak
    # RSS for the whole test (the 182,528 x 2048 attention maps of the
    # encoder and the decoder dominate).
    start = time.time()
    flow = model.predict_on_batch(frames)
    print(f"optical flow forward: {time.time() - start:.1f}s")
    assert flow.shape == (1, 368, 496, 2) and np.all(np.isfinite(flow))
    model.save_to_preset(str(tmp_path))
    again = PerceiverOpticalFlow.from_preset(str(tmp_path))
    for a, b in zip(model.weights, again.weights):
        assert a.path == b.path
        np.testing.assert_array_equal(ops.convert_to_numpy(a), ops.convert_to_numpy(b))
