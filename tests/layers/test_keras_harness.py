"""Keras' own layer test harness (`run_layer_test`) on every public layer.

The harness builds each layer from shapes, calls it symbolically and eagerly,
round-trips its config, runs a `fit` step (single-input layers with weights)
and a mixed-precision call. Multi-input layers are given dict shapes named
`<call argument>_shape`, as the harness expects. Runs on every backend
(the Makefile's BACKEND_TESTS include tests/layers).
"""

import inspect

import keras
import pytest
from keras.src.testing import TestCase

import keras_perceiver
from keras_perceiver import layers as L

B = 2
CASES = {
    "MLP": dict(init=dict(widening_factor=2), shape=(B, 3, 4), out=(B, 3, 4), train=True),
    "Attention": dict(
        init=dict(num_heads=2, qk_channels=4),
        shape={"query_shape": (B, 3, 4), "key_value_shape": (B, 5, 6)}, out=(B, 3, 4)),
    "CrossAttention": dict(
        init=dict(num_heads=1),
        shape={"query_shape": (B, 3, 4), "key_value_shape": (B, 5, 6)}, out=(B, 3, 4)),
    "SelfAttention": dict(init=dict(num_heads=2), shape=(B, 3, 4), out=(B, 3, 4), train=True),
    "PerceiverEncoder": dict(
        init=dict(num_latents=3, num_latent_channels=4, num_self_attends_per_block=1,
                  num_self_attention_heads=2),
        shape=(B, 5, 6), out=(B, 3, 4), train=True),
    "BasicDecoder": dict(
        init=dict(output_num_channels=3, output_index_dims=5, num_query_channels=4),
        shape=(B, 3, 6), out=(B, 5, 3), train=True),
    "BasicDecoder-fourier-indices": dict(
        cls="BasicDecoder",
        init=dict(output_num_channels=3, output_index_dims=(4, 5),
                  position_encoding_type="fourier", num_bands=2),
        shape={"latents_shape": (B, 3, 6), "indices_shape": (B, 7)},
        dtype={"latents_shape": "float32", "indices_shape": "int32"}, out=(B, 7, 3)),
    "ClassificationDecoder": dict(
        init=dict(num_classes=3, num_query_channels=4), shape=(B, 3, 6), out=(B, 3), train=True),
    "ProjectionDecoder": dict(init=dict(num_classes=3), shape=(B, 3, 6), out=(B, 3), train=True),
    "FramePatches": dict(init={}, shape=(B, 2, 4, 5, 3), out=(B, 4, 5, 54)),
    "OpticalFlowPreprocessor": dict(
        init=dict(image_shape=(4, 5), num_channels=6, num_bands=2),
        shape=(B, 2, 4, 5, 3), out=(B, 20, 16), train=True),
    "ConvDownsample": dict(init=dict(num_channels=4), shape=(B, 8, 8, 3), out=(B, 2, 2, 4),
                           train=True),
    "SpaceToDepth": dict(init=dict(spatial_block_size=2), shape=(B, 4, 6, 3), out=(B, 2, 3, 12)),
    "ImagePreprocessor": dict(
        init=dict(prep_type="conv1x1", num_channels=4, position_encoding_type="trainable",
                  position_channels=3),
        shape=(B, 4, 4, 3), out=(B, 16, 7), train=True),
    "AudioPreprocessor": dict(init=dict(samples_per_patch=4, num_bands=2), shape=(B, 16, 1),
                              out=(B, 4, 9)),
    "AudioPostprocessor": dict(init=dict(samples_per_patch=4), shape=(B, 3, 5), out=(B, 12, 1),
                               train=True),
    "OneHotPreprocessor": dict(init={}, shape=(B, 7), out=(B, 1, 7)),
    "VideoPreprocessor": dict(init=dict(patch_size=2, num_bands=2), shape=(B, 2, 4, 4, 3),
                              out=(B, 8, 27)),
    "FourierPositionEncoding": dict(
        init=dict(index_dims=(4, 5), num_bands=3),
        shape={"inputs_shape": (B, 1), "indices_shape": (B, 6)},
        dtype={"inputs_shape": "float32", "indices_shape": "int32"}, out=(B, 6, 14)),
    "FourierPositionEncoding-full": dict(
        cls="FourierPositionEncoding", init=dict(index_dims=(4, 5), num_bands=3),
        shape=(B, 1), out=(B, 20, 14)),
    "TrainablePositionEncoding": dict(
        init=dict(index_dims=6, num_channels=4),
        shape={"inputs_shape": (B, 1), "indices_shape": (B, 3)},
        dtype={"inputs_shape": "float32", "indices_shape": "int32"}, out=(B, 3, 4)),
    "TextPreprocessor": dict(
        init=dict(vocab_size=7, num_channels=4, max_length=6), shape=(B, 5), dtype="int32",
        out=(B, 5, 4)),
    "EmbeddingDecoder": dict(
        init=dict(vocab_size=7), shape={"hidden_shape": (B, 3, 4), "embeddings_shape": (7, 4)},
        out=(B, 3, 7)),
}
# MultimodalPadding takes one dict argument `{modality: tokens}`, which the
# harness cannot express (it spreads dicts into keyword arguments); its
# config, build and masking are tested in tests/layers/test_multimodal.py.
NOT_IN_HARNESS = {"MultimodalPadding"}


def test_every_public_layer_is_covered():
    public = {
        name for name, obj in vars(L).items()
        if inspect.isclass(obj) and issubclass(obj, keras.layers.Layer)
    }
    covered = {case.get("cls", name) for name, case in CASES.items()}
    assert public == covered | NOT_IN_HARNESS


@pytest.mark.parametrize("name", sorted(CASES))
def test_keras_layer_harness(name):
    case = CASES[name]
    shape = case["shape"]
    dtype = case.get("dtype")
    if dtype is None:
        dtype = {k: "float32" for k in shape} if isinstance(shape, dict) else "float32"
    TestCase().run_layer_test(
        getattr(keras_perceiver.layers, case.get("cls", name)),
        init_kwargs=case["init"],
        input_shape=shape,
        input_dtype=dtype,
        expected_output_shape=case["out"],
        # The harness' fit step passes a dict as one positional argument, so
        # it only fits single-input layers with weights.
        run_training_check=case.get("train", False),
    )
