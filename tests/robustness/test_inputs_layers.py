"""Every public layer fed a catalogue of bad inputs (issue 8, items 4, 6 and NaN/Inf).

Each layer is built on a good input; then each catalogue entry must either
raise a clear error (a `ValueError`/`TypeError` whose message names the
layer and states what was expected) or give the correct output. Uses
`keras.ops` only, so it runs on every backend.

NaN/Inf: layers pass them through (like Keras' own layers); the task models
reject them in eager calls and `predict` (tests/robustness/test_inputs.py).
"""

import numpy as np
import pytest
from keras import ops

from keras_perceiver import layers as L

B = 2
R = np.random.default_rng(0)


def f32(*shape):
    return R.normal(size=shape).astype("float32")


def ids(*shape, high=7):
    return R.integers(0, high, size=shape).astype("int32")


def NONE(b):
    return {}


# name: (factory, batch -> good positional inputs, batch -> call kwargs)
LAYERS = {
    "MLP": (lambda: L.MLP(2, name="lyr"), lambda b: (f32(b, 3, 4),), NONE),
    "Attention": (lambda: L.Attention(2, qk_channels=4, name="lyr"),
                  lambda b: (f32(b, 3, 4), f32(b, 5, 6)), NONE),
    "CrossAttention": (lambda: L.CrossAttention(num_heads=1, name="lyr"),
                       lambda b: (f32(b, 3, 4), f32(b, 5, 6)), NONE),
    "SelfAttention": (lambda: L.SelfAttention(num_heads=2, name="lyr"),
                      lambda b: (f32(b, 3, 4),), NONE),
    "PerceiverEncoder": (
        lambda: L.PerceiverEncoder(3, 4, num_self_attends_per_block=1,
                                   num_self_attention_heads=2, name="lyr"),
        lambda b: (f32(b, 5, 6),), NONE),
    "BasicDecoder": (lambda: L.BasicDecoder(3, output_index_dims=5, num_query_channels=4,
                                            name="lyr"),
                     lambda b: (f32(b, 3, 6),), NONE),
    "ClassificationDecoder": (lambda: L.ClassificationDecoder(3, 4, name="lyr"),
                              lambda b: (f32(b, 3, 6),), NONE),
    "ProjectionDecoder": (lambda: L.ProjectionDecoder(3, name="lyr"),
                          lambda b: (f32(b, 3, 6),), NONE),
    "FramePatches": (lambda: L.FramePatches(name="lyr"), lambda b: (f32(b, 2, 4, 5, 3),), NONE),
    "OpticalFlowPreprocessor": (
        lambda: L.OpticalFlowPreprocessor((4, 5), num_channels=6, num_bands=2, name="lyr"),
        lambda b: (f32(b, 2, 4, 5, 3),), NONE),
    "ConvDownsample": (lambda: L.ConvDownsample(4, name="lyr"),
                       lambda b: (f32(b, 8, 8, 3),), NONE),
    "SpaceToDepth": (lambda: L.SpaceToDepth(2, name="lyr"), lambda b: (f32(b, 4, 6, 3),), NONE),
    "ImagePreprocessor": (lambda: L.ImagePreprocessor("pixels", num_bands=2, name="lyr"),
                          lambda b: (f32(b, 4, 4, 3),), NONE),
    "AudioPreprocessor": (lambda: L.AudioPreprocessor(4, num_bands=2, name="lyr"),
                          lambda b: (f32(b, 16, 1),), NONE),
    "AudioPostprocessor": (lambda: L.AudioPostprocessor(4, name="lyr"),
                           lambda b: (f32(b, 3, 5),), NONE),
    "OneHotPreprocessor": (lambda: L.OneHotPreprocessor(name="lyr"), lambda b: (f32(b, 7),), NONE),
    "VideoPreprocessor": (lambda: L.VideoPreprocessor(2, num_bands=2, name="lyr"),
                          lambda b: (f32(b, 2, 4, 4, 3),), NONE),
    "MultimodalPadding": (lambda: L.MultimodalPadding(2, name="lyr"),
                          lambda b: ({"a": f32(b, 3, 4), "b": f32(b, 2, 5)},), NONE),
    "FourierPositionEncoding": (lambda: L.FourierPositionEncoding((4, 5), 3, name="lyr"),
                                lambda b: (f32(b, 1),), lambda b: {"indices": ids(b, 6, high=20)}),
    "TrainablePositionEncoding": (lambda: L.TrainablePositionEncoding(6, 4, name="lyr"),
                                  lambda b: (f32(b, 1),), lambda b: {"indices": ids(b, 3, high=6)}),
    "TextPreprocessor": (lambda: L.TextPreprocessor(7, 4, max_length=6, name="lyr"),
                         lambda b: (ids(b, 5),), NONE),
    "EmbeddingDecoder": (lambda: L.EmbeddingDecoder(7, name="lyr"),
                         lambda b: (f32(b, 3, 4), f32(7, 4)), NONE),
}
# Layers whose first input only lends its batch size: any rank/width is fine.
BATCH_ONLY = {"FourierPositionEncoding", "TrainablePositionEncoding"}
# Layers without a channel constraint on the first input.
ANY_CHANNELS = BATCH_ONLY | {"FramePatches", "SpaceToDepth", "TextPreprocessor"}
CLEAR = r"lyr: expected|lyr: .*(must|needs)"


