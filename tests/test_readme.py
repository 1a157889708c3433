"""The README's example, run as written (TensorFlow backend, like `make demo`)."""

import os

from keras_perceiver.models import PerceiverIO


def test_readme_example():
    """Runs the README's example as written: fit learns reversal to >= 99%."""
    readme = open(os.path.join(os.path.dirname(__file__), "..", "README.md")).read()
    code = readme.split("```python\n", 1)[1].split("```", 1)[0]
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    history = namespace["history"].history
    assert history["loss"][-1] < 0.2 * history["loss"][0]
    assert history["val_accuracy"][-1] >= 0.99  # the accuracy the README states
    assert isinstance(namespace["model"], PerceiverIO)


def _public_symbols(module):
    """`__all__`, else the public classes and functions the package exports."""
    import inspect

    names = getattr(module, "__all__", None)
    if names is None:
        names = [
            name for name, value in vars(module).items()
            if not name.startswith("_") and not inspect.ismodule(value)
        ]
    return sorted(names)


def test_readme_names_every_public_symbol():
    """The README's lists name every public layer, model, tokenizer and loss."""
    import importlib

    readme = open(os.path.join(os.path.dirname(__file__), "..", "README.md")).read()
    missing = []
    for package in ("layers", "models", "tokenizers", "losses"):
        module = importlib.import_module(f"keras_perceiver.{package}")
        symbols = _public_symbols(module)
        assert symbols, package
        missing += [f"{package}.{name}" for name in symbols if f"`{name}`" not in readme]
    assert not missing, f"README.md does not name: {missing}"
