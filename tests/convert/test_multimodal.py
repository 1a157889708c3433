"""Multimodal autoencoder converters: transformers parity, DeepMind Haiku layout."""

import pickle

import numpy as np
import pytest
import torch
import transformers
from keras import ops

from keras_perceiver import convert
from keras_perceiver.convert import ConversionError
from keras_perceiver.models import PerceiverMultimodalAutoencoder
from tests.torch_reference import unit_scale_

# 2 frames of 8x8 (4x4 patches: 2x2x2 grid), 32 audio samples (8 patches of 4).
T_CONFIG = dict(
    num_latents=8, d_latents=16, num_blocks=2, num_self_attends_per_block=2,
    num_self_attention_heads=2, num_cross_attention_heads=1, num_frames=2,
    audio_samples_per_frame=16, samples_per_patch=4, image_size=8,
    output_shape=[1, 2, 8, 8], output_num_channels=12, num_labels=5,
)


def transformers_model(seed=0):
    config = transformers.PerceiverConfig(**T_CONFIG)
    config._label_trainable_num_channels = 10
    model = transformers.PerceiverForMultimodalAutoencoding(config).eval()
    unit_scale_(model, seed)
    return model


def copy_weights(source, target):
    """By weight path: the two graphs may track their layers in another order."""
    values = {w.path: w for w in source.weights}
    for w in target.weights:
        w.assign(values[w.path])


def random_inputs(rng, batch=2):
    return {
        "image": rng.normal(size=(batch, 2, 8, 8, 3)).astype("float32"),
        "audio": rng.normal(size=(batch, 32, 1)).astype("float32"),
        "label": np.eye(5, dtype="float32")[rng.integers(0, 5, size=batch)],
    }


def transformers_outputs(source, inputs, points):
    torch_inputs = {
        "image": torch.from_numpy(inputs["image"]).permute(0, 1, 4, 2, 3),  # B T C H W
        "audio": torch.from_numpy(inputs["audio"]),
        "label": torch.from_numpy(inputs["label"]),
    }
    subsampling = {m: torch.from_numpy(points[m]).long() for m in ("image", "audio")}
    subsampling["label"] = None
    with torch.no_grad():
        logits = source(inputs=torch_inputs, subsampled_output_points=subsampling).logits
    return {k: v.numpy() for k, v in logits.items()}


def test_parity_with_transformers_on_subsampled_points(rng, tmp_path):
    source = transformers_model()
    source.save_pretrained(tmp_path)
    model = convert.from_transformers(tmp_path)
    assert isinstance(model, PerceiverMultimodalAutoencoder)
    assert model.activation == "gelu"
    assert model.image_max_resolution == (2, 8, 8)  # transformers' choice
    assert model.label_query_channels == 10
    inputs = random_inputs(rng)
    points = {"image": rng.permutation(128)[:9].astype("int32"),
              "audio": rng.permutation(8)[:5].astype("int32")}
    expected = transformers_outputs(source, inputs, points)
    got = {k: ops.convert_to_numpy(v) for k, v in model.decode_points(inputs, points).items()}
    assert got["image"].shape == (2, 9, 3) and got["audio"].shape == (2, 20, 1)
    assert got["label"].shape == (2, 5)
    for key in ("image", "label"):
        assert expected[key].std() > 0.3  # unit-scale outputs: 1e-4 is a real bound
        np.testing.assert_allclose(got[key], expected[key], atol=1e-4, rtol=0)
    np.testing.assert_allclose(got["audio"][..., 0], expected["audio"], atol=1e-4, rtol=0)

    # The functional graph with point inputs gives the same outputs.
    config = dict(model.get_config(), num_subsampled_points={"image": 9, "audio": 5})
    subsampled = PerceiverMultimodalAutoencoder.from_config(config)
    copy_weights(model, subsampled)
    batch_points = {f"{m}_points": np.tile(points[m], (2, 1)) for m in ("image", "audio")}
    graph = subsampled({**inputs, **batch_points})
    for key in ("image", "audio", "label"):
        np.testing.assert_allclose(ops.convert_to_numpy(graph[key]), got[key], atol=1e-5, rtol=0)


