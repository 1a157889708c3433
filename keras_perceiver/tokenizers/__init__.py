"""Tokenizers for Perceiver IO.

>>> import keras_perceiver
>>> keras_perceiver.tokenizers.BytesTokenizer().encode("A")
[71]
"""

from keras_perceiver.tokenizers.bytes_tokenizer import BytesTokenizer

__all__ = ["BytesTokenizer"]
