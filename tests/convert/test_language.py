import pickle

import numpy as np
import pytest
import torch
from keras import ops
from safetensors.numpy import load_file
from safetensors.numpy import save_file
from transformers import PerceiverConfig
from transformers import PerceiverForMaskedLM
from transformers import PerceiverForSequenceClassification
from transformers import PerceiverTokenizer

from keras_perceiver import convert
from keras_perceiver.models import PerceiverMaskedLM
from keras_perceiver.models import PerceiverTextClassifier
from tests.torch_reference import unit_scale_

# ----------------------------------------------------------------------------
# transformers
# ----------------------------------------------------------------------------


def small_config(**kwargs):
    config = dict(
        num_latents=6, d_latents=16, d_model=8, num_blocks=2, num_self_attends_per_block=2,
        num_self_attention_heads=2, num_cross_attention_heads=2,
        max_position_embeddings=24, qk_channels=8, v_channels=16,
    )
    config.update(kwargs)
    return PerceiverConfig(**config)


def token_ids(length=20, real=(20, 13), seed=0):
    ids = np.random.default_rng(seed).integers(6, 262, size=(len(real), length))
    for row, n in enumerate(real):
        ids[row, n:] = 0
    return ids


def torch_logits(model, ids):
    with torch.no_grad():
        mask = torch.tensor((ids != 0).astype("int64"))
        out = model(inputs=torch.tensor(ids), attention_mask=mask)
    return out.logits.numpy()


def saved(model, tmp_path):
    model.save_pretrained(tmp_path / "hf")
    return str(tmp_path / "hf")


@pytest.mark.parametrize("hidden_act,activation", [("gelu", "gelu"), ("gelu_new", "gelu_tanh")])
def test_masked_lm_parity(tmp_path, hidden_act, activation):
    source = unit_scale_(PerceiverForMaskedLM(small_config(hidden_act=hidden_act)))
    model = convert.from_transformers(saved(source, tmp_path))
    assert isinstance(model, PerceiverMaskedLM)
    assert model.get_config()["activation"] == activation
    ids = token_ids()
    expected = torch_logits(source, ids)
    assert expected.shape == (2, 24, 262) and np.abs(expected).max() > 1.0
    out = ops.convert_to_numpy(model(ids.astype("int32")))
    # The converted model does not mask decoder queries: every position agrees.
    np.testing.assert_allclose(out, expected, atol=1e-4)
    # DeepMind's query masking agrees at the real positions.
    deepmind_style = PerceiverMaskedLM(**{**model.get_config(), "mask_decoder_queries": True})
    deepmind_style.set_weights(model.get_weights())
    out = ops.convert_to_numpy(deepmind_style(ids.astype("int32")))
    real = np.pad(ids, ((0, 0), (0, 4))) != 0
    np.testing.assert_allclose(out[real], expected[real], atol=1e-4)


def test_masked_lm_default_channels_and_live_model():
    source = unit_scale_(PerceiverForMaskedLM(small_config(qk_channels=None, v_channels=None)))
    model = convert.from_transformers(source)
    ids = token_ids(real=(20, 5), seed=1)
    np.testing.assert_allclose(ops.convert_to_numpy(model(ids.astype("int32"))),
                               torch_logits(source, ids), atol=1e-4)


@pytest.mark.parametrize("num_labels", [2, 5])
def test_sequence_classification_parity(tmp_path, num_labels):
    source = unit_scale_(PerceiverForSequenceClassification(small_config(num_labels=num_labels)))
    model = convert.from_transformers(saved(source, tmp_path))
    assert isinstance(model, PerceiverTextClassifier)
    assert model.get_config()["tasks"] == {"label": num_labels}
    ids = token_ids()
    expected = torch_logits(source, ids)
    assert np.abs(expected).max() > 0.5
    out = ops.convert_to_numpy(model(ids.astype("int32"))["label"])
    np.testing.assert_allclose(out, expected, atol=1e-4)


