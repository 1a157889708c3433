"""Shared converter machinery: a checked weight source and block mappings.

A `WeightSource` holds a flat `{key: numpy array}` and hands out arrays by
key, checking shapes; `finish()` fails on keys that were never used. The
`assign_*` helpers map the reference layouts onto our layers:

- transformers (`"torch"` layout): Linear weight `[out, in]` (transposed),
  LayerNorm `weight`/`bias`, keys as in docs/architecture.md section 6.
- DeepMind Haiku (`"haiku"` layout): Linear `w` `[in, out]`, LayerNorm
  `scale`/`offset`, module paths such as `.../cross_attention/attention/linear`.

`activation_from_config` and `encoder_args_from_transformers` read the
`PerceiverConfig` settings every transformers converter shares.
"""

import numpy as np


class ConversionError(ValueError):
    """A checkpoint does not match the model: names the first bad key."""


class WeightSource:
    def __init__(self, arrays, description="checkpoint"):
        self.arrays = {k: np.asarray(v) for k, v in arrays.items()}
        self.description = description
        self.used = set()

    def get(self, key):
        if key not in self.arrays:
            raise ConversionError(f"{self.description}: missing key {key!r}.")
        self.used.add(key)
        return self.arrays[key]

    def has(self, key):
        return key in self.arrays

    def shape(self, key):
        """The shape of `key`'s array, without marking it used."""
        if key not in self.arrays:
            raise ConversionError(f"{self.description}: missing key {key!r}.")
        return self.arrays[key].shape

    def ignore(self, *keys):
        self.used.update(k for k in keys if k in self.arrays)

    def finish(self):
        unexpected = sorted(set(self.arrays) - self.used)
        if unexpected:
            raise ConversionError(
                f"{self.description}: unexpected key {unexpected[0]!r} "
                f"({len(unexpected)} unused keys)."
            )


# transformers `hidden_act` -> our activation.
_ACTIVATIONS = {
    "gelu": "gelu",
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu_fast": "gelu_tanh",
}


def activation_from_config(config):
    """Our activation for a transformers `PerceiverConfig` dict's `hidden_act`."""
    act = config.get("hidden_act", "gelu")
    if act not in _ACTIVATIONS:
        raise ConversionError(
            f"transformers hidden_act {act!r} is not supported; expected one of "
            f"{sorted(_ACTIVATIONS)}."
        )
    return _ACTIVATIONS[act]


def num_labels_from_config(config):
    """A transformers classifier's label count (`num_labels`, else `id2label`, else 2)."""
    return config.get("num_labels") or len(config.get("id2label") or {}) or 2


def encoder_args_from_transformers(config):
    """The encoder constructor arguments all our task models take, from a
    transformers `PerceiverConfig` dict.

    The latent width is transformers' `d_latents`, our `num_latent_channels`.
    Callers add what only some models take:
    `cross_attention_shape_for_attention` and `attention_dropout`.
    """
    return dict(
        num_latents=config["num_latents"],
        num_latent_channels=config["d_latents"],
        num_blocks=config["num_blocks"],
        num_self_attends_per_block=config["num_self_attends_per_block"],
        num_self_attention_heads=config["num_self_attention_heads"],
        num_cross_attention_heads=config["num_cross_attention_heads"],
        qk_channels=config.get("qk_channels"),
        v_channels=config.get("v_channels"),
        cross_attention_widening_factor=config.get("cross_attention_widening_factor", 1),
        self_attention_widening_factor=config.get("self_attention_widening_factor", 1),
        use_query_residual=config.get("use_query_residual", True),
        activation=activation_from_config(config),
    )


def set_variable(variable, value, key):
    value = np.asarray(value)
    if tuple(variable.shape) != value.shape:
        raise ConversionError(
            f"key {key!r}: expected shape {tuple(variable.shape)} for "
            f"{variable.path}, received {value.shape}."
        )
    variable.assign(value.astype(variable.dtype))


def assign(variable, source, key, transform=None):
    value = source.get(key)
    if transform is not None:
        value = transform(value)
    set_variable(variable, value, key)


def assign_dense(dense, source, prefix, layout):
    if layout == "torch":
        assign(dense.kernel, source, f"{prefix}.weight", np.transpose)
        assign(dense.bias, source, f"{prefix}.bias")
    else:
        assign(dense.kernel, source, f"{prefix}/w")
        assign(dense.bias, source, f"{prefix}/b")


def assign_layer_norm(norm, source, prefix, layout):
    scale, offset = ("weight", "bias") if layout == "torch" else ("scale", "offset")
    sep = "." if layout == "torch" else "/"
    assign(norm.gamma, source, f"{prefix}{sep}{scale}")
    assign(norm.beta, source, f"{prefix}{sep}{offset}")


