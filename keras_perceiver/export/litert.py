"""LiteRT (TFLite) export with optional float16 / int8 quantization."""

import os
import tempfile
import warnings

import keras
import numpy as np
import tensorflow as tf

from keras_perceiver import files
from keras_perceiver.export.saved_model import check_backend
from keras_perceiver.export.signatures import _call
from keras_perceiver.export.signatures import _named_outputs

QUANTIZATIONS = (None, "float16", "dynamic_int8", "int8")


def _token_length(model, sequence_length):
    """The static length of a text model's `[B, L]` token input (None: not a text model)."""
    ragged = [t for t in model.inputs if len(t.shape) == 2 and t.shape[1] is None
              and "int" in str(t.dtype)]
    max_length = None
    if hasattr(model, "get_config"):
        try:
            max_length = model.get_config().get("max_length")
        except NotImplementedError:
            max_length = None
    if sequence_length is None:
        return max_length if ragged else None
    if not ragged:
        raise ValueError(
            "export_litert: sequence_length applies to text models (a [batch, length] integer "
            f"token input of unknown length); {type(model).__name__} has none.")
    if isinstance(sequence_length, bool) or not isinstance(sequence_length, int) or not (
            0 < sequence_length <= (max_length or sequence_length)):
        raise ValueError(
            f"export_litert: sequence_length must be an int in [1, {max_length}] (the model's "
            f"max_length), got {sequence_length!r}.")
    return sequence_length


def _model_function(model, sequence_length=None):
    length = _token_length(model, sequence_length)

    def shape(t):
        if length is not None and len(t.shape) == 2 and t.shape[1] is None:
            return (None, length)
        return (None,) + tuple(t.shape[1:])

    specs = [tf.TensorSpec(shape(t), tf.as_dtype(t.dtype), name=t.name) for t in model.inputs]
    names = [s.name for s in specs]

    def serve(*args):
        return _named_outputs(model, _call(model, dict(zip(names, args))))

    return tf.function(serve, input_signature=specs, autograph=False), names


def _raw_image_function(model, image_size=None, image_preprocessing=None):
    """uint8 images of one size -> the SavedModel's named classification outputs."""
    from keras_perceiver.export.signatures import _classification_outputs
    from keras_perceiver.export.signatures import _is_image_classifier
    from keras_perceiver.export.signatures import _logits
    from keras_perceiver.export.signatures import image_options
    from keras_perceiver.preprocessors import PerceiverImageConverter

    if not _is_image_classifier(model):
        raise ValueError(
            "export_litert: raw_inputs=True applies to image classifiers only (LiteRT has "
            "no string ops for the text models' tokenisation); export "
            f"{type(model).__name__} with raw_inputs=False (its model inputs)."
        )
    image_shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    options = image_options(model, image_preprocessing)
    converter = PerceiverImageConverter(image_shape[:2], num_channels=image_shape[-1], **options)
    size = tuple(int(d) for d in (image_size or image_shape[:2]))
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"export_litert: image_size must be (height, width), got {image_size!r}.")
    spec = tf.TensorSpec((None,) + size + image_shape[-1:], tf.uint8, name="images")

    def serve(images):
        x = converter.transform_fixed_size(images, size)
        logits = _logits(model(x, training=False))
        return _classification_outputs(logits, logits.shape[-1])

    return tf.function(serve, input_signature=[spec], autograph=False), ["images"]


def _representative_dataset(data, names, limit=None):
    if callable(data):
        return data
    if not isinstance(data, dict):
        if len(names) != 1:
            raise ValueError(
                f"export_litert: representative_data must be a dict keyed by {names} "
                "for a model with several inputs."
            )
        data = {names[0]: data}
    missing = set(names) - set(data)
    if missing:
        raise ValueError(f"export_litert: representative_data lacks input(s) {sorted(missing)}.")
    arrays = {name: np.asarray(data[name]) for name in names}
    counts = {name: (len(a) if a.ndim else 0) for name, a in arrays.items()}
    if len(set(counts.values())) != 1:
        raise ValueError(
            "export_litert: representative_data inputs must hold the same number of "
            f"examples (first axis), got {counts}."
        )
    count = next(iter(counts.values()))
    if count == 0:
        raise ValueError(
            "export_litert: quantization='int8' needs at least one calibration example "
            "in representative_data; it is empty."
        )

    def generator():
        for i in range(count if limit is None else min(count, limit)):
            yield {name: arrays[name][i : i + 1] for name in names}

    return generator


def _convert(saved_model_dir, quantization, representative, ops):
    converter = tf.lite.TFLiteConverter.from_saved_model(
        saved_model_dir, signature_keys=["serving_default"]
    )
    converter.target_spec.supported_ops = ops
    if quantization is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantization == "int8":
        converter.representative_dataset = representative
    return converter.convert()


