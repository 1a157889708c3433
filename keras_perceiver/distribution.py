"""Scaling out on the engines Keras already has (no TensorFlow import here).

One name picks the engine: `"none"`, `"mirrored"` and `"multi_worker"`
(`tf.distribute`, TensorFlow backend; built by
`keras_perceiver.distribute_tf`), `"data_parallel"` and `"model_parallel"`
(`keras.distribution`, JAX backend). `layout_map` shards a Perceiver's
latent Transformer and its large position/query tables over the `"model"`
axis of a `keras.distribution.DeviceMesh`.

Typical use (JAX, model parallel):

    template = make_model()                       # read for its weight paths
    dist = get_distribution("model_parallel", model=template, mesh_shape=(2, 2))
    with distribution_scope(dist):                # or keras.distribution.set_distribution
        model = make_model()                      # weights created sharded
        model.compile(...)
        model.fit(x, y, batch_size=global_batch_size(32, dist))  # batches sharded

On TensorFlow, build and compile inside `distribution_scope(strategy)`
and call `fit` anywhere.
"""

import contextlib
import re

import keras

NAMES = ("none", "mirrored", "multi_worker", "data_parallel", "model_parallel")
TF_NAMES = ("mirrored", "multi_worker")
JAX_NAMES = ("data_parallel", "model_parallel")
BATCH_AXIS = "batch"
MODEL_AXIS = "model"

# Megatron-style tensor parallelism of the latent Transformer: query/key/value
# and the first MLP layer split their output features (column parallel), the
# attention output and the second MLP layer their input features (row
# parallel). Tables (latents, trainable position encodings, decoder queries,
# text positions) split their rows. `"model"` stands for the model axis.
# Keras matches these with `re.fullmatch` on the variable path.
_LATENT = r"(?:.*/)?self_attention_\d+/"
LAYOUT_RULES = (
    (_LATENT + r"attention/(?:query|key|value)/kernel", (None, MODEL_AXIS)),
    (_LATENT + r"attention/(?:query|key|value)/bias", (MODEL_AXIS,)),
    (_LATENT + r"attention/output/kernel", (MODEL_AXIS, None)),
    (_LATENT + r"mlp/dense1/kernel", (None, MODEL_AXIS)),
    (_LATENT + r"mlp/dense1/bias", (MODEL_AXIS,)),
    (_LATENT + r"mlp/dense2/kernel", (MODEL_AXIS, None)),
    (r"(?:.*/)?latents/embeddings", (MODEL_AXIS, None)),
    (r"(?:.*/)?(?:output_)?position_encoding/embeddings", (MODEL_AXIS, None)),
    (r"(?:.*/)?position_embedding/embeddings", (MODEL_AXIS, None)),
)


def _check_name(name):
    if name not in NAMES:
        raise ValueError(f"Unknown distribution {name!r}; expected one of {NAMES}.")


def _require_backend(name, backend):
    if keras.backend.backend() != backend:
        raise ValueError(
            f"Distribution {name!r} needs KERAS_BACKEND={backend}; this process runs "
            f"the {keras.backend.backend()!r} backend. Use "
            f"{TF_NAMES if backend == 'jax' else JAX_NAMES} there instead, or 'none'."
        )


