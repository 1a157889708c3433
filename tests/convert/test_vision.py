"""Image classifier converters: transformers parity, DeepMind Haiku layout."""

import pickle
import re

import numpy as np
import pytest
import torch
import transformers
from keras import ops

from keras_perceiver import convert
from keras_perceiver.convert import ConversionError
from keras_perceiver.models import PerceiverImageClassifier
from tests.torch_reference import unit_scale_

SMALL = dict(num_latents=8, d_latents=16, num_blocks=2, num_self_attends_per_block=2,
             num_self_attention_heads=2, num_cross_attention_heads=1)
CLASSES = ("PerceiverForImageClassificationLearned",
           "PerceiverForImageClassificationFourier",
           "PerceiverForImageClassificationConvProcessing")


def transformers_model(class_name, image_size=32, num_labels=7, seed=0, **config):
    cfg = transformers.PerceiverConfig(
        image_size=image_size, num_labels=num_labels, **SMALL, **config)
    model = getattr(transformers, class_name)(cfg).eval()
    unit_scale_(model, seed)
    return model


@pytest.mark.parametrize("class_name", CLASSES)
def test_parity_with_transformers(class_name, rng, tmp_path):
    source = transformers_model(class_name)
    source.save_pretrained(tmp_path)
    model = convert.from_transformers(tmp_path)
    assert isinstance(model, PerceiverImageClassifier)
    assert model.activation == "gelu"  # transformers' exact GELU
    images = rng.normal(size=(2, 32, 32, 3)).astype("float32")
    with torch.no_grad():
        expected = source(inputs=torch.from_numpy(images).permute(0, 3, 1, 2)).logits.numpy()
    got = ops.convert_to_numpy(model(images))
    assert got.shape == (2, 7)
    assert expected.std() > 0.3  # unit-scale outputs, so 1e-4 is a real bound
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_conv_processing_uses_the_transformers_stem():
    model = convert.from_transformers(
        transformers_model("PerceiverForImageClassificationConvProcessing"))
    assert model.stem_padding == "transformers"
    assert model.num_tokens == 7 * 7  # 32 -> 16 -> 7 (DeepMind's padding: 8x8)
    assert model.max_resolution == (56, 56)
    bn = model.input_adapter.stem.batchnorm
    assert not np.allclose(ops.convert_to_numpy(bn.moving_variance), 1.0)


def test_converted_fourier_model_at_another_size(rng):
    source = transformers_model("PerceiverForImageClassificationFourier")
    model = convert.from_transformers(source).with_image_shape((24, 20, 3))
    images = rng.normal(size=(1, 24, 20, 3)).astype("float32")
    with torch.no_grad():
        expected = source(inputs=torch.from_numpy(images).permute(0, 3, 1, 2)).logits.numpy()
    np.testing.assert_allclose(ops.convert_to_numpy(model(images)), expected, atol=1e-4, rtol=0)


def test_tanh_gelu_flavour_follows_hidden_act(rng):
    source = transformers_model("PerceiverForImageClassificationFourier", hidden_act="gelu_new")
    model = convert.from_transformers(source)  # a live model works too
    assert model.activation == "gelu_tanh"
    images = rng.normal(size=(1, 32, 32, 3)).astype("float32")
    with torch.no_grad():
        expected = source(inputs=torch.from_numpy(images).permute(0, 3, 1, 2)).logits.numpy()
    np.testing.assert_allclose(ops.convert_to_numpy(model(images)), expected, atol=1e-4, rtol=0)


def test_wrong_shape_names_the_key():
    source = transformers_model("PerceiverForImageClassificationLearned")
    projection = source.perceiver.input_preprocessor.positions_projection
    projection.weight = torch.nn.Parameter(projection.weight[:, :-1])
    key = "perceiver.input_preprocessor.positions_projection.weight"
    with pytest.raises(ConversionError, match=re.escape(key)):
        convert.from_transformers(source)


# --- DeepMind (Haiku) layout -------------------------------------------------

BLOCK = {"query_layer_norm": "layer_norm", "key_value_layer_norm": "layer_norm_1",
         "attention/query": "attention/linear", "attention/key": "attention/linear_1",
         "attention/value": "attention/linear_2", "attention/output": "attention/linear_3",
         "mlp/dense1": "mlp/linear", "mlp/dense2": "mlp/linear_1"}
PARAM = {"kernel": "w", "bias": "b", "gamma": "scale", "beta": "offset"}
STEM = "image_preprocessor/~/conv2_d_downsample/~"
POS = "image_preprocessor/~_build_network_inputs"


