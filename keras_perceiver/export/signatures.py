"""Serving signatures per task model: named inputs, dynamic batch, TF graph.

`serving_signatures(model, ...)` returns `{signature_name: Signature}`; each
`Signature` is a function of named tensors plus its `tf.TensorSpec`s, ready
for `tf.function(fn, input_signature=specs)`. Raw-input signatures do their
preprocessing in the graph, so a server needs no Python from this package.

Each input has a declared shape (`-1` for a free axis: `[-1, -1, -1, 3]`
raw images, `[-1]` strings, `[-1, -1]` token ids, ...), which
`export_saved_model` writes into the SignatureDef, so `saved_model_cli show`
and TF Serving's model-metadata API tell clients the shapes. The traced
functions themselves accept any shape: TF Serving does not check a request's
shape against the SignatureDef, so every signature validates rank, fixed
dimensions and channels in the graph (`preprocessing.check_input`), with
errors naming the input, and every client path (TF Serving, the v1 loader,
`tf.saved_model.load`) gets those same messages.
"""

import os

import inspect

import tensorflow as tf

from keras_perceiver.export import preprocessing
from keras_perceiver.export.preprocessing import check_input

MASK_PLACEHOLDER = "[MASK]"


class Signature:
    """A serving function of named tensors and its input specs.

    Args:
        fn: called with one keyword argument per input name; returns a dict
            of named output tensors.
        inputs: `[(name, dtype, shape)]` in order; `shape` is the declared
            shape (`None` for a free axis), validated by `fn` in the graph.
        doc: one line for the README / `describe_signatures`.
    """

    def __init__(self, fn, inputs, doc=""):
        self.fn = fn
        self.inputs = [(name, dtype) for name, dtype, _ in inputs]
        self.shapes = {name: tuple(shape) for name, _, shape in inputs}
        self.doc = doc

    @property
    def input_specs(self):
        # Unknown rank: the graph validates shapes itself, with clear errors.
        return [tf.TensorSpec(None, dtype, name=name) for name, dtype in self.inputs]

    def tf_function(self):
        names = [name for name, _ in self.inputs]

        def serve(*args, **kwargs):
            return self.fn(**dict(zip(names, args)), **kwargs)

        # Named parameters, so the restored function binds by input name.
        serve.__signature__ = inspect.Signature(
            [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in names]
        )
        return tf.function(serve, input_signature=self.input_specs, autograph=False)


def declare_input_shapes(export_dir, signatures):
    """Writes each signature's declared input shapes into `saved_model.pb`.

    Only the SignatureDef's `TensorInfo.tensor_shape` changes (what
    `saved_model_cli` and TF Serving's metadata report); the graph still
    accepts any shape and validates it. The fingerprint is rewritten to
    match.

    Args:
        export_dir: a SavedModel directory (written, not yet published).
        signatures: `{name: Signature}` as exported.
    """
    from tensorflow.core.framework import tensor_shape_pb2
    from tensorflow.core.protobuf import saved_model_pb2

    path = os.path.join(export_dir, "saved_model.pb")
    saved = saved_model_pb2.SavedModel()
    with open(path, "rb") as f:
        saved.ParseFromString(f.read())
    for meta_graph in saved.meta_graphs:
        for name, signature in signatures.items():
            if name not in meta_graph.signature_def:
                raise ValueError(f"export: signature {name!r} missing from {path}.")
            infos = meta_graph.signature_def[name].inputs
            for input_name, shape in signature.shapes.items():
                infos[input_name].tensor_shape.CopyFrom(tensor_shape_pb2.TensorShapeProto(
                    dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=-1 if d is None else int(d))
                         for d in shape]))
    with open(path + ".tmp", "wb") as f:
        f.write(saved.SerializeToString(deterministic=True))
    os.replace(path + ".tmp", path)
    fingerprint = os.path.join(export_dir, "fingerprint.pb")
    if os.path.exists(fingerprint):
        from tensorflow.python.saved_model.pywrap_saved_model import fingerprinting

        with open(fingerprint + ".tmp", "wb") as f:
            f.write(fingerprinting.CreateFingerprintDef(export_dir))
        os.replace(fingerprint + ".tmp", fingerprint)


def _input_names(model):
    return [t.name for t in model.inputs]


def _call(model, inputs):
    """Calls `model` with `{name: tensor}` matching its input structure."""
    if len(model.inputs) == 1:
        return model(next(iter(inputs.values())), training=False)
    return model(inputs, training=False)


def _named_outputs(model, outputs, default="outputs"):
    if isinstance(outputs, dict):
        return dict(outputs)
    if isinstance(outputs, (list, tuple)):
        names = list(getattr(model, "output_names", []) or [])
        if len(names) != len(outputs):
            names = [f"output_{i}" for i in range(len(outputs))]
        return dict(zip(names, outputs))
    return {default: outputs}


def _static_input_shape(model, name):
    for t in model.inputs:
        if t.name == name:
            return tuple(None if d is None else int(d) for d in t.shape)
    raise ValueError(f"{model.name}: no input named {name!r}; inputs: {_input_names(model)}.")


def generic_signatures(model):
    """`serving_default`: the model's own named inputs -> its named outputs."""
    shapes = {t.name: (None,) + tuple(t.shape)[1:] for t in model.inputs}
    inputs = [(t.name, tf.as_dtype(t.dtype), shapes[t.name]) for t in model.inputs]

    def fn(**tensors):
        checked = {
            name: check_input(tf.convert_to_tensor(x), name, shapes[name])
            for name, x in tensors.items()
        }
        return _named_outputs(model, _call(model, checked))

    return {"serving_default": Signature(fn, inputs, "the model's inputs -> outputs")}


