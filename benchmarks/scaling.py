"""Scaling in the input size M and the output size O at fixed latents.

`python -m benchmarks.scaling '<json spec>'` measures one point in a fresh
process and prints one JSON line: forward seconds and peak RSS of a Perceiver
encoder (cross-attention of M inputs into `num_latents` latents + latent
self-attention), of a Perceiver decoder (cross-attention of O output queries
into the latents: `spec["inputs"]` is O there), or of a plain Transformer
encoder layer of the same width over all M tokens (its attention is M x M:
quadratic).
"""

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from benchmarks.worker import peak_rss_gb  # noqa: E402


def measure(spec):
    import tensorflow as tf

    from keras_perceiver.layers import CrossAttention
    from keras_perceiver.layers import PerceiverEncoder
    from keras_perceiver.layers import SelfAttention

    m, width = spec["inputs"], spec["width"]
    # A tensor, as a server holds its input (converting a NumPy argument at
    # every call would add a copy that is not the model's).
    x = tf.random.stateless_normal((1, m, width), seed=(0, 0))
    # Drawing the input briefly held more than the input; restart the peak so
    # that the working memory below counts the forward passes only.
    before_gb = reset_peak_rss_gb()  # the framework and the input itself
    if spec["model"] == "perceiver":
        layer = PerceiverEncoder(
            num_latents=spec["latents"], num_latent_channels=width,
            num_self_attends_per_block=spec["layers"], num_self_attention_heads=4,
            attention_memory_budget=spec.get("budget"),
        )
    elif spec["model"] == "decoder":
        # O queries into fixed latents (the latents are an input here).
        latents = tf.random.stateless_normal((1, spec["latents"], width), seed=(1, 0))
        attention = CrossAttention(num_heads=1, qk_channels=width, widening_factor=1,
                                   memory_budget=spec.get("budget"))

        def layer(queries):
            return attention(queries, latents)
    else:
        # A plain Transformer encoder over the M inputs: one-shot M x M logits
        # unless the memory budget chunks them (still quadratic time).
        layer = SelfAttention(num_heads=4, memory_budget=spec.get("budget"))
    fn = tf.function(lambda t: layer(t))
    start = time.perf_counter()
    fn(x).numpy()
    first = time.perf_counter() - start
    start, cpu_start = time.perf_counter(), time.process_time()
    fn(x).numpy()
    # CPU seconds (all threads) as well as wall seconds: on a shared machine
    # the wall time follows the other jobs' load, the CPU time much less.
    return {"seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu_start,
            "first_seconds": first, "peak_rss_gb": peak_rss_gb(), "input_gb": m * width * 4 / 2**30,
            # What the forward adds on top of the framework and its input.
            "working_gb": status_gb("VmHWM") - before_gb}


def status_gb(field):
    """A `/proc/self/status` memory field (VmRSS, VmHWM: the peak since the last reset)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 2**20  # kB
    raise KeyError(field)


def reset_peak_rss_gb():
    """Resets VmHWM to the current RSS (Linux `clear_refs` 5) and returns it."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return status_gb("VmRSS")


if __name__ == "__main__":
    print(json.dumps(measure(json.loads(sys.argv[1]))))
