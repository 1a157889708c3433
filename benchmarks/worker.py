"""One benchmark measurement in a fresh process; prints one JSON line.

`python -m benchmarks.worker '<json spec>'`, spec keys: role ("prepare",
"keras", "transformers", "matmul", "matmul_torch"), workload, quick, batch, mode ("forward" or
"train"), remat, jit (ours: XLA, `jit_compile=True`), dir (where "prepare"
saved both frameworks' weights), repeats. Peak RSS is this process's
`ru_maxrss` (everything it loaded); `first_seconds` is the warm-up call's
time (tracing and, with `jit`, XLA compilation). `jax` is made unimportable
first: TensorFlow's `tf.lite` imports it when it is installed (+~0.10 GB
that is not TensorFlow's own nor the model's; see `benchmarks.flow_memory`).
"""

import json
import os
import resource
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def peak_rss_gb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def timed(fn, repeats, result=None):
    """Best of `repeats` timed calls after one warm-up (tracing, compilation,
    allocation), whose time goes to `result["first_seconds"]` when given."""
    start = time.perf_counter()
    fn()
    if result is not None:
        result["first_seconds"] = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def prepare(spec):
    """Random transformers model (seeded) -> save_pretrained + our converted preset."""
    import torch
    import transformers

    from benchmarks.workloads import workload
    from keras_perceiver import convert

    w = workload(spec["workload"], spec["quick"])
    torch.manual_seed(0)
    model = getattr(transformers, w["cls"])(transformers.PerceiverConfig(**w["config"])).eval()
    model.save_pretrained(os.path.join(spec["dir"], "transformers"))
    convert.from_transformers(model).save_to_preset(os.path.join(spec["dir"], "keras"))
    return {"params": sum(p.numel() for p in model.parameters())}


def keras_forward(name, model, spec):
    """The forward measured: the model, or one multimodal decode chunk."""
    if name != "multimodal":
        return lambda t: model(t, training=False)
    from benchmarks.workloads import multimodal_points

    w = _workload(spec)
    points = multimodal_points(w["config"], w["chunks"])
    return lambda t: model.decode_points(t, points)


def _workload(spec):
    from benchmarks.workloads import workload

    return workload(spec["workload"], spec["quick"])


