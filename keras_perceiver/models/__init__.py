"""Perceiver IO models."""

from keras_perceiver.models.perceiver_io import PerceiverIO
