import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from keras import ops
from transformers import PerceiverConfig
from transformers import PerceiverForOpticalFlow

import keras_perceiver
from keras_perceiver.convert import ConversionError
from keras_perceiver.convert.common import WeightSource
from keras_perceiver.convert.flow import optical_flow_from_transformers
from keras_perceiver.models import PerceiverOpticalFlow
from tests.torch_reference import unit_scale_

TRAIN_SIZE = (12, 16)


def reference_patches(frames):
    """The transformers docs' recipe: NCHW frames, TF-SAME pad, unfold 3x3,
    permute to (kh, kw, c) channels -> `[B, 2, 27, H, W]`."""
    x = torch.from_numpy(frames).permute(0, 1, 4, 2, 3)  # B, T, C, H, W
    out = []
    for t in range(x.shape[1]):
        frame = F.pad(x[:, t], (1, 1, 1, 1))
        patches = frame.unfold(2, 3, 1).unfold(3, 3, 1)  # B, C, H, W, kh, kw
        patches = patches.permute(0, 4, 5, 1, 2, 3).contiguous()
        out.append(patches.view(frame.shape[0], -1, patches.shape[-2], patches.shape[-1]))
    return torch.stack(out, dim=1)


def small_transformers(hidden_act="gelu"):
    config = PerceiverConfig(
        num_latents=16, d_latents=32, d_model=322, num_blocks=2,
        num_self_attends_per_block=2, num_self_attention_heads=4,
        num_cross_attention_heads=2, train_size=list(TRAIN_SIZE), hidden_act=hidden_act,
    )
    model = PerceiverForOpticalFlow(config).eval()
    unit_scale_(model)
    return model


@pytest.mark.parametrize("hidden_act,expected", [("gelu", "gelu"), ("gelu_new", "gelu_tanh")])
def test_parity_with_transformers(tmp_path, rng, hidden_act, expected):
    source = small_transformers(hidden_act)
    source.save_pretrained(tmp_path)
    model = keras_perceiver.convert.from_transformers(str(tmp_path))
    assert isinstance(model, PerceiverOpticalFlow)
    assert model.image_shape == TRAIN_SIZE and model.activation == expected
    frames = rng.uniform(-1, 1, (2, 2) + TRAIN_SIZE + (3,)).astype("float32")
    with torch.no_grad():
        logits = source(inputs=reference_patches(frames)).logits.numpy()
    flow = ops.convert_to_numpy(model(frames))
    # transformers' logits are the decoder output / 100; ours / 100 * 20.
    np.testing.assert_allclose(flow, 20 * logits, atol=2e-5)
    # Compare at the decoder's own (unit) scale: x100 of the logits.
    decoder_out = 100 * logits
    assert np.abs(decoder_out).mean() > 0.1
    np.testing.assert_allclose(flow / 20 * 100, decoder_out, atol=1e-4)


def test_live_model_converts_and_bad_shape_is_named(rng):
    source = small_transformers()
    model = keras_perceiver.convert.from_transformers(source)
    assert model.num_latents == 16 and model.num_blocks == 2
    frames = rng.uniform(-1, 1, (1, 2) + TRAIN_SIZE + (3,)).astype("float32")
    with torch.no_grad():
        logits = source(inputs=reference_patches(frames)).logits.numpy()
    np.testing.assert_allclose(ops.convert_to_numpy(model(frames)) / 20 * 100, 100 * logits, atol=1e-4)
    state = {k: v.numpy() for k, v in source.state_dict().items()}
    state["perceiver.decoder.decoder.final_layer.weight"] = np.zeros((3, 322), "float32")
    with pytest.raises(ConversionError, match="perceiver.decoder.decoder.final_layer.weight"):
        optical_flow_from_transformers(
            source.config.to_dict(), "PerceiverForOpticalFlow", WeightSource(state)
        )


# ---------------------------------------------------------------- DeepMind

SMALL = dict(
    image_shape=(6, 8), num_latents=4, num_latent_channels=16,
    num_self_attends_per_block=2, num_self_attention_heads=2,
    num_patch_channels=8, num_bands=3,
)


