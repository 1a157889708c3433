import os

import keras
import numpy as np
import pytest
from keras import ops

from keras_perceiver import layers as L
from keras_perceiver.models import PerceiverIO
from tests.layers import numpy_reference as ref


def all_layer_models():
    """Models that together use every layer of keras_perceiver.layers."""
    encoder = lambda: L.PerceiverEncoder(num_latents=6, num_latent_channels=16, num_blocks=2,
                                         num_self_attends_per_block=2, num_self_attention_heads=2,
                                         activation="gelu")
    return [
        PerceiverIO(
            input_adapter=L.TextPreprocessor(20, 8, max_length=12),
            encoder=encoder(),
            decoder=L.BasicDecoder(3, output_index_dims=(3, 4), position_encoding_type="fourier",
                                   num_bands=4, project_pos_dim=10, num_heads=2,
                                   use_query_residual=True),
            input_shape=(12,), input_dtype="int32"),
        PerceiverIO(encoder=encoder(), decoder=L.ClassificationDecoder(5, 16),
                    input_shape=(9, 4), padding_mask=True),
        PerceiverIO(encoder=encoder(), decoder=L.ProjectionDecoder(5, "glorot_uniform"),
                    output_adapter=keras.layers.Softmax(), input_shape=(9, 4)),
    ]


def example_inputs(model, rng):
    if model.padding_mask:
        mask = np.arange(9)[None] < np.array([[9], [4]])
        return {"inputs": rng.normal(size=(2, 9, 4)).astype("float32"), "padding_mask": mask}
    if model.input_adapter is not None:
        ids = rng.integers(1, 20, size=(2, 12)).astype("int32")
        ids[1, 7:] = 0  # padding, masked through TextPreprocessor.compute_padding_mask
        return ids
    return rng.normal(size=(2, 9, 4)).astype("float32")


@pytest.mark.parametrize("index", range(3))
def test_keras_save_load_is_bit_identical(index, tmp_path, rng):
    model = all_layer_models()[index]
    inputs = example_inputs(model, rng)
    expected = ops.convert_to_numpy(model(inputs))
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    np.testing.assert_array_equal(ops.convert_to_numpy(restored(inputs)), expected)
    clone = PerceiverIO.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    assert clone.count_params() == model.count_params()


def test_padding_mask_input_is_respected(rng):
    model = all_layer_models()[1]
    inputs = example_inputs(model, rng)
    changed = dict(inputs, inputs=inputs["inputs"].copy())
    changed["inputs"][1, 4:] = 99.0
    np.testing.assert_array_equal(ops.convert_to_numpy(model(inputs)),
                                  ops.convert_to_numpy(model(changed)))


# Relative to the float32 output's scale, same (unit-scale random) weights.
# Measured: float16 <= 9.4e-4, bfloat16 <= 1.6e-2.
MIXED_TOLERANCE = {"mixed_float16": 5e-3, "mixed_bfloat16": 4e-2}


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_model_matches_float32(policy, rng):
    for index in range(3):
        keras.config.set_dtype_policy("float32")
        reference = ref.randomize(all_layer_models()[index], rng)
        inputs = example_inputs(reference, rng)
        expected = ops.convert_to_numpy(reference(inputs))
        keras.config.set_dtype_policy(policy)
        model = all_layer_models()[index]
        model.set_weights(reference.get_weights())
        out = ops.convert_to_numpy(ops.cast(model(inputs), "float32"))
        assert np.isfinite(out).all()
        error = np.abs(out - expected).max() / np.abs(expected).max()
        assert error <= MIXED_TOLERANCE[policy], (index, error)



def _points_model(input_projection="auto", channels=2):
    return PerceiverIO(
        encoder=L.PerceiverEncoder(num_latents=4, num_latent_channels=16,
                                   num_self_attends_per_block=1, num_self_attention_heads=2),
        decoder=L.ClassificationDecoder(3, 16), input_shape=(7, channels),
        input_projection=input_projection)


def _kv_norm_width(model):
    return tuple(model.encoder.cross_attention.key_value_layer_norm.gamma.shape)


def test_narrow_inputs_are_projected_by_default(rng):
    model = _points_model()
    # 2-D points: projected to the latent width before the cross-attention.
    assert model.get_layer("input_projection").units == 16
    assert _kv_norm_width(model) == (16,)
    assert model.get_config()["input_projection"] == "auto"
    x = rng.normal(size=(2, 7, 2)).astype("float32")
    clone = PerceiverIO.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    np.testing.assert_array_equal(ops.convert_to_numpy(clone(x)),
                                  ops.convert_to_numpy(model(x)))
    # Switched off: the old behaviour, a 2-channel-wide cross-attention.
    plain = _points_model(input_projection=None)
    assert _kv_norm_width(plain) == (2,)
    assert "input_projection" not in [layer.name for layer in plain.layers]
    # Configs saved before the option existed rebuild unchanged.
    legacy = {k: v for k, v in plain.get_config().items() if k != "input_projection"}
    assert _kv_norm_width(PerceiverIO.from_config(legacy)) == (2,)
    # An explicit width, and wide inputs (>= 16 channels) left as they are.
    assert _points_model(input_projection=8).get_layer("input_projection").units == 8
    wide, wide_plain = _points_model(channels=16), _points_model(None, channels=16)
    assert _kv_norm_width(wide) == (16,)
    assert wide.count_params() == wide_plain.count_params()
    with pytest.raises(ValueError, match="input_projection must be"):
        _points_model(input_projection="yes")