def test_all_points_match_transformers_and_the_chunked_reconstruction(rng):
    source = transformers_model(seed=1)
    model = convert.from_transformers(source)
    inputs = random_inputs(rng, batch=1)
    points = {"image": np.arange(128, dtype="int32"), "audio": np.arange(8, dtype="int32")}
    expected = transformers_outputs(source, inputs, points)
    full = model.reconstruct(inputs, num_chunks=4)
    np.testing.assert_allclose(full["image"].reshape(1, 128, 3), expected["image"], atol=1e-4)
    np.testing.assert_allclose(full["audio"][..., 0], expected["audio"], atol=1e-4)
    np.testing.assert_allclose(full["label"], expected["label"], atol=1e-4)


def test_label_is_masked_out_as_in_transformers(rng):
    model = convert.from_transformers(transformers_model())
    inputs = random_inputs(rng, batch=1)
    other = dict(inputs, label=np.roll(inputs["label"], 1, axis=-1))
    a, b = model.reconstruct(inputs, num_chunks=2), model.reconstruct(other, num_chunks=2)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def test_transformers_missing_key_is_named():
    source = transformers_model()
    config, class_name, state = convert.load_transformers(source)
    del state["perceiver.decoder.padding.image"]
    from keras_perceiver.convert.multimodal import multimodal_from_transformers

    with pytest.raises(ConversionError, match="perceiver.decoder.padding.image"):
        multimodal_from_transformers(config, class_name, convert.WeightSource(state))


# --- DeepMind ---

SMALL = dict(
    num_frames=2, image_size=8, audio_samples=32, samples_per_patch=4, num_classes=5,
    image_num_bands=2, audio_num_bands=3, num_latents=4, num_latent_channels=8,
    num_self_attends_per_block=2, num_self_attention_heads=2, label_query_channels=6,
    decoder_channels=8,
)


def _block(prefix, q, kv, qk, v, rng, cross=True, widening=1):
    """A Haiku attention block (cross: 3 LayerNorms, self: 2)."""
    arrays = {}
    norms = [("layer_norm", q), ("layer_norm_1", kv), ("layer_norm_2", q)] if cross else [
        ("layer_norm", q), ("layer_norm_1", q)]
    for name, width in norms:
        arrays[f"{prefix}/{name}"] = {"scale": rng.normal(size=width), "offset": rng.normal(size=width)}
    shapes = {"linear": (q, qk), "linear_1": (kv, qk), "linear_2": (kv, v), "linear_3": (v, q)}
    for name, (i, o) in shapes.items():
        arrays[f"{prefix}/attention/{name}"] = {"w": rng.normal(size=(i, o)), "b": rng.normal(size=o)}
    arrays[f"{prefix}/mlp/linear"] = {"w": rng.normal(size=(q, q * widening)),
                                      "b": rng.normal(size=q * widening)}
    arrays[f"{prefix}/mlp/linear_1"] = {"w": rng.normal(size=(q * widening, q)), "b": rng.normal(size=q)}
    return arrays


def haiku_params(rng):
    """The colab's module tree for SMALL, from known random arrays."""
    # inputs: audio 4 + (1 + 2*3) = 11, image 48 + (3 + 2*3*2) = 63, label 5 -> 67
    # queries: audio 7, image 15, label 6 -> 17
    f32 = lambda *s: rng.normal(size=s).astype("float32")  # noqa: E731
    params = {}
    for m, width in (("audio", 11), ("image", 63), ("label", 5)):
        params[f"multimodal_preprocessor/{m}_padding"] = {"pos_embs": f32(1, 67 - width)}
        params[f"multimodal_preprocessor/{m}_mask_token"] = {"pos_embs": f32(1, 67)}
    params["encoder/~/trainable_position_encoding"] = {"pos_embs": f32(4, 8)}
    params.update(_block("encoder/~/cross_attention", 8, 67, 67, 67, rng))
    params.update(_block("encoder/~/self_attention", 8, 8, 8, 8, rng, cross=False))
    params.update(_block("encoder/~/self_attention_1", 8, 8, 8, 8, rng, cross=False))
    params["classification_decoder/~/basic_decoder/~/trainable_position_encoding"] = {
        "pos_embs": f32(1, 6)}
    for m, width in (("audio", 7), ("image", 15), ("label", 6)):
        params[f"multimodal_decoder/~decoder_query/{m}_padding"] = {"pos_embs": f32(1, 17 - width)}
    params.update(_block("multimodal_decoder/~/basic_decoder/cross_attention", 17, 8, 8, 8, rng))
    params["multimodal_decoder/~/basic_decoder/output"] = {"w": f32(17, 8), "b": f32(8)}
    for name, out in (("audio", 4), ("projection", 3), ("classification", 5)):
        params[f"{name}_postprocessor/linear"] = {"w": f32(8, out), "b": f32(out)}
    return {k: {n: np.asarray(a, "float32") for n, a in v.items()} for k, v in params.items()}



