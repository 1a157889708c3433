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