def _built(name, batch=B):
    factory, make_inputs, make_kwargs = LAYERS[name]
    layer = factory()
    layer(*make_inputs(B), **make_kwargs(B))
    return layer, make_inputs, make_kwargs(batch)


def _first(args, fn):
    first = args[0]
    if isinstance(first, dict):
        return ({k: fn(v) for k, v in first.items()},) + args[1:]
    return (fn(first),) + args[1:]


def test_catalogue_covers_every_public_layer():
    import inspect

    import keras

    public = {n for n, o in vars(L).items() if inspect.isclass(o) and issubclass(o, keras.layers.Layer)}
    assert public == set(LAYERS)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_wrong_rank(name):
    layer, make_inputs, kwargs = _built(name)
    args = _first(make_inputs(B), lambda x: x[..., 0])
    if name in BATCH_ONLY:
        assert tuple(layer(*args, **kwargs).shape)[0] == B
        return
    with pytest.raises(ValueError, match=CLEAR):
        layer(*args, **kwargs)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_wrong_channels_after_build(name):
    layer, make_inputs, kwargs = _built(name)
    args = _first(make_inputs(B), lambda x: np.concatenate([x, x[..., :1]], axis=-1))
    if name in ANY_CHANNELS:
        out = layer(*args, **kwargs)
        assert tuple(out.shape)[0] == B
        return
    with pytest.raises((ValueError, TypeError), match=CLEAR):
        layer(*args, **kwargs)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_batch_zero_gives_empty_output(name):
    layer, make_inputs, kwargs = _built(name, batch=0)
    args = make_inputs(0)
    if name == "EmbeddingDecoder":  # the embedding matrix has no batch axis
        args = (args[0], f32(7, 4))
    out = layer(*args, **kwargs)
    assert tuple(out.shape)[0] == 0
    expected = layer.compute_output_shape(
        *[np.shape(a) if not isinstance(a, dict) else {k: np.shape(v) for k, v in a.items()}
          for a in args],
        **{f"{k}_shape": np.shape(v) for k, v in kwargs.items()})
    assert tuple(out.shape)[1:] == tuple(expected)[1:]


@pytest.mark.parametrize("name", sorted(set(LAYERS) - {"TextPreprocessor"}))
def test_nan_and_inf_pass_through(name):
    layer, make_inputs, kwargs = _built(name)
    args = list(make_inputs(B))

    def poison(x):
        x = np.array(x)
        x[0].flat[0] = np.nan
        x[1].flat[-1] = np.inf
        return x

    args = _first(tuple(args), poison)
    out = ops.convert_to_numpy(layer(*args, **kwargs))
    if name in BATCH_ONLY:  # the first input only lends its batch size
        assert np.isfinite(out).all()
    else:
        assert not np.isfinite(out).all()


