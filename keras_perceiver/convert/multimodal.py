"""Multimodal autoencoder converters: transformers and DeepMind's Kinetics pickle.

transformers (`PerceiverForMultimodalAutoencoding`) hard-codes: audio Fourier
192 bands and image Fourier 32 bands, both with `max_resolution` taken from
the config (`num_frames * audio_samples_per_frame`; `(num_frames,
image_size, image_size)` for the video, DeepMind used the patch grid), input
padding 4, query padding 2, mask_probs image 0 / audio 0 / label 1. Keys:
`perceiver.input_preprocessor.{padding,mask}.{audio,image,label}` (`[1, C]`),
`perceiver.embeddings.latents`, `perceiver.encoder.*`,
`perceiver.decoder.modalities.label.decoder.output_position_encodings.position_embeddings`,
`perceiver.decoder.padding.{m}`, `perceiver.decoder.decoder.*` (the shared
decoder), `perceiver.output_postprocessor.modalities.{m}.classifier`.

DeepMind (`video_autoencoding_checkpoint.pystate`, the colab's module tree;
modules built in `__init__` are `parent/~/child`, in `__call__`
`parent/child`, in another method `parent/~method/child`):
`multimodal_preprocessor/{m}_padding/pos_embs`,
`multimodal_preprocessor/{m}_mask_token/pos_embs`, `encoder/~/...` (the
encoder is named `encoder`),
`classification_decoder/~/basic_decoder/~/trainable_position_encoding/pos_embs`
(label query), `multimodal_decoder/~decoder_query/{m}_padding/pos_embs`,
`multimodal_decoder/~/basic_decoder/{cross_attention,output}/...`,
`audio_postprocessor/linear`, `projection_postprocessor/linear` (image),
`classification_postprocessor/linear` (label).
"""

from keras_perceiver.convert.common import ConversionError
from keras_perceiver.convert.common import assign
from keras_perceiver.convert.common import assign_basic_decoder
from keras_perceiver.convert.common import assign_dense
from keras_perceiver.convert.common import assign_encoder
from keras_perceiver.convert.common import encoder_args_from_transformers

MODALITIES = ("audio", "image", "label")

_T = "perceiver"
_T_LABEL_QUERY = (f"{_T}.decoder.modalities.label.decoder.output_position_encodings"
                  ".position_embeddings")
_T_POST = f"{_T}.output_postprocessor.modalities"

_H_LABEL_QUERY = "classification_decoder/~/basic_decoder/~/trainable_position_encoding/pos_embs"
_H_POST = {"audio": "audio_postprocessor/linear", "image": "projection_postprocessor/linear",
           "label": "classification_postprocessor/linear"}


def _postprocessors(model):
    return {"audio": model.audio_postprocessor.projection,
            "image": model.image_postprocessor, "label": model.label_postprocessor}


def multimodal_from_transformers(config, class_name, source):
    """`PerceiverMultimodalAutoencoder` from `PerceiverForMultimodalAutoencoding`."""
    from keras_perceiver.models.multimodal import PerceiverMultimodalAutoencoder

    if config.get("cross_attention_shape_for_attention", "kv") != "kv":
        raise ConversionError(
            f"transformers {class_name}: cross_attention_shape_for_attention must be "
            f"'kv', received {config['cross_attention_shape_for_attention']!r}."
        )
    output_shape = config.get("output_shape", [1, 16, 224, 224])
    num_frames, height, width = (int(n) for n in output_shape[1:4])
    num_classes = source.shape(f"{_T_POST}.label.classifier.weight")[0]
    label_query_channels = source.shape(_T_LABEL_QUERY)[-1]
    model = PerceiverMultimodalAutoencoder(
        **encoder_args_from_transformers(config),
        num_frames=num_frames,
        image_size=(height, width),
        image_max_resolution=(config["num_frames"], config["image_size"], config["image_size"]),
        image_num_bands=32,
        audio_samples=config["num_frames"] * config["audio_samples_per_frame"],
        samples_per_patch=config["samples_per_patch"],
        audio_num_bands=192,
        fourier_rounding="transformers",
        num_classes=num_classes,
        input_min_padding_size=4,
        label_query_channels=label_query_channels,
        query_min_padding_size=2,
        decoder_channels=config["output_num_channels"],
    )
    for m in MODALITIES:
        assign(model.input_padding.paddings[m], source, f"{_T}.input_preprocessor.padding.{m}")
        assign(model.input_padding.mask_tokens[m], source, f"{_T}.input_preprocessor.mask.{m}")
        assign(model.query_padding.paddings[m], source, f"{_T}.decoder.padding.{m}")
    assign_encoder(model.encoder, source, "torch")
    assign(model.label_queries.embeddings, source, _T_LABEL_QUERY)
    assign_basic_decoder(model.decoder, source, f"{_T}.decoder.decoder", "torch")
    for m, dense in _postprocessors(model).items():
        assign_dense(dense, source, f"{_T_POST}.{m}.classifier", "torch")
    return model


def multimodal_from_deepmind(preset, params, state, **overrides):
    """`PerceiverMultimodalAutoencoder` from DeepMind's video autoencoding params.

    `overrides` replace preset arguments (e.g. a small configuration).
    """
    from keras_perceiver.models.multimodal import PerceiverMultimodalAutoencoder

    model = PerceiverMultimodalAutoencoder.from_preset(preset, load_weights=False, **overrides)
    assign_haiku_weights(model, params)
    return model


def assign_haiku_weights(model, params):
    """Every weight of `model` from the Haiku `params` (module paths above)."""
    for m in sorted(model.input_padding.paddings):
        assign(model.input_padding.paddings[m], params,
               f"multimodal_preprocessor/{m}_padding/pos_embs")
    for m in sorted(model.input_padding.mask_tokens):
        assign(model.input_padding.mask_tokens[m], params,
               f"multimodal_preprocessor/{m}_mask_token/pos_embs")
    assign_encoder(model.encoder, params, "haiku", prefix="encoder")
    assign(model.label_queries.embeddings, params, _H_LABEL_QUERY)
    for m in MODALITIES:
        assign(model.query_padding.paddings[m], params,
               f"multimodal_decoder/~decoder_query/{m}_padding/pos_embs")
    assign_basic_decoder(model.decoder, params, "multimodal_decoder/~/basic_decoder", "haiku")
    for m, dense in _postprocessors(model).items():
        assign_dense(dense, params, _H_POST[m], "haiku")
