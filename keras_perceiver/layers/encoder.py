"""The Perceiver encoder: latents read the inputs, then a latent Transformer."""

import keras
from keras import ops

from keras_perceiver.layers.attention import ACTIVATIONS
from keras_perceiver.layers.blocks import SHAPES_FOR_ATTENTION
from keras_perceiver.layers.blocks import CrossAttention
from keras_perceiver.layers.blocks import SelfAttention
from keras_perceiver.layers.position_encoding import TrainablePositionEncoding
from keras_perceiver.layers.utils import check_rank
from keras_perceiver.layers.utils import validate_activation
from keras_perceiver.layers.validation import check_float
from keras_perceiver.layers.validation import check_rate
from keras_perceiver.layers.validation import check_divisible
from keras_perceiver.layers.validation import check_int
from keras_perceiver.layers.validation import check_same_batch
from keras_perceiver.layers.validation import check_shape


@keras.saving.register_keras_serializable(package="keras_perceiver")
class PerceiverEncoder(keras.layers.Layer):
    """Trainable latents, one cross-attend, then shared self-attention blocks.

    The `num_self_attends_per_block` self-attention layers are applied
    `num_blocks` times with the same weights.

    Args:
        num_latents: `N`, the latent index dimension.
        num_latent_channels: `D`, the latent width.
        num_blocks: how many times the self-attention block is applied.
        num_self_attends_per_block: self-attention layers in the block.
        num_cross_attention_heads, num_self_attention_heads: heads.
        qk_channels, v_channels: attention widths of every layer (None:
            the reference defaults).
        cross_attention_shape_for_attention: `"kv"` or `"q"`.
        cross_attention_widening_factor, self_attention_widening_factor:
            MLP widening factors.
        use_query_residual: residual around the cross-attention.
        dropout, attention_dropout: dropout rates.
        activation: `"gelu_tanh"` (DeepMind) or `"gelu"` (transformers).
        layer_norm_epsilon: 1e-5 in both references.
        latent_initializer: initializer of the latent array.
        remat: gradient checkpointing: each latent self-attention layer keeps
            only its input for the backward pass and recomputes the rest
            (`keras.remat`), trading ~1/3 more compute in training for
            activation memory independent of the latent depth. Outputs and
            gradients are unchanged.
        attention_memory_budget: bytes of float32 attention logits per
            example above which every attention chunks (see
            `keras_perceiver.layers.Attention`; None: its default).
        inputs_channels: the tokens' width when the call's `inputs` are raw
            features that `inputs_expand` widens (None: the last dimension
            of `inputs`); the encoder then builds from the raw features'
            shape, as in `keras.models.clone_model`'s re-call of a model.

    Call with `inputs` `[B, M, C]` and an optional boolean `input_mask`
    `[B, M]` (`True` = real input); returns the latents `[B, N, D]`. With
    `inputs_expand=fn`, `inputs` are raw features and `fn(x, start)` makes
    the tokens of a slice from token `start` on, chunk by chunk (see
    `CrossAttention`; build the encoder with the tokens' shape first, or set
    `inputs_channels`).

    Example:
    >>> import numpy as np
    >>> encoder = keras_perceiver.layers.PerceiverEncoder(
    ...     num_latents=8, num_latent_channels=16, num_blocks=2,
    ...     num_self_attends_per_block=2, num_self_attention_heads=2)
    >>> encoder(np.ones((2, 50, 6))).shape
    (2, 8, 16)
    """

    def __init__(
        self,
        num_latents,
        num_latent_channels,
        num_blocks=1,
        num_self_attends_per_block=6,
        num_cross_attention_heads=1,
        num_self_attention_heads=8,
        qk_channels=None,
        v_channels=None,
        cross_attention_shape_for_attention="kv",
        cross_attention_widening_factor=1,
        self_attention_widening_factor=1,
        use_query_residual=True,
        dropout=0.0,
        attention_dropout=0.0,
        activation="gelu_tanh",
        layer_norm_epsilon=1e-5,
        latent_initializer=None,
        kernel_initializer="variance_scaling",
        remat=False,
        attention_memory_budget=None,
        inputs_channels=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_int(self, "num_latents", num_latents)
        check_int(self, "inputs_channels", inputs_channels, allow_none=True)
        check_int(self, "num_latent_channels", num_latent_channels)
        check_int(self, "num_blocks", num_blocks)
        check_int(self, "num_self_attends_per_block", num_self_attends_per_block, minimum=0)
        for arg, heads in (("num_cross_attention_heads", num_cross_attention_heads),
                           ("num_self_attention_heads", num_self_attention_heads)):
            check_int(self, arg, heads)
            for name, channels in (("qk_channels", qk_channels), ("v_channels", v_channels)):
                check_int(self, name, channels, allow_none=True)
                check_divisible(self, name, channels, arg, heads)
        check_int(self, "cross_attention_widening_factor", cross_attention_widening_factor)
        check_int(self, "self_attention_widening_factor", self_attention_widening_factor)
        check_rate(self, "dropout", dropout)
        check_rate(self, "attention_dropout", attention_dropout)
        check_float(self, "layer_norm_epsilon", layer_norm_epsilon)
        validate_activation(self, activation, ACTIVATIONS)
        if cross_attention_shape_for_attention not in SHAPES_FOR_ATTENTION:
            raise ValueError(
                f"PerceiverEncoder: `cross_attention_shape_for_attention` must be one of "
                f"{SHAPES_FOR_ATTENTION}, received {cross_attention_shape_for_attention!r}."
            )
        if qk_channels is None:
            check_divisible(self, "num_latent_channels", num_latent_channels,
                            "num_self_attention_heads", num_self_attention_heads)
        self.remat = bool(remat)
        self.attention_memory_budget = attention_memory_budget
        self.inputs_channels = inputs_channels
        self.num_latents = num_latents
        self.num_latent_channels = num_latent_channels
        self.num_blocks = num_blocks
        self.num_self_attends_per_block = num_self_attends_per_block
        self.num_cross_attention_heads = num_cross_attention_heads
        self.num_self_attention_heads = num_self_attention_heads
        self.qk_channels = qk_channels
        self.v_channels = v_channels
        self.cross_attention_shape_for_attention = cross_attention_shape_for_attention
        self.cross_attention_widening_factor = cross_attention_widening_factor
        self.self_attention_widening_factor = self_attention_widening_factor
        self.use_query_residual = use_query_residual
        self.dropout = dropout
        self.attention_dropout = attention_dropout
        self.activation = activation
        self.layer_norm_epsilon = layer_norm_epsilon
        self.latent_initializer = keras.initializers.get(
            latent_initializer or keras.initializers.TruncatedNormal(stddev=0.02)
        )
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def _block_kwargs(self):
        return dict(
            qk_channels=self.qk_channels,
            v_channels=self.v_channels,
            dropout=self.dropout,
            attention_dropout=self.attention_dropout,
            activation=self.activation,
            layer_norm_epsilon=self.layer_norm_epsilon,
            kernel_initializer=self.kernel_initializer,
            memory_budget=self.attention_memory_budget,
            dtype=self.dtype_policy,
        )

    def build(self, inputs_shape, input_mask_shape=None):
        check_rank(self, "inputs", inputs_shape, 3)
        if self.inputs_channels is not None:  # raw features, widened in the call
            inputs_shape = tuple(inputs_shape[:-1]) + (self.inputs_channels,)
        latent_shape = (inputs_shape[0], self.num_latents, self.num_latent_channels)
        self.latents = TrainablePositionEncoding(
            self.num_latents,
            self.num_latent_channels,
            initializer=self.latent_initializer,
            dtype=self.dtype_policy,
            name="latents",
        )
        self.latents.build()
        self._inputs_channels = inputs_shape[-1]
        self.cross_attention = CrossAttention(
            num_heads=self.num_cross_attention_heads,
            shape_for_attention=self.cross_attention_shape_for_attention,
            use_query_residual=self.use_query_residual,
            widening_factor=self.cross_attention_widening_factor,
            name="cross_attention",
            **self._block_kwargs(),
        )
        self.cross_attention.build(latent_shape, inputs_shape)
        self.self_attends = []
        for i in range(self.num_self_attends_per_block):
            layer = SelfAttention(
                num_heads=self.num_self_attention_heads,
                widening_factor=self.self_attention_widening_factor,
                name=f"self_attention_{i}",
                **self._block_kwargs(),
            )
            layer.build(latent_shape)
            self.self_attends.append(layer)
        self.built = True

    def call(self, inputs, input_mask=None, training=None, inputs_expand=None):
        if inputs_expand is None:
            check_shape(self, "inputs", inputs.shape, (None, None, self._inputs_channels))
        if input_mask is not None:
            check_shape(self, "input_mask", input_mask.shape, inputs.shape[:2])
            check_same_batch(self, inputs=inputs.shape, input_mask=input_mask.shape)
        latents = self.latents(inputs)
        attention_mask = None
        if input_mask is not None:
            key_mask = ops.cast(input_mask, "bool")[:, None, :]
            attention_mask = ops.broadcast_to(
                key_mask, (ops.shape(inputs)[0], self.num_latents, ops.shape(inputs)[1])
            )
        z = self.cross_attention(latents, inputs, attention_mask=attention_mask, training=training,
                                 key_value_expand=inputs_expand)
        for _ in range(self.num_blocks):
            for layer in self.self_attends:
                z = self._self_attend(layer, z, training)
        return z

    def _self_attend(self, layer, z, training):
        if not self.remat:
            return layer(z, training=training)
        return keras.remat(lambda x: layer(x, training=training))(z)

    def compute_output_shape(self, inputs_shape, input_mask_shape=None):
        return (inputs_shape[0], self.num_latents, self.num_latent_channels)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_latents=self.num_latents,
            num_latent_channels=self.num_latent_channels,
            num_blocks=self.num_blocks,
            num_self_attends_per_block=self.num_self_attends_per_block,
            num_cross_attention_heads=self.num_cross_attention_heads,
            num_self_attention_heads=self.num_self_attention_heads,
            qk_channels=self.qk_channels,
            v_channels=self.v_channels,
            cross_attention_shape_for_attention=self.cross_attention_shape_for_attention,
            cross_attention_widening_factor=self.cross_attention_widening_factor,
            self_attention_widening_factor=self.self_attention_widening_factor,
            use_query_residual=self.use_query_residual,
            dropout=self.dropout,
            attention_dropout=self.attention_dropout,
            activation=self.activation,
            layer_norm_epsilon=self.layer_norm_epsilon,
            latent_initializer=keras.initializers.serialize(self.latent_initializer),
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            remat=self.remat,
            attention_memory_budget=self.attention_memory_budget,
            inputs_channels=self.inputs_channels,
        )
        return config
