"""SavedModel export for TF Serving: `base_dir/<version>/`, named signatures."""

import os
import shutil
import tempfile

import keras

from keras_perceiver.export.signatures import MASK_PLACEHOLDER
from keras_perceiver.export.signatures import declare_input_shapes
from keras_perceiver.export.signatures import serving_signatures
from keras_perceiver.export.versioning import resolve_version_dir


def check_backend(what):
    if keras.backend.backend() != "tensorflow":
        raise ValueError(
            f"{what} needs the TensorFlow backend (KERAS_BACKEND=tensorflow); "
            f"the current backend is {keras.backend.backend()!r}."
        )


def export_saved_model(
    model,
    base_dir,
    version=None,
    image_preprocessing=None,
    mask_placeholder=MASK_PLACEHOLDER,
    num_chunks=None,
    verbose=False,
):
    """Exports `model` as a SavedModel into `base_dir/<version>/`.

    The directory layout is the one TF Serving watches (`--model_base_path`
    = `base_dir`). Signatures have named inputs, a dynamic batch and the
    preprocessing in the graph (see `signatures.serving_signatures`). The
    export is written to a temporary directory next to the target and
    renamed into place, so a server never sees a half-written version, and
    an existing version is never overwritten.

    Args:
        model: a task model from `keras_perceiver.models`, or any functional
            Keras model with named inputs.
        base_dir: the model's base directory.
        version: positive integer; None takes the next free integer.
        image_preprocessing: image classifiers: preprocessing options, e.g.
            `{"mode": "resize", "mean": 127.5, "std": 127.5}` (default:
            ImageNet center crop 224/256 and mean/std).
        mask_placeholder: masked LM: the string marking MASK positions.
        num_chunks: multimodal autoencoder: decoder chunks in the graph
            (None: up to 128, as DeepMind's colab).
        verbose: print the exported path.

    Returns:
        The path of the written version directory.

    Example:
    >>> import keras, tempfile
    >>> x = keras.Input((3,), name="features")
    >>> model = keras.Model(x, keras.layers.Dense(2)(x))
    >>> base = tempfile.mkdtemp()
    >>> path = keras_perceiver.export.export_saved_model(model, base)
    >>> path.endswith("/1")
    True
    """
    check_backend("export_saved_model")
    version, path = resolve_version_dir(base_dir, version)
    signatures = serving_signatures(
        model,
        image_preprocessing=image_preprocessing,
        mask_placeholder=mask_placeholder,
        num_chunks=num_chunks,
    )
    archive = keras.export.ExportArchive()
    archive.track(model)
    for name, signature in signatures.items():
        archive.add_endpoint(name, signature.tf_function())
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{version}.tmp-", dir=os.path.dirname(path) or ".")
    try:
        archive.write_out(staging, verbose=False)
        declare_input_shapes(staging, signatures)
        if os.path.exists(path):  # created concurrently
            raise ValueError(f"export: version directory {path} appeared during export.")
        os.rename(staging, path)
    finally:
        if os.path.exists(staging):
            shutil.rmtree(staging)
    if verbose:
        print(f"Exported SavedModel version {version} to {path}")
    return path


def describe_signatures(model, **options):
    """`{signature_name: one-line description}` of what `export_saved_model` writes."""
    return {name: s.doc for name, s in serving_signatures(model, **options).items()}


__all__ = ["describe_signatures", "export_saved_model"]
