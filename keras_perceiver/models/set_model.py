"""`PerceiverSetModel`: per-entity outputs for variable-size sets (the paper's StarCraft II pattern)."""

import os

import keras
import numpy as np
from keras import ops

from keras_perceiver.layers import validation
from keras_perceiver.layers.attention import ACTIVATIONS
from keras_perceiver.layers.blocks import CrossAttention
from keras_perceiver.layers.encoder import PerceiverEncoder
from keras_perceiver.layers.position_encoding import TrainablePositionEncoding
from keras_perceiver.layers.utils import dense_initializer
from keras_perceiver.models import presets
from keras_perceiver.models.input_checks import CheckedInputs
from keras_perceiver.models.set_embedding import NORMALIZATIONS
from keras_perceiver.models.set_embedding import EntityEmbedding
from keras_perceiver.models.task import CONFIG_FILE
from keras_perceiver.models.task import PerceiverTask

BLOBS_PRESET = "set_perceiver_blobs"
# The architecture of `keras_perceiver.recipes.entity_sets` (its default config).
BLOBS_CONFIG = dict(num_features=2, num_classes=4, max_entities=2048, num_latents=32,
                    num_latent_channels=64, num_blocks=1, num_self_attends_per_block=1,
                    num_self_attention_heads=4, num_cross_attention_heads=4,
                    num_cross_attends=2, decoder_num_heads=4, decoder_widening_factor=2,
                    entity_normalization="isotropic")


def _check_categorical_fields(num_features, fields):
    """`{column index: vocab size}` with int keys (JSON turns them into strings)."""
    fields = {} if fields is None else fields
    expected = (f"PerceiverSetModel: expected `categorical_fields` as a dict {{column index "
                f"in [0, {num_features}): vocabulary size > 0}}, received {fields!r}.")
    if not isinstance(fields, dict):
        raise ValueError(expected)
    out = {}
    for key, size in fields.items():
        try:
            index = int(key)
        except (TypeError, ValueError):
            raise ValueError(expected) from None
        if isinstance(key, (bool, float)) or not 0 <= index < num_features or not (
            validation.is_int(size) and size > 0
        ):
            raise ValueError(expected)
        out[index] = int(size)
    if len(out) == num_features:
        raise ValueError(f"{expected[:-1]}; at least one column must stay continuous.")
    return dict(sorted(out.items()))


