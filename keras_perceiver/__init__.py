"""keras_perceiver: Perceiver IO (Jaegle et al., 2021) for Keras 3."""

import importlib
import os
import sys

__version__ = "0.1.0"
_SUBMODULES = ("convert", "data", "distribution", "export", "layers", "losses", "models",
               "optimizers", "preprocessors", "recipes", "tokenizers", "visualize")


def _started_as_cli():
    """True when this process is the `keras-perceiver` command line.

    The CLI imports Keras (and so TensorFlow) only once a command runs, so
    `keras-perceiver --help` answers at once; everyone else gets the eager
    imports below (they register the layers for `keras.saving.load_model`).
    """
    if sys.argv and os.path.basename(sys.argv[0]) == "keras-perceiver":
        return True
    argv = list(getattr(sys, "orig_argv", []))
    return "-m" in argv[:-1] and argv[argv.index("-m") + 1] == "keras_perceiver.cli"


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"keras_perceiver.{name}")
    raise AttributeError(f"module 'keras_perceiver' has no attribute {name!r}")


if not _started_as_cli():
    from keras_perceiver import convert  # noqa: E402
    from keras_perceiver import layers  # noqa: E402
    from keras_perceiver import losses  # noqa: E402
    from keras_perceiver import models  # noqa: E402
    from keras_perceiver import tokenizers  # noqa: E402