def test_fill_mask_matches_transformers_argmax(tmp_path):
    source = unit_scale_(PerceiverForMaskedLM(small_config(max_position_embeddings=48)), seed=3)
    model = convert.from_transformers(saved(source, tmp_path))
    text = "This is an incomplete sentence."
    start, end = 10, 21  # "incomplete "
    tokenizer = PerceiverTokenizer()
    encoding = tokenizer(text, padding="max_length", max_length=48, return_tensors="pt")
    ids = encoding["input_ids"].clone()
    ids[0, start + 1:end + 1] = tokenizer.mask_token_id  # +1: the [CLS] token
    with torch.no_grad():
        logits = source(inputs=ids, attention_mask=encoding["attention_mask"]).logits
    predicted = logits[0, start + 1:end + 1].argmax(-1).tolist()
    expected = text[:start] + tokenizer.decode(predicted) + text[end:]
    assert model.fill_mask(text, masked_spans=[(start, end)], add_special_tokens=True) == expected
    placeholder = text[:start] + "[MASK]" * (end - start) + text[end:]
    assert model.fill_mask(placeholder, add_special_tokens=True) == expected


def test_transformers_missing_and_wrongly_shaped_keys(tmp_path):
    path = saved(unit_scale_(PerceiverForMaskedLM(small_config())), tmp_path)
    weights = load_file(f"{path}/model.safetensors")
    key = "perceiver.decoder.decoding_cross_attention.attention.self.key.weight"
    save_file({k: v for k, v in weights.items() if k != key}, f"{path}/model.safetensors")
    with pytest.raises(convert.ConversionError, match=f"missing key '{key}'"):
        convert.from_transformers(path)
    save_file({**weights, key: weights[key][:, :-1].copy()}, f"{path}/model.safetensors")
    with pytest.raises(convert.ConversionError, match=f"key '{key}': expected shape"):
        convert.from_transformers(path)
    save_file({**weights, "extra.weight": np.zeros(3, "float32")}, f"{path}/model.safetensors")
    with pytest.raises(convert.ConversionError, match="unexpected key 'extra.weight'"):
        convert.from_transformers(path)


# ----------------------------------------------------------------------------
# DeepMind (Haiku pickle, built as in the MLM colab)
# ----------------------------------------------------------------------------

HEADS, DEC_HEADS, BLOCKS = 2, 2, 2
VOCAB, MAX_LEN, D_MODEL, N_LAT, D_LAT, QK, V, DEC_QK = 262, 16, 8, 6, 16, 8, 16, 8


def haiku_params(seed=0, num_self_attends=2):
    """`{module: {param: array}}` of a small MLM, in DeepMind's module names."""
    rng = np.random.default_rng(seed)
    params = {}

    def linear(name, n_in, n_out):
        params[name] = {"w": (rng.normal(size=(n_in, n_out)) / np.sqrt(n_in)).astype("float32"),
                        "b": (0.3 * rng.normal(size=n_out)).astype("float32")}

    def norm(name, n):
        params[name] = {"scale": (1 + 0.3 * rng.normal(size=n)).astype("float32"),
                        "offset": (0.3 * rng.normal(size=n)).astype("float32")}

    def table(name, key, shape):
        params[name] = {key: rng.normal(size=shape).astype("float32")}

    def block(prefix, q_dim, kv_dim, qk, v, cross):
        norm(f"{prefix}/layer_norm", q_dim)
        if cross:
            norm(f"{prefix}/layer_norm_1", kv_dim)
        linear(f"{prefix}/attention/linear", q_dim, qk)
        linear(f"{prefix}/attention/linear_1", kv_dim, qk)
        linear(f"{prefix}/attention/linear_2", kv_dim, v)
        linear(f"{prefix}/attention/linear_3", v, q_dim)
        norm(f"{prefix}/layer_norm_{2 if cross else 1}", q_dim)
        linear(f"{prefix}/mlp/linear", q_dim, q_dim)
        linear(f"{prefix}/mlp/linear_1", q_dim, q_dim)

    table("embed", "embeddings", (VOCAB, D_MODEL))
    table("trainable_position_encoding", "pos_embs", (MAX_LEN, D_MODEL))
    table("perceiver_encoder/~/trainable_position_encoding", "pos_embs", (N_LAT, D_LAT))
    block("perceiver_encoder/~/cross_attention", D_LAT, D_MODEL, QK, V, cross=True)
    for i in range(num_self_attends):
        name = "self_attention" if i == 0 else f"self_attention_{i}"
        block(f"perceiver_encoder/~/{name}", D_LAT, D_LAT, QK, V, cross=False)
    table("basic_decoder/~/trainable_position_encoding", "pos_embs", (MAX_LEN, D_MODEL))
    block("basic_decoder/cross_attention", D_MODEL, D_LAT, DEC_QK, D_MODEL, cross=True)
    params["embedding_decoder"] = {"bias": (0.3 * rng.normal(size=VOCAB)).astype("float32")}
    return params


