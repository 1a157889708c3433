"""Entity embedding of `PerceiverSetModel`, with per-set standardization."""

import keras
from keras import ops

from keras_perceiver.layers.attention import MLP
from keras_perceiver.layers.utils import dense_initializer

NORMALIZATIONS = (None, "feature", "isotropic")


def normalize_set(x, mask, mode, epsilon=1e-6):
    """Standardizes each set's `x` `[B, N, C]` over its real entities
    (`mask` `[B, N]` bool): minus their mean, over their standard deviation
    (per column for "feature", one for all columns for "isotropic", which
    keeps distances' ratios). Padded rows become 0; permutation invariant.

    Example:
    >>> import numpy as np
    >>> from keras_perceiver.models.set_embedding import normalize_set
    >>> x = np.array([[[1.0, 2.0], [3.0, 6.0], [9.0, 9.0]]], "float32")
    >>> out = normalize_set(x, np.array([[True, True, False]]), "feature")
    >>> np.round(np.asarray(out), 3).tolist()
    [[[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0]]]
    """
    real = mask[:, :, None]
    weight = ops.cast(real, x.dtype)
    count = ops.maximum(ops.sum(weight, axis=1, keepdims=True), 1.0)
    x = ops.where(real, x, ops.zeros_like(x))
    centered = ops.where(real, x - ops.sum(x, axis=1, keepdims=True) / count,
                         ops.zeros_like(x))
    variance = ops.sum(ops.square(centered), axis=1, keepdims=True) / count
    if mode == "isotropic":
        variance = ops.mean(variance, axis=-1, keepdims=True)
    return centered * ops.rsqrt(variance + epsilon)


class EntityEmbedding(keras.layers.Layer):
    """`[B, N, F]` -> `[B, N, E]`: Dense of the continuous columns (optionally
    standardized per set, `normalize_set`) plus one `Embedding` per
    categorical column, then a residual per-entity MLP."""

    def __init__(self, embedding_dim, categorical_fields, activation="gelu_tanh",
                 layer_norm_epsilon=1e-5, normalization=None, **kwargs):
        super().__init__(**kwargs)
        self.embedding_dim = embedding_dim
        self.categorical_fields = dict(categorical_fields)
        self.normalization = normalization
        self.activation = activation
        self.layer_norm_epsilon = layer_norm_epsilon

    def build(self, entities_shape, mask_shape=None):
        num_features = entities_shape[-1]
        self.continuous = [i for i in range(num_features) if i not in self.categorical_fields]
        init = dense_initializer("variance_scaling")
        self.dense = keras.layers.Dense(self.embedding_dim, kernel_initializer=init,
                                        dtype=self.dtype_policy, name="continuous")
        self.dense.build(tuple(entities_shape[:-1]) + (len(self.continuous),))
        self.tables = []
        for index, size in self.categorical_fields.items():
            table = keras.layers.Embedding(size, self.embedding_dim, dtype=self.dtype_policy,
                                           name=f"categorical_{index}")
            table.build(tuple(entities_shape[:-1]))
            self.tables.append((index, size, table))
        self.layer_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy, name="mlp_layer_norm")
        self.layer_norm.build(tuple(entities_shape[:-1]) + (self.embedding_dim,))
        self.mlp = MLP(widening_factor=2, activation=self.activation,
                       dtype=self.dtype_policy, name="mlp")
        self.mlp.build(tuple(entities_shape[:-1]) + (self.embedding_dim,))
        self.built = True

    def call(self, entities, mask):
        if self.tables:
            continuous = ops.take(entities, self.continuous, axis=-1)
        else:
            continuous = entities
        if self.normalization:
            continuous = normalize_set(continuous, mask, self.normalization)
        x = self.dense(continuous)
        for index, size, table in self.tables:
            # Padded entities may hold anything: their ids are replaced by 0.
            ids = ops.cast(ops.round(entities[..., index]), "int32")
            ids = ops.where(mask, ops.clip(ids, 0, size - 1), 0)
            x = x + table(ids)
        return x + self.mlp(self.layer_norm(x))

    def compute_output_shape(self, entities_shape, mask_shape=None):
        return tuple(entities_shape[:-1]) + (self.embedding_dim,)
