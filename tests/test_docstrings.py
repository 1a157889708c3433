"""Runs the examples in the public docstrings."""

import doctest
import importlib
import pkgutil
import re

import pytest

import keras_perceiver

MODULES = sorted(
    m.name for m in pkgutil.walk_packages(keras_perceiver.__path__, "keras_perceiver.")
    if not m.name.endswith("cli")
)


class ShapeChecker(doctest.OutputChecker):
    """Reads `TensorShape([1, 2])` / `torch.Size([1, 2])` as `(1, 2)`."""

    @staticmethod
    def normalise(text):
        text = re.sub(r"(?:TensorShape|torch\.Size)\(\[([^\]]*)\]\)", r"(\1)", text)
        return re.sub(r"\((\d+)\)", r"(\1,)", text)

    def check_output(self, want, got, optionflags):
        return super().check_output(self.normalise(want), self.normalise(got), optionflags)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(
        checker=ShapeChecker(), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    )
    for test in finder.find(module, globs={"keras_perceiver": keras_perceiver}):
        runner.run(test)
    assert runner.failures == 0