@keras.saving.register_keras_serializable(package="keras_perceiver")
class PerceiverSetModel(CheckedInputs, PerceiverTask):
    """Perceiver IO over a variable-size set of entities, one output per entity.

    The paper's StarCraft II model (section 4.5): each entity's features are
    embedded; a `PerceiverEncoder` of `num_latents` latents cross-attends to
    the real entities (`mask`; no position encoding: a set is unordered);
    the decoder's queries are the entities' own embeddings, so entity `i`'s
    output reads the latents with entity `i`'s embedding. Permuting the
    entities permutes the outputs; padded (masked) entities influence
    nothing and their outputs are exactly zero. The cost is linear in the
    number of entities `N` (a Transformer over the entities is quadratic).

    Inputs (a dict): `entities` float32 `[B, N, num_features]` (`N <=
    max_entities`; categorical columns hold integer ids) and `mask` `[B, N]`
    (bool, or 0/1 numbers; True = real entity). Output: per-entity logits
    `[B, N, num_classes]`, or with `num_set_classes` a dict
    `{"entity_logits": [B, N, num_classes], "set_logits": [B,
    num_set_classes]}` (one learned global query decoded with the entities).

    Args:
        num_features: `F`, features per entity.
        num_classes: per-entity outputs `K` (logits, or values for regression).
        categorical_fields: `{column index: vocabulary size}`: columns of
            integer ids embedded by the model (the others go through a Dense).
        max_entities: the largest `N` accepted (checked eagerly and in the
            SavedModel signature); the weights do not depend on it.
        embedding_dim: entity embedding width (None: `num_latent_channels`).
        entity_normalization: None, or standardize each set's continuous
            columns over its real entities before the embedding: "feature"
            (per column) or "isotropic" (one scale for all columns: keeps
            the geometry of point coordinates). A set-level statistic, so
            the model becomes invariant to moving (and scaling) a set.
        num_cross_attends: how often the latents read the entities: the
            encoder's cross-attention, then (with its own weights) each
            extra one after the encoder's self-attention, when the latents
            already know the set's layout and can query where it matters.
        num_set_classes: None, or the size of a set-level output.
        decoder_num_heads, decoder_widening_factor: the decoder cross-attention.
        The encoder arguments are `PerceiverEncoder`'s.

    `compile()` defaults: `SparseCategoricalCrossentropy(from_logits=True)`
    on integer labels `[B, N]`, `accuracy` as a weighted metric (pass
    `sample_weight=mask` so padded entities count for nothing), AdamW.

    Example:
    >>> import numpy as np
    >>> model = keras_perceiver.models.PerceiverSetModel(
    ...     num_features=3, num_classes=4, num_latents=8, num_latent_channels=16,
    ...     num_self_attends_per_block=1, num_self_attention_heads=2)
    >>> entities = np.random.default_rng(0).normal(size=(2, 10, 3)).astype("float32")
    >>> mask = np.arange(10)[None, :] < np.array([[10], [6]])
    >>> logits = model({"entities": entities, "mask": mask})
    >>> tuple(logits.shape), float(np.abs(np.asarray(logits)[1, 6:]).max())
    ((2, 10, 4), 0.0)
    """

    PRESETS = {
        BLOBS_PRESET: {
            "description": "2-D point sets (N <= 2048) -> which of 4 blobs each point "
                           "belongs to; weights trained by the entity_sets recipe "
                           "(`python -m applications.entity_sets --save-preset`).",
            "config": BLOBS_CONFIG,
        },
    }

    def __init__(
        self,
        num_features,
        num_classes,
        categorical_fields=None,
        max_entities=512,
        embedding_dim=None,
        entity_normalization=None,
        num_latents=32,
        num_latent_channels=64,
        num_blocks=1,
        num_self_attends_per_block=2,
        num_cross_attention_heads=1,
        num_self_attention_heads=4,
        qk_channels=None,
        v_channels=None,
        cross_attention_widening_factor=1,
        self_attention_widening_factor=1,
        decoder_num_heads=1,
        decoder_widening_factor=1,
        num_cross_attends=1,
        num_set_classes=None,
        activation="gelu_tanh",
        dropout=0.0,
        attention_dropout=0.0,
        layer_norm_epsilon=1e-5,
        remat=False,
        attention_memory_budget=None,
        **kwargs,
    ):
        cls = type(self).__name__
        validation.check_model_kwargs(type(self), kwargs)
        validation.check_arguments(cls, locals(), ints=(
            "num_features", "num_classes", "max_entities", "num_latents",
            "num_latent_channels", "num_blocks", "num_cross_attention_heads",
            "num_self_attention_heads", "cross_attention_widening_factor",
            "self_attention_widening_factor", "decoder_num_heads", "decoder_widening_factor",
            "num_cross_attends",
        ), non_negative_ints=("num_self_attends_per_block",), optional_ints=(
            "embedding_dim", "qk_channels", "v_channels", "num_set_classes",
        ), rates=("dropout", "attention_dropout"), positive_floats=("layer_norm_epsilon",))
        if activation not in ACTIVATIONS:
            raise ValueError(f"{cls}: activation must be one of {ACTIVATIONS}, received {activation!r}.")
        categorical_fields = _check_categorical_fields(num_features, categorical_fields)
        if entity_normalization not in NORMALIZATIONS:
            raise ValueError(f"{cls}: entity_normalization must be one of {NORMALIZATIONS}, "
                             f"received {entity_normalization!r}.")
        args = {k: v for k, v in locals().items()
                if k not in ("self", "kwargs", "__class__", "cls")}
        embedding_dim = embedding_dim or num_latent_channels
        validation.check_divisible(cls, "embedding_dim", embedding_dim,
                                   "decoder_num_heads", decoder_num_heads)

        embedding = EntityEmbedding(embedding_dim, categorical_fields, activation=activation,
                                    layer_norm_epsilon=layer_norm_epsilon,
                                    normalization=entity_normalization, name="entity_embedding")
        encoder = PerceiverEncoder(
            num_latents, num_latent_channels, num_blocks=num_blocks,
            num_self_attends_per_block=num_self_attends_per_block,
            num_cross_attention_heads=num_cross_attention_heads,
            num_self_attention_heads=num_self_attention_heads,
            qk_channels=qk_channels, v_channels=v_channels,
            cross_attention_widening_factor=cross_attention_widening_factor,
            self_attention_widening_factor=self_attention_widening_factor,
            dropout=dropout, attention_dropout=attention_dropout, activation=activation,
            layer_norm_epsilon=layer_norm_epsilon, remat=remat,
            attention_memory_budget=attention_memory_budget, name="encoder",
        )
        block_kwargs = dict(dropout=dropout, attention_dropout=attention_dropout,
                            activation=activation, layer_norm_epsilon=layer_norm_epsilon,
                            memory_budget=attention_memory_budget)
        extra_cross_attends = [
            CrossAttention(num_heads=num_cross_attention_heads, shape_for_attention="kv",
                           use_query_residual=True, qk_channels=qk_channels,
                           v_channels=v_channels, widening_factor=cross_attention_widening_factor,
                           name=f"cross_attention_{i + 1}", **block_kwargs)
            for i in range(num_cross_attends - 1)
        ]
        decoder = CrossAttention(
            num_heads=decoder_num_heads, shape_for_attention="q", use_query_residual=True,
            widening_factor=decoder_widening_factor, dropout=dropout,
            attention_dropout=attention_dropout, activation=activation,
            layer_norm_epsilon=layer_norm_epsilon, memory_budget=attention_memory_budget,
            name="decoder",
        )
        init = dense_initializer("variance_scaling")
        head = keras.layers.Dense(num_classes, kernel_initializer=init, name="entity_head")

        entities = keras.Input(shape=(None, num_features), name="entities")
        mask_input = keras.Input(shape=(None,), name="mask")
        mask = ops.not_equal(mask_input, 0)
        embedded = embedding(entities, mask)
        latents = encoder(embedded, input_mask=mask)
        if extra_cross_attends:
            key_mask = ops.repeat(mask[:, None, :], num_latents, axis=1)
            for layer in extra_cross_attends:
                latents = layer(latents, embedded, attention_mask=key_mask)
        queries = embedded
        set_query = set_head = None
        if num_set_classes:
            set_query = TrainablePositionEncoding(1, embedding_dim, name="set_query")
            queries = ops.concatenate([set_query(embedded), embedded], axis=1)
        decoded = decoder(queries, latents)
        if num_set_classes:
            set_head = keras.layers.Dense(num_set_classes, kernel_initializer=init,
                                          name="set_head")
            set_logits = set_head(decoded[:, 0])
            decoded = decoded[:, 1:]
        logits = head(decoded)
        logits = ops.where(mask[:, :, None], logits, ops.zeros_like(logits))
        outputs = logits
        if num_set_classes:
            outputs = {"entity_logits": logits, "set_logits": set_logits}
        super().__init__(inputs={"entities": entities, "mask": mask_input}, outputs=outputs,
                         **kwargs)

        self.embedding = embedding
        self.encoder = encoder
        self.extra_cross_attends = extra_cross_attends
        self.decoder = decoder
        self.head = head
        self.set_query = set_query
        self.set_head = set_head
        self._args = args

    def get_config(self):
        return {"name": self.name, **self._args}

    @classmethod
    def from_preset(cls, preset, weights=None, load_weights=True, preprocessor=None,
                    **overrides):
        """A preset directory, or a preset name (`PerceiverTask.from_preset`).

        No weights of this model were released, so a name never downloads:
        its weights are those the entity_sets recipe trains, which
        `python -m applications.entity_sets --save-preset` writes as a preset
        directory into the cache where the released presets are cached
        (`keras_perceiver.models.presets.cached_preset_dir(name)`); a name
        loads that directory (offline), or raises `FileNotFoundError` saying
        how to make it. `load_weights=False` builds the preset's architecture
        with random weights; `weights=PATH` loads that weights file.

        Example:
        >>> model = keras_perceiver.models.PerceiverSetModel.from_preset(
        ...     "set_perceiver_blobs", load_weights=False)
        >>> model.num_features, model.max_entities
        (2, 2048)
        """
        is_name = isinstance(preset, str) and preset in cls.PRESETS and not os.path.isdir(preset)
        if is_name and weights is None and load_weights:
            directory = presets.cached_preset_dir(preset)
            if not os.path.isfile(os.path.join(directory, CONFIG_FILE)):
                raise FileNotFoundError(
                    f"{cls.__name__}.from_preset({preset!r}): its weights are trained by "
                    f"the entity_sets recipe and are not cached at {directory}; run "
                    "`python -m applications.entity_sets --save-preset` (~10 min on 2 CPU "
                    "cores) to write them there, or pass load_weights=False for a random "
                    "initialisation (or weights=PATH).")
            preset = directory
        return super().from_preset(preset, weights=weights, load_weights=load_weights,
                                   preprocessor=preprocessor, **overrides)

    @property
    def num_features(self):
        return self._args["num_features"]

    @property
    def max_entities(self):
        return self._args["max_entities"]

    def input_checks(self):
        return {"entities": {"kind": "float"}}

    def check_input_values(self, inputs, training=None):
        """Shapes, dtypes and values of `{"entities", "mask"}` (clear errors)."""
        name = self.name
        if not isinstance(inputs, dict) or sorted(inputs) != ["entities", "mask"]:
            received = sorted(inputs) if isinstance(inputs, dict) else type(inputs).__name__
            raise ValueError(
                f"{name}: expected a dict {{'entities': [batch, N, {self.num_features}] "
                f"float32, 'mask': [batch, N] bool}}, received {received}.")
        entities, mask = inputs["entities"], inputs["mask"]
        if isinstance(entities, (list, tuple)):
            entities = np.asarray(entities, "float32")
        if isinstance(mask, (list, tuple)):
            mask = np.asarray(mask)
        e_shape, m_shape = tuple(entities.shape), tuple(mask.shape)
        f = self.num_features
        if len(e_shape) != 3 or e_shape[-1] not in (None, f):
            raise ValueError(f"{name}: expected `entities` of shape [batch, N, {f}], "
                             f"received shape {e_shape}.")
        if e_shape[1] is not None and e_shape[1] > self.max_entities:
            raise ValueError(f"{name}: expected at most max_entities={self.max_entities} "
                             f"entities (axis 1 of `entities`), received {e_shape[1]}.")
        if len(m_shape) != 2 or any(a is not None and b is not None and a != b
                                     for a, b in zip(m_shape, e_shape[:2])):
            raise ValueError(f"{name}: expected `mask` of shape [batch, N] = "
                             f"{list(e_shape[:2])} (that of `entities`), received shape {m_shape}.")
        dtype = validation.dtype_name(mask)
        if not (dtype == "bool" or dtype.startswith(("int", "uint", "float"))):
            raise TypeError(f"{name}: expected `mask` of dtype bool (or 0/1 numbers), "
                            f"received dtype {dtype}.")
        super().check_input_values({"entities": entities}, training)
        if not (validation.should_check_values(mask, training)
                and validation.should_check_values(entities, training)):
            return
        real = np.asarray(validation._to_numpy(mask))
        if not np.isin(real, (0, 1)).all():
            raise ValueError(f"{name}: expected `mask` values in {{0, 1}} (True = real "
                             f"entity), received values in [{real.min()}, {real.max()}].")
        values = np.asarray(validation._to_numpy(entities))
        real = real.astype(bool)
        for index, size in self._args["categorical_fields"].items():
            ids = values[..., index][real]
            if ids.size and (np.any(ids != np.round(ids)) or ids.min() < 0 or ids.max() >= size):
                raise ValueError(
                    f"{name}: `entities[..., {index}]` is a categorical field: expected "
                    f"integer ids in [0, {size}) for the real entities, received values "
                    f"in [{ids.min()}, {ids.max()}].")

    def predict(self, x, *args, **kwargs):
        if isinstance(x, (dict, list, tuple)) or hasattr(x, "dtype"):
            self.check_input_values(x)
        return keras.Model.predict(self, x, *args, **kwargs)

    def _default_loss(self):
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        if self._args["num_set_classes"]:
            return {"entity_logits": loss,
                    "set_logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True)}
        return loss

    def _default_metrics(self):
        return None

    def _default_weighted_metrics(self):
        if self._args["num_set_classes"]:
            return {"entity_logits": [keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
                    "set_logits": [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]}
        return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
