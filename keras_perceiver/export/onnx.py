"""ONNX export through Keras' exporter (tf2onnx on the TensorFlow backend)."""

import os

import keras


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


def export_onnx(model, path, opset_version=None):
    """Writes `model` to an `.onnx` file via `model.export(format="onnx")`.

    Inputs keep the model's input names and a dynamic batch (text models:
    `token_ids` `[batch, max_length]`); check the file with
    `onnxruntime.InferenceSession(path)`.

    Args:
        model: a Keras model (needs `tf2onnx` on the TensorFlow backend).
        path: output file.
        opset_version: ONNX opset; None for the exporter's default.

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
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    input_signature = [
        keras.InputSpec(shape=_onnx_shape(model, t.shape), dtype=t.dtype, name=t.name)
        for t in model.inputs
    ]
    if len(input_signature) > 1:
        input_signature = [input_signature]
    model.export(path, format="onnx", verbose=False, input_signature=input_signature,
                 opset_version=opset_version)
    return path
