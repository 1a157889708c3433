"""GPU benchmark: bf16 mixed precision + XLA, one table, < 5 minutes.

`python -m benchmarks.gpu [--tiny]` measures on the default device of the
Keras backend (`KERAS_BACKEND`: `jax` compiles with XLA, `tensorflow` with
`jit_compile=True`; `torch` runs eagerly):
1. masked-LM training throughput (bytes/s) and model-FLOPs utilisation
   (MFU = model FLOPs per second / the bf16 matmul rate measured here, or
   `--peak-tflops` if given, e.g. 989 for an H100/H200 SXM dense bf16);
2. optical-flow forward at batch 8 (368x496), pairs/s, once with the default
   attention memory budget (chunked attention, 64 MiB of logits per example)
   and once with `--flow-budget` bytes (default 4 GiB: one-shot attention).
Model FLOPs: the forward's float ops (TensorFlow's graph profiler on
`tensorflow`, XLA's cost analysis on `jax`, PyTorch's FLOP counter on
`torch`), times 3 for a training step. Random weights (speed does not depend
on them). `--tiny` shrinks both models so the script runs on a CPU in a
minute (a smoke test of the script itself).
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


def _sync(x):
    """Waits for `x` (a tensor) by reading one element back."""
    import keras

    first = keras.ops.cast(keras.ops.reshape(x, (-1,))[:1], "float32")
    return float(keras.ops.convert_to_numpy(first)[0])


def bf16_matmul_tflops(n):
    import keras

    a = keras.random.normal((n, n), dtype="bfloat16", seed=0)
    return 2 * n**3 / best_time(lambda: _sync(keras.ops.matmul(a, a)), 5) / 1e12


def device_name():
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        return f"{device.platform.upper()} {getattr(device, 'device_kind', '')}".strip()
    if backend == "torch":
        import torch

        return f"GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "CPU"
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    return gpus[0].name if gpus else "CPU"


def forward_flops(model, x):
    """Float ops of one forward of `model` on `x` (see the module docstring)."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        def forward(trainable, non_trainable, x):
            return model.stateless_call(trainable, non_trainable, x, training=False)[0]

        weights = ([v.value for v in model.trainable_variables],
                   [v.value for v in model.non_trainable_variables])
        cost = jax.jit(forward).lower(*weights, x).cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        return float(cost["flops"])
    if backend == "torch":
        import torch
        from torch.utils.flop_counter import FlopCounterMode

        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(x, training=False)
        return float(counter.get_total_flops())
    from benchmarks.worker import keras_flops

    return keras_flops(lambda t: model(t, training=False), x)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny models (CPU smoke test)")
    parser.add_argument("--batch", type=int, default=None, help="MLM training batch (default 64)")
    parser.add_argument("--peak-tflops", type=float, default=None)
    parser.add_argument("--flow-budget", type=int, default=2**32,
                        help="attention_memory_budget (bytes of logits per example) of the "
                             "second flow row (default 4 GiB)")
    args = parser.parse_args(argv)

    import keras
    import numpy as np

    from keras_perceiver.models import PerceiverMaskedLM
    from keras_perceiver.models import PerceiverOpticalFlow

    keras.config.set_dtype_policy("mixed_bfloat16")
    backend = keras.backend.backend()
    jit = backend != "torch"
    rng = np.random.default_rng(0)
    rows = []

    def add(name, value):
        rows.append((name, value))
        print(f"{name}: {value}", flush=True)  # as measured, in case a later row fails

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
    add("bf16 matmul rate", f"{peak:.3g} TFLOP/s" + ("" if args.peak_tflops else " (measured)"))

    mlm = PerceiverMaskedLM(**mlm_args)
    length = mlm.get_config()["max_length"]
    ids = rng.integers(6, 262, size=(batch, length)).astype("int32")
    labels = rng.integers(6, 262, size=(batch, length)).astype("int32")
    mlm.compile(optimizer=keras.optimizers.AdamW(1e-4), jit_compile=jit,
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    start = time.perf_counter()
    mlm.train_on_batch(ids, labels)
    first = time.perf_counter() - start
    step = best_time(lambda: mlm.train_on_batch(ids, labels), repeats)
    flops = 3 * forward_flops(mlm, ids)
    add(f"MLM train step, batch {batch} x {length} bytes",
        f"{step * 1e3:.1f} ms (first call {first:.1f} s)")
    add("MLM training throughput", f"{batch * length / step:,.0f} bytes/s")
    add("MLM model FLOPs per step (3x forward)", f"{flops / 1e9:,.3f} GFLOP")
    add("MLM MFU", f"{100 * flops / step / 1e12 / peak:.1f}%")
    del mlm

    frames = None
    flow_flops = None
    for budget in (None, args.flow_budget):
        flow = PerceiverOpticalFlow(**flow_args, attention_memory_budget=budget)
        h, w = flow.get_config()["image_shape"]
        if frames is None:
            frames = rng.uniform(-1, 1, size=(8, 2, h, w, 3)).astype("float32")
        flow.compile(jit_compile=jit)
        start = time.perf_counter()
        _sync(flow.predict_on_batch(frames))
        first = time.perf_counter() - start
        seconds = best_time(lambda: _sync(flow.predict_on_batch(frames)), repeats)
        if budget is not None and backend != "tensorflow":
            # One-shot attention has no loop, whose body a cost analysis counts once.
            flow_flops = forward_flops(flow, frames)
        rate = "" if flow_flops is None else f", {flow_flops / seconds / 1e12:.0f} TFLOP/s"
        label = "default budget (chunked)" if budget is None else f"budget {budget / 2**30:g} GiB"
        add(f"flow forward, batch 8, {h}x{w}, {label}",
            f"{seconds * 1e3:.1f} ms ({8 / seconds:.1f} pairs/s{rate}; first call {first:.1f} s)")
        del flow

    print(f"\n| {device_name()}, Keras {keras.__version__} on {backend}, bf16 mixed precision"
          f"{', XLA' if jit else ''} | |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
