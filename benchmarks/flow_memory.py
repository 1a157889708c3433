"""Peak RSS of one optical-flow forward at 368x496, batch 1 (own process).

`python -m benchmarks.flow_memory [--self-attends N] [--image H W]`
builds `PerceiverOpticalFlow` with the preset's architecture and random
weights, runs one `tf.function` forward on random frames in [-1, 1] and
prints one JSON line: the process's peak RSS (`ru_maxrss`, TensorFlow's own
memory and the weights included) after importing TensorFlow and Keras,
after building the model, and after the forward, in GB. Memory does not
depend on the machine's load, so this runs anywhere; the issue's target
is <= 1.5 GB for the forward. `--self-attends` (default 24, the preset)
only changes the latent Transformer's depth (weights and FLOPs), not the
per-pixel activations.

TensorFlow's `tf.lite` module imports JAX when it is installed (this
project's test environment has it for the JAX backend), which adds ~0.10 GB
to TensorFlow's own memory. By default the benchmark makes `jax`
unimportable before importing TensorFlow, as in an install without JAX, so
the baseline is TensorFlow's own (~0.62 GB here, the issue's ~0.63 GB);
`--allow-jax` measures with it loaded.
"""

import argparse
import json
import os
import resource
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def peak_rss_gb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--self-attends", type=int, default=24)
    parser.add_argument("--image", type=int, nargs=2, default=(368, 496))
    parser.add_argument("--allow-jax", action="store_true",
                        help="let TensorFlow import JAX if installed (+~0.10 GB)")
    args = parser.parse_args(argv)
    if not args.allow_jax:
        sys.modules["jax"] = None  # `import jax` raises ImportError; tf.lite then skips it
    import numpy as np
    import tensorflow as tf

    import keras_perceiver

    result = {"jax_loaded": "jax" in sys.modules and sys.modules["jax"] is not None,
              "rss_after_import_gb": peak_rss_gb()}
    model = keras_perceiver.models.PerceiverOpticalFlow(
        image_shape=tuple(args.image), num_self_attends_per_block=args.self_attends,
        fourier_rounding="deepmind")
    frames = np.random.default_rng(0).uniform(
        -1, 1, size=(1, 2) + tuple(args.image) + (3,)).astype("float32")
    result["params"] = int(model.count_params())
    result["rss_after_build_gb"] = peak_rss_gb()
    forward = tf.function(lambda x: model(x, training=False))
    start = time.perf_counter()
    flow = forward(tf.constant(frames)).numpy()
    result["seconds_first_call"] = time.perf_counter() - start
    result["finite"] = bool(np.isfinite(flow).all())
    result["peak_rss_gb"] = peak_rss_gb()
    result["loadavg"] = os.getloadavg()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