def export_litert(model, path, quantization=None, representative_data=None, overwrite=False,
                  raw_inputs=False, image_size=None, image_preprocessing=None,
                  sequence_length=None):
    """Writes `model` as a `.tflite` file (signature `serving_default`).

    By default the file takes the model's own named inputs (dynamic batch;
    image classifiers: normalised float32 images) and returns its outputs
    (one output: `outputs`). With `raw_inputs=True` (image classifiers) it
    takes uint8 `images` `[batch, h, w, C]` of one size (`image_size`,
    default the model's), runs the SavedModel's preprocessing (the attached
    preprocessor's settings, updated by `image_preprocessing`) and returns
    the SavedModel's named outputs `logits`, `probabilities` and
    `top_5_classes`.

    A `PerceiverSetModel` is written by `export_set_litert` (entities and
    mask of the model's `max_entities`, the SavedModel's named outputs).
    Text models (`token_ids` of unknown length) are written for one static
    length, `sequence_length` (default the model's `max_length`): pad
    shorter inputs with PAD (0), which the models mask. Static lengths let
    the attention take its one-shot path, so the file needs builtin ops only.

    Builtin ops only are tried first; if the converter needs TensorFlow ops,
    it falls back to `SELECT_TF_OPS` with a warning (that model then needs
    the Flex delegate).

    Args:
        model: a Keras model on the TensorFlow backend.
        path: output file, ending in `.tflite`.
        quantization: None (float32), `"float16"` (float16 weights),
            `"dynamic_int8"` (int8 weights, float activations) or `"int8"`
            (int8 weights and activations, calibrated on
            `representative_data`; float32 inputs and outputs).
        representative_data: for `"int8"`: an array (single-input model), a
            dict `{input_name: array}` (first axis = examples), or a
            generator function yielding `{input_name: array[1, ...]}`.
        overwrite: replace an existing file at `path` (else an error). The
            file is written next to `path` and renamed into place, so a
            failure never leaves a truncated file.
        raw_inputs: image classifiers: uint8 images in, named outputs out
            (`representative_data` then holds raw uint8 images).
        image_size: with `raw_inputs`: the `(height, width)` the file takes.
        image_preprocessing: with `raw_inputs`: options as
            `export_saved_model`'s.
        sequence_length: text models: the token length the file takes
            (default `max_length`).

    Returns:
        `path`.

    Example:
    >>> import keras, tempfile, os
    >>> x = keras.Input((3,), name="features")
    >>> model = keras.Model(x, keras.layers.Dense(2)(x))
    >>> path = os.path.join(tempfile.mkdtemp(), "m.tflite")
    >>> keras_perceiver.export.export_litert(model, path) == path
    True
    """
    check_backend("export_litert")
    path = os.fspath(path)
    if not path.endswith(".tflite"):
        raise ValueError(f"export_litert: path must end with '.tflite', got {path!r}.")
    if quantization not in QUANTIZATIONS:
        raise ValueError(
            f"export_litert: quantization must be one of {QUANTIZATIONS}, got {quantization!r}."
        )
    if representative_data is not None and quantization != "int8":
        warnings.warn(
            "export_litert: representative_data is only used with quantization='int8'; "
            f"it is ignored with quantization={quantization!r}.",
            stacklevel=2,
        )
    files.check_new_file(path, overwrite, "export_litert")
    if type(model).__name__ == "PerceiverSetModel" and not raw_inputs and quantization != "int8":
        from keras_perceiver.export.set_signatures import export_set_litert

        return export_set_litert(model, path, quantization=quantization, overwrite=overwrite)
    if raw_inputs:
        if sequence_length is not None:
            raise ValueError("export_litert: sequence_length applies to text models, not "
                             "raw_inputs=True.")
        fn, names = _raw_image_function(model, image_size, image_preprocessing)
    elif image_size is not None or image_preprocessing is not None:
        raise ValueError("export_litert: image_size and image_preprocessing need raw_inputs=True.")
    else:
        fn, names = _model_function(model, sequence_length)
    representative = None
    if quantization == "int8":
        if representative_data is None:
            raise ValueError("export_litert: quantization='int8' needs representative_data.")
        representative = _representative_dataset(representative_data, names)
    with tempfile.TemporaryDirectory() as tmp:
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint("serving_default", fn)
        try:
            archive.write_out(tmp, verbose=False)
        except (OSError, tf.errors.OpError) as error:
            raise OSError(
                f"export_litert: could not write the intermediate SavedModel in {tmp} "
                f"({str(error).splitlines()[-1][-200:]}); {path} is unchanged."
            ) from None
        builtins = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if quantization == "int8":
            builtins = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
        try:
            flatbuffer = _convert(tmp, quantization, representative, builtins)
        except Exception as error:  # noqa: BLE001 - converter errors vary
            warnings.warn(
                f"export_litert: builtin ops are not enough ({str(error)[:200]}); "
                "falling back to SELECT_TF_OPS (needs the Flex delegate).",
                stacklevel=2,
            )
            flatbuffer = _convert(
                tmp, quantization, representative,
                builtins + [tf.lite.OpsSet.SELECT_TF_OPS],
            )
    files.write_bytes_aside(path, flatbuffer, "export_litert")
    return path
