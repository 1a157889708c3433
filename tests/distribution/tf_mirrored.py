"""MirroredStrategy on two logical CPUs vs one device (run by test_tf_strategies.py).

Usage: python -m tests.distribution.tf_mirrored OUT_DIR
Saves to OUT_DIR/results.npz: `<run>/losses`, `<run>/w/<path>`, `<run>/logits`
for runs `single`, `mirrored`, `mirrored_<policy>`; `restored/logits`.
"""

import os
import sys

import tensorflow as tf

from keras_perceiver import distribute_tf

DEVICES = distribute_tf.configure_logical_cpus(2)
tf.config.experimental.enable_op_determinism()

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_perceiver import distribution  # noqa: E402
from keras_perceiver.models import PerceiverImageClassifier  # noqa: E402
from tests.distribution import tiny  # noqa: E402


def record(arrays, run, losses, model, x):
    arrays[f"{run}/losses"] = losses
    arrays[f"{run}/logits"] = np.asarray(model(x, training=False), "float32")
    for path, value in tiny.weights(model).items():
        arrays[f"{run}/w/{path}"] = value


def mirrored_run(strategy, x, y, policy="float32"):
    keras.config.set_dtype_policy(policy)
    try:
        with distribution.distribution_scope(strategy):
            model = tiny.make_model()
            tiny.set_initial_weights(model)
            tiny.compile_model(model)
        dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(tiny.GLOBAL_BATCH)
        losses = tiny.fit(model, distribute_tf.distribute_dataset(strategy, dataset, "data"))
    finally:
        keras.config.set_dtype_policy("float32")
    return model, losses


def main(out_dir):
    x, y = tiny.data()
    arrays = {}
    with tf.device(DEVICES[0]):
        model = tiny.make_model()
        tiny.set_initial_weights(model)
        tiny.compile_model(model)
        record(arrays, "single", tiny.fit(model, x, y), model, x)

    strategy = distribution.get_distribution("mirrored", devices=DEVICES)
    assert strategy.num_replicas_in_sync == 2, strategy.num_replicas_in_sync
    model, losses = mirrored_run(strategy, x, y)
    record(arrays, "mirrored", losses, model, x)
    info = {
        "replicas": strategy.num_replicas_in_sync,
        "per_replica_batch": distribution.per_replica_batch_size(tiny.GLOBAL_BATCH, strategy),
    }

    # A checkpoint written under the strategy restores without one.
    preset = os.path.join(out_dir, "preset_mirrored")
    model.save_to_preset(preset)
    restored = PerceiverImageClassifier.from_preset(preset)
    arrays["restored/logits"] = np.asarray(restored(x, training=False), "float32")

    for policy in ("mixed_bfloat16", "mixed_float16"):
        model, losses = mirrored_run(strategy, x, y, policy)
        record(arrays, f"mirrored_{policy}", losses, model, x)
        info[f"{policy}/optimizer"] = type(model.optimizer).__name__
        info[f"{policy}/compute_dtype"] = model.layers[-1].compute_dtype
    tiny.save(out_dir, arrays, info)


if __name__ == "__main__":
    main(sys.argv[1])