def keras_flops(forward, x):
    """Float ops of one forward (TF graph profiler: matmuls, convs; 2 per MAC)."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    fn = tf.function(forward)
    concrete = fn.get_concrete_function(
        tf.nest.map_structure(lambda a: tf.TensorSpec(a.shape, a.dtype), x))
    graph = convert_variables_to_constants_v2(concrete).graph
    opts = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    opts["output"] = "none"
    info = tf.compat.v1.profiler.profile(graph=graph, options=opts)
    return float(info.total_float_ops)


def run_keras(spec):
    import keras

    from benchmarks.workloads import inputs
    from benchmarks.workloads import train_labels
    from benchmarks.workloads import workload
    from keras_perceiver.models.task import PerceiverTask

    w = workload(spec["workload"], spec["quick"])
    overrides = {"remat": True} if spec.get("remat") else {}
    model = PerceiverTask.from_preset(os.path.join(spec["dir"], "keras"), **overrides)
    x = inputs(spec["workload"], w["config"], spec["batch"], "keras")
    result = {}
    if spec["mode"] == "forward":
        import tensorflow as tf

        forward = keras_forward(spec["workload"], model, spec)
        call = tf.function(forward, jit_compile=bool(spec.get("jit")))
        result["seconds"] = timed(lambda: tf.nest.map_structure(lambda t: t.numpy(), call(x)),
                                  spec["repeats"], result)
        result["peak_rss_gb"] = peak_rss_gb()
    else:
        y = train_labels(spec["workload"], w["config"], spec["batch"])
        model.compile(optimizer=keras.optimizers.AdamW(1e-4),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      jit_compile=True if spec.get("jit") else "auto")
        result["seconds"] = timed(lambda: model.train_on_batch(x, y), spec["repeats"], result)
        result["peak_rss_gb"] = peak_rss_gb()
    return result


def run_transformers(spec):
    import torch
    import transformers

    from benchmarks.workloads import inputs
    from benchmarks.workloads import train_labels
    from benchmarks.workloads import workload

    torch.set_num_threads(os.cpu_count())
    w = workload(spec["workload"], spec["quick"])
    model = getattr(transformers, w["cls"]).from_pretrained(os.path.join(spec["dir"], "transformers"))
    x = {k: (torch.from_numpy(v) if not isinstance(v, dict) else
             {m: torch.from_numpy(a) for m, a in v.items()})
         for k, v in inputs(spec["workload"], w["config"], spec["batch"],
                                                    "transformers").items()}
    kwargs = {}
    if spec["workload"] == "multimodal":
        from benchmarks.workloads import multimodal_points

        points = multimodal_points(w["config"], w["chunks"])
        kwargs["subsampled_output_points"] = {
            "image": torch.from_numpy(points["image"]).long(),
            "audio": torch.from_numpy(points["audio"]).long(), "label": None}
    if spec["mode"] == "forward":
        model.eval()

        def step():
            with torch.no_grad():
                logits = model(**x, **kwargs).logits
                return {k: v.numpy() for k, v in logits.items()} if isinstance(logits, dict) else logits.numpy()
    else:
        model.train()
        if spec.get("remat"):
            return {"skipped": "transformers' Perceiver has no gradient checkpointing",
                    "flops": 3 * torch_flops(model, x, kwargs)}
        labels = torch.from_numpy(train_labels(spec["workload"], w["config"], spec["batch"]).astype("int64"))
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step():
            optimizer.zero_grad()
            logits = model(**x).logits
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
            loss.backward()
            optimizer.step()
    seconds = timed(step, spec["repeats"])
    result = {"seconds": seconds, "peak_rss_gb": peak_rss_gb()}  # before the profiled forward
    result["flops"] = (1 if spec["mode"] == "forward" else 3) * torch_flops(model, x, kwargs)
    return result


def torch_flops(model, x, kwargs):
    """Float ops of one transformers forward (PyTorch's profiler; 2 per MAC).

    The model FLOPs of both frameworks (the same architecture and sizes;
    our conv stem pads as DeepMind's, 3136 tokens against transformers'
    3025, ~1% more work for ours): transformers runs every matmul once,
    with no loop, so its profiler sees them all, where TensorFlow's graph
    profiler counts a chunk loop's body once. One forward: the callers
    count a training step as 3.
    """
    import torch

    with torch.no_grad(), torch.profiler.profile(with_flops=True) as prof:
        model(**x, **kwargs)
    return float(sum(event.flops or 0 for event in prof.key_averages()))


def torch_matmul_rate(spec):
    """fp32 GFLOP/s of the same square matmul on PyTorch (transformers' backend)."""
    import numpy as np
    import torch

    torch.set_num_threads(os.cpu_count())
    n = 512 if spec["quick"] else 2048
    a = torch.from_numpy(np.random.default_rng(0).normal(size=(n, n)).astype("float32"))
    seconds = timed(lambda: torch.matmul(a, a).sum().item(), 3 if spec["quick"] else 5)
    return {"gflops": 2 * n**3 / seconds / 1e9}


def matmul_rate(spec):
    """fp32 GFLOP/s of a square matmul on TensorFlow (the roofline)."""
    import numpy as np
    import tensorflow as tf

    n = 512 if spec["quick"] else 2048
    a = tf.constant(np.random.default_rng(0).normal(size=(n, n)).astype("float32"))
    fn = tf.function(lambda: tf.reduce_sum(tf.matmul(a, a)))
    seconds = timed(lambda: fn().numpy(), 3 if spec["quick"] else 5)
    return {"gflops": 2 * n**3 / seconds / 1e9}


ROLES = {"prepare": prepare, "keras": run_keras, "transformers": run_transformers,
         "matmul": matmul_rate, "matmul_torch": torch_matmul_rate}

if __name__ == "__main__":
    sys.modules["jax"] = None  # `import jax` raises ImportError; tf.lite then skips it
    spec = json.loads(sys.argv[1])
    print(json.dumps(ROLES[spec["role"]](spec)))
