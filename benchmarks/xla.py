"""XLA (`jit_compile`) on the TensorFlow backend: forward and train step.

`python -m benchmarks.xla [--quick]` times a mid-size image classifier
(64x64x3 Fourier, 256 latents x 256 channels, 6 self-attention layers,
batch 8) with and without `jit_compile`, each mode in its own process:
the forward (`predict_on_batch`) and one AdamW step (`train_on_batch`),
best of the timed repeats after a warm-up (compilation excluded, reported
separately). Prints one Markdown table.
"""

import argparse
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MID = dict(image_shape=(64, 64, 3), num_latents=256, num_latent_channels=256,
           num_blocks=1, num_self_attends_per_block=6, num_self_attention_heads=8,
           num_bands=16, batch=8, repeats=5)
QUICK = dict(image_shape=(16, 16, 3), num_latents=16, num_latent_channels=32,
             num_blocks=1, num_self_attends_per_block=2, num_self_attention_heads=2,
             num_bands=4, batch=2, repeats=2)


def measure(spec):
    import keras
    import numpy as np

    from keras_perceiver.models import PerceiverImageClassifier

    config = {k: v for k, v in spec.items() if k not in ("batch", "repeats", "jit", "mode")}
    keras.utils.set_random_seed(0)
    model = PerceiverImageClassifier(num_classes=10, **config)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(spec["batch"],) + tuple(spec["image_shape"])).astype("float32")
    y = rng.integers(0, 10, size=(spec["batch"],))
    model.compile(jit_compile=spec["jit"])
    step = {"forward": lambda: model.predict_on_batch(x),
            "train": lambda: model.train_on_batch(x, y)}[spec["mode"]]
    start = time.perf_counter()
    step()
    first = time.perf_counter() - start
    times = []
    for _ in range(spec["repeats"]):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return {"seconds": min(times), "first_seconds": first,
            "jit_compile": model.jit_compile, "load": os.getloadavg()[0]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny model")
    args = parser.parse_args(argv)
    base = QUICK if args.quick else MID
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    lines = ["| mode | jit_compile | step (s) | first call (s) | load avg |", "|---|---|---|---|---|"]
    for mode in ("forward", "train"):
        for jit in (False, True):
            spec = dict(base, mode=mode, jit=jit)
            out = subprocess.run([sys.executable, "-m", "benchmarks.xla", "--one", json.dumps(spec)],
                                 cwd=ROOT, env=env, capture_output=True, text=True)
            if out.returncode:
                lines.append(f"| {mode} | {jit} | error: {out.stderr.strip().splitlines()[-1][:100]} | | |")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            lines.append(f"| {mode} | {r['jit_compile']} | {r['seconds']:.3f} | "
                         f"{r['first_seconds']:.1f} | {r['load']:.1f} |")
    print("\n".join(lines))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        print(json.dumps(measure(json.loads(sys.argv[2]))))
    else:
        main()
