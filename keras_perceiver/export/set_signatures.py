"""`PerceiverSetModel` serving: the SavedModel signature (`entities`, `mask`,
dynamic N) and a LiteRT file (`export_set_litert`, fixed N)."""

import os
import tempfile

import keras
import tensorflow as tf

from keras_perceiver import files
from keras_perceiver.export.preprocessing import check_input


def _outputs(model, entities, mask):
    """The named outputs of both formats: `entity_logits`, `entity_probabilities`
    (0 when padded), `entity_class` (-1 when padded), and `set_*` if any."""
    outputs = model({"entities": entities, "mask": mask}, training=False)
    if not isinstance(outputs, dict):
        outputs = {"entity_logits": outputs}
    real = mask[:, :, None]
    probabilities = tf.where(real, tf.nn.softmax(outputs["entity_logits"], -1), 0.0)
    classes = tf.argmax(outputs["entity_logits"], axis=-1, output_type=tf.int32)
    result = {
        "entity_logits": outputs["entity_logits"],
        "entity_probabilities": probabilities,
        "entity_class": tf.where(mask, classes, -1),
    }
    if "set_logits" in outputs:
        result["set_logits"] = outputs["set_logits"]
        result["set_probabilities"] = tf.nn.softmax(outputs["set_logits"], -1)
        result["set_class"] = tf.argmax(outputs["set_logits"], -1, output_type=tf.int32)
    return result


def set_model_signatures(model, **_):
    """`serving_default`: `entities` float32 `[B, N, F]`, `mask` bool `[B, N]`, `N <= max`.

    Outputs `entity_logits` `[B, N, K]`, `entity_probabilities` (zero for
    padded entities) and `entity_class` int32 (-1 for padded entities), plus
    `set_logits`, `set_probabilities`, `set_class` for a set-level output.
    """
    from keras_perceiver.export.signatures import Signature

    config = model.get_config()
    features, max_entities = config["num_features"], config["max_entities"]

    def serve(entities, mask):
        entities = check_input(entities, "entities", (None, None, features),
                               f" (float32 [batch, N <= {max_entities}, {features}])")
        mask = check_input(mask, "mask", (None, None), " (bool [batch, N], True = real)")
        checks = [
            tf.debugging.assert_equal(
                tf.shape(mask), tf.shape(entities)[:2],
                message="input `mask` must have the shape [batch, N] of `entities`."),
            tf.debugging.assert_less_equal(
                tf.shape(entities)[1], max_entities,
                message=f"input `entities` must hold at most {max_entities} entities (N)."),
        ]
        with tf.control_dependencies(checks):
            entities, mask = tf.identity(entities), tf.identity(mask)
        return _outputs(model, entities, mask)

    return {
        "serving_default": Signature(
            serve, [("entities", tf.float32, (None, None, features)),
                    ("mask", tf.bool, (None, None))],
            f"entities: float32 [batch, N <= {max_entities}, {features}], mask: bool "
            "[batch, N] -> entity_logits, entity_probabilities, entity_class (-1 if padded)",
        ),
    }


def export_set_litert(model, path, num_entities=None, quantization=None, overwrite=False):
    """Writes a `PerceiverSetModel` as a LiteRT file of fixed set length.

    The file's `serving_default` takes `entities` float32 `[B, num_entities,
    F]` and `mask` bool `[B, num_entities]` (True = real entity; pad smaller
    sets to `num_entities` with `mask` False, any features) and returns the
    SavedModel signature's outputs: `entity_logits`, `entity_probabilities`
    (0 when padded), `entity_class` int32 (-1 when padded), plus `set_logits`,
    `set_probabilities`, `set_class` with a set-level output. LiteRT files
    hold one static set length (the batch stays dynamic), builtin ops only.

    Args:
        model: a `PerceiverSetModel` (TensorFlow backend).
        path: output file, ending in `.tflite` (not replaced unless
            `overwrite`; written aside and renamed into place).
        num_entities: the set length `N` of the file (default: the model's
            `max_entities`; at most that).
        quantization: None (float32), `"float16"` or `"dynamic_int8"` weights.
        overwrite: replace an existing file at `path`.

    Returns:
        `path`.

    Example:
    >>> import os, tempfile
    >>> from keras_perceiver.export.set_signatures import export_set_litert
    >>> model = keras_perceiver.models.PerceiverSetModel(
    ...     num_features=2, num_classes=3, max_entities=16, num_latents=4,
    ...     num_latent_channels=8, num_self_attends_per_block=1, num_self_attention_heads=2)
    >>> path = os.path.join(tempfile.mkdtemp(), "set.tflite")
    >>> export_set_litert(model, path, num_entities=8) == path
    True
    """
    from keras_perceiver.export.litert import _convert
    from keras_perceiver.export.saved_model import check_backend

    check_backend("export_set_litert")
    path = os.fspath(path)
    if type(model).__name__ != "PerceiverSetModel":
        raise ValueError(f"export_set_litert: expected a PerceiverSetModel, received a "
                         f"{type(model).__name__} (use keras_perceiver.export.export_litert).")
    if not path.endswith(".tflite"):
        raise ValueError(f"export_set_litert: path must end with '.tflite', got {path!r}.")
    if quantization not in (None, "float16", "dynamic_int8"):
        raise ValueError("export_set_litert: quantization must be None, 'float16' or "
                         f"'dynamic_int8', got {quantization!r}.")
    n = model.max_entities if num_entities is None else num_entities
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= model.max_entities:
        raise ValueError(f"export_set_litert: num_entities must be an int in [1, "
                         f"max_entities={model.max_entities}], got {num_entities!r}.")
    files.check_new_file(path, overwrite, "export_set_litert")
    specs = [tf.TensorSpec((None, n, model.num_features), tf.float32, name="entities"),
             tf.TensorSpec((None, n), tf.bool, name="mask")]
    serve = tf.function(lambda entities, mask: _outputs(model, entities, mask),
                        input_signature=specs, autograph=False)
    with tempfile.TemporaryDirectory() as tmp:
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint("serving_default", serve)
        archive.write_out(tmp, verbose=False)
        flatbuffer = _convert(tmp, quantization, None, [tf.lite.OpsSet.TFLITE_BUILTINS])
    files.write_bytes_aside(path, flatbuffer, "export_set_litert")
    return path