def haiku_key(path):
    """Our variable path -> (collection, DeepMind module path, parameter name)."""
    *module, param = path.split("/")
    module = "/".join(module)
    fixed = {
        "image_preprocessor/stem/conv": f"{STEM}/conv",
        "image_preprocessor/stem/batchnorm": f"{STEM}/batchnorm",
        "image_preprocessor/conv1x1": "image_preprocessor/~/conv2_d",
        "image_preprocessor/position_encoding": f"{POS}/trainable_position_encoding",
        "image_preprocessor/position_projection": f"{POS}/position_encoding_projector/linear",
        "encoder/latents": "perceiver_encoder/~/trainable_position_encoding",
        "decoder/output_position_encoding":
            "classification_decoder/~/basic_decoder/~/trainable_position_encoding",
        "decoder/final_layer": "classification_decoder/~/basic_decoder/output",
    }
    if param in ("moving_mean", "moving_variance"):
        ema = "mean_ema" if param == "moving_mean" else "var_ema"
        return "state", f"{STEM}/batchnorm/~/{ema}", "average"
    if param == "embeddings":
        return "params", fixed[module], "pos_embs"
    if module in fixed:
        return "params", fixed[module], PARAM[param]
    block, rest = module.split("/", 1)[0], module.split("/", 1)[1]
    layer, sub = rest.split("/", 1)
    if block == "encoder":
        i = layer.rsplit("_", 1)[-1] if layer.startswith("self_attention") else None
        name = layer if i is None else ("self_attention" if i == "0" else f"self_attention_{i}")
        prefix = f"perceiver_encoder/~/{name}"
        mlp_norm = "layer_norm_1" if i is not None else "layer_norm_2"
    else:
        prefix = "classification_decoder/~/basic_decoder/cross_attention"
        mlp_norm = "layer_norm_2"
    sub = {"layer_norm": "layer_norm", "mlp_layer_norm": mlp_norm}.get(sub, BLOCK.get(sub, sub))
    return "params", f"{prefix}/{sub}", PARAM[param]


def haiku_checkpoint(model, rng):
    """A Haiku-layout `{"params", "state"}` tree of known random arrays."""
    tree = {"params": {}, "state": {}}
    expected = {}
    for v in model.weights:
        collection, module, name = haiku_key(v.path)
        value = rng.normal(size=v.shape).astype("float32")
        if "batchnorm" in module:
            if name == "average" and "var_ema" in module:
                value = np.abs(value) + 0.5
            stored = value.reshape((1, 1, 1, -1))  # Haiku BatchNorm shapes
        else:
            stored = value
        tree[collection].setdefault(module, {})[name] = stored
        expected[v.path] = value
    if tree["state"]:
        for ema in ("mean_ema", "var_ema"):
            tree["state"][f"{STEM}/batchnorm/~/{ema}"].update(
                counter=np.array(3, "int32"), hidden=np.zeros((1, 1, 1, 64), "float32"))
    return tree, expected


DEEPMIND_SMALL = dict({k: v for k, v in SMALL.items() if k != "d_latents"},
                      num_latent_channels=16, num_classes=5, image_shape=(16, 16, 3), num_query_channels=16)


@pytest.mark.parametrize("preset", sorted(PerceiverImageClassifier.presets))
def test_from_deepmind_holds_exactly_the_arrays(preset, rng, tmp_path):
    reference = PerceiverImageClassifier.from_preset(preset, load_weights=False, **DEEPMIND_SMALL)
    tree, expected = haiku_checkpoint(reference, rng)
    path = tmp_path / "imagenet.pystate"
    path.write_bytes(pickle.dumps(tree))
    model = convert.from_deepmind(str(path), preset, **DEEPMIND_SMALL)
    assert len(model.weights) == len(expected)
    for v in model.weights:
        np.testing.assert_array_equal(ops.convert_to_numpy(v), expected[v.path], err_msg=v.path)
    images = rng.normal(size=(2, 16, 16, 3)).astype("float32")
    assert np.isfinite(ops.convert_to_numpy(model(images))).all()


@pytest.mark.parametrize("corrupt", ["rename", "reshape", "extra"])
def test_from_deepmind_corrupted_key_is_named(corrupt, rng, tmp_path):
    preset = "vision_perceiver_conv"
    tree, _ = haiku_checkpoint(PerceiverImageClassifier.from_preset(preset, load_weights=False, **DEEPMIND_SMALL), rng)
    module = "perceiver_encoder/~/self_attention_1/attention/linear_2"
    key = f"{module}/w"
    if corrupt == "rename":
        tree["params"][module]["w_typo"] = tree["params"][module].pop("w")
    elif corrupt == "reshape":
        tree["params"][module]["w"] = tree["params"][module]["w"][:, :-1]
    else:
        key = f"{STEM}/batchnorm/~/mean_ema/extra"
        tree["state"][f"{STEM}/batchnorm/~/mean_ema"]["extra"] = np.zeros(2)
    path = tmp_path / "bad.pystate"
    path.write_bytes(pickle.dumps(tree))
    with pytest.raises(ConversionError, match=re.escape(repr(key))):
        convert.from_deepmind(str(path), preset, **DEEPMIND_SMALL)
