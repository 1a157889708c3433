"""Perceiver IO layers, written with `keras.ops` only (all three backends)."""

from keras_perceiver.layers.attention import MLP
from keras_perceiver.layers.attention import Attention
from keras_perceiver.layers.blocks import CrossAttention
from keras_perceiver.layers.blocks import SelfAttention
from keras_perceiver.layers.decoders import BasicDecoder
from keras_perceiver.layers.decoders import ClassificationDecoder
from keras_perceiver.layers.decoders import ProjectionDecoder
from keras_perceiver.layers.encoder import PerceiverEncoder
from keras_perceiver.layers.position_encoding import FourierPositionEncoding
from keras_perceiver.layers.position_encoding import TrainablePositionEncoding
from keras_perceiver.layers.text import EmbeddingDecoder
from keras_perceiver.layers.text import TextPreprocessor
