"""Perceiver IO decoders: output queries cross-attend to the latents."""

import math

import keras
from keras import ops

from keras_perceiver.layers.attention import ACTIVATIONS
from keras_perceiver.layers.blocks import CrossAttention
from keras_perceiver.layers.position_encoding import FourierPositionEncoding
from keras_perceiver.layers.position_encoding import TrainablePositionEncoding
from keras_perceiver.layers.utils import check_channels
from keras_perceiver.layers.utils import check_rank
from keras_perceiver.layers.utils import dense_initializer
from keras_perceiver.layers.utils import validate_activation
from keras_perceiver.layers.validation import check_divisible
from keras_perceiver.layers.validation import check_float
from keras_perceiver.layers.validation import check_int
from keras_perceiver.layers.validation import check_ints
from keras_perceiver.layers.validation import check_rate
from keras_perceiver.layers.validation import check_same_batch
from keras_perceiver.layers.validation import check_shape

POSITION_ENCODING_TYPES = ("trainable", "fourier", "none")


@keras.saving.register_keras_serializable(package="keras_perceiver")
class BasicDecoder(keras.layers.Layer):
    """Cross-attends from output queries to the latents, then projects.

    Queries are a trainable array (`position_encoding_type="trainable"`),
    Fourier features of the output grid (`"fourier"`), or supplied by the
    caller (`"none"`, e.g. the preprocessed inputs for optical flow). Position
    queries can be projected (`project_pos_dim`) and concatenated after the
    caller's `inputs` (`concat_preprocessed_input`). Passing `indices`
    (flat output indices) decodes only those points: chunked decoding.

    Args:
        output_num_channels: channels of the final projection.
        output_index_dims: the output grid (int or tuple).
        position_encoding_type: `"trainable"`, `"fourier"` or `"none"`.
        num_query_channels: width of trainable queries.
        num_bands, max_resolution, concat_pos, sine_only: Fourier options.
        project_pos_dim: if > 0, a Dense projection of the position queries.
        concat_preprocessed_input: prepend the call's `inputs` to the queries.
        num_heads, qk_channels, v_channels, widening_factor: cross-attention.
        use_query_residual: residual around the cross-attention.
        final_project: apply `Dense(output_num_channels)` at the end.
        activation, layer_norm_epsilon, dropout, attention_dropout: as in
            `CrossAttention`.
        inputs_channels: the preprocessed inputs' width when the call's
            `inputs` are raw features that `inputs_expand` widens (None: the
            last dimension of `inputs`), so that the decoder builds from the
            raw features' shape (`keras.models.clone_model` re-calls a model).

    Call: `decoder(latents, queries=None, inputs=None, query_mask=None,
    indices=None, inputs_expand=None)` returns `[B, O, output_num_channels]`.
    `inputs_expand`: `fn(x, start)` making the preprocessed inputs from raw
    features `inputs` a slice at a time (as `PerceiverEncoder`'s; with
    `"none"` queries, per query chunk).

    Example:
    >>> import numpy as np
    >>> decoder = keras_perceiver.layers.BasicDecoder(
    ...     output_num_channels=5, output_index_dims=7, num_query_channels=12)
    >>> decoder(np.ones((2, 8, 16))).shape
    (2, 7, 5)
    """

    def __init__(
        self,
        output_num_channels,
        output_index_dims=None,
        position_encoding_type="trainable",
        num_query_channels=None,
        num_bands=None,
        max_resolution=None,
        concat_pos=True,
        sine_only=False,
        project_pos_dim=-1,
        concat_preprocessed_input=False,
        num_heads=1,
        qk_channels=None,
        v_channels=None,
        widening_factor=1,
        use_query_residual=False,
        final_project=True,
        activation="gelu_tanh",
        layer_norm_epsilon=1e-5,
        dropout=0.0,
        attention_dropout=0.0,
        query_initializer=None,
        kernel_initializer="variance_scaling",
        inputs_channels=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if position_encoding_type not in POSITION_ENCODING_TYPES:
            raise ValueError(
                f"{self.__class__.__name__}: position_encoding_type must be one of "
                f"{POSITION_ENCODING_TYPES}, received {position_encoding_type!r}."
            )
        if position_encoding_type == "trainable" and not num_query_channels:
            raise ValueError(
                f"{self.__class__.__name__}: trainable queries need num_query_channels."
            )
        if position_encoding_type == "fourier" and not num_bands:
            raise ValueError(f"{self.__class__.__name__}: Fourier queries need num_bands.")
        validate_activation(self, activation, ACTIVATIONS)
        check_int(self, "output_num_channels", output_num_channels)
        check_int(self, "inputs_channels", inputs_channels, allow_none=True)
        self.inputs_channels = inputs_channels
        if position_encoding_type != "none" or output_index_dims is not None:
            output_index_dims = check_ints(self, "output_index_dims", output_index_dims)
        check_int(self, "num_query_channels", num_query_channels, allow_none=True)
        check_int(self, "num_bands", num_bands, allow_none=True)
        check_int(self, "project_pos_dim", project_pos_dim, minimum=-1)
        check_int(self, "num_heads", num_heads)
        for arg, value in (("qk_channels", qk_channels), ("v_channels", v_channels)):
            check_int(self, arg, value, allow_none=True)
            check_divisible(self, arg, value, "num_heads", num_heads)
        check_int(self, "widening_factor", widening_factor)
        check_float(self, "layer_norm_epsilon", layer_norm_epsilon)
        check_rate(self, "dropout", dropout)
        check_rate(self, "attention_dropout", attention_dropout)
        self.output_num_channels = output_num_channels
        self.output_index_dims = tuple(output_index_dims) if output_index_dims else None
        self.position_encoding_type = position_encoding_type
        self.num_query_channels = num_query_channels
        self.num_bands = num_bands
        self.max_resolution = tuple(max_resolution) if max_resolution else None
        self.concat_pos = concat_pos
        self.sine_only = sine_only
        self.project_pos_dim = project_pos_dim
        self.concat_preprocessed_input = concat_preprocessed_input
        self.num_heads = num_heads
        self.qk_channels = qk_channels
        self.v_channels = v_channels
        self.widening_factor = widening_factor
        self.use_query_residual = use_query_residual
        self.final_project = final_project
        self.activation = activation
        self.layer_norm_epsilon = layer_norm_epsilon
        self.dropout = dropout
        self.attention_dropout = attention_dropout
        self.query_initializer = keras.initializers.get(
            query_initializer or keras.initializers.TruncatedNormal(stddev=0.02)
        )
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def _build_position_encoding(self):
        if self.position_encoding_type == "trainable":
            self.position_encoding = TrainablePositionEncoding(
                self.output_index_dims, self.num_query_channels,
                initializer=self.query_initializer, dtype=self.dtype_policy,
                name="output_position_encoding",
            )
            self.position_encoding.build()
            channels = self.num_query_channels
        else:
            self.position_encoding = FourierPositionEncoding(
                self.output_index_dims, self.num_bands,
                max_resolution=self.max_resolution, concat_pos=self.concat_pos,
                sine_only=self.sine_only, dtype=self.dtype_policy,
                name="output_position_encoding",
            )
            channels = self.position_encoding.num_channels
        if self.project_pos_dim > 0:
            self.position_projection = keras.layers.Dense(
                self.project_pos_dim,
                kernel_initializer=dense_initializer(self.kernel_initializer),
                dtype=self.dtype_policy, name="position_projection",
            )
            self.position_projection.build((None, None, channels))
            channels = self.project_pos_dim
        return channels

    def build(self, latents_shape, queries_shape=None, inputs_shape=None,
              query_mask_shape=None, indices_shape=None):
        check_rank(self, "latents", latents_shape, 3)
        if self.inputs_channels is not None and inputs_shape is not None:
            inputs_shape = tuple(inputs_shape[:-1]) + (self.inputs_channels,)
        self.position_projection = None
        if self.position_encoding_type == "none":
            if queries_shape is None and inputs_shape is None:
                raise ValueError(
                    f"{self.name}: position_encoding_type='none' needs `queries` "
                    "(or `inputs`) in the call."
                )
            query_channels = (queries_shape or inputs_shape)[-1]
        else:
            query_channels = self._build_position_encoding()
            if self.concat_preprocessed_input:
                if inputs_shape is None:
                    raise ValueError(
                        f"{self.name}: concat_preprocessed_input=True needs `inputs`."
                    )
                query_channels += inputs_shape[-1]
        query_shape = (latents_shape[0], None, query_channels)
        self.decoding_cross_attention = CrossAttention(
            num_heads=self.num_heads, qk_channels=self.qk_channels,
            v_channels=self.v_channels, shape_for_attention="kv",
            use_query_residual=self.use_query_residual,
            widening_factor=self.widening_factor, dropout=self.dropout,
            attention_dropout=self.attention_dropout, activation=self.activation,
            layer_norm_epsilon=self.layer_norm_epsilon,
            kernel_initializer=self.kernel_initializer, dtype=self.dtype_policy,
            name="decoding_cross_attention",
        )
        self.decoding_cross_attention.build(query_shape, latents_shape)
        self.final_layer = None
        if self.final_project:
            self.final_layer = keras.layers.Dense(
                self.output_num_channels,
                kernel_initializer=dense_initializer(self.kernel_initializer),
                dtype=self.dtype_policy, name="final_layer",
            )
            self.final_layer.build(query_shape)
        self._query_channels = query_channels
        self._latent_channels = latents_shape[-1]
        self._inputs_channels = None if inputs_shape is None else inputs_shape[-1]
        self.built = True

    @property
    def needs_inputs(self):
        """Whether the call needs the preprocessed `inputs`."""
        return self.position_encoding_type == "none" or self.concat_preprocessed_input

    def decoder_query(self, latents, inputs=None, indices=None):
        """The output queries `[B, O, C]` built from position encodings."""
        if self.position_encoding_type == "none":
            return inputs
        queries = self.position_encoding(latents, indices=indices)
        if self.position_projection is not None:
            queries = self.position_projection(queries)
        if self.concat_preprocessed_input:
            queries = ops.concatenate([ops.cast(inputs, queries.dtype), queries], axis=-1)
        return queries

    def call(self, latents, queries=None, inputs=None, query_mask=None,
             indices=None, training=None, inputs_expand=None):
        check_shape(self, "latents", latents.shape, (None, None, self._latent_channels))
        query_expand = None
        if queries is None and inputs is not None and inputs_expand is not None:
            if self.position_encoding_type == "none":
                queries, query_expand = inputs, inputs_expand
            else:
                inputs = inputs_expand(inputs, 0)
        if queries is None:
            if self.needs_inputs and inputs is None:
                raise ValueError(f"{self.name}: this decoder needs `inputs` (or `queries`).")
            if inputs is not None and self.concat_preprocessed_input:
                check_shape(self, "inputs", inputs.shape, (None, None, self._inputs_channels))
                check_same_batch(self, latents=latents.shape, inputs=inputs.shape)
            queries = self.decoder_query(latents, inputs=inputs, indices=indices)
        check_rank(self, "queries", queries.shape, 3)
        if query_expand is None:
            check_channels(self, "queries", queries.shape, self._query_channels)
        check_same_batch(self, latents=latents.shape, queries=queries.shape)
        attention_mask = None
        if query_mask is not None:
            check_shape(self, "query_mask", query_mask.shape, queries.shape[:2])
            attention_mask = ops.broadcast_to(
                ops.cast(query_mask, "bool")[:, :, None],
                (ops.shape(queries)[0], ops.shape(queries)[1], ops.shape(latents)[1]),
            )
        # The final projection runs inside the block's query chunks when the
        # queries are chunked (no [B, O, C] array before it).
        return self.decoding_cross_attention(
            queries, latents, attention_mask=attention_mask, training=training,
            output_layer=self.final_layer, query_expand=query_expand,
        )

    def compute_output_shape(self, latents_shape, queries_shape=None, inputs_shape=None,
                             query_mask_shape=None, indices_shape=None):
        if queries_shape is not None:
            length = queries_shape[1]
        elif indices_shape is not None:
            length = indices_shape[-1]
        elif self.position_encoding_type == "none":
            length = inputs_shape[1]
        else:
            length = math.prod(self.output_index_dims)
        channels = self.output_num_channels if self.final_project else self._query_channels
        return (latents_shape[0], length, channels)

    def get_config(self):
        config = super().get_config()
        config.update(
            output_num_channels=self.output_num_channels,
            output_index_dims=self.output_index_dims,
            position_encoding_type=self.position_encoding_type,
            num_query_channels=self.num_query_channels,
            num_bands=self.num_bands,
            max_resolution=self.max_resolution,
            concat_pos=self.concat_pos,
            sine_only=self.sine_only,
            project_pos_dim=self.project_pos_dim,
            concat_preprocessed_input=self.concat_preprocessed_input,
            num_heads=self.num_heads,
            qk_channels=self.qk_channels,
            v_channels=self.v_channels,
            widening_factor=self.widening_factor,
            use_query_residual=self.use_query_residual,
            final_project=self.final_project,
            activation=self.activation,
            layer_norm_epsilon=self.layer_norm_epsilon,
            dropout=self.dropout,
            attention_dropout=self.attention_dropout,
            query_initializer=keras.initializers.serialize(self.query_initializer),
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            inputs_channels=self.inputs_channels,
        )
        return config


@keras.saving.register_keras_serializable(package="keras_perceiver")
class ClassificationDecoder(BasicDecoder):
    """One trainable query cross-attends to the latents -> `[B, num_classes]`.

    Args:
        num_classes: output logits.
        num_query_channels: width of the single trainable query.
        **kwargs: the cross-attention options of `BasicDecoder`.

    Example:
    >>> import numpy as np
    >>> decoder = keras_perceiver.layers.ClassificationDecoder(10, 32)
    >>> decoder(np.ones((2, 8, 16))).shape
    (2, 10)
    """

    _FIXED = ("output_num_channels", "output_index_dims", "position_encoding_type",
              "num_bands", "max_resolution", "concat_pos", "sine_only",
              "concat_preprocessed_input", "final_project", "inputs_channels")

    def __init__(self, num_classes, num_query_channels, **kwargs):
        super().__init__(
            output_num_channels=num_classes, output_index_dims=1,
            position_encoding_type="trainable",
            num_query_channels=num_query_channels, final_project=True, **kwargs,
        )
        self.num_classes = num_classes

    def build(self, latents_shape):
        super().build(latents_shape)

    def call(self, latents, training=None):
        logits = super().call(latents, training=training)
        return logits[:, 0, :]

    def compute_output_shape(self, latents_shape):
        return (latents_shape[0], self.num_classes)

    def get_config(self):
        config = super().get_config()
        for key in self._FIXED:
            config.pop(key)
        config["num_classes"] = self.num_classes
        return config


@keras.saving.register_keras_serializable(package="keras_perceiver")
class ProjectionDecoder(keras.layers.Layer):
    """Baseline decoder without cross-attention: mean of the latents -> Dense.

    Example:
    >>> import numpy as np
    >>> keras_perceiver.layers.ProjectionDecoder(10)(np.ones((2, 8, 16))).shape
    (2, 10)
    """

    def __init__(self, num_classes, kernel_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        self.num_classes = check_int(self, "num_classes", num_classes)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, latents_shape):
        check_rank(self, "latents", latents_shape, 3)
        self.projection = keras.layers.Dense(
            self.num_classes,
            kernel_initializer=dense_initializer(self.kernel_initializer),
            dtype=self.dtype_policy, name="projection",
        )
        self.projection.build((latents_shape[0], latents_shape[-1]))
        self.built = True

    def call(self, latents):
        check_shape(self, "latents", latents.shape, (None, None, self.projection.kernel.shape[0]))
        return self.projection(ops.mean(latents, axis=1))

    def compute_output_shape(self, latents_shape):
        return (latents_shape[0], self.num_classes)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_classes=self.num_classes,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config
