"""Image classifier converters: transformers' three ImageNet classes, DeepMind's pickles.

transformers (`PerceiverForImageClassification{Learned,Fourier,ConvProcessing}`),
with the preprocessor arguments those classes hard-code:
- Learned: `perceiver.input_preprocessor.convnet_1x1.{weight,bias}` (Conv2d
  `[O, I, 1, 1]`), `...position_embeddings.position_embeddings`
  (`image_size**2 x 256`), `...positions_projection.{weight,bias}`; the
  decoder keeps the query residual (DeepMind's learned model has it off).
- Fourier: pixels, Fourier max_resolution (224, 224) whatever the image size.
- ConvProcessing: `...convnet.conv.weight` (`[64, 3, 7, 7]`),
  `...convnet.batchnorm.{weight,bias,running_mean,running_var}`; Fourier
  max_resolution (56, 56); conv padded 3/3, pool unpadded
  (`stem_padding="transformers"`).
All: `perceiver.embeddings.latents`, `perceiver.encoder.*`,
`perceiver.decoder.decoder.*` (one query as wide as the latents (`d_latents`), 1 head).

DeepMind (`imagenet_*.pystate`: `{"params", "state"}`), Haiku module paths:
`image_preprocessor/~/conv2_d/{w,b}` (1x1, HWIO),
`image_preprocessor/~_build_network_inputs/trainable_position_encoding/pos_embs`,
`image_preprocessor/~_build_network_inputs/position_encoding_projector/linear/{w,b}`,
`image_preprocessor/~/conv2_d_downsample/~/conv/w` (HWIO),
`image_preprocessor/~/conv2_d_downsample/~/batchnorm/{scale,offset}`
(`[1, 1, 1, 64]`), state `.../batchnorm/~/{mean,var}_ema/average` (the
`counter` / `hidden` entries are unused), `perceiver_encoder/~/...`,
`classification_decoder/~/basic_decoder/...`.
"""

import numpy as np

from keras_perceiver.convert.common import ConversionError
from keras_perceiver.convert.common import assign
from keras_perceiver.convert.common import assign_basic_decoder
from keras_perceiver.convert.common import assign_dense
from keras_perceiver.convert.common import assign_encoder
from keras_perceiver.convert.common import encoder_args_from_transformers
from keras_perceiver.convert.common import num_labels_from_config

# transformers class -> (our prep_type, its hard-coded constructor arguments)
_TRANSFORMERS_CLASSES = {
    "PerceiverForImageClassificationLearned": (
        "learned", dict(prep_channels=256, position_channels=256, project_pos_dim=256)),
    "PerceiverForImageClassificationFourier": (
        "fourier", dict(num_bands=64, max_resolution=(224, 224),
                        fourier_rounding="transformers")),
    "PerceiverForImageClassificationConvProcessing": (
        "conv", dict(num_bands=64, max_resolution=(56, 56), prep_channels=64,
                     stem_padding="transformers", fourier_rounding="transformers")),
}

_HAIKU_PREP = "image_preprocessor"
_HAIKU_POS = f"{_HAIKU_PREP}/~_build_network_inputs"
_HAIKU_STEM = f"{_HAIKU_PREP}/~/conv2_d_downsample/~"


def _conv_torch_to_hwio(weight):
    return np.transpose(weight, (2, 3, 1, 0))


def _flat(value):
    """Haiku BatchNorm `[1, 1, 1, C]` -> `[C]` (other shapes are left to fail)."""
    value = np.asarray(value)
    if value.ndim > 1 and all(n == 1 for n in value.shape[:-1]):
        return np.reshape(value, value.shape[-1:])
    return value


