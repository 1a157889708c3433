"""Shared fixtures: deterministic seeds, float32 default policy after each test."""

import keras
import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _reset_keras_state():
    keras.utils.set_random_seed(0)
    yield
    keras.config.set_dtype_policy("float32")


@pytest.fixture
def rng():
    return np.random.default_rng(0)
