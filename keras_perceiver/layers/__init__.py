"""Perceiver IO layers, written with `keras.ops` only (all three backends)."""

from keras_perceiver.layers.attention import MLP
from keras_perceiver.layers.attention import Attention
from keras_perceiver.layers.blocks import CrossAttention
from keras_perceiver.layers.blocks import SelfAttention
from keras_perceiver.layers.decoders import BasicDecoder
from keras_perceiver.layers.decoders import ClassificationDecoder
from keras_perceiver.layers.decoders import ProjectionDecoder
from keras_perceiver.layers.encoder import PerceiverEncoder
from keras_perceiver.layers.flow import FramePatches
from keras_perceiver.layers.flow import OpticalFlowPreprocessor
from keras_perceiver.layers.image import ConvDownsample
from keras_perceiver.layers.image import ImagePreprocessor
from keras_perceiver.layers.image import SpaceToDepth
from keras_perceiver.layers.multimodal import AudioPostprocessor
from keras_perceiver.layers.multimodal import AudioPreprocessor
from keras_perceiver.layers.multimodal import MultimodalPadding
from keras_perceiver.layers.multimodal import OneHotPreprocessor
from keras_perceiver.layers.multimodal import VideoPreprocessor
from keras_perceiver.layers.position_encoding import FourierPositionEncoding
from keras_perceiver.layers.position_encoding import TrainablePositionEncoding
from keras_perceiver.layers.text import EmbeddingDecoder
from keras_perceiver.layers.text import TextPreprocessor