def device_mesh(shape=None, devices=None, model_parallelism=2):
    """A 2-D `DeviceMesh` with axes `("batch", "model")`.

    Args:
        shape: `(data replicas, model shards)`; default
            `(n // model_parallelism, model_parallelism)` over all `n` devices.
        devices: device names; default `keras.distribution.list_devices()`.
        model_parallelism: model shards when `shape` is not given.

    Example:
    >>> import keras
    >>> mesh = keras_perceiver.distribution.device_mesh(
    ...     (1, 1), devices=keras.distribution.list_devices()[:1])
    >>> mesh.shape, mesh.axis_names
    ((1, 1), ['batch', 'model'])
    """
    devices = list(devices or keras.distribution.list_devices())
    if shape is None:
        if len(devices) % model_parallelism:
            raise ValueError(
                f"device_mesh: {len(devices)} devices do not split into "
                f"model_parallelism={model_parallelism} shards; pass `shape`."
            )
        shape = (len(devices) // model_parallelism, model_parallelism)
    shape = tuple(int(s) for s in shape)
    if len(shape) != 2 or shape[0] * shape[1] != len(devices):
        raise ValueError(
            f"device_mesh: expected shape (replicas, shards) with product "
            f"{len(devices)} (the number of devices), received {shape}."
        )
    return keras.distribution.DeviceMesh(shape, [BATCH_AXIS, MODEL_AXIS], devices=devices)


def layout_map(model, mesh, model_axis=MODEL_AXIS):
    """A `keras.distribution.LayoutMap` sharding a Perceiver over `model_axis`.

    Reads the weight paths and shapes of `model` (a built task model, e.g.
    a template built before the distribution is set) and shards each weight
    that a rule of `LAYOUT_RULES` names and whose sharded dimension divides
    by the mesh's `model_axis` size; all others stay replicated. Keys are
    the weight paths with any top-level layer name, so they also fit another
    instance of the same model (whose layer names may get a `_1` suffix).

    Example:
    >>> import keras
    >>> model = keras_perceiver.models.PerceiverImageClassifier(
    ...     num_classes=3, image_shape=(4, 4, 1), num_bands=2, num_latents=4,
    ...     num_latent_channels=8, num_blocks=1, num_self_attends_per_block=1,
    ...     num_self_attention_heads=2)
    >>> mesh = keras_perceiver.distribution.device_mesh(
    ...     (1, 1), devices=keras.distribution.list_devices()[:1])
    >>> layouts = keras_perceiver.distribution.layout_map(model, mesh)
    >>> layouts["encoder/self_attention_0/attention/query/kernel"].axes
    (None, 'model')
    >>> layouts["decoder/final_layer/kernel"] is None
    True
    """
    if model_axis not in mesh.axis_names:
        raise ValueError(
            f"layout_map: the mesh has axes {mesh.axis_names}, expected one named {model_axis!r}."
        )
    if not model.weights:
        raise ValueError("layout_map: expected a built model with weights, it has none.")
    shards = mesh.shape[list(mesh.axis_names).index(model_axis)]
    chosen = {}
    for weight in model.weights:
        for pattern, axes in LAYOUT_RULES:
            if re.fullmatch(pattern, weight.path):
                axes = tuple(model_axis if a == MODEL_AXIS else a for a in axes)
                if not _divides(tuple(weight.shape), axes, shards):
                    axes = None
                key = _instance_free_key(weight.path)
                # Weights sharing a key must agree, or all stay replicated.
                chosen[key] = axes if chosen.get(key, axes) == axes else None
                break
    layouts = keras.distribution.LayoutMap(mesh)
    for key, axes in chosen.items():
        if axes is not None:
            layouts[key] = axes
    return layouts


def _instance_free_key(path):
    head, sep, rest = path.partition("/")
    return r"[^/]+/" + re.escape(rest) if sep else re.escape(path)


def _divides(shape, axes, shards):
    if len(shape) != len(axes):
        return False
    return all(a is None or d % shards == 0 for d, a in zip(shape, axes))


def get_distribution(name, *, model=None, mesh_shape=None, devices=None):
    """Builds the strategy or distribution called `name` (see `NAMES`).

    Returns None for `"none"`, a `tf.distribute.Strategy` for
    `"mirrored"`/`"multi_worker"` (TensorFlow backend), or a
    `keras.distribution.DataParallel`/`ModelParallel` (JAX backend).
    `"model_parallel"` needs `model` (a built template, see `layout_map`);
    `mesh_shape` is `(replicas, shards)`, default `(n // 2, 2)`.

    Example:
    >>> keras_perceiver.distribution.get_distribution("none") is None
    True
    """
    _check_name(name)
    if name == "none":
        return None
    if name in TF_NAMES:
        _require_backend(name, "tensorflow")
        from keras_perceiver import distribute_tf

        return distribute_tf.get_strategy(name, devices=devices)
    _require_backend(name, "jax")
    if name == "data_parallel":
        return keras.distribution.DataParallel(devices=devices)
    if model is None:
        raise ValueError(
            "get_distribution('model_parallel') needs `model=`: a built model "
            "whose weight paths the layout map reads."
        )
    mesh = device_mesh(mesh_shape, devices=devices)
    return keras.distribution.ModelParallel(
        layout_map=layout_map(model, mesh), batch_dim_name=BATCH_AXIS
    )


def distribution_scope(distribution):
    """The context to build and compile a model in: a strategy's or a
    distribution's `scope()`, or a no-op for None.

    Example:
    >>> with keras_perceiver.distribution.distribution_scope(None):
    ...     pass
    """
    if distribution is None:
        return contextlib.nullcontext()
    return distribution.scope()


def num_replicas(distribution):
    """How many data-parallel replicas share a global batch.

    Example:
    >>> keras_perceiver.distribution.num_replicas(None)
    1
    """
    if distribution is None:
        return 1
    if hasattr(distribution, "num_replicas_in_sync"):
        return int(distribution.num_replicas_in_sync)
    mesh = distribution.device_mesh
    batch_axis = getattr(distribution, "batch_dim_name", None) or mesh.axis_names[0]
    return int(mesh.shape[list(mesh.axis_names).index(batch_axis)])


def _replicas(distribution_or_count):
    if isinstance(distribution_or_count, int) and not isinstance(distribution_or_count, bool):
        if distribution_or_count < 1:
            raise ValueError(f"expected a replica count >= 1, received {distribution_or_count}.")
        return distribution_or_count
    return num_replicas(distribution_or_count)


def global_batch_size(per_replica_batch_size, distribution):
    """The batch to give `fit`: `per_replica_batch_size` times the replicas.

    Example:
    >>> keras_perceiver.distribution.global_batch_size(32, 4)
    128
    """
    return int(per_replica_batch_size) * _replicas(distribution)


def per_replica_batch_size(global_batch_size, distribution):
    """The batch each replica computes; `global_batch_size` must divide.

    Example:
    >>> keras_perceiver.distribution.per_replica_batch_size(128, 4)
    32
    """
    replicas = _replicas(distribution)
    if global_batch_size % replicas:
        raise ValueError(
            f"global batch size {global_batch_size} does not split evenly over "
            f"{replicas} replicas; use a multiple of {replicas}."
        )
    return global_batch_size // replicas


def scaled_learning_rate(learning_rate, global_batch_size, base_batch_size, rule="linear"):
    """Rescales a learning rate tuned at `base_batch_size` to `global_batch_size`.

    `"linear"` (Goyal et al. 2017; SGD/LAMB with warmup) or `"sqrt"` (Adam).

    Example:
    >>> keras_perceiver.distribution.scaled_learning_rate(1e-3, 1024, 256)
    0.004
    """
    if rule not in ("linear", "sqrt"):
        raise ValueError(f"scaled_learning_rate: rule must be 'linear' or 'sqrt', received {rule!r}.")
    ratio = global_batch_size / base_batch_size
    return learning_rate * (ratio if rule == "linear" else ratio**0.5)


def initialize(coordinator_address=None, num_processes=None, process_id=None):
    """Joins a multi-process JAX job (`keras.distribution.initialize`).

    Call it first in every process, before any computation. Arguments left
    None come from `KERAS_DISTRIBUTION_JOB_ADDRESSES`,
    `KERAS_DISTRIBUTION_NUM_PROCESSES` and `KERAS_DISTRIBUTION_PROCESS_ID`
    (or the TPU/cluster environment). `coordinator_address` is process 0's
    `host:port`.
    """
    _require_backend("multi-process initialize", "jax")
    if num_processes is not None and process_id is not None:
        if not 0 <= int(process_id) < int(num_processes):
            raise ValueError(
                f"initialize: process_id must be in [0, {num_processes}), received {process_id}."
            )
    keras.distribution.initialize(coordinator_address, num_processes, process_id)
