"""Serving signatures declare their input shapes in the SignatureDef.

The shapes are read back in a fresh process (no keras) with the v1 loader, as
TF Serving's model-metadata API reports them, and from `saved_model_cli`.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import tensorflow as tf

import keras_perceiver
import keras_perceiver.export as export

import serving  # tests/export/serving.py

READ_SHAPES = """
import json, sys
sys.modules["keras"] = None
sys.modules["keras_perceiver"] = None
import tensorflow as tf
result = {}
for path in sys.argv[1:]:
    with tf.compat.v1.Session(graph=tf.Graph()) as sess:
        meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], path)
    result[path] = {
        name: {k: [tf.dtypes.as_dtype(t.dtype).name,
                   None if t.tensor_shape.unknown_rank else [d.size for d in t.tensor_shape.dim]]
               for k, t in sig.inputs.items()}
        for name, sig in meta.signature_def.items() if name != "__saved_model_init_op"
    }
print(json.dumps(result))
"""

M = keras_perceiver.models
TINY = dict(num_latents=4, num_self_attends_per_block=1, num_self_attention_heads=2)


def _read_shapes(paths):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-c", READ_SHAPES, *paths],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _models():
    keras.utils.set_random_seed(0)
    x = keras.Input((5, 3), name="points")
    return {
        "generic": keras.Model(x, keras.layers.Dense(2, name="scores")(x)),
        "image": M.PerceiverImageClassifier(
            num_classes=7, image_shape=(8, 8, 3), num_bands=2, num_latent_channels=16, num_blocks=1,
            **TINY),
        "mlm": M.PerceiverMaskedLM(
            max_length=12, d_model=8, num_latent_channels=16, num_cross_attention_heads=2,
            qk_channels=8, v_channels=16, decoder_num_heads=2, decoder_qk_channels=8, **TINY),
        "text": M.PerceiverTextClassifier(
            tasks={"sst2": 2}, max_length=12, d_model=8, num_latent_channels=16,
            num_cross_attention_heads=2, qk_channels=8, v_channels=16, **TINY),
        "flow": M.PerceiverOpticalFlow(
            image_shape=(6, 8), num_latent_channels=16, num_patch_channels=8, num_bands=2,
            **TINY),
        "multimodal": M.PerceiverMultimodalAutoencoder(
            num_frames=2, image_size=8, audio_samples=32, samples_per_patch=4,
            num_classes=5, image_num_bands=2, audio_num_bands=3, num_latent_channels=8,
            label_query_channels=6, decoder_channels=8, **TINY),
    }


EXPECTED = {
    "generic": {"serving_default": {"points": ["float32", [-1, 5, 3]]}},
    "image": {"serving_default": {"images": ["uint8", [-1, -1, -1, 3]]},
              "normalized": {"images": ["float32", [-1, 8, 8, 3]]}},
    "mlm": {"serving_default": {"text": ["string", [-1]]},
            "token_ids": {"token_ids": ["int32", [-1, -1]]}},
    "text": {"serving_default": {"text": ["string", [-1]]},
             "token_ids": {"token_ids": ["int32", [-1, -1]]}},
    "flow": {"serving_default": {"frames": ["uint8", [-1, 2, 6, 8, 3]]},
             "normalized": {"frames": ["float32", [-1, 2, 6, 8, 3]]}},
    "multimodal": {"serving_default": {"image": ["float32", [-1, 2, 8, 8, 3]],
                                       "audio": ["float32", [-1, 32, 1]],
                                       "label": ["float32", [-1, 5]]}},
}


def test_every_task_declares_its_input_shapes():
    """The declared shapes of each task's signatures (what export writes)."""
    for kind, model in _models().items():
        declared = {
            name: {k: [tf.as_dtype(dtype).name, [-1 if d is None else d for d in s.shapes[k]]]
                   for k, dtype in s.inputs}
            for name, s in export.serving_signatures(model).items()
        }
        assert declared == EXPECTED[kind], kind


def test_signature_defs_declare_input_shapes(tmp_path):
    """Exported SignatureDefs carry the shapes; the graph still takes any shape."""
    models = _models()
    kinds = ("generic", "image", "mlm")
    paths = {k: export.export_saved_model(models[k], str(tmp_path / k)) for k in kinds}
    shapes = _read_shapes(list(paths.values()))
    for kind, path in paths.items():
        assert shapes[path] == EXPECTED[kind], kind
    # What a TF Serving client sees with `saved_model_cli show`.
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    out = subprocess.run([cli, "show", "--all", "--dir", paths["image"]], capture_output=True,
                         text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert out.returncode == 0, out.stderr[-2000:]
    signature_defs = out.stdout.split("Concrete Functions")[0]
    assert "shape: (-1, -1, -1, 3)" in signature_defs
    assert "shape: (-1, 8, 8, 3)" in signature_defs
    # The traced graph is unchanged: a wrong rank reaches the in-graph check
    # (its message), not a shape error of the SignatureDef.
    good = np.zeros((2, 8, 8, 3), "uint8")
    responses = serving.serve_fresh([
        (paths["image"], "serving_default", {"images": good}),
        (paths["image"], "serving_default", {"images": good[..., 0]}),
    ])
    assert responses[0]["session"]["logits"].shape == (2, 7)
    for key in ("session_error", "function_error", "endpoint_error"):
        assert "input `images` must have shape [?, ?, ?, 3]" in responses[1][key]
