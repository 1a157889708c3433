"""Checkpoints are data, never code; damaged checkpoints are named errors."""

import os
import pickle
import subprocess
import sys
import types

import numpy as np
import pytest

from keras_perceiver import convert
from keras_perceiver.convert.sources import load_deepmind
from tests.convert.test_language import OVERRIDES
from tests.convert.test_language import haiku_params


class _Call:
    """Pickles as `func(*args)`: what a malicious checkpoint does."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _payloads(marker):
    import builtins

    command = f"touch {marker}"
    code = f"open({str(marker)!r}, 'w').close()"
    return {
        "os.system": _Call(os.system, command),
        "builtins.eval": _Call(builtins.eval, code),
        "builtins.exec": _Call(builtins.exec, code),
        "subprocess.call": _Call(subprocess.call, ["touch", str(marker)]),
        "builtins.__import__": _Call(builtins.__import__, "os"),
    }


@pytest.mark.parametrize("protocol", [2, 4, 5])
@pytest.mark.parametrize("payload", ["os.system", "builtins.eval", "builtins.exec",
                                     "subprocess.call", "builtins.__import__"])
def test_malicious_pickle_is_refused_without_side_effect(tmp_path, payload, protocol):
    marker = tmp_path / "pwned"
    params = haiku_params()
    # Nested deep inside an otherwise valid checkpoint.
    params["perceiver_encoder/~/cross_attention/attention/linear"]["w"] = {
        "inner": [_payloads(marker)[payload]]}
    path = tmp_path / "evil.pickle"
    path.write_bytes(pickle.dumps(params, protocol=protocol))
    named = {"os.system": os.system.__module__ + ".system"}.get(payload, payload)
    with pytest.raises(convert.UnsafeCheckpointError) as info:
        convert.from_deepmind(str(path), "language_perceiver", **OVERRIDES)
    message = str(info.value)
    assert str(path) in message and f"`{named}`" in message and "refusing" in message
    assert not marker.exists()


def test_jax_reconstruction_cannot_smuggle_a_callable(tmp_path):
    marker = tmp_path / "pwned"

    class FakeJax:
        def __reduce__(self):
            return _reconstruct_array, (os.system, (f"touch {marker}",), None, {})

    _reconstruct_array = types.FunctionType(
        (lambda *a: None).__code__, {}, "_reconstruct_array")
    _reconstruct_array.__module__ = "jax._src.array"
    _reconstruct_array.__qualname__ = "_reconstruct_array"
    module = types.ModuleType("jax._src.array")
    module._reconstruct_array = _reconstruct_array
    saved = sys.modules.get("jax._src.array")
    sys.modules["jax._src.array"] = module
    try:
        data = pickle.dumps({"m": {"w": FakeJax()}})
    finally:
        if saved is None:
            del sys.modules["jax._src.array"]
        else:
            sys.modules["jax._src.array"] = saved
    path = tmp_path / "evil.pystate"
    path.write_bytes(data)
    with pytest.raises(convert.UnsafeCheckpointError, match="posix.system|os.system"):
        load_deepmind(path)
    assert not marker.exists()


def _haiku_module():
    """A stand-in for `haiku._src.data_structures` so pickles name FlatMapping."""
    module = types.ModuleType("haiku._src.data_structures")

    class FlatMapping(dict):
        def __reduce__(self):
            return FlatMapping, (dict(self),)

    FlatMapping.__module__ = module.__name__
    FlatMapping.__qualname__ = "FlatMapping"
    module.FlatMapping = FlatMapping
    return module


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_haiku_flatmapping_and_numpy_pickles_load(tmp_path, protocol):
    module = _haiku_module()
    fakes = {"haiku": types.ModuleType("haiku"), "haiku._src": types.ModuleType("haiku._src"),
             module.__name__: module}
    assert not set(fakes) & set(sys.modules)
    sys.modules.update(fakes)
    try:
        params = {k: module.FlatMapping(v) for k, v in haiku_params().items()}
        data = pickle.dumps({"params": module.FlatMapping(params),
                             "state": module.FlatMapping({})}, protocol=protocol)
    finally:
        for name in fakes:
            del sys.modules[name]
    assert b"FlatMapping" in data
    if protocol == 2:  # numpy 1.x module names
        data = data.replace(b"numpy._core.", b"numpy.core.")
        assert b"numpy.core.multiarray" in data
    path = tmp_path / "mlm.pickle"
    path.write_bytes(data)
    params, state = load_deepmind(path)
    expected = haiku_params()
    assert state == {}
    assert len(params) == sum(len(v) for v in expected.values())
    for module_name, values in expected.items():
        for name, value in values.items():
            np.testing.assert_array_equal(params[f"{module_name}/{name}"], value)
    model = convert.from_deepmind(str(path), "language_perceiver", **OVERRIDES)
    assert type(model).__name__ == "PerceiverMaskedLM"


def test_jax_arrays_load_as_numpy(tmp_path):
    jnp = pytest.importorskip("jax.numpy")
    value = np.arange(6, dtype="float32").reshape(2, 3)
    path = tmp_path / "jax.pystate"
    path.write_bytes(pickle.dumps({"linear": {"w": jnp.asarray(value), "b": np.float32(2)}}))
    params, _ = load_deepmind(path)
    assert isinstance(params["linear/w"], np.ndarray)
    np.testing.assert_array_equal(params["linear/w"], value)
    assert params["linear/b"] == 2


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "not_a_tree"])
def test_damaged_deepmind_checkpoint_names_the_file(tmp_path, damage):
    good = pickle.dumps(haiku_params())
    data = {"truncated": good[: len(good) // 2], "garbage": b"\x00not a pickle at all",
            "empty": b"", "not_a_tree": pickle.dumps([1, 2, 3])}[damage]
    path = tmp_path / "damaged.pickle"
    path.write_bytes(data)
    with pytest.raises(convert.ConversionError, match="damaged.pickle") as info:
        convert.from_deepmind(str(path), "language_perceiver", **OVERRIDES)
    assert "expected" in str(info.value)


def test_missing_deepmind_checkpoint_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.pickle"):
        convert.from_deepmind(str(tmp_path / "nothing.pickle"), "language_perceiver")


def test_unknown_converter_arguments_are_rejected(tmp_path):
    path = tmp_path / "mlm.pickle"
    path.write_bytes(pickle.dumps(haiku_params()))
    with pytest.raises(TypeError, match="bogus"):
        convert.from_deepmind(str(path), "language_perceiver", bogus=1, **OVERRIDES)
    with pytest.raises(TypeError, match="bogus"):
        convert.from_transformers(str(tmp_path), bogus=1)


def _tiny_transformers(tmp_path):
    from transformers import PerceiverConfig
    from transformers import PerceiverForMaskedLM

    model = PerceiverForMaskedLM(PerceiverConfig(
        num_latents=4, d_latents=16, d_model=8, num_blocks=1, num_self_attends_per_block=1,
        num_self_attention_heads=2, num_cross_attention_heads=2,
        max_position_embeddings=8, qk_channels=8, v_channels=16))
    model.save_pretrained(tmp_path / "hf")
    return tmp_path / "hf"


@pytest.mark.parametrize("damage", ["truncated_safetensors", "bad_json", "no_weights",
                                    "no_config"])
def test_damaged_transformers_checkpoint_names_the_file(tmp_path, damage):
    path = _tiny_transformers(tmp_path)
    weights, config = path / "model.safetensors", path / "config.json"
    if damage == "truncated_safetensors":
        weights.write_bytes(weights.read_bytes()[:100])
        expected, error = "model.safetensors", convert.ConversionError
    elif damage == "bad_json":
        config.write_text("{not json")
        expected, error = "config.json", convert.ConversionError
    elif damage == "no_weights":
        weights.unlink()
        expected, error = "no model.safetensors", FileNotFoundError
    else:
        config.unlink()
        expected, error = "config.json", FileNotFoundError
    with pytest.raises(error, match=expected):
        convert.from_transformers(str(path))
