"""Multi-head attention, MLP and the two Perceiver attention blocks.

Everything here uses `keras.ops` only, so it runs on the TensorFlow, JAX and
PyTorch backends. The formulas follow DeepMind's `perceiver.py`
(see docs/architecture.md section 1).
"""

import math

import keras
from keras import ops

from keras_perceiver.layers.chunked_attention import MASK_FILL
from keras_perceiver.layers.chunked_attention import choose_chunk_sizes
from keras_perceiver.layers.chunked_attention import chunked_attention
from keras_perceiver.layers.chunked_attention import streamed_attention
from keras_perceiver.layers.utils import check_rank
from keras_perceiver.layers.utils import dense_initializer
from keras_perceiver.layers.utils import validate_activation
from keras_perceiver.layers.validation import check_divisible
from keras_perceiver.layers.validation import check_int
from keras_perceiver.layers.validation import check_rate
from keras_perceiver.layers.validation import check_same_batch
from keras_perceiver.layers.validation import check_shape

ACTIVATIONS = ("gelu_tanh", "gelu")


@keras.saving.register_keras_serializable(package="keras_perceiver")
class Attention(keras.layers.Layer):
    """Multi-head attention with independent query/key and value widths.

    `q, k = Dense(qk_channels)`, `v = Dense(v_channels)`; heads own contiguous
    channel slices; logits are scaled by `1/sqrt(qk_channels / num_heads)`,
    softmax runs over keys in float32, and the heads are merged and projected
    to `output_channels`.

    Masks: `attention_mask` is a boolean `[B, T, S]` (`True` = attend). Masked
    logits are filled with a large negative number, and query rows with no
    key to attend to are zeroed before the output projection (DeepMind).

    Memory: when the float32 logits of one example (all heads) would exceed
    `memory_budget` bytes, the layer computes the same result in chunks of
    queries and keys with an online softmax (see
    `keras_perceiver.layers.chunked_attention`), so a 1M-key cross-attention
    runs in bounded memory. Lengths unknown when the layer is traced
    (TensorFlow graphs, SavedModel signatures with a None length) count as
    unbounded: the layer then always takes the chunked path, with chunk
    sizes that fit the budget for any length, clipped to the actual lengths
    at run time. Attention dropout is applied chunk by chunk. When all
    queries fit one chunk and the keys do not, the keys and values are
    projected one key chunk at a time inside the online-softmax loop
    ("streamed"), so no projected `[B, S, C]` key or value array exists.

    Args:
        num_heads: number of heads; must divide `qk_channels` and `v_channels`.
        qk_channels: query/key width. Defaults to the key/value input width.
        v_channels: value width. Defaults to `qk_channels`.
        output_channels: output width. Defaults to `v_channels`.
        attention_dropout: dropout rate on the attention probabilities.
        kernel_initializer: initializer of the four projections.
        query_chunk_size, key_chunk_size: fixed chunk lengths (None: chosen
            from `memory_budget`; setting either one turns chunking on, the
            other defaulting to the whole length).
        memory_budget: bytes of float32 logits per example above which the
            layer chunks automatically (None: 64 MiB).

    Example:
    >>> import numpy as np
    >>> layer = keras_perceiver.layers.Attention(num_heads=2, qk_channels=8)
    >>> layer(np.ones((1, 3, 4)), np.ones((1, 5, 6))).shape
    (1, 3, 8)
    """

    def __init__(
        self,
        num_heads=8,
        qk_channels=None,
        v_channels=None,
        output_channels=None,
        attention_dropout=0.0,
        kernel_initializer="variance_scaling",
        query_chunk_size=None,
        key_chunk_size=None,
        memory_budget=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_int(self, "num_heads", num_heads)
        for arg, value in (("qk_channels", qk_channels), ("v_channels", v_channels),
                           ("output_channels", output_channels)):
            check_int(self, arg, value, allow_none=True)
            if arg != "output_channels":
                check_divisible(self, arg, value, "num_heads", num_heads)
        check_rate(self, "attention_dropout", attention_dropout)
        for name, value in (("query_chunk_size", query_chunk_size),
                            ("key_chunk_size", key_chunk_size),
                            ("memory_budget", memory_budget)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(
                    f"Attention: {name} must be None or a positive integer, "
                    f"received {value!r}."
                )
        self.query_chunk_size = query_chunk_size
        self.key_chunk_size = key_chunk_size
        self.memory_budget = memory_budget
        self.num_heads = num_heads
        self.qk_channels = qk_channels
        self.v_channels = v_channels
        self.output_channels = output_channels
        self.attention_dropout = attention_dropout
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def resolved_channels(self, kv_channels):
        qk = self.qk_channels or kv_channels
        v = self.v_channels or qk
        out = self.output_channels or v
        return qk, v, out

    def build(self, query_shape, key_value_shape=None, attention_mask_shape=None):
        key_value_shape = key_value_shape or query_shape
        check_rank(self, "query", query_shape, 3)
        check_rank(self, "key_value", key_value_shape, 3)
        qk, v, out = self.resolved_channels(key_value_shape[-1])
        for name, width in (("qk_channels", qk), ("v_channels", v)):
            if width % self.num_heads:
                raise ValueError(
                    f"{self.name}: {name}={width} must be divisible by "
                    f"num_heads={self.num_heads}."
                )
        self._qk, self._v, self._out = qk, v, out
        self._query_channels, self._kv_channels = query_shape[-1], key_value_shape[-1]

        def dense(units, name):
            return keras.layers.Dense(
                units,
                kernel_initializer=dense_initializer(self.kernel_initializer),
                dtype=self.dtype_policy,
                name=name,
            )

        self.query_dense = dense(qk, "query")
        self.key_dense = dense(qk, "key")
        self.value_dense = dense(v, "value")
        self.output_dense = dense(out, "output")
        self.query_dense.build(query_shape)
        self.key_dense.build(key_value_shape)
        self.value_dense.build(key_value_shape)
        self.output_dense.build(tuple(query_shape[:-1]) + (v,))
        self.dropout = keras.layers.Dropout(self.attention_dropout, dtype=self.dtype_policy)
        self.built = True

    def _split_heads(self, x, head_dim):
        batch, length = ops.shape(x)[0], ops.shape(x)[1]
        x = ops.reshape(x, (batch, length, self.num_heads, head_dim))
        return ops.transpose(x, (0, 2, 1, 3))  # [B, H, T, d]

    def call(self, query, key_value=None, attention_mask=None, training=None,
             key_value_transform=None):
        """Attention of `query` over `key_value` (itself when None).

        `key_value_transform(tokens, start)`, a per-token function of the
        `key_value` tokens from index `start` on (e.g. the block's LayerNorm;
        it may change the channel count), is applied before the key/value
        projections; when the keys are streamed (see the class docstring)
        it runs chunk by chunk with them.
        """
        key_value = query if key_value is None else key_value
        if query.shape[-1] is not None and self.query_dense.kernel.shape[0] != query.shape[-1]:
            raise ValueError(
                f"{self.name}: expected query with {self.query_dense.kernel.shape[0]} "
                f"channels, received shape {tuple(query.shape)}."
            )
        check_shape(self, "query", query.shape, (None, None, self._query_channels))
        if key_value_transform is None:
            check_shape(self, "key_value", key_value.shape, (None, None, self._kv_channels))
        check_same_batch(self, query=query.shape, key_value=key_value.shape)
        mask = self._bool_mask(attention_mask, query.shape, key_value.shape)
        chunks = self.chunk_sizes(query.shape[1], key_value.shape[1], training)
        if self._streams_keys(chunks, query.shape[1], key_value.shape[1]):
            return self._streamed(query, key_value, mask, training, chunks[1],
                                  key_value_transform)
        if key_value_transform is not None:
            key_value = key_value_transform(key_value, 0)
        if chunks is None and self._use_fused_kernel(training):
            scale = 1.0 / math.sqrt(self._qk // self.num_heads)
            heads = self._fused_attention(query, key_value, mask, scale)
            return self._merge_and_project(heads, mask)
        keys, values = self.project_key_value(key_value)
        return self.attend_projected(query, keys, values, mask, training, chunks)

    def _bool_mask(self, attention_mask, query_shape, key_value_shape):
        if attention_mask is None:
            return None
        check_shape(self, "attention_mask", attention_mask.shape,
                    (query_shape[0], query_shape[1], key_value_shape[1]))
        mask = ops.cast(attention_mask, "bool")
        if len(mask.shape) != 3:
            raise ValueError(
                f"{self.name}: expected attention_mask of shape [batch, "
                f"queries, keys], received shape {tuple(mask.shape)}."
            )
        return mask

    def project_key_value(self, key_value):
        """Keys `[B, H, S, qk / H]` and values `[B, H, S, v / H]` of `key_value`."""
        return (self._split_heads(self.key_dense(key_value), self._qk // self.num_heads),
                self._split_heads(self.value_dense(key_value), self._v // self.num_heads))

    def attend_projected(self, query, keys, values, mask=None, training=None, chunks="auto"):
        """The call's result for projected keys/values (`project_key_value`).

        `mask`: None or boolean `[B, T, S]`; `chunks`: `chunk_sizes`'
        result, by default computed from the lengths.
        """
        head_dim = self._qk // self.num_heads
        scale = 1.0 / math.sqrt(head_dim)
        if isinstance(chunks, str):
            chunks = self.chunk_sizes(query.shape[1], keys.shape[2], training)
        q = self._split_heads(self.query_dense(query), head_dim)
        if chunks is not None:
            heads = chunked_attention(
                q, keys, values, mask, scale, *chunks, self.compute_dtype,
                dropout_rate=self.attention_dropout if training else 0.0,
                seed_generator=getattr(self.dropout, "seed_generator", None),
            )
        else:
            logits = ops.matmul(q, ops.transpose(keys, (0, 1, 3, 2)))
            logits = ops.cast(logits, "float32") / math.sqrt(head_dim)
            if mask is not None:
                # Logits are float32 here, so DeepMind's -1e30 is safe under any policy.
                logits = ops.where(mask[:, None, :, :], logits, -1e30)
            weights = ops.cast(ops.softmax(logits, axis=-1), self.compute_dtype)
            weights = self.dropout(weights, training=training)
            heads = ops.matmul(weights, values)  # [B, H, T, dv]
        return self._merge_and_project(ops.transpose(heads, (0, 2, 1, 3)), mask)

    @staticmethod
    def _streams_keys(chunks, num_queries, num_keys):
        """All queries in one chunk and the keys in several: stream the keys."""
        return (
            chunks is not None and isinstance(num_queries, int)
            and chunks[0] >= num_queries and (num_keys is None or chunks[1] < num_keys)
        )

    def _streamed(self, query, key_value, mask, training, key_chunk, transform):
        """Keys and values projected (and transformed) one key chunk at a time."""
        head_dim = self._qk // self.num_heads

        def project(chunk, start):
            return self.project_key_value(chunk if transform is None else transform(chunk, start))

        q = self._split_heads(self.query_dense(query), head_dim)
        heads = streamed_attention(
            q, key_value, project, self._v // self.num_heads, mask,
            1.0 / math.sqrt(head_dim), key_chunk, self.compute_dtype,
            dropout_rate=self.attention_dropout if training else 0.0,
            seed_generator=getattr(self.dropout, "seed_generator", None),
        )
        return self._merge_and_project(ops.transpose(heads, (0, 2, 1, 3)), mask)

    def _use_fused_kernel(self, training):
        # Measured on CPU (benchmarks/RESULTS.md): PyTorch's fused
        # scaled_dot_product_attention is faster; TensorFlow's and JAX's
        # `dot_product_attention` are the same einsums or slower. Only in
        # float32, where its softmax is the float32 softmax, and without
        # dropout, which it does not take.
        return (
            keras.backend.backend() == "torch"
            and self.compute_dtype == "float32"
            and not (training and self.attention_dropout > 0)
        )

    def _fused_attention(self, query, key_value, mask, scale):
        """One-shot attention by `keras.ops.dot_product_attention`, `[B, T, H, dv]`."""

        def heads_last(x, head_dim):
            return ops.reshape(
                x, (ops.shape(x)[0], ops.shape(x)[1], self.num_heads, head_dim)
            )

        q = heads_last(self.query_dense(query), self._qk // self.num_heads)
        k = heads_last(self.key_dense(key_value), self._qk // self.num_heads)
        v = heads_last(self.value_dense(key_value), self._v // self.num_heads)
        bias = None
        if mask is not None:
            # The one-shot path's -1e30 fill, as an additive float32 bias.
            bias = ops.where(mask[:, None], 0.0, MASK_FILL)
        return ops.dot_product_attention(q, k, v, bias=bias, scale=scale)

    def _merge_and_project(self, heads, mask):
        """`[B, T, H, dv]` heads -> zero fully masked rows -> output projection."""
        batch, length = ops.shape(heads)[0], ops.shape(heads)[1]
        merged = ops.reshape(heads, (batch, length, self._v))
        if mask is not None:
            # A query row with no visible key is zeroed, as in DeepMind's code.
            has_key = ops.any(mask, axis=-1, keepdims=True)
            merged = ops.where(has_key, merged, ops.zeros_like(merged))
        return self.output_dense(merged)

    def chunk_sizes(self, num_queries, num_keys, training=None):
        """`(query_chunk, key_chunk)` used for these lengths, or None (one shot).

        A None length is unknown at trace time; a None chunk is the whole
        length. `training` is accepted for compatibility and changes nothing
        (dropout runs in chunks too).
        """
        if self.query_chunk_size is None and self.key_chunk_size is None:
            return choose_chunk_sizes(
                self.num_heads, num_queries, num_keys, self.memory_budget
            )
        return (self.query_chunk_size or num_queries, self.key_chunk_size or num_keys)

    def compute_output_shape(self, query_shape, key_value_shape=None, attention_mask_shape=None):
        kv = key_value_shape or query_shape
        return tuple(query_shape[:-1]) + (self.resolved_channels(kv[-1])[2],)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_heads=self.num_heads,
            qk_channels=self.qk_channels,
            v_channels=self.v_channels,
            output_channels=self.output_channels,
            attention_dropout=self.attention_dropout,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            query_chunk_size=self.query_chunk_size,
            key_chunk_size=self.key_chunk_size,
            memory_budget=self.memory_budget,
        )
        return config


@keras.saving.register_keras_serializable(package="keras_perceiver")
class MLP(keras.layers.Layer):
    """Transformer MLP: `Dense(widening_factor * C) -> GELU -> Dense(C)`.

    Args:
        widening_factor: hidden width as a multiple of the input width.
        activation: `"gelu_tanh"` (DeepMind, the default) or `"gelu"`
            (exact erf GELU, as in `transformers`).
        dropout: dropout rate on the output.

    Example:
    >>> import numpy as np
    >>> keras_perceiver.layers.MLP(widening_factor=4)(np.ones((2, 3, 8))).shape
    (2, 3, 8)
    """

    def __init__(
        self,
        widening_factor=4,
        activation="gelu_tanh",
        dropout=0.0,
        kernel_initializer="variance_scaling",
        **kwargs,
    ):
        super().__init__(**kwargs)
        validate_activation(self, activation, ACTIVATIONS)
        check_int(self, "widening_factor", widening_factor)
        check_rate(self, "dropout", dropout)
        self.widening_factor = widening_factor
        self.activation = activation
        self.dropout = dropout
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        channels = input_shape[-1]
        init = dense_initializer(self.kernel_initializer)
        self.dense1 = keras.layers.Dense(
            self.widening_factor * channels, kernel_initializer=init,
            dtype=self.dtype_policy, name="dense1",
        )
        self.dense2 = keras.layers.Dense(
            channels, kernel_initializer=init, dtype=self.dtype_policy, name="dense2"
        )
        self.dense1.build(input_shape)
        self.dense2.build(tuple(input_shape[:-1]) + (self.widening_factor * channels,))
        self.dropout_layer = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy)
        self.built = True

    def call(self, inputs, training=None):
        check_shape(self, "inputs", inputs.shape,
                    (None,) * (len(inputs.shape) - 1) + (self.dense2.units,))
        x = self.dense1(inputs)
        x = keras.activations.gelu(x, approximate=self.activation == "gelu_tanh")
        return self.dropout_layer(self.dense2(x), training=training)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            widening_factor=self.widening_factor,
            activation=self.activation,
            dropout=self.dropout,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config
