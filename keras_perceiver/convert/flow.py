"""Optical flow converters: transformers `PerceiverForOpticalFlow` and DeepMind.

Key layouts (docs/architecture.md section 6):

- transformers: `perceiver.input_preprocessor.conv_after_patches` (the 54 ->
  64 patch projection), `perceiver.embeddings.latents`, `perceiver.encoder.*`,
  `perceiver.decoder.decoder.{decoding_cross_attention,final_layer}`. Its
  input is the already-extracted patches `[B, 2, 27, H, W]` (channels kh, kw,
  c); space-to-depth over time stacks them frame-major, the order our
  `FramePatches` produces inside the model. Its `logits` are our flow / 20.
- DeepMind (optical_flow colab): `image_preprocessor/patches_linear`,
  `perceiver_encoder/~/...`, `flow_decoder/~/basic_decoder/{cross_attention,
  output}`. The pickle holds params only.
"""

from keras_perceiver.convert.common import ConversionError
from keras_perceiver.convert.common import assign_basic_decoder
from keras_perceiver.convert.common import assign_dense
from keras_perceiver.convert.common import assign_encoder
from keras_perceiver.convert.common import encoder_args_from_transformers
from keras_perceiver.models.optical_flow import PerceiverOpticalFlow

def optical_flow_from_transformers(config, class_name, source):
    """`PerceiverOpticalFlow` from a transformers `PerceiverForOpticalFlow`."""
    if class_name != "PerceiverForOpticalFlow":
        raise ConversionError(f"optical_flow_from_transformers: unexpected class {class_name!r}.")
    patch_weight = source.arrays.get("perceiver.input_preprocessor.conv_after_patches.weight")
    model = PerceiverOpticalFlow(
        image_shape=tuple(config.get("train_size", (368, 496))),
        **encoder_args_from_transformers(config),
        cross_attention_shape_for_attention=config.get(
            "cross_attention_shape_for_attention", "kv"
        ),
        # transformers fixes both at 64 (PerceiverForOpticalFlow.__init__).
        num_patch_channels=64 if patch_weight is None else int(patch_weight.shape[0]),
        num_bands=64,
        fourier_rounding="transformers",
    )
    assign_dense(
        model.input_adapter.patches_linear, source,
        "perceiver.input_preprocessor.conv_after_patches", "torch",
    )
    assign_encoder(model.encoder, source, "torch")
    assign_basic_decoder(model.decoder, source, "perceiver.decoder.decoder", "torch")
    return model


def optical_flow_from_deepmind(preset, params, state, **overrides):
    """`PerceiverOpticalFlow` from DeepMind's `optical_flow_checkpoint.pystate`.

    `overrides` replace preset constructor arguments (e.g. a small config).
    """
    model = PerceiverOpticalFlow.from_preset(preset, load_weights=False, **overrides)
    assign_dense(model.input_adapter.patches_linear, params, "image_preprocessor/patches_linear",
                 "haiku")
    assign_encoder(model.encoder, params, "haiku")
    assign_basic_decoder(model.decoder, params, "flow_decoder/~/basic_decoder", "haiku")
    return model
