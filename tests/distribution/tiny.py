"""The tiny model, data and training run every distribution test compares.

Backend-agnostic; imported by the pytest process and by the worker scripts
(`python -m tests.distribution.<script>` with the worktree on PYTHONPATH).
"""

import json
import os
import socket
import subprocess
import sys
import time

import keras
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = dict(
    num_classes=3, image_shape=(4, 4, 3), prep_type="learned", prep_channels=4,
    position_channels=4, project_pos_dim=4, num_latents=4, num_latent_channels=8, num_blocks=1,
    num_self_attends_per_block=1, num_self_attention_heads=2, num_cross_attention_heads=1,
    dropout=0.0, attention_dropout=0.0,
)
GLOBAL_BATCH = 8
STEPS = 3


def make_model():
    import keras_perceiver

    return keras_perceiver.models.PerceiverImageClassifier(**CONFIG)


def set_initial_weights(model):
    """The same weights for every run, whatever the initialisers do under a strategy."""
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(0.0, 0.3, tuple(w.shape)).astype("float32") for w in model.weights])


def data():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(GLOBAL_BATCH * STEPS,) + CONFIG["image_shape"]).astype("float32")
    y = rng.integers(0, CONFIG["num_classes"], size=(GLOBAL_BATCH * STEPS,)).astype("int32")
    return x, y


def compile_model(model):
    model.compile(
        optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )


class StepLosses(keras.callbacks.Callback):
    """Records the running-mean loss after each training step."""

    def __init__(self):
        super().__init__()
        self.losses = []

    def on_train_batch_end(self, batch, logs=None):
        self.losses.append(float(logs["loss"]))


def fit(model, inputs, labels=None):
    """Trains one epoch (STEPS steps of GLOBAL_BATCH); returns the step losses."""
    callback = StepLosses()
    if labels is None:
        model.fit(inputs, epochs=1, verbose=0, callbacks=[callback])
    else:
        model.fit(inputs, labels, batch_size=GLOBAL_BATCH, epochs=1, shuffle=False,
                  verbose=0, callbacks=[callback])
    return np.asarray(callback.losses, "float64")


def weights(model):
    return {w.path: np.asarray(w.numpy() if hasattr(w, "numpy") else w.value, "float32")
            for w in model.weights}


def reference_run():
    """Single-device training: (step losses, {path: weight}, logits on the data)."""
    x, y = data()
    model = make_model()
    set_initial_weights(model)
    compile_model(model)
    losses = fit(model, x, y)
    return losses, weights(model), np.asarray(model.predict(x, verbose=0))


def run_script(module, out_dir, backend, env=None, timeout=900):
    """Runs `python -m tests.distribution.<module> out_dir` with this worktree's
    code; returns the results it saved to `out_dir/results.npz`."""
    full_env = dict(os.environ, PYTHONPATH=ROOT, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    full_env.update(env or {})
    done = subprocess.run(
        [sys.executable, "-m", f"tests.distribution.{module}", str(out_dir)],
        cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout,
    )
    assert done.returncode == 0, f"{module} failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return load(out_dir)


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def run_processes(module, out_dirs, envs, args=(), timeout=900):
    """Runs `python -m tests.distribution.<module> out_dir *args` once per
    `(out_dir, env)` at the same time; kills all if one fails (the others
    would wait for it) or on timeout. Returns each one's saved results."""
    procs, logs = [], []
    try:
        for out_dir, env, extra in zip(out_dirs, envs, args or [()] * len(out_dirs)):
            full_env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3", **env)
            logs.append(open(os.path.join(out_dir, "log.txt"), "w"))
            procs.append(subprocess.Popen(
                [sys.executable, "-m", f"tests.distribution.{module}", str(out_dir), *extra],
                cwd=ROOT, env=full_env, stdout=logs[-1], stderr=subprocess.STDOUT,
            ))
        deadline = time.monotonic() + timeout
        while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
            if any(p.poll() not in (None, 0) for p in procs):
                break
            time.sleep(0.5)
        for proc, out_dir in zip(procs, out_dirs):
            with open(os.path.join(out_dir, "log.txt")) as f:
                assert proc.poll() == 0, f"{module} failed or timed out:\n{f.read()[-5000:]}"
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for log in logs:
            log.close()
    return [load(out_dir) for out_dir in out_dirs]


def save(out_dir, arrays, info=None):
    np.savez(os.path.join(out_dir, "results.npz"), **arrays)
    with open(os.path.join(out_dir, "info.json"), "w") as f:
        json.dump(info or {}, f)


def load(out_dir):
    with np.load(os.path.join(out_dir, "results.npz")) as f:
        arrays = dict(f)
    with open(os.path.join(out_dir, "info.json")) as f:
        return arrays, json.load(f)
