"""GPU benchmark: bf16 mixed precision + XLA, one table, < 5 minutes.

`python -m benchmarks.gpu [--tiny]` measures on the default device:
1. masked-LM training throughput (bytes/s) and model-FLOPs utilisation
   (MFU = model FLOPs per second / the bf16 matmul rate measured here, or
   `--peak-tflops` if given, e.g. 989 for an H100/H200 SXM dense bf16);
2. optical-flow forward at batch 8 (368x496), frames/s.
Random weights (speed does not depend on them). `--tiny` shrinks both models
so the script runs on a CPU in a minute (a smoke test of the script itself).
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def best_time(fn, repeats):
    fn()
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def bf16_matmul_tflops(n):
    import tensorflow as tf

    a = tf.random.normal((n, n), dtype=tf.bfloat16)
    fn = tf.function(lambda: tf.reduce_sum(tf.cast(tf.matmul(a, a), tf.float32)), jit_compile=True)
    return 2 * n**3 / best_time(lambda: fn().numpy(), 5) / 1e12


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny models (CPU smoke test)")
    parser.add_argument("--batch", type=int, default=None, help="MLM training batch (default 64)")
    parser.add_argument("--peak-tflops", type=float, default=None)
    args = parser.parse_args(argv)

    import keras
    import numpy as np
    import tensorflow as tf

    from benchmarks.worker import keras_flops
    from keras_perceiver.models import PerceiverMaskedLM
    from keras_perceiver.models import PerceiverOpticalFlow

    keras.config.set_dtype_policy("mixed_bfloat16")
    device = tf.config.list_logical_devices("GPU")
    device = device[0].name if device else "CPU"
    rng = np.random.default_rng(0)
    rows = []

    if args.tiny:
        mlm_args = dict(max_length=128, d_model=32, num_latents=16, num_latent_channels=64,
                        num_self_attends_per_block=2, num_self_attention_heads=2,
                        num_cross_attention_heads=2, qk_channels=32, v_channels=64,
                        decoder_num_heads=2, decoder_qk_channels=32)
        flow_args = dict(image_shape=(24, 32), num_latents=16, num_latent_channels=32,
                         num_self_attends_per_block=2, num_self_attention_heads=2)
        batch, repeats, matmul_n = args.batch or 4, 2, 256
    else:
        mlm_args, flow_args = {}, {}
        batch, repeats, matmul_n = args.batch or 64, 5, 8192
    peak = args.peak_tflops or bf16_matmul_tflops(matmul_n)
    rows.append(("bf16 matmul rate", f"{peak:.1f} TFLOP/s" + ("" if args.peak_tflops else " (measured)")))

    mlm = PerceiverMaskedLM(**mlm_args)
    length = mlm.get_config()["max_length"]
    ids = rng.integers(6, 262, size=(batch, length)).astype("int32")
    labels = rng.integers(6, 262, size=(batch, length)).astype("int32")
    mlm.compile(optimizer=keras.optimizers.AdamW(1e-4), jit_compile=True,
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    step = best_time(lambda: mlm.train_on_batch(ids, labels), repeats)
    flops = 3 * keras_flops(mlm, ids)
    rows.append((f"MLM train step, batch {batch} x {length} bytes", f"{step * 1e3:.1f} ms"))
    rows.append(("MLM training throughput", f"{batch * length / step:,.0f} bytes/s"))
    rows.append(("MLM model FLOPs per step", f"{flops / 1e12:.2f} TFLOP"))
    rows.append(("MLM MFU", f"{100 * flops / step / 1e12 / peak:.1f}%"))

    flow = PerceiverOpticalFlow(**flow_args)
    h, w = flow.get_config()["image_shape"]
    frames = rng.uniform(-1, 1, size=(8, 2, h, w, 3)).astype("float32")
    forward = tf.function(lambda x: flow(x, training=False), jit_compile=True)
    seconds = best_time(lambda: forward(frames).numpy(), repeats)
    rows.append((f"flow forward, batch 8, {h}x{w}", f"{seconds * 1e3:.1f} ms ({8 / seconds:.1f} pairs/s)"))

    print(f"\n| {device}, bf16 mixed precision, XLA | |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
