"""Checkpoint converters: transformers and DeepMind (Haiku) -> our task models.

Example:
>>> model = keras_perceiver.convert.from_transformers("path/to/save_pretrained_dir")  # doctest: +SKIP
"""

import importlib
import inspect

from keras_perceiver.convert.common import ConversionError
from keras_perceiver.convert.sources import UnsafeCheckpointError
from keras_perceiver.convert.common import WeightSource
from keras_perceiver.convert.sources import load_deepmind
from keras_perceiver.convert.sources import load_transformers

# transformers class -> (module, function(config, class_name, source) -> model)
_TRANSFORMERS = {
    "PerceiverForMaskedLM": ("language", "masked_lm_from_transformers"),
    "PerceiverForSequenceClassification": ("language", "text_classifier_from_transformers"),
    "PerceiverForImageClassificationLearned": ("vision", "image_classifier_from_transformers"),
    "PerceiverForImageClassificationFourier": ("vision", "image_classifier_from_transformers"),
    "PerceiverForImageClassificationConvProcessing": ("vision", "image_classifier_from_transformers"),
    "PerceiverForOpticalFlow": ("flow", "optical_flow_from_transformers"),
    "PerceiverForMultimodalAutoencoding": ("multimodal", "multimodal_from_transformers"),
}

# preset -> (module, function(preset, params, state) -> model)
_DEEPMIND = {
    "language_perceiver": ("language", "masked_lm_from_deepmind"),
    "vision_perceiver_learned": ("vision", "image_classifier_from_deepmind"),
    "vision_perceiver_fourier": ("vision", "image_classifier_from_deepmind"),
    "vision_perceiver_conv": ("vision", "image_classifier_from_deepmind"),
    "optical_flow_perceiver": ("flow", "optical_flow_from_deepmind"),
    "multimodal_perceiver": ("multimodal", "multimodal_from_deepmind"),
}


# preset -> the task class the DeepMind converter builds.
_DEEPMIND_CLASSES = {
    "language_perceiver": "PerceiverMaskedLM",
    "vision_perceiver_learned": "PerceiverImageClassifier",
    "vision_perceiver_fourier": "PerceiverImageClassifier",
    "vision_perceiver_conv": "PerceiverImageClassifier",
    "optical_flow_perceiver": "PerceiverOpticalFlow",
    "multimodal_perceiver": "PerceiverMultimodalAutoencoder",
}
# keras.Model keyword arguments every task model accepts besides its own.
_MODEL_KWARGS = ("name", "dtype", "trainable")


def _check_overrides(preset, overrides):
    import keras_perceiver.models as models

    cls = getattr(models, _DEEPMIND_CLASSES[preset])
    parameters = inspect.signature(cls.__init__).parameters
    allowed = {n for n, p in parameters.items() if n != "self" and p.kind in (
        p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)} | set(_MODEL_KWARGS)
    unknown = sorted(set(overrides) - allowed)
    if unknown:
        raise TypeError(
            f"from_deepmind: unknown argument(s) {unknown} for {cls.__name__} "
            f"(preset {preset!r}); expected constructor arguments such as "
            f"{sorted(allowed)}."
        )


def _function(table, key, what):
    if key not in table:
        raise ConversionError(f"{what} {key!r} is not supported; expected one of {sorted(table)}.")
    module, name = table[key]
    return getattr(importlib.import_module(f"keras_perceiver.convert.{module}"), name)


def from_transformers(path_or_model):
    """Our task model, with weights, from a transformers Perceiver model.

    Args:
        path_or_model: a `save_pretrained` directory, a Hugging Face Hub id
            such as `"deepmind/vision-perceiver-conv"` (needs `huggingface_hub`;
            its cache and `HF_HUB_OFFLINE` apply), or a live model.

    Returns the matching `keras_perceiver.models` task model, configured with
    the source's GELU flavour (exact) and stem padding, so outputs match.
    """
    config, class_name, state = load_transformers(path_or_model)
    convert = _function(_TRANSFORMERS, class_name, "transformers class")
    source = WeightSource(state, description=f"transformers {class_name}")
    model = convert(config, class_name, source)
    source.finish()
    return model


def from_deepmind(checkpoint_path, preset, **overrides):
    """Our task model from a DeepMind Haiku pickle (no Haiku needed).

    Args:
        checkpoint_path: a `.pickle` / `.pystate` file of the released models.
        preset: which of the six presets it holds.
        **overrides: constructor arguments replacing the preset's (e.g. a
            small configuration in tests).
    """
    convert = _function(_DEEPMIND, preset, "preset")
    _check_overrides(preset, overrides)
    params, state = load_deepmind(checkpoint_path)
    params = WeightSource(params, description=f"DeepMind params {checkpoint_path}")
    state = WeightSource(state, description=f"DeepMind state {checkpoint_path}")
    model = convert(preset, params, state, **overrides)
    params.finish()
    state.finish()
    return model


__all__ = ["ConversionError", "UnsafeCheckpointError", "from_deepmind", "from_transformers"]