def test_from_deepmind_holds_exactly_the_pickled_arrays(rng, tmp_path):
    params = haiku_params(rng)
    path = tmp_path / "video_autoencoding_checkpoint.pystate"
    path.write_bytes(pickle.dumps(params))
    model = convert.from_deepmind(str(path), "multimodal_perceiver", **SMALL)
    assert isinstance(model, PerceiverMultimodalAutoencoder)
    assert model.activation == "gelu_tanh"
    flat = {f"{k}/{n}": a for k, v in params.items() for n, a in v.items()}
    assert sum(a.size for a in flat.values()) == model.count_params()
    checks = {
        "multimodal_preprocessor/image_padding/pos_embs": model.input_padding.paddings["image"],
        "multimodal_preprocessor/label_mask_token/pos_embs": model.input_padding.mask_tokens["label"],
        "encoder/~/trainable_position_encoding/pos_embs": model.encoder.latents.embeddings,
        "encoder/~/self_attention_1/attention/linear_2/w":
            model.encoder.self_attends[1].attention.value_dense.kernel,
        "multimodal_decoder/~decoder_query/audio_padding/pos_embs": model.query_padding.paddings["audio"],
        "classification_decoder/~/basic_decoder/~/trainable_position_encoding/pos_embs":
            model.label_queries.embeddings,
        "multimodal_decoder/~/basic_decoder/cross_attention/layer_norm_1/scale":
            model.decoder.decoding_cross_attention.key_value_layer_norm.gamma,
        "multimodal_decoder/~/basic_decoder/output/w": model.decoder.final_layer.kernel,
        "audio_postprocessor/linear/b": model.audio_postprocessor.projection.bias,
        "projection_postprocessor/linear/w": model.image_postprocessor.kernel,
        "classification_postprocessor/linear/w": model.label_postprocessor.kernel,
    }
    for key, variable in checks.items():
        np.testing.assert_array_equal(ops.convert_to_numpy(variable), flat[key])


def test_from_deepmind_corrupted_key_is_named(rng, tmp_path):
    params = haiku_params(rng)
    params["multimodal_decoder/~decoder_query/imagepadding"] = params.pop(
        "multimodal_decoder/~decoder_query/image_padding")
    path = tmp_path / "corrupted.pystate"
    path.write_bytes(pickle.dumps(params))
    with pytest.raises(ConversionError, match="multimodal_decoder/~decoder_query/image_padding"):
        convert.from_deepmind(str(path), "multimodal_perceiver", **SMALL)


def test_from_deepmind_unexpected_key_is_named(rng, tmp_path):
    params = haiku_params(rng)
    params["multimodal_decoder/~/basic_decoder/extra"] = {"w": np.zeros(3, "float32")}
    path = tmp_path / "extra.pystate"
    path.write_bytes(pickle.dumps(params))
    with pytest.raises(ConversionError, match="multimodal_decoder/~/basic_decoder/extra/w"):
        convert.from_deepmind(str(path), "multimodal_perceiver", **SMALL)


def test_from_deepmind_wrong_shape_is_named(rng, tmp_path):
    params = haiku_params(rng)
    params["audio_postprocessor/linear"]["w"] = np.zeros((8, 5), "float32")
    path = tmp_path / "shape.pystate"
    path.write_bytes(pickle.dumps(params))
    with pytest.raises(ConversionError, match="audio_postprocessor/linear/w"):
        convert.from_deepmind(str(path), "multimodal_perceiver", **SMALL)