# ----------------------------------------------------------------------------
# Image classification
# ----------------------------------------------------------------------------


def _logits(outputs):
    if isinstance(outputs, dict):
        return outputs["logits"]
    return outputs


def _classification_outputs(logits, num_classes):
    probabilities = tf.nn.softmax(logits, axis=-1)
    top = tf.math.top_k(probabilities, k=min(5, int(num_classes)))
    return {
        "logits": logits,
        "probabilities": probabilities,
        "top_5_classes": top.indices,
    }


def image_options(model, image_preprocessing=None):
    """The image preprocessing options of an export: the model's attached
    `PerceiverImageClassifierPreprocessor`'s, updated by `image_preprocessing`."""
    from keras_perceiver.preprocessors import PerceiverImageClassifierPreprocessor

    attached = getattr(model, "preprocessor", None)
    options = {}
    if isinstance(attached, PerceiverImageClassifierPreprocessor):
        options = dict(attached.image_converter.options)
    options.update(image_preprocessing or {})
    return preprocessing.image_preprocessing_options(options)


def image_classifier_signatures(model, image_preprocessing=None):
    """`serving_default`: `images` uint8 any size; `normalized`: model floats.

    The raw signature runs `PerceiverImageConverter` (the model's attached
    preprocessor's settings, updated by `image_preprocessing`).
    """
    (name,) = _input_names(model)
    shape = _static_input_shape(model, name)
    image_shape = shape[1:]
    options = image_options(model, image_preprocessing)

    def raw(images):
        x = preprocessing.preprocess_images(images, image_shape, options, name="images")
        logits = _logits(model(x, training=False))
        return _classification_outputs(logits, logits.shape[-1])

    def normalized(images):
        x = check_input(images, "images", (None,) + tuple(image_shape),
                        " (float32, normalised)")
        logits = _logits(model(x, training=False))
        return _classification_outputs(logits, logits.shape[-1])

    c = image_shape[-1]
    return {
        "serving_default": Signature(
            raw, [("images", tf.uint8, (None, None, None, c))],
            f"images: uint8 [batch, height, width, {c}] of any size -> "
            "logits, probabilities, top_5_classes",
        ),
        "normalized": Signature(
            normalized, [("images", tf.float32, (None,) + tuple(image_shape))],
            f"images: float32 {preprocessing.describe((None,) + tuple(image_shape))}, "
            "already normalised -> logits, probabilities, top_5_classes",
        ),
    }


# ----------------------------------------------------------------------------
# Optical flow
# ----------------------------------------------------------------------------


def optical_flow_signatures(model, **_):
    """`serving_default`: `frames` uint8; `normalized`: frames in [-1, 1]."""
    height, width = model.get_config()["image_shape"]

    def raw(frames):
        x = preprocessing.preprocess_frames(frames, (height, width))
        return {"flow": model(x, training=False)}

    def normalized(frames):
        x = check_input(frames, "frames", (None, 2, height, width, 3),
                        " (float32 in [-1, 1])")
        return {"flow": model(x, training=False)}

    return {
        "serving_default": Signature(
            raw, [("frames", tf.uint8, (None, 2, height, width, 3))],
            f"frames: uint8 [batch, 2, {height}, {width}, 3] -> flow float32 "
            f"[batch, {height}, {width}, 2] in pixels",
        ),
        "normalized": Signature(
            normalized, [("frames", tf.float32, (None, 2, height, width, 3))],
            f"frames: float32 [batch, 2, {height}, {width}, 3] in [-1, 1] -> flow",
        ),
    }


def _masked_lm(model, **options):
    from keras_perceiver.export.text_signatures import masked_lm_signatures

    return masked_lm_signatures(model, **options)


def _text_classifier(model, **options):
    from keras_perceiver.export.text_signatures import text_classifier_signatures

    return text_classifier_signatures(model, **options)


def _multimodal(model, **options):
    from keras_perceiver.export.multimodal_signatures import multimodal_signatures

    return multimodal_signatures(model, **options)


def _set_model(model, **options):
    from keras_perceiver.export.set_signatures import set_model_signatures

    return set_model_signatures(model, **options)


def _is_image_classifier(model):
    if type(model).__name__ == "PerceiverImageClassifier":
        return True
    return (
        len(model.inputs) == 1
        and model.inputs[0].name == "images"
        and len(model.inputs[0].shape) == 4
    )


def serving_signatures(
    model, image_preprocessing=None, mask_placeholder=MASK_PLACEHOLDER, num_chunks=None
):
    """The serving signatures of a task model (or of any functional model).

    Args:
        model: a `keras_perceiver.models` task model, or any Keras model with
            named inputs (exported as-is under `serving_default`).
        image_preprocessing: image classifiers: options of
            `preprocessing.image_preprocessing_options`.
        mask_placeholder: masked-language models: the string marking a MASK
            position in the raw text.
        num_chunks: multimodal autoencoder: decoder chunks (None: up to 128).

    Returns:
        `{name: Signature}`; `serving_default` is always present.
    """
    kind = type(model).__name__
    if _is_image_classifier(model):
        return image_classifier_signatures(model, image_preprocessing)
    if kind in _TASK_BUILDERS:
        return _TASK_BUILDERS[kind](
            model, mask_placeholder=mask_placeholder, num_chunks=num_chunks
        )
    return generic_signatures(model)


_TASK_BUILDERS = {
    "PerceiverMaskedLM": _masked_lm,
    "PerceiverTextClassifier": _text_classifier,
    "PerceiverOpticalFlow": optical_flow_signatures,
    "PerceiverMultimodalAutoencoder": _multimodal,
    "PerceiverSetModel": _set_model,
}
