"""ONNX export through Keras' exporter (tf2onnx on the TensorFlow backend)."""

import os

import keras

from keras_perceiver import files
from keras_perceiver.export.saved_model import check_backend


def _onnx_shape(model, shape):
    """Dynamic batch; a free sequence axis (text models) fixed to `max_length`.

    tf2onnx's shape inference breaks on the text models' in-graph padding of
    a free length, so their `token_ids` are exported as `[batch, max_length]`
    (pad with PAD=0, as the models do internally).
    """
    rest = tuple(shape[1:])
    if None in rest:
        max_length = getattr(model, "get_config", dict)().get("max_length")
        if max_length is not None:
            rest = tuple(max_length if d is None else d for d in rest)
    return (None,) + rest


def export_onnx(model, path, opset_version=None, overwrite=False, raw_inputs=False,
                image_size=None, image_preprocessing=None):
    """Writes `model` to an `.onnx` file via `model.export(format="onnx")`.

    Inputs keep the model's input names and a dynamic batch (text models:
    `token_ids` `[batch, max_length]`); check the file with
    `onnxruntime.InferenceSession(path)`. With `raw_inputs=True` (image
    classifiers) the file instead takes uint8 `images` `[batch, h, w, C]`
    of one size and returns `logits`, `probabilities`, `top_5_classes`, as
    `export_litert(..., raw_inputs=True)` (converted with
    `tf2onnx.convert.from_function`).

    Args:
        model: a Keras model on the TensorFlow backend (needs `tf2onnx`).
        path: output file, ending in `.onnx`.
        opset_version: ONNX opset; None for the exporter's default.
        overwrite: replace an existing file at `path` (else an error); the
            file is written aside and renamed into place.
        raw_inputs, image_size, image_preprocessing: as `export_litert`.

    Returns:
        `path`.

    Example:
    >>> import keras, tempfile, os
    >>> x = keras.Input((3,), name="features")
    >>> model = keras.Model(x, keras.layers.Dense(2)(x))
    >>> path = os.path.join(tempfile.mkdtemp(), "m.onnx")
    >>> keras_perceiver.export.export_onnx(model, path) == path
    True
    """
    check_backend("export_onnx")
    path = os.fspath(path)
    if not path.endswith(".onnx"):
        raise ValueError(f"export_onnx: path must end with '.onnx', got {path!r}.")
    files.check_new_file(path, overwrite, "export_onnx")
    if raw_inputs:
        import tf2onnx

        from keras_perceiver.export.litert import _raw_image_function

        fn, _ = _raw_image_function(model, image_size, image_preprocessing)
        with files.file_aside(path, "export_onnx") as tmp:
            tf2onnx.convert.from_function(fn, input_signature=fn.input_signature,
                                          opset=opset_version, output_path=tmp)
        return path
    if image_size is not None or image_preprocessing is not None:
        raise ValueError("export_onnx: image_size and image_preprocessing need raw_inputs=True.")
    input_signature = [
        keras.InputSpec(shape=_onnx_shape(model, t.shape), dtype=t.dtype, name=t.name)
        for t in model.inputs
    ]
    if len(input_signature) > 1:
        input_signature = [input_signature]
    with files.file_aside(path, "export_onnx") as tmp:
        model.export(tmp, format="onnx", verbose=False, input_signature=input_signature,
                     opset_version=opset_version)
    return path