def reference_forward(p, ids):
    """DeepMind's MLM forward pass (perceiver.py, tanh GELU) in float64 NumPy."""
    p = {m: {k: v.astype("float64") for k, v in d.items()} for m, d in p.items()}

    def ln(x, name):
        mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + 1e-5) * p[name]["scale"] + p[name]["offset"]

    def lin(x, name):
        return x @ p[name]["w"] + p[name]["b"]

    def gelu(x):
        return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))

    def attend(prefix, q_in, kv_in, heads, mask):
        q, k, v = (lin(q_in, f"{prefix}/linear"), lin(kv_in, f"{prefix}/linear_1"),
                   lin(kv_in, f"{prefix}/linear_2"))
        b, t, s = q.shape[0], q.shape[1], k.shape[1]
        q, k, v = (x.reshape(b, x.shape[1], heads, -1) for x in (q, k, v))
        logits = np.einsum("bthd,bThd->bhtT", q, k) / np.sqrt(q.shape[-1])
        logits = np.where(mask[:, None], logits, -1e30)
        w = np.exp(logits - logits.max(-1, keepdims=True))
        w /= w.sum(-1, keepdims=True)
        out = np.einsum("bhtT,bThd->bthd", w, v).reshape(b, t, -1)
        out = np.where(mask.any(-1, keepdims=True), out, 0.0)
        return lin(out, f"{prefix}/linear_3")

    def mlp(x, prefix):
        return lin(gelu(lin(x, f"{prefix}/linear")), f"{prefix}/linear_1")

    def cross(prefix, q, kv, heads, mask, residual):
        a = attend(f"{prefix}/attention", ln(q, f"{prefix}/layer_norm"),
                   ln(kv, f"{prefix}/layer_norm_1"), heads, mask)
        x = q + a if residual else a
        return x + mlp(ln(x, f"{prefix}/layer_norm_2"), f"{prefix}/mlp")

    def self_attend(prefix, x):
        h = ln(x, f"{prefix}/layer_norm")
        everything = np.ones((h.shape[0], h.shape[1], h.shape[1]), bool)
        x = x + attend(f"{prefix}/attention", h, h, HEADS, everything)
        return x + mlp(ln(x, f"{prefix}/layer_norm_1"), f"{prefix}/mlp")

    batch = len(ids)
    ids = np.pad(ids, ((0, 0), (0, MAX_LEN - ids.shape[1])))
    valid = ids != 0
    table = p["embed"]["embeddings"]
    x = table[ids] + p["trainable_position_encoding"]["pos_embs"]
    z = np.broadcast_to(p["perceiver_encoder/~/trainable_position_encoding"]["pos_embs"],
                        (batch, N_LAT, D_LAT))
    z = cross("perceiver_encoder/~/cross_attention", z, x, HEADS,
              np.broadcast_to(valid[:, None, :], (batch, N_LAT, MAX_LEN)), True)
    names = sorted(
        (k.split("/")[2] for k in p if "/self_attention" in k and k.endswith("attention/linear")),
        key=lambda n: int(n.split("_")[-1]) if n[-1].isdigit() else 0)
    for _ in range(BLOCKS):
        for name in names:
            z = self_attend(f"perceiver_encoder/~/{name}", z)
    queries = np.broadcast_to(p["basic_decoder/~/trainable_position_encoding"]["pos_embs"],
                              (batch, MAX_LEN, D_MODEL))
    h = cross("basic_decoder/cross_attention", queries, z, DEC_HEADS,
              np.broadcast_to(valid[:, :, None], (batch, MAX_LEN, N_LAT)), False)
    return h @ table.T + p["embedding_decoder"]["bias"]


