"""One MultiWorkerMirroredStrategy worker (run twice by test_tf_strategies.py).

Usage: TF_CONFIG=... python -m tests.distribution.tf_multi_worker OUT_DIR
Saves OUT_DIR/results.npz (`losses`, `w/<path>`) and info.json.
"""

import json
import os
import sys

from keras_perceiver import distribution

# The strategy must exist before TensorFlow runs anything else.
STRATEGY = distribution.get_distribution("multi_worker")

import tensorflow as tf  # noqa: E402

from keras_perceiver import distribute_tf  # noqa: E402
from tests.distribution import tiny  # noqa: E402


def main(out_dir):
    x, y = tiny.data()
    with distribution.distribution_scope(STRATEGY):
        model = tiny.make_model()
        tiny.set_initial_weights(model)
        tiny.compile_model(model)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(tiny.GLOBAL_BATCH)
    losses = tiny.fit(model, distribute_tf.distribute_dataset(STRATEGY, dataset, "data"))
    arrays = {f"w/{path}": value for path, value in tiny.weights(model).items()}
    arrays["losses"] = losses
    task = json.loads(os.environ["TF_CONFIG"])["task"]
    tiny.save(out_dir, arrays, {
        "replicas": STRATEGY.num_replicas_in_sync,
        "index": task["index"],
        "is_chief": distribute_tf.is_chief(),
    })


if __name__ == "__main__":
    main(sys.argv[1])
