"""Perceiver IO models: the generic `PerceiverIO` and the paper's task models."""

from keras_perceiver.models.image_classifier import PerceiverImageClassifier
from keras_perceiver.models.optical_flow import PerceiverOpticalFlow
from keras_perceiver.models.perceiver_io import PerceiverIO
from keras_perceiver.models.set_model import PerceiverSetModel
from keras_perceiver.models.task import PerceiverTask
from keras_perceiver.models.masked_lm import PerceiverMaskedLM
from keras_perceiver.models.text_classifier import PerceiverTextClassifier
from keras_perceiver.models.multimodal import PerceiverMultimodalAutoencoder
