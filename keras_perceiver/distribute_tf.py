"""`tf.distribute` for the TensorFlow backend: strategies and input pipelines.

The TensorFlow-only half of `keras_perceiver.distribution`. Build and
compile the model inside `strategy.scope()`, give `fit` the global batch;
Keras splits it over the replicas and averages the gradients.

    strategy = get_strategy("mirrored")           # or "multi_worker" + TF_CONFIG
    with strategy.scope():
        model = make_model()
        model.compile(...)
    model.fit(distribute_dataset(strategy, dataset.batch(global_batch)))
"""

import json
import os

import tensorflow as tf

AUTO_SHARD_POLICIES = {
    "auto": tf.data.experimental.AutoShardPolicy.AUTO,
    "file": tf.data.experimental.AutoShardPolicy.FILE,
    "data": tf.data.experimental.AutoShardPolicy.DATA,
    "hint": tf.data.experimental.AutoShardPolicy.HINT,
    "off": tf.data.experimental.AutoShardPolicy.OFF,
}
COMMUNICATIONS = {
    "auto": tf.distribute.experimental.CommunicationImplementation.AUTO,
    "ring": tf.distribute.experimental.CommunicationImplementation.RING,
    "nccl": tf.distribute.experimental.CommunicationImplementation.NCCL,
}


def get_strategy(name, devices=None, communication="auto"):
    """`"mirrored"`: a `MirroredStrategy` over `devices` (default: all local
    GPUs, else the CPU); `"multi_worker"`: a `MultiWorkerMirroredStrategy`
    over the cluster in `TF_CONFIG` (call it first thing in every worker).

    Example:
    >>> strategy = keras_perceiver.distribute_tf.get_strategy(
    ...     "mirrored", devices=["/cpu:0"])
    >>> strategy.num_replicas_in_sync
    1
    """
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(devices=devices)
    if name == "multi_worker":
        if devices is not None:
            raise ValueError("get_strategy('multi_worker'): devices come from TF_CONFIG, not `devices`.")
        if communication not in COMMUNICATIONS:
            raise ValueError(
                f"get_strategy: communication must be one of {sorted(COMMUNICATIONS)}, "
                f"received {communication!r}."
            )
        options = tf.distribute.experimental.CommunicationOptions(
            implementation=COMMUNICATIONS[communication]
        )
        return _MultiWorkerMirroredStrategy(communication_options=options)
    raise ValueError(f"get_strategy: expected 'mirrored' or 'multi_worker', received {name!r}.")


class _MultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
    """`reduce` as Keras 3's TensorFlow trainer calls it.

    With more than one worker, `fit` fails on the stock strategy
    (tensorflow/tensorflow#72388): it reduces a whole `(x, y)` batch with
    `axis=None`, which `MultiWorkerMirroredStrategy` only does for single
    values, and the scalar step logs with `axis=0`. Here nested values are
    reduced leaf by leaf and scalars across replicas (`axis=None`).
    """

    def reduce(self, reduce_op, value, axis):
        if tf.nest.is_nested(value):
            return tf.nest.map_structure(lambda v: self.reduce(reduce_op, v, axis), value)
        if axis is not None and self.experimental_local_results(value)[0].shape.rank == 0:
            axis = None
        return super().reduce(reduce_op, value, axis)


def with_auto_shard(dataset, policy="auto"):
    """Sets how `tf.distribute` splits `dataset` between workers.

    `"file"` gives each worker its own input files (tfds/TFRecord input with
    at least as many files as workers), `"data"` has every worker read all
    of it and keep its share of the elements, `"auto"` tries files, then
    data; `"off"` leaves sharding to you.

    Example:
    >>> import tensorflow as tf
    >>> ds = keras_perceiver.distribute_tf.with_auto_shard(
    ...     tf.data.Dataset.range(4), "data")
    >>> ds.options().experimental_distribute.auto_shard_policy.name
    'DATA'
    """
    if policy not in AUTO_SHARD_POLICIES:
        raise ValueError(
            f"auto-shard policy must be one of {sorted(AUTO_SHARD_POLICIES)}, received {policy!r}."
        )
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = AUTO_SHARD_POLICIES[policy]
    return dataset.with_options(options)


def distribute_dataset(strategy, dataset, auto_shard="auto"):
    """`strategy.experimental_distribute_dataset` of a dataset batched to the
    global batch size (each replica gets `global / replicas` examples)."""
    return strategy.experimental_distribute_dataset(with_auto_shard(dataset, auto_shard))


def distribute_dataset_from_function(strategy, make_dataset, global_batch_size, shard=True):
    """One input pipeline per worker: `make_dataset(input_context)` returns
    the unbatched examples; they are sharded by input pipeline (if `shard`)
    and batched to the per-replica batch size."""
    if global_batch_size % strategy.num_replicas_in_sync:
        raise ValueError(
            f"global batch size {global_batch_size} does not split evenly over "
            f"{strategy.num_replicas_in_sync} replicas."
        )

    def dataset_fn(context):
        dataset = make_dataset(context)
        if shard:
            dataset = dataset.shard(context.num_input_pipelines, context.input_pipeline_id)
        return dataset.batch(context.get_per_replica_batch_size(global_batch_size))

    return strategy.distribute_datasets_from_function(dataset_fn)


def configure_logical_cpus(count):
    """Splits the CPU into `count` logical devices (to try `"mirrored"`
    without GPUs). Call it before TensorFlow runs anything."""
    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
    )
    return [d.name for d in tf.config.list_logical_devices("CPU")]


def tf_config(workers, index, environ=None):
    """The `TF_CONFIG` JSON of worker `index` in the cluster `workers`
    (`["host:port", ...]`); stored in `environ` (e.g. `os.environ`) if given.

    Example:
    >>> keras_perceiver.distribute_tf.tf_config(["10.0.0.1:2222", "10.0.0.2:2222"], 1)
    '{"cluster": {"worker": ["10.0.0.1:2222", "10.0.0.2:2222"]}, "task": {"type": "worker", "index": 1}}'
    """
    workers = list(workers)
    if not 0 <= index < len(workers):
        raise ValueError(f"tf_config: index must be in [0, {len(workers)}), received {index}.")
    value = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
    if environ is not None:
        environ["TF_CONFIG"] = value
    return value


def is_chief():
    """Whether this worker should write checkpoints/logs (worker 0, or no TF_CONFIG)."""
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task = config.get("task", {})
    if "chief" in config.get("cluster", {}):
        return task.get("type") == "chief"
    return task.get("type", "worker") == "worker" and int(task.get("index", 0)) == 0