def haiku_params(rng):
    """A Haiku-layout flow checkpoint for SMALL, named by DeepMind's rules."""
    c_in = 8 + 2 + 4 * 3  # patch channels + Fourier
    d = 16
    arrays = {}

    def linear(module, n_in, n_out):
        arrays[module] = {"w": rng.normal(size=(n_in, n_out)).astype("float32"),
                          "b": rng.normal(size=(n_out,)).astype("float32")}

    def norm(module, n):
        arrays[module] = {"scale": rng.normal(size=(n,)).astype("float32"),
                          "offset": rng.normal(size=(n,)).astype("float32")}

    def block(prefix, q, kv, qk, v, cross):
        norms = ["layer_norm", "layer_norm_1", "layer_norm_2"]
        norm(f"{prefix}/{norms[0]}", q)
        if cross:
            norm(f"{prefix}/{norms[1]}", kv)
        norm(f"{prefix}/{norms[2] if cross else norms[1]}", q)
        linear(f"{prefix}/attention/linear", q, qk)
        linear(f"{prefix}/attention/linear_1", kv, qk)
        linear(f"{prefix}/attention/linear_2", kv, v)
        linear(f"{prefix}/attention/linear_3", v, q)
        linear(f"{prefix}/mlp/linear", q, q)
        linear(f"{prefix}/mlp/linear_1", q, q)

    linear("image_preprocessor/patches_linear", 54, 8)
    arrays["perceiver_encoder/~/trainable_position_encoding"] = {
        "pos_embs": rng.normal(size=(4, d)).astype("float32")}
    block("perceiver_encoder/~/cross_attention", d, c_in, c_in, c_in, cross=True)
    block("perceiver_encoder/~/self_attention", d, d, d, d, cross=False)
    block("perceiver_encoder/~/self_attention_1", d, d, d, d, cross=False)
    block("flow_decoder/~/basic_decoder/cross_attention", c_in, d, d, d, cross=True)
    linear("flow_decoder/~/basic_decoder/output", c_in, 2)
    return arrays


def write(path, arrays):
    with open(path, "wb") as f:
        pickle.dump(arrays, f)
    return str(path)


def test_from_deepmind_holds_exactly_the_arrays(tmp_path, rng):
    arrays = haiku_params(rng)
    model = keras_perceiver.convert.from_deepmind(
        write(tmp_path / "flow.pystate", arrays), "optical_flow_perceiver", **SMALL
    )
    assert isinstance(model, PerceiverOpticalFlow)
    ours = [ops.convert_to_numpy(w) for w in model.weights]
    theirs = [v for module in arrays.values() for v in module.values()]
    assert len(ours) == len(theirs)
    # Every source array sits, bit-exactly, in exactly one of our variables.
    for value in theirs:
        hits = [w for w in ours if w.shape == value.shape and np.array_equal(w, value)]
        assert len(hits) == 1
    # And in the right place.
    eq = np.testing.assert_array_equal
    eq(ops.convert_to_numpy(model.input_adapter.patches_linear.kernel),
       arrays["image_preprocessor/patches_linear"]["w"])
    eq(ops.convert_to_numpy(model.encoder.latents.embeddings),
       arrays["perceiver_encoder/~/trainable_position_encoding"]["pos_embs"])
    enc_cross = model.encoder.cross_attention
    eq(ops.convert_to_numpy(enc_cross.attention.key_dense.kernel),
       arrays["perceiver_encoder/~/cross_attention/attention/linear_1"]["w"])
    eq(ops.convert_to_numpy(enc_cross.key_value_layer_norm.gamma),
       arrays["perceiver_encoder/~/cross_attention/layer_norm_1"]["scale"])
    eq(ops.convert_to_numpy(model.encoder.self_attends[1].mlp.dense2.kernel),
       arrays["perceiver_encoder/~/self_attention_1/mlp/linear_1"]["w"])
    dec = model.decoder
    eq(ops.convert_to_numpy(dec.decoding_cross_attention.attention.query_dense.kernel),
       arrays["flow_decoder/~/basic_decoder/cross_attention/attention/linear"]["w"])
    eq(ops.convert_to_numpy(dec.final_layer.bias), arrays["flow_decoder/~/basic_decoder/output"]["b"])


def test_from_deepmind_corrupted_key_is_named(tmp_path, rng):
    arrays = haiku_params(rng)
    arrays["flow_decoder/~/basic_decoder/outputs"] = arrays.pop("flow_decoder/~/basic_decoder/output")
    path = write(tmp_path / "bad.pystate", arrays)
    with pytest.raises(ConversionError, match="'flow_decoder/~/basic_decoder/output/w'"):
        keras_perceiver.convert.from_deepmind(path, "optical_flow_perceiver", **SMALL)


def test_from_deepmind_wrong_shape_and_extra_key_are_named(tmp_path, rng):
    arrays = haiku_params(rng)
    arrays["image_preprocessor/patches_linear"]["w"] = np.zeros((27, 8), "float32")
    path = write(tmp_path / "bad.pystate", arrays)
    with pytest.raises(ConversionError, match="'image_preprocessor/patches_linear/w'"):
        keras_perceiver.convert.from_deepmind(path, "optical_flow_perceiver", **SMALL)
    arrays = haiku_params(rng)
    arrays["flow_decoder/~/basic_decoder/extra"] = {"w": np.zeros(3, "float32")}
    path = write(tmp_path / "extra.pystate", arrays)
    with pytest.raises(ConversionError, match="unexpected key 'flow_decoder/~/basic_decoder/extra/w'"):
        keras_perceiver.convert.from_deepmind(path, "optical_flow_perceiver", **SMALL)