def image_classifier_from_transformers(config, class_name, source):
    """`PerceiverImageClassifier` from one of the three transformers classes.

    The image size is `config.image_size` (transformers uses it only for the
    learned model's positions); run Fourier / conv models at another size
    with `model.with_image_shape((224, 224, 3))`.
    """
    from keras_perceiver.models.image_classifier import PerceiverImageClassifier

    if class_name not in _TRANSFORMERS_CLASSES:
        raise ConversionError(
            f"transformers class {class_name!r} is not an image classifier; expected "
            f"one of {sorted(_TRANSFORMERS_CLASSES)}."
        )
    prep_type, prep_args = _TRANSFORMERS_CLASSES[class_name]
    size = config["image_size"]
    model = PerceiverImageClassifier(
        **encoder_args_from_transformers(config),
        num_classes=num_labels_from_config(config),
        image_shape=(size, size, 3),
        prep_type=prep_type,
        cross_attention_shape_for_attention=config.get(
            "cross_attention_shape_for_attention", "kv"),
        num_query_channels=config["d_latents"],  # transformers' latent width
        decoder_use_query_residual=True,  # all three transformers classes
        attention_dropout=config.get("attention_probs_dropout_prob", 0.0),
        **prep_args,
    )
    assign_image_preprocessor(model.input_adapter, source, "torch")
    assign_encoder(model.encoder, source, "torch")
    assign_basic_decoder(model.decoder, source, "perceiver.decoder.decoder", "torch")
    return model


def image_classifier_from_deepmind(preset, params, state, **overrides):
    """`PerceiverImageClassifier` of `preset` from DeepMind's ImageNet params/state.

    `overrides` replace preset arguments (e.g. a small configuration).
    """
    from keras_perceiver.models.image_classifier import PerceiverImageClassifier

    model = PerceiverImageClassifier.from_preset(preset, load_weights=False, **overrides)
    assign_image_preprocessor(model.input_adapter, params, "haiku", state=state)
    assign_encoder(model.encoder, params, "haiku")
    assign_basic_decoder(model.decoder, params, "classification_decoder/~/basic_decoder", "haiku")
    return model


def assign_image_preprocessor(pre, source, layout, state=None):
    """Conv1x1 / conv stem (with BatchNorm statistics) and trainable positions."""
    torch = layout == "torch"
    if pre.prep_type == "conv1x1":
        if torch:
            prefix = "perceiver.input_preprocessor.convnet_1x1"
            assign(pre.conv1x1.kernel, source, f"{prefix}.weight", _conv_torch_to_hwio)
            assign(pre.conv1x1.bias, source, f"{prefix}.bias")
        else:
            assign(pre.conv1x1.kernel, source, f"{_HAIKU_PREP}/~/conv2_d/w")
            assign(pre.conv1x1.bias, source, f"{_HAIKU_PREP}/~/conv2_d/b")
    elif pre.prep_type == "conv":
        stem = pre.stem
        if torch:
            prefix = "perceiver.input_preprocessor.convnet"
            assign(stem.conv.kernel, source, f"{prefix}.conv.weight", _conv_torch_to_hwio)
            bn = f"{prefix}.batchnorm"
            assign(stem.batchnorm.gamma, source, f"{bn}.weight")
            assign(stem.batchnorm.beta, source, f"{bn}.bias")
            assign(stem.batchnorm.moving_mean, source, f"{bn}.running_mean")
            assign(stem.batchnorm.moving_variance, source, f"{bn}.running_var")
            source.ignore(f"{bn}.num_batches_tracked")
        else:
            assign(stem.conv.kernel, source, f"{_HAIKU_STEM}/conv/w")
            bn = f"{_HAIKU_STEM}/batchnorm"
            assign(stem.batchnorm.gamma, source, f"{bn}/scale", _flat)
            assign(stem.batchnorm.beta, source, f"{bn}/offset", _flat)
            assign(stem.batchnorm.moving_mean, state, f"{bn}/~/mean_ema/average", _flat)
            assign(stem.batchnorm.moving_variance, state, f"{bn}/~/var_ema/average", _flat)
            state.ignore(*(f"{bn}/~/{ema}_ema/{name}" for ema in ("mean", "var")
                           for name in ("counter", "hidden")))
    if pre.position_encoding_type == "trainable":
        key = ("perceiver.input_preprocessor.position_embeddings.position_embeddings" if torch
               else f"{_HAIKU_POS}/trainable_position_encoding/pos_embs")
        assign(pre.position_encoding.embeddings, source, key)
    if pre.position_projection is not None:
        key = ("perceiver.input_preprocessor.positions_projection" if torch
               else f"{_HAIKU_POS}/position_encoding_projector/linear")
        assign_dense(pre.position_projection, source, key, layout)
