"""keras_perceiver: Perceiver IO (Jaegle et al., 2021) for Keras 3."""

from keras_perceiver import convert
from keras_perceiver import layers
from keras_perceiver import losses
from keras_perceiver import models
from keras_perceiver import tokenizers

__version__ = "0.1.0"
