"""One process of a 2-process JAX DataParallel job (run twice by test_jax_distribution.py).

Usage: KERAS_BACKEND=jax python -m tests.distribution.jax_multi_process OUT_DIR \
    COORDINATOR_ADDRESS PROCESS_ID
Each process feeds its half of every global batch; saves OUT_DIR/results.npz
(`losses`, `w/<path>`) and info.json.
"""

import sys

import jax

# CPU devices of different processes talk through gloo.
jax.config.update("jax_cpu_collectives_implementation", "gloo")

from keras_perceiver import distribution  # noqa: E402

COORDINATOR, PROCESS_ID = sys.argv[2], int(sys.argv[3])
distribution.initialize(COORDINATOR, num_processes=2, process_id=PROCESS_ID)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from tests.distribution import tiny  # noqa: E402


def main(out_dir):
    x, y = tiny.data()
    half = tiny.GLOBAL_BATCH // 2
    rows = slice(PROCESS_ID * half, (PROCESS_ID + 1) * half)
    x = x.reshape((tiny.STEPS, tiny.GLOBAL_BATCH) + x.shape[1:])[:, rows].reshape((-1,) + x.shape[1:])
    y = y.reshape(tiny.STEPS, tiny.GLOBAL_BATCH)[:, rows].reshape(-1)
    dist = distribution.get_distribution("data_parallel")
    dist.auto_shard_dataset = False  # each process already holds its half
    with distribution.distribution_scope(dist):
        model = tiny.make_model()
        tiny.set_initial_weights(model)
        tiny.compile_model(model)
        callback = tiny.StepLosses()
        model.fit(x, y, batch_size=half, epochs=1, shuffle=False, verbose=0, callbacks=[callback])
    arrays = {f"w/{path}": value for path, value in tiny.weights(model).items()}
    arrays["losses"] = np.asarray(callback.losses, "float64")
    tiny.save(out_dir, arrays, {
        "replicas": distribution.num_replicas(dist),
        "processes": jax.process_count(),
        "devices": len(keras.distribution.list_devices()),
    })


if __name__ == "__main__":
    main(sys.argv[1])
