"""keras.distribution on 4 host devices vs one device (run by test_jax_distribution.py).

Usage: XLA_FLAGS=--xla_force_host_platform_device_count=4 KERAS_BACKEND=jax \
    python -m tests.distribution.jax_parallel OUT_DIR
Saves OUT_DIR/results.npz (`<run>/losses`, `<run>/w/<path>`, `<run>/logits` for
runs `single`, `data_parallel`, `model_parallel`, `data_parallel_<policy>`;
`restored_<name>/logits`) and info.json (devices, shardings of the
model-parallel weights).
"""

import os
import sys

import keras
import numpy as np

from keras_perceiver import distribution
from tests.distribution import tiny


def record(arrays, run, losses, model, x):
    arrays[f"{run}/losses"] = losses
    arrays[f"{run}/logits"] = np.asarray(model(x, training=False), "float32")
    for path, value in tiny.weights(model).items():
        arrays[f"{run}/w/{path}"] = value


def train(dist, x, y, policy="float32"):
    keras.config.set_dtype_policy(policy)
    try:
        with distribution.distribution_scope(dist):
            model = tiny.make_model()
            tiny.set_initial_weights(model)
            tiny.compile_model(model)
            losses = tiny.fit(model, x, y)
    finally:
        keras.config.set_dtype_policy("float32")
    return model, losses


def restore(dist, path, x):
    with distribution.distribution_scope(dist):
        model = tiny.make_model()
        model.load_weights(path)
        return np.asarray(model(x, training=False), "float32")


def main(out_dir):
    x, y = tiny.data()
    arrays = {}
    info = {"devices": keras.distribution.list_devices()}

    model, losses = train(None, x, y)
    record(arrays, "single", losses, model, x)

    data_parallel = distribution.get_distribution("data_parallel")
    info["data_parallel/replicas"] = distribution.num_replicas(data_parallel)
    model, losses = train(data_parallel, x, y)
    record(arrays, "data_parallel", losses, model, x)

    model_parallel = distribution.get_distribution(
        "model_parallel", model=tiny.make_model(), mesh_shape=(2, 2)
    )
    info["model_parallel/replicas"] = distribution.num_replicas(model_parallel)
    model, losses = train(model_parallel, x, y)
    record(arrays, "model_parallel", losses, model, x)
    info["shardings"] = {
        w.path: {
            "spec": [None if a is None else str(a) for a in w.value.sharding.spec]
            + [None] * (len(w.shape) - len(w.value.sharding.spec)),
            "shard_shape": list(w.value.addressable_shards[0].data.shape),
            "devices": len(w.value.sharding.device_set),
        }
        for w in model.weights
    }
    info["optimizer_shardings"] = {
        v.path: list(v.value.addressable_shards[0].data.shape) for v in model.optimizer.variables
        if len(v.shape) == 2
    }

    # A checkpoint saved from sharded weights restores without a distribution
    # and under another one.
    path = os.path.join(out_dir, "model_parallel.weights.h5")
    model.save_weights(path)
    arrays["restored_none/logits"] = restore(None, path, x)
    arrays["restored_data_parallel/logits"] = restore(data_parallel, path, x)

    for policy in ("mixed_bfloat16", "mixed_float16"):
        model, losses = train(data_parallel, x, y, policy)
        record(arrays, f"data_parallel_{policy}", losses, model, x)
        info[f"{policy}/optimizer"] = type(model.optimizer).__name__
        info[f"{policy}/compute_dtype"] = model.layers[-1].compute_dtype
    tiny.save(out_dir, arrays, info)


if __name__ == "__main__":
    main(sys.argv[1])
