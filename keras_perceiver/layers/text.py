"""Text adapters: token + position embedding in, tied embedding head out."""

import keras
from keras import ops

from keras_perceiver.layers.position_encoding import TrainablePositionEncoding
from keras_perceiver.layers.utils import check_rank
from keras_perceiver.layers.validation import check_index_range
from keras_perceiver.layers.validation import check_int
from keras_perceiver.layers.validation import check_integer_dtype
from keras_perceiver.layers.validation import check_shape
from keras_perceiver.layers.validation import should_check_values


@keras.saving.register_keras_serializable(package="keras_perceiver")
class TextPreprocessor(keras.layers.Layer):
    """`Embedding(token_ids) + TrainablePositionEncoding` (added, not concatenated).

    Args:
        vocab_size: token vocabulary (262 for Perceiver's bytes).
        num_channels: embedding width (`d_model`).
        max_length: longest sequence; shorter inputs use the first positions.
        pad_id: the padding token, used by `compute_padding_mask`.
        embeddings_initializer: of the token embedding; default
            `TruncatedNormal(0.02)` (`transformers`: normal(0.02)). DeepMind's
            colab uses `hk.Embed`'s default, `TruncatedNormal(stddev=1.0)`.
            The position encoding is `TruncatedNormal(0.02)` in both.

    Example:
    >>> import numpy as np
    >>> pre = keras_perceiver.layers.TextPreprocessor(262, 16, max_length=32)
    >>> pre(np.ones((2, 10), "int32")).shape
    (2, 10, 16)
    """

    def __init__(self, vocab_size, num_channels, max_length, pad_id=0,
                 embeddings_initializer=None, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = check_int(self, "vocab_size", vocab_size)
        self.num_channels = check_int(self, "num_channels", num_channels)
        self.max_length = check_int(self, "max_length", max_length)
        self.pad_id = check_int(self, "pad_id", pad_id, minimum=0)
        if pad_id >= vocab_size:
            raise ValueError(
                f"{self.name}: `pad_id` must be in [0, vocab_size={vocab_size}), "
                f"received {pad_id}."
            )
        self.embeddings_initializer = keras.initializers.get(
            embeddings_initializer or keras.initializers.TruncatedNormal(stddev=0.02)
        )

    def build(self, token_ids_shape):
        check_rank(self, "token_ids", token_ids_shape, 2)
        if token_ids_shape[1] is not None and token_ids_shape[1] > self.max_length:
            raise ValueError(
                f"{self.name}: expected token_ids of length <= {self.max_length}, "
                f"received shape {tuple(token_ids_shape)}."
            )
        self.token_embedding = keras.layers.Embedding(
            self.vocab_size, self.num_channels,
            embeddings_initializer=self.embeddings_initializer,
            dtype=self.dtype_policy, name="token_embedding",
        )
        self.token_embedding.build(token_ids_shape)
        self.position_embedding = TrainablePositionEncoding(
            self.max_length, self.num_channels, dtype=self.dtype_policy,
            name="position_embedding",
        )
        self.position_embedding.build()
        self.built = True

    def call(self, token_ids, training=None):
        check_integer_dtype(self, "token_ids", token_ids)
        check_shape(self, "token_ids", token_ids.shape, (None, None))
        if token_ids.shape[1] is not None and token_ids.shape[1] > self.max_length:
            raise ValueError(
                f"{self.name}: expected token_ids of length <= {self.max_length}, "
                f"received shape {tuple(token_ids.shape)}."
            )
        if should_check_values(token_ids, training):
            check_index_range(self, "token_ids", token_ids, self.vocab_size)
        length = ops.shape(token_ids)[1]
        positions = ops.convert_to_tensor(self.position_embedding.embeddings)[:length]
        return self.token_embedding(token_ids) + ops.cast(positions, self.compute_dtype)[None]

    def compute_padding_mask(self, token_ids):
        """`True` at real tokens, `False` at `pad_id`."""
        return ops.not_equal(token_ids, self.pad_id)

    def compute_output_shape(self, token_ids_shape):
        return tuple(token_ids_shape) + (self.num_channels,)

    def get_config(self):
        config = super().get_config()
        config.update(
            vocab_size=self.vocab_size,
            num_channels=self.num_channels,
            max_length=self.max_length,
            pad_id=self.pad_id,
            embeddings_initializer=keras.initializers.serialize(self.embeddings_initializer),
        )
        return config


@keras.saving.register_keras_serializable(package="keras_perceiver")
class EmbeddingDecoder(keras.layers.Layer):
    """Tied output head: `hidden @ embeddings^T + bias`.

    Args:
        vocab_size: rows of the shared embedding matrix.

    Call with hidden states `[B, L, C]` and the embedding matrix
    `[vocab_size, C]`; returns `[B, L, vocab_size]`. The matrix is passed at
    call time so the weight stays owned by the input adapter.

    Example:
    >>> import numpy as np
    >>> head = keras_perceiver.layers.EmbeddingDecoder(vocab_size=7)
    >>> head(np.ones((2, 3, 4)), np.ones((7, 4))).shape
    (2, 3, 7)
    """

    def __init__(self, vocab_size, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = check_int(self, "vocab_size", vocab_size)

    def build(self, hidden_shape, embeddings_shape=None):
        self.bias = self.add_weight(name="bias", shape=(self.vocab_size,), initializer="zeros")
        self.built = True

    def call(self, hidden, embeddings):
        check_shape(self, "embeddings", embeddings.shape, (self.vocab_size, hidden.shape[-1]))
        embeddings = ops.cast(embeddings, self.compute_dtype)
        return ops.matmul(hidden, ops.transpose(embeddings)) + ops.cast(self.bias, self.compute_dtype)

    def compute_output_shape(self, hidden_shape, embeddings_shape=None):
        return tuple(hidden_shape[:-1]) + (self.vocab_size,)

    def get_config(self):
        config = super().get_config()
        config.update(vocab_size=self.vocab_size)
        return config
