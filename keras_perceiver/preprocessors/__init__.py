"""Data preprocessors: raw data -> task model inputs (TF ops, tf.data-mappable).

Attach one to a task (`task.preprocessor = ...`, or
`from_preset(..., preprocessor="auto")`) and `fit`/`predict`/`evaluate`
take raw data; the export signatures run the same code.
"""

from keras_perceiver.preprocessors.image_classifier_preprocessor import (
    PerceiverImageClassifierPreprocessor,
)
from keras_perceiver.preprocessors.image_converter import PerceiverImageConverter
from keras_perceiver.preprocessors.masked_lm_preprocessor import PerceiverMaskedLMPreprocessor
from keras_perceiver.preprocessors.multimodal_preprocessor import PerceiverMultimodalPreprocessor
from keras_perceiver.preprocessors.optical_flow_frames_preprocessor import (
    PerceiverOpticalFlowFramesPreprocessor,
)
from keras_perceiver.preprocessors.preprocessor import PerceiverPreprocessor
from keras_perceiver.preprocessors.text_classifier_preprocessor import (
    PerceiverTextClassifierPreprocessor,
)

__all__ = [
    "PerceiverImageClassifierPreprocessor",
    "PerceiverImageConverter",
    "PerceiverMaskedLMPreprocessor",
    "PerceiverMultimodalPreprocessor",
    "PerceiverOpticalFlowFramesPreprocessor",
    "PerceiverPreprocessor",
    "PerceiverTextClassifierPreprocessor",
]
