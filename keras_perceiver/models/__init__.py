"""Perceiver IO models: the generic `PerceiverIO` and the paper's task models."""

from keras_perceiver.models.perceiver_io import PerceiverIO
from keras_perceiver.models.task import PerceiverTask
