"""The two Perceiver attention blocks: CrossAttention and SelfAttention.

Both are `x + Attention(LN(q), LN(kv))` (the residual is optional for
cross-attention) followed by `x + MLP(LN(x))`, as in DeepMind's
`perceiver.py` and the `transformers` port.
"""

import keras
from keras import ops

from keras_perceiver.layers import loops
from keras_perceiver.layers.attention import ACTIVATIONS
from keras_perceiver.layers.attention import MLP
from keras_perceiver.layers.attention import Attention
from keras_perceiver.layers.chunked_attention import chunk_start
from keras_perceiver.layers.chunked_attention import even_chunk
from keras_perceiver.layers.chunked_attention import merge_chunks
from keras_perceiver.layers.chunked_attention import slice_chunk
from keras_perceiver.layers.utils import check_rank
from keras_perceiver.layers.utils import validate_activation
from keras_perceiver.layers.validation import check_divisible
from keras_perceiver.layers.validation import check_float
from keras_perceiver.layers.validation import check_int
from keras_perceiver.layers.validation import check_rate
from keras_perceiver.layers.validation import check_same_batch
from keras_perceiver.layers.validation import check_shape

SHAPES_FOR_ATTENTION = ("kv", "q")


class _AttentionBlock(keras.layers.Layer):
    """Shared constructor arguments, config and MLP sub-block."""

    def __init__(
        self,
        num_heads=8,
        qk_channels=None,
        v_channels=None,
        widening_factor=1,
        dropout=0.0,
        attention_dropout=0.0,
        activation="gelu_tanh",
        layer_norm_epsilon=1e-5,
        kernel_initializer="variance_scaling",
        memory_budget=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        validate_activation(self, activation, ACTIVATIONS)
        check_int(self, "num_heads", num_heads)
        for arg, value in (("qk_channels", qk_channels), ("v_channels", v_channels)):
            check_int(self, arg, value, allow_none=True)
            check_divisible(self, arg, value, "num_heads", num_heads)
        check_int(self, "widening_factor", widening_factor)
        check_rate(self, "dropout", dropout)
        check_rate(self, "attention_dropout", attention_dropout)
        check_float(self, "layer_norm_epsilon", layer_norm_epsilon)
        self.memory_budget = memory_budget
        self.num_heads = num_heads
        self.qk_channels = qk_channels
        self.v_channels = v_channels
        self.widening_factor = widening_factor
        self.dropout = dropout
        self.attention_dropout = attention_dropout
        self.activation = activation
        self.layer_norm_epsilon = layer_norm_epsilon
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def _layer_norm(self, name, shape):
        layer = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy, name=name
        )
        layer.build(shape)
        return layer

    def _build_attention(self, query_shape, key_value_shape, qk_channels):
        self.attention = Attention(
            num_heads=self.num_heads,
            qk_channels=qk_channels,
            v_channels=self.v_channels,
            output_channels=query_shape[-1],
            attention_dropout=self.attention_dropout,
            kernel_initializer=self.kernel_initializer,
            memory_budget=self.memory_budget,
            dtype=self.dtype_policy,
            name="attention",
        )
        self.attention.build(query_shape, key_value_shape)
        self.attention_output_dropout = keras.layers.Dropout(
            self.dropout, dtype=self.dtype_policy
        )
        self.mlp_layer_norm = self._layer_norm("mlp_layer_norm", query_shape)
        self.mlp = MLP(
            widening_factor=self.widening_factor,
            activation=self.activation,
            dropout=self.dropout,
            kernel_initializer=self.kernel_initializer,
            dtype=self.dtype_policy,
            name="mlp",
        )
        self.mlp.build(query_shape)

    def _mlp_residual(self, x, training):
        return x + self.mlp(self.mlp_layer_norm(x), training=training)

    def compute_output_shape(self, query_shape, *args, **kwargs):
        return query_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            num_heads=self.num_heads,
            qk_channels=self.qk_channels,
            v_channels=self.v_channels,
            widening_factor=self.widening_factor,
            dropout=self.dropout,
            attention_dropout=self.attention_dropout,
            activation=self.activation,
            layer_norm_epsilon=self.layer_norm_epsilon,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            memory_budget=self.memory_budget,
        )
        return config


