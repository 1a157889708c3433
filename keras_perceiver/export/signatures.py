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
# Text: masked language model and classifier
# ----------------------------------------------------------------------------


def _tokenizer():
    from keras_perceiver.tokenizers import BytesTokenizer

    return BytesTokenizer()


def _encode_text(text, max_length, add_special_tokens=False, mask_placeholder=None,
                 sequence_length=None):
    """`text` tf.string `[B]` -> int32 `[B, L]`, `L <= max_length` (an error
    otherwise); batch-longest, or padded to `sequence_length`. The text
    preprocessors' tokenisation (`encode_text`)."""
    from keras_perceiver.preprocessors.text_classifier_preprocessor import encode_text

    text = check_input(text, "text", (None,), " (tf.string [batch], raw UTF-8)")
    return encode_text(text, sequence_length, add_special_tokens=add_special_tokens,
                       mask_placeholder=mask_placeholder, truncate=False,
                       max_length=max_length)


def _check_token_ids(token_ids, vocab_size, max_length):
    token_ids = check_input(token_ids, "token_ids", (None, None), " (int32 [batch, length])")
    token_ids = preprocessing.check_values(token_ids, "token_ids", 0, vocab_size - 1)
    too_long = tf.debugging.assert_less_equal(
        tf.shape(token_ids)[1], max_length,
        message=f"input `token_ids` must have at most {max_length} tokens. Tokens:",
    )
    with tf.control_dependencies([too_long]):
        return tf.identity(token_ids)


def masked_lm_signatures(model, mask_placeholder=MASK_PLACEHOLDER, **_):
    """`serving_default`: raw `text` with placeholders; `token_ids`: ids -> logits."""
    config = model.get_config()
    max_length, vocab_size = config["max_length"], config["vocab_size"]
    pad_id = config.get("pad_id", 0)
    mask_id = _tokenizer().MASK_ID

    def pad(ids):
        return tf.pad(ids, [[0, 0], [0, max_length - tf.shape(ids)[1]]],
                      constant_values=pad_id)

    def raw(text):
        ids = _encode_text(text, max_length, mask_placeholder=mask_placeholder,
                           sequence_length=max_length)
        logits = model(ids, training=False)
        predicted = tf.argmax(logits, axis=-1, output_type=tf.int32)
        filled = tf.where(tf.equal(ids, mask_id), predicted, ids)
        return {
            "logits": logits,
            "token_ids": ids,
            "filled_text": _tokenizer().tf_decode(filled),
        }

    def token_ids(token_ids):
        ids = pad(_check_token_ids(token_ids, vocab_size, max_length))
        ids.set_shape((None, max_length))
        return {"logits": model(ids, training=False)}

    return {
        "serving_default": Signature(
            raw, [("text", tf.string, (None,))],
            f"text: tf.string [batch], UTF-8, each {mask_placeholder!r} one masked "
            f"byte (<= {max_length} bytes) -> logits [batch, {max_length}, "
            f"{vocab_size}], token_ids, filled_text",
        ),
        "token_ids": Signature(
            token_ids, [("token_ids", tf.int32, (None, None))],
            f"token_ids: int32 [batch, <= {max_length}] (PAD=0 padding) -> logits",
        ),
    }


def text_classifier_signatures(model, add_special_tokens=True, **_):
    """`serving_default`: raw `text`; `token_ids`: ids. Per task: logits, probabilities, class."""
    config = model.get_config()
    max_length, vocab_size = config["max_length"], config["vocab_size"]

    def outputs(ids):
        result = {}
        for task, logits in model(ids, training=False).items():
            probabilities = tf.nn.softmax(logits, axis=-1)
            result[f"{task}_logits"] = logits
            result[f"{task}_probabilities"] = probabilities
            result[f"{task}_class"] = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        return result

    def raw(text):
        return outputs(_encode_text(text, max_length, add_special_tokens=add_special_tokens))

    def token_ids(token_ids):
        return outputs(_check_token_ids(token_ids, vocab_size, max_length))

    special = " wrapped as [CLS] ... [SEP]" if add_special_tokens else ""
    return {
        "serving_default": Signature(
            raw, [("text", tf.string, (None,))],
            f"text: tf.string [batch], UTF-8{special} -> <task>_logits, "
            "<task>_probabilities, <task>_class for each task",
        ),
        "token_ids": Signature(
            token_ids, [("token_ids", tf.int32, (None, None))],
            f"token_ids: int32 [batch, <= {max_length}] -> per-task outputs",
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
    "PerceiverMaskedLM": masked_lm_signatures,
    "PerceiverTextClassifier": text_classifier_signatures,
    "PerceiverOpticalFlow": optical_flow_signatures,
    "PerceiverMultimodalAutoencoder": _multimodal,
    "PerceiverSetModel": _set_model,
}