OVERRIDES = dict(num_blocks=BLOCKS, num_self_attention_heads=HEADS,
                 num_cross_attention_heads=HEADS, decoder_num_heads=DEC_HEADS)


def write_pickle(params, path):
    with open(path, "wb") as f:
        pickle.dump(params, f)
    return str(path)


def test_from_deepmind_holds_exactly_the_arrays(tmp_path):
    params = haiku_params(num_self_attends=3)
    path = write_pickle(params, tmp_path / "language_perceiver_io_bytes.pickle")
    model = convert.from_deepmind(path, "language_perceiver", **OVERRIDES)
    config = model.get_config()
    assert (config["max_length"], config["d_model"], config["num_latents"], config["num_latent_channels"],
            config["num_self_attends_per_block"], config["qk_channels"], config["v_channels"],
            config["decoder_qk_channels"], config["decoder_v_channels"], config["activation"],
            config["mask_decoder_queries"]) == (MAX_LEN, D_MODEL, N_LAT, D_LAT, 3, QK, V, DEC_QK,
                                                D_MODEL, "gelu_tanh", True)
    arrays = [a for module in params.values() for a in module.values()]
    weights = [ops.convert_to_numpy(w) for w in model.weights]
    assert len(weights) == len(arrays)
    # Every checkpoint array is held, bit for bit, by exactly one variable.
    unmatched = list(range(len(weights)))
    for array in arrays:
        hits = [i for i in unmatched if weights[i].shape == array.shape
                and np.array_equal(weights[i], array)]
        assert len(hits) == 1
        unmatched.remove(hits[0])
    np.testing.assert_array_equal(
        ops.convert_to_numpy(model.input_adapter.token_embedding.embeddings),
        params["embed"]["embeddings"])
    np.testing.assert_array_equal(ops.convert_to_numpy(model.head.bias),
                                  params["embedding_decoder"]["bias"])


def test_from_deepmind_matches_reference_forward(tmp_path):
    params = haiku_params(seed=1)
    path = write_pickle(params, tmp_path / "mlm.pickle")
    model = convert.from_deepmind(path, "language_perceiver", **OVERRIDES)
    ids = token_ids(length=12, real=(12, 7), seed=2)
    expected = reference_forward(params, ids)
    assert np.abs(expected).max() > 1.0
    out = ops.convert_to_numpy(model(ids.astype("int32")))
    np.testing.assert_allclose(out, expected, atol=1e-4)


@pytest.mark.parametrize("corrupt", ["rename", "shape", "extra"])
def test_from_deepmind_bad_key_is_named(tmp_path, corrupt):
    params = haiku_params()
    module, param = "perceiver_encoder/~/self_attention_1/attention/linear_2", "w"
    key = f"{module}/{param}"
    if corrupt == "rename":
        params["perceiver_encoder/~/self_attention_1/attention/linear_9"] = params.pop(module)
        match = f"missing key '{key}'"
    elif corrupt == "shape":
        params[module][param] = params[module][param][:, :-2]
        match = f"key '{key}': expected shape"
    else:
        params["extra_module"] = {"w": np.zeros(3, "float32")}
        match = "unexpected key 'extra_module/w'"
    path = write_pickle(params, tmp_path / "bad.pickle")
    with pytest.raises(convert.ConversionError, match=match):
        convert.from_deepmind(path, "language_perceiver", **OVERRIDES)