@keras.saving.register_keras_serializable(package="keras_perceiver")
class CrossAttention(_AttentionBlock):
    """Cross-attention block: queries attend to a (usually long) key/value array.

    Used to read inputs into the latents (encoder) and to write outputs from
    the latents (decoder). The output has the query's shape.

    Args:
        num_heads: attention heads.
        qk_channels: query/key width; by default the key/value width
            (`shape_for_attention="kv"`) or the query width (`"q"`).
        v_channels: value width, by default `qk_channels`.
        shape_for_attention: `"kv"` or `"q"`, see `qk_channels`.
        use_query_residual: add the raw query to the attention output.
        widening_factor: MLP hidden width multiple.
        dropout: dropout on the attention output and the MLP output.
        attention_dropout: dropout on the attention probabilities.
        activation: `"gelu_tanh"` (DeepMind) or `"gelu"` (exact, transformers).
        layer_norm_epsilon: LayerNorm epsilon (1e-5 in both references).
        memory_budget: the attention's chunking budget (see `Attention`).

    Example:
    >>> import numpy as np
    >>> block = keras_perceiver.layers.CrossAttention(num_heads=1)
    >>> block(np.ones((2, 4, 8)), np.ones((2, 10, 6))).shape
    (2, 4, 8)
    """

    def __init__(self, shape_for_attention="kv", use_query_residual=True, **kwargs):
        super().__init__(**kwargs)
        if shape_for_attention not in SHAPES_FOR_ATTENTION:
            raise ValueError(
                f"CrossAttention: shape_for_attention must be one of "
                f"{SHAPES_FOR_ATTENTION}, received {shape_for_attention!r}."
            )
        self.shape_for_attention = shape_for_attention
        self.use_query_residual = use_query_residual

    def build(self, query_shape, key_value_shape, attention_mask_shape=None):
        check_rank(self, "query", query_shape, 3)
        check_rank(self, "key_value", key_value_shape, 3)
        qk_channels = self.qk_channels
        if qk_channels is None:
            source = query_shape if self.shape_for_attention == "q" else key_value_shape
            qk_channels = source[-1]
        self.query_layer_norm = self._layer_norm("query_layer_norm", query_shape)
        self.key_value_layer_norm = self._layer_norm("key_value_layer_norm", key_value_shape)
        self._build_attention(query_shape, key_value_shape, qk_channels)
        self._channels = (query_shape[-1], key_value_shape[-1])
        self.built = True

    def call(self, query, key_value, attention_mask=None, training=None, output_layer=None,
             query_expand=None, key_value_expand=None):
        """`output_layer`: an optional per-token layer applied to the result
        (e.g. a decoder's final projection), inside the query chunks when
        the queries are processed in chunks.

        `query_expand`, `key_value_expand`: optional `fn(x, start)` making
        the block's query / key_value tokens from a slice `x` of the raw
        `query` / `key_value` starting at token `start` (e.g.
        `OpticalFlowPreprocessor.append_positions`); called per chunk where
        the block works in chunks, so the expanded arrays are never whole.
        """
        if query_expand is None:
            check_shape(self, "query", query.shape, (None, None, self._channels[0]))
        if key_value_expand is None:
            check_shape(self, "key_value", key_value.shape, (None, None, self._channels[1]))
        check_same_batch(self, query=query.shape, key_value=key_value.shape)
        query_chunk = self._query_chunk(query.shape[1], key_value.shape[1], training)
        if query_chunk is not None:
            return self._call_in_query_chunks(
                query, key_value, attention_mask, training, query_chunk, output_layer,
                query_expand, key_value_expand,
            )
        if query_expand is not None:
            query = query_expand(query, 0)
        norm = self.key_value_layer_norm
        if key_value_expand is None:
            def transform(x, start):
                return norm(x)
        else:
            def transform(x, start):
                return norm(key_value_expand(x, start))
        # The key/value LayerNorm (and expansion) runs inside the attention,
        # chunk by chunk with the key/value projections when it streams keys.
        attended = self.attention(
            self.query_layer_norm(query),
            key_value,
            attention_mask=attention_mask,
            training=training,
            key_value_transform=transform,
        )
        return self._finish(query, attended, training, output_layer)

    def _finish(self, query, attended, training, output_layer):
        attended = self.attention_output_dropout(attended, training=training)
        x = query + attended if self.use_query_residual else attended
        x = self._mlp_residual(x, training)
        return x if output_layer is None else output_layer(x)

    def _query_chunk(self, num_queries, num_keys, training):
        """Queries per chunk of the whole block, or None (all at once).

        When the attention would chunk the queries, the whole block runs
        one query chunk at a time (every step but the attention is per
        token, and the attention is per query row), so no `[B, T, C]`
        intermediate exists beyond the inputs and the output. Not with
        dropout active (its seeds would have to follow the chunks).
        """
        if training and (self.dropout or self.attention_dropout):
            return None
        chunks = self.attention.chunk_sizes(num_queries, num_keys, training)
        if chunks is None or (isinstance(num_queries, int) and chunks[0] >= num_queries):
            return None
        return chunks[0]

    def _call_in_query_chunks(self, query, key_value, attention_mask, training, chunk,
                              output_layer, query_expand=None, key_value_expand=None):
        mask = None if attention_mask is None else ops.cast(attention_mask, "bool")
        if key_value_expand is not None:
            key_value = key_value_expand(key_value, 0)
        keys, values = self.attention.project_key_value(self.key_value_layer_norm(key_value))
        num_queries = ops.shape(query)[1]
        chunk = even_chunk(chunk, num_queries) if isinstance(num_queries, int) else (
            ops.minimum(chunk, num_queries))

        def step(carry, i):
            start = chunk_start(i, chunk, num_queries)
            q = slice_chunk(query, 1, start, chunk)
            if query_expand is not None:
                q = query_expand(q, start)
            m = None if mask is None else slice_chunk(mask, 1, start, chunk)
            attended = self.attention.attend_projected(
                self.query_layer_norm(q), keys, values, m, training
            )
            return carry, self._finish(q, attended, training, output_layer)

        # `loops.scan` (as Keras' TensorFlow scan) wants the outputs shaped like the carry.
        channels, dtype = self._channels[0], self.compute_dtype
        if output_layer is not None:
            channels = output_layer.compute_output_shape((None, None, channels))[-1]
            dtype = output_layer.compute_dtype
        init = ops.zeros((ops.shape(query)[0], chunk, channels), dtype=dtype)
        _, outputs = loops.scan_range(step, init, (num_queries + chunk - 1) // chunk)
        return merge_chunks(outputs, 1, chunk, num_queries)

    def get_config(self):
        config = super().get_config()
        config.update(
            shape_for_attention=self.shape_for_attention,
            use_query_residual=self.use_query_residual,
        )
        return config


@keras.saving.register_keras_serializable(package="keras_perceiver")
class SelfAttention(_AttentionBlock):
    """Self-attention block of the latent Transformer.

    Args: as `CrossAttention`, without `shape_for_attention` and
    `use_query_residual` (the residual is always on); `qk_channels` defaults
    to the input width.

    Example:
    >>> import numpy as np
    >>> keras_perceiver.layers.SelfAttention(num_heads=2)(np.ones((2, 4, 8))).shape
    (2, 4, 8)
    """

    def build(self, inputs_shape, attention_mask_shape=None):
        check_rank(self, "inputs", inputs_shape, 3)
        self.layer_norm = self._layer_norm("layer_norm", inputs_shape)
        self._build_attention(inputs_shape, inputs_shape, self.qk_channels)
        self._channels = inputs_shape[-1]
        self.built = True

    def call(self, inputs, attention_mask=None, training=None):
        check_shape(self, "inputs", inputs.shape, (None, None, self._channels))
        normed = self.layer_norm(inputs)
        attended = self.attention(
            normed, normed, attention_mask=attention_mask, training=training
        )
        x = inputs + self.attention_output_dropout(attended, training=training)
        return self._mlp_residual(x, training)