def test_wrong_batch_between_inputs():
    for name in ("Attention", "CrossAttention"):
        layer, _, _ = _built(name)
        with pytest.raises(ValueError, match="lyr: expected the same batch size"):
            layer(f32(2, 3, 4), f32(3, 5, 6))
    layer, _, _ = _built("PerceiverEncoder")
    with pytest.raises(ValueError, match=r"lyr: expected input_mask of shape \[2, 5\]"):
        layer(f32(2, 5, 6), input_mask=np.ones((2, 4), bool))
    with pytest.raises(ValueError, match=r"lyr: expected input_mask of shape \[2, 5\], received shape \(3, 5\)"):
        layer(f32(2, 5, 6), input_mask=np.ones((3, 5), bool))
    layer, _, _ = _built("MultimodalPadding")
    with pytest.raises(ValueError, match="lyr: expected the same batch size"):
        layer({"a": f32(2, 3, 4), "b": f32(3, 2, 5)})
    layer, _, kwargs = _built("FourierPositionEncoding")
    with pytest.raises(ValueError, match="lyr: expected the same batch size"):
        layer(f32(3, 1), indices=ids(2, 6, high=20))


def test_attention_mask_of_wrong_length():
    layer, _, _ = _built("Attention")
    with pytest.raises(ValueError, match=r"lyr: expected attention_mask of shape \[2, 3, 5\]"):
        layer(f32(2, 3, 4), f32(2, 5, 6), attention_mask=np.ones((2, 3, 4), bool))
    decoder, _, _ = _built("BasicDecoder")
    with pytest.raises(ValueError, match=r"lyr: expected query_mask of shape \[2, 5\]"):
        decoder(f32(2, 3, 6), query_mask=np.ones((2, 4), bool))


@pytest.mark.parametrize("bad, error, match", [
    (np.array([[-1, 2]], "int32"), ValueError, r"lyr: expected `token_ids` values in \[0, 7\), received values in \[-1, 2\]"),
    (np.array([[1, 7]], "int32"), ValueError, r"values in \[0, 7\)"),
    (np.array([[1.5, 2.0]], "float32"), TypeError, "lyr: expected `token_ids` of an integer dtype"),
    (np.ones((1, 7), "int32"), ValueError, "lyr: expected token_ids of length <= 6"),
])
def test_token_ids_out_of_range_or_wrong_dtype(bad, error, match):
    layer = L.TextPreprocessor(7, 4, max_length=6, name="lyr")
    layer(ids(2, 5))
    with pytest.raises(error, match=match):
        layer(bad)


@pytest.mark.parametrize("cls, args", [
    (L.FourierPositionEncoding, ((4, 5), 3)), (L.TrainablePositionEncoding, (20, 3)),
])
def test_query_indices_out_of_range_or_wrong_dtype(cls, args):
    layer = cls(*args, name="lyr")
    x = f32(1, 1)
    with pytest.raises(ValueError, match=r"lyr: expected `indices` values in \[0, 20\), received values in \[-1, 3\]"):
        layer(x, indices=np.array([-1, 3], "int32"))
    with pytest.raises(ValueError, match=r"values in \[0, 20\), received values in \[0, 20\]"):
        layer(x, indices=np.array([[0, 20]], "int32"))
    with pytest.raises(TypeError, match="lyr: expected `indices` of an integer dtype"):
        layer(x, indices=np.array([1.5], "float32"))
    good = ops.convert_to_numpy(layer(x, indices=np.array([19, 0], "int32")))
    full = ops.convert_to_numpy(layer(x))
    np.testing.assert_array_equal(good[0], full[0, [19, 0]]) if cls is L.TrainablePositionEncoding \
        else np.testing.assert_equal(good.shape, (1, 2, layer.num_channels))
