"""Language converters: transformers MLM / sequence classifier, DeepMind MLM.

transformers (`PerceiverForMaskedLM`, `PerceiverForSequenceClassification`):
`perceiver.input_preprocessor.{embeddings,position_embeddings}.weight`,
the encoder (`perceiver.embeddings.latents`, `perceiver.encoder.*`), the
decoder (`perceiver.decoder[.decoder].*`) and `embedding_decoder.bias`.

DeepMind (`language_perceiver_io_bytes.pickle`, built by the MLM colab):
`embed/embeddings`, `trainable_position_encoding/pos_embs` (input
positions), `perceiver_encoder/~/...`, `basic_decoder/~/trainable_position_encoding/pos_embs`
(decoder queries), `basic_decoder/cross_attention/...`, `embedding_decoder/bias`.
"""

import re

from keras_perceiver.convert.common import assign
from keras_perceiver.convert.common import assign_basic_decoder
from keras_perceiver.convert.common import assign_dense
from keras_perceiver.convert.common import assign_encoder
from keras_perceiver.convert.common import encoder_args_from_transformers
from keras_perceiver.convert.common import num_labels_from_config

def text_args_from_transformers(config):
    """Our text-model constructor arguments from a `PerceiverConfig` dict."""
    return dict(
        **encoder_args_from_transformers(config),
        vocab_size=config["vocab_size"],
        max_length=config["max_position_embeddings"],
        d_model=config["d_model"],
        cross_attention_shape_for_attention=config.get(
            "cross_attention_shape_for_attention", "kv"),
        attention_dropout=config.get("attention_probs_dropout_prob", 0.0),
        layer_norm_epsilon=1e-5,  # torch nn.LayerNorm default; config.layer_norm_eps is unused
    )


def assign_text_encoder(model, source, layout):
    """Token + position embeddings and the encoder."""
    pre = model.input_adapter
    if layout == "torch":
        assign(pre.token_embedding.embeddings, source,
               "perceiver.input_preprocessor.embeddings.weight")
        assign(pre.position_embedding.embeddings, source,
               "perceiver.input_preprocessor.position_embeddings.weight")
    else:
        assign(pre.token_embedding.embeddings, source, "embed/embeddings")
        assign(pre.position_embedding.embeddings, source, "trainable_position_encoding/pos_embs")
    assign_encoder(model.encoder, source, layout)


def masked_lm_from_transformers(config, class_name, source):
    """`PerceiverMaskedLM` from a transformers `PerceiverForMaskedLM`.

    The decoder follows transformers exactly (8 heads, qk 256, v d_model)
    and does not mask padded queries, so every output position reproduces
    the source.
    """
    from keras_perceiver.models.masked_lm import PerceiverMaskedLM

    model = PerceiverMaskedLM(
        **text_args_from_transformers(config),
        decoder_num_heads=8,
        decoder_qk_channels=8 * 32,
        decoder_v_channels=config["d_model"],
        mask_decoder_queries=False,
    )
    assign_text_encoder(model, source, "torch")
    assign_basic_decoder(model.decoder, source, "perceiver.decoder", "torch")
    assign(model.head.bias, source, "embedding_decoder.bias")
    return model


def text_classifier_from_transformers(config, class_name, source):
    """`PerceiverTextClassifier` (one task, `"label"`) from a transformers
    `PerceiverForSequenceClassification`."""
    from keras_perceiver.models.text_classifier import PerceiverTextClassifier

    model = PerceiverTextClassifier(
        tasks={"label": num_labels_from_config(config)},
        **text_args_from_transformers(config),
        decoder_num_heads=1,
        decoder_use_query_residual=True,
    )
    prefix = "perceiver.decoder.decoder"
    assign_text_encoder(model, source, "torch")
    assign_basic_decoder(model.decoder, source, prefix, "torch")
    assign_dense(model.heads["label"], source, f"{prefix}.final_layer", "torch")
    return model


def _count_self_attends(params, prefix):
    pattern = re.compile(re.escape(prefix) + r"/~/self_attention(?:_(\d+))?/")
    indices = {int(m.group(1) or 0) for k in params.arrays if (m := pattern.match(k))}
    return len(indices)


def masked_lm_args_from_deepmind(params):
    """The sizes of a DeepMind MLM read off its arrays."""
    shape = params.shape
    enc = "perceiver_encoder/~"
    dec = "basic_decoder/cross_attention"
    vocab_size, d_model = shape("embed/embeddings")
    num_latents, num_latent_channels = shape(f"{enc}/trainable_position_encoding/pos_embs")
    cross = f"{enc}/cross_attention"
    return dict(
        vocab_size=vocab_size,
        d_model=d_model,
        max_length=shape("trainable_position_encoding/pos_embs")[0],
        num_latents=num_latents,
        num_latent_channels=num_latent_channels,
        num_self_attends_per_block=_count_self_attends(params, "perceiver_encoder"),
        qk_channels=shape(f"{cross}/attention/linear/w")[1],
        v_channels=shape(f"{cross}/attention/linear_2/w")[1],
        cross_attention_widening_factor=shape(f"{cross}/mlp/linear/w")[1] // num_latent_channels,
        self_attention_widening_factor=(
            shape(f"{enc}/self_attention/mlp/linear/w")[1] // num_latent_channels),
        decoder_qk_channels=shape(f"{dec}/attention/linear/w")[1],
        decoder_v_channels=shape(f"{dec}/attention/linear_2/w")[1],
        decoder_widening_factor=shape(f"{dec}/mlp/linear/w")[1] // d_model,
    )


def masked_lm_from_deepmind(preset, params, state, **overrides):
    """`PerceiverMaskedLM` from DeepMind's `language_perceiver_io_bytes.pickle`.

    Sizes are read off the arrays; head counts and `num_blocks` come from
    the preset; `overrides` replace either (for smaller checkpoints).
    """
    from keras_perceiver.models.masked_lm import PerceiverMaskedLM

    config = PerceiverMaskedLM.preset_config(preset)
    config.update(masked_lm_args_from_deepmind(params))
    config.update(overrides)
    model = PerceiverMaskedLM(**config)
    assign_text_encoder(model, params, "haiku")
    assign_basic_decoder(model.decoder, params, "basic_decoder", "haiku")
    assign(model.head.bias, params, "embedding_decoder/bias")
    return model
