"""`make demo`: train a Perceiver on scikit-learn's digits, export, serve.

1. Trains a small `PerceiverImageClassifier` (pixels + 2-D Fourier features)
   with `model.fit` on the 8x8 digits bundled with scikit-learn (75/25
   stratified split, fixed seed) and prints its test accuracy.
2. Exports a SavedModel (TF Serving layout, `saved_models/digits_perceiver/<v>/`)
   whose `serving_default` signature takes raw `uint8` images, and a LiteRT
   file `saved_models/digits_perceiver/digits_perceiver.tflite`.
3. Serves the SavedModel in a fresh Python process in which `keras` and
   `keras_perceiver` cannot be imported (TF Serving's path: the v1 loader
   and a session run of the SignatureDef by tensor names), and prints the
   served accuracy beside the Keras accuracy.

Run with `make demo` (or `KERAS_BACKEND=tensorflow python applications/digits_demo.py`).
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

import keras_perceiver  # noqa: E402
import keras_perceiver.export  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUTPUT = os.path.join(ROOT, "saved_models", "digits_perceiver")
SEED = 0
# uint8 images: digits are 0..16, times 15 -> 0..240; the model sees (x - 120) / 120.
PREPROCESSING = {"mode": "resize", "mean": 120.0, "std": 120.0}
CONFIG = dict(
    num_classes=10, image_shape=(8, 8, 1), prep_type="fourier", num_bands=8,
    num_latents=16, d_latents=64, num_blocks=1, num_self_attends_per_block=2,
    num_self_attention_heads=4, num_cross_attention_heads=4, qk_channels=64,
    v_channels=64, dropout=0.1,
)
EPOCHS = 16
BATCH = 32
VERBOSE = 2

SERVE = r'''
import sys
sys.modules["keras"] = None            # nothing from keras ...
sys.modules["keras_perceiver"] = None  # ... or from this package
import numpy as np
import tensorflow as tf
export_dir, data = sys.argv[1], np.load(sys.argv[2])
with tf.compat.v1.Session(graph=tf.Graph()) as sess:
    meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], export_dir)
    sig = meta.signature_def["serving_default"]
    classes = sess.run(sig.outputs["top_5_classes"].name,
                       {sig.inputs["images"].name: data["images"]})[:, 0]
print(float(np.mean(classes == data["labels"])))
'''


def load_data():
    digits = load_digits()
    images = (digits.images * 15).astype("uint8")[..., None]  # [N, 8, 8, 1]
    return train_test_split(images, digits.target, test_size=0.25,
                            random_state=SEED, stratify=digits.target)


def normalise(images):
    return (images.astype("float32") - PREPROCESSING["mean"]) / PREPROCESSING["std"]


def augment(images, labels, copies, rng):
    """The originals plus `copies` versions shifted by up to one pixel."""
    out, out_labels = [images], [labels]
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)))
    for _ in range(copies):
        dy, dx = rng.integers(0, 3, size=(2, len(images)))
        out.append(np.stack([p[y:y + 8, x:x + 8] for p, y, x in zip(padded, dy, dx)]))
        out_labels.append(labels)
    return np.concatenate(out), np.concatenate(out_labels)


def train(x_train, y_train):
    keras.utils.set_random_seed(SEED)
    model = keras_perceiver.models.PerceiverImageClassifier(**CONFIG, name="digits_perceiver")
    x, y = augment(x_train, y_train, copies=2, rng=np.random.default_rng(SEED))
    steps = EPOCHS * int(np.ceil(len(x) / BATCH))
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, steps, warmup_target=2e-3, warmup_steps=steps // 10)
    model.compile(
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=1e-4),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        jit_compile=False,
    )
    model.fit(normalise(x), y, batch_size=BATCH, epochs=EPOCHS, shuffle=True, verbose=VERBOSE)
    return model


def serve_in_fresh_process(export_dir, images, labels):
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "request.npz")
        np.savez(data, images=images, labels=labels)
        out = subprocess.run([sys.executable, "-c", SERVE, export_dir, data],
                             capture_output=True, text=True, check=False)
    if out.returncode:
        raise RuntimeError(f"serving failed:\n{out.stderr[-3000:]}")
    return float(out.stdout.strip().splitlines()[-1])


def main():
    start = time.time()
    x_train, x_test, y_train, y_test = load_data()
    print(f"digits: {len(x_train)} train / {len(x_test)} test images (8x8, seed {SEED})")
    model = train(x_train, y_train)
    logits = keras.ops.convert_to_numpy(model.predict(normalise(x_test), verbose=0))
    keras_accuracy = float(np.mean(logits.argmax(-1) == y_test))
    print(f"Keras test accuracy: {keras_accuracy:.4f}")

    export_dir = keras_perceiver.export.export_saved_model(
        model, OUTPUT, image_preprocessing=PREPROCESSING)
    tflite = keras_perceiver.export.export_litert(
        model, os.path.join(OUTPUT, "digits_perceiver.tflite"))
    print(f"SavedModel: {export_dir}")
    print(f"LiteRT:     {tflite} ({os.path.getsize(tflite) / 1024:.0f} KiB)")
    with open(os.path.join(OUTPUT, "preprocessing.json"), "w") as f:
        json.dump(PREPROCESSING, f)

    served_accuracy = serve_in_fresh_process(export_dir, x_test, y_test)
    print("Served through the SavedModel's serving_default signature in a fresh "
          "process without keras / keras_perceiver (tf.compat.v1 loader + session):")
    print(f"Keras test accuracy:  {keras_accuracy:.4f}")
    print(f"Served test accuracy: {served_accuracy:.4f}  "
          f"({'equal' if served_accuracy == keras_accuracy else 'DIFFERENT'})")
    print(f"done in {time.time() - start:.0f} s")
    if keras_accuracy < 0.97 or served_accuracy != keras_accuracy:
        sys.exit("demo failed: accuracy below 97% or served != Keras")


if __name__ == "__main__":
    main()