def assign_attention_block(block, source, prefix, layout):
    """A `CrossAttention` or `SelfAttention` from one reference layer."""
    cross = hasattr(block, "key_value_layer_norm")
    attention = block.attention
    if layout == "torch":
        p = f"{prefix}.attention.self"
        if cross:
            assign_layer_norm(block.query_layer_norm, source, f"{p}.layernorm1", layout)
            assign_layer_norm(block.key_value_layer_norm, source, f"{p}.layernorm2", layout)
        else:
            assign_layer_norm(block.layer_norm, source, f"{p}.layernorm1", layout)
        assign_dense(attention.query_dense, source, f"{p}.query", layout)
        assign_dense(attention.key_dense, source, f"{p}.key", layout)
        assign_dense(attention.value_dense, source, f"{p}.value", layout)
        assign_dense(attention.output_dense, source, f"{prefix}.attention.output.dense", layout)
        assign_layer_norm(block.mlp_layer_norm, source, f"{prefix}.layernorm", layout)
        assign_dense(block.mlp.dense1, source, f"{prefix}.mlp.dense1", layout)
        assign_dense(block.mlp.dense2, source, f"{prefix}.mlp.dense2", layout)
        return
    # Haiku: LayerNorms are created in call order (q, kv, mlp for cross-attention).
    norms = ["layer_norm", "layer_norm_1", "layer_norm_2"]
    if cross:
        assign_layer_norm(block.query_layer_norm, source, f"{prefix}/{norms[0]}", layout)
        assign_layer_norm(block.key_value_layer_norm, source, f"{prefix}/{norms[1]}", layout)
        mlp_norm = norms[2]
    else:
        assign_layer_norm(block.layer_norm, source, f"{prefix}/{norms[0]}", layout)
        mlp_norm = norms[1]
    a = f"{prefix}/attention"
    for dense, name in zip(
        (attention.query_dense, attention.key_dense, attention.value_dense, attention.output_dense),
        ("linear", "linear_1", "linear_2", "linear_3"),
    ):
        assign_dense(dense, source, f"{a}/{name}", layout)
    assign_layer_norm(block.mlp_layer_norm, source, f"{prefix}/{mlp_norm}", layout)
    assign_dense(block.mlp.dense1, source, f"{prefix}/mlp/linear", layout)
    assign_dense(block.mlp.dense2, source, f"{prefix}/mlp/linear_1", layout)


def assign_encoder(encoder, source, layout, prefix=None):
    """Latents, cross-attention and the shared self-attention layers."""
    if layout == "torch":
        p = "perceiver." if prefix is None else (f"{prefix}." if prefix else "")
        assign(encoder.latents.embeddings, source, f"{p}embeddings.latents")
        assign_attention_block(encoder.cross_attention, source, f"{p}encoder.cross_attention", layout)
        for i, layer in enumerate(encoder.self_attends):
            assign_attention_block(layer, source, f"{p}encoder.self_attends.{i}", layout)
        return
    prefix = prefix or "perceiver_encoder"
    assign(encoder.latents.embeddings, source, f"{prefix}/~/trainable_position_encoding/pos_embs")
    assign_attention_block(encoder.cross_attention, source, f"{prefix}/~/cross_attention", layout)
    for i, layer in enumerate(encoder.self_attends):
        name = "self_attention" if i == 0 else f"self_attention_{i}"
        assign_attention_block(layer, source, f"{prefix}/~/{name}", layout)


def assign_basic_decoder(decoder, source, prefix, layout):
    """Query position encoding (if trainable), cross-attention, final layer."""
    if decoder.position_encoding_type == "trainable":
        key = (f"{prefix}.output_position_encodings.position_embeddings" if layout == "torch"
               else f"{prefix}/~/trainable_position_encoding/pos_embs")
        assign(decoder.position_encoding.embeddings, source, key)
    if decoder.position_projection is not None:
        key = (f"{prefix}.positions_projection" if layout == "torch"
               else f"{prefix}/~/position_encoding_projector/linear")
        assign_dense(decoder.position_projection, source, key, layout)
    attn = (f"{prefix}.decoding_cross_attention" if layout == "torch"
            else f"{prefix}/cross_attention")
    assign_attention_block(decoder.decoding_cross_attention, source, attn, layout)
    if decoder.final_layer is not None:
        final = f"{prefix}.final_layer" if layout == "torch" else f"{prefix}/output"
        assign_dense(decoder.final_layer, source, final, layout)
