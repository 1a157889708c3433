"""Reading reference checkpoints into flat `{key: numpy array}` dicts.

Checkpoints are data, never code: DeepMind's Haiku pickles are read by an
unpickler that resolves only an allowlist of globals (numpy array, dtype and
scalar reconstruction, builtin containers, Haiku's `FlatMapping` and JAX's
array reconstruction), so a pickle that names anything else (`os.system`,
`builtins.eval`, ...) is refused before anything runs.
"""

import _compat_pickle
import io
import json
import os
import pickle

import numpy as np

from keras_perceiver.convert.common import ConversionError


class UnsafeCheckpointError(ConversionError):
    """A checkpoint refers to code outside the allowlist; nothing was run."""


def load_transformers(path_or_model):
    """`(config dict, class name, {key: array})` from a transformers model.

    `path_or_model` is a directory written by `save_pretrained` (config.json
    plus model.safetensors or pytorch_model.bin) or a live model.
    """
    if hasattr(path_or_model, "state_dict"):
        config = path_or_model.config.to_dict()
        class_name = path_or_model.__class__.__name__
        state = {k: v.detach().cpu().numpy() for k, v in path_or_model.state_dict().items()}
        return config, class_name, state
    path = os.fspath(path_or_model)
    if not os.path.exists(path) and _looks_like_hub_id(path):
        path = _hub_snapshot(path)
    config_file = os.path.join(path, "config.json")
    if not os.path.isfile(config_file):
        raise FileNotFoundError(
            f"{path!r} is not a transformers `save_pretrained` directory: "
            f"{config_file} does not exist."
        )
    config = _read_json(config_file, "a transformers PerceiverConfig")
    architectures = config.get("architectures") or []
    if not architectures:
        raise ConversionError(f"{config_file} names no `architectures`.")
    safetensors_file = os.path.join(path, "model.safetensors")
    bin_file = os.path.join(path, "pytorch_model.bin")
    if os.path.exists(safetensors_file):
        from safetensors.numpy import load_file

        try:
            state = load_file(safetensors_file)
        except Exception as error:  # noqa: BLE001 - safetensors raises its own types
            raise ConversionError(
                f"{safetensors_file}: not a readable safetensors file (truncated or "
                f"corrupt: {error})."
            ) from None
    elif os.path.exists(bin_file):
        import torch

        try:
            loaded = torch.load(bin_file, map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001 - torch raises many types
            raise ConversionError(
                f"{bin_file}: not a readable PyTorch state dict (truncated, corrupt "
                f"or holding more than tensors: {str(error)[:300]})."
            ) from None
        state = {k: v.numpy() for k, v in loaded.items()}
    else:
        raise FileNotFoundError(f"{path}: no model.safetensors or pytorch_model.bin.")
    return config, architectures[0], state


def _looks_like_hub_id(text):
    parts = text.split("/")
    return len(parts) == 2 and all(parts) and not text.startswith((".", "~"))


def _hub_snapshot(repo_id):
    """The local snapshot of a Hugging Face Hub model (downloaded if allowed).

    Honours the hub's cache (`HF_HUB_CACHE` / `HF_HOME`) and `HF_HUB_OFFLINE`.
    """
    try:
        import huggingface_hub
    except ImportError:
        raise FileNotFoundError(
            f"{repo_id!r} is not a local directory; to load it as a Hugging Face Hub id "
            "pip install huggingface_hub."
        ) from None
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    try:
        return huggingface_hub.snapshot_download(
            repo_id,
            allow_patterns=["config.json", "model.safetensors", "pytorch_model.bin"],
            cache_dir=os.environ.get("HF_HUB_CACHE") or None,
            local_files_only=offline,
        )
    except Exception as error:  # noqa: BLE001 - hub errors vary
        where = "in the local cache (HF_HUB_OFFLINE is set)" if offline else "on the Hub"
        raise FileNotFoundError(
            f"{repo_id!r}: not a local directory, and the Hugging Face model could not "
            f"be found {where}: {type(error).__name__}: {str(error)[:300]}"
        ) from None


def _read_json(path, what):
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ConversionError(f"{path}: not valid JSON ({error}); expected {what}.") from None
    if not isinstance(data, dict):
        raise ConversionError(f"{path}: expected {what} (a JSON object), got {type(data).__name__}.")
    return data


def _numpy_global(submodule, name):
    """`numpy._core.<submodule>.<name>` (numpy 2) or `numpy.core...` (numpy 1)."""
    import importlib

    for package in ("numpy._core", "numpy.core"):
        try:
            module = importlib.import_module(f"{package}.{submodule}")
        except ImportError:
            continue
        if hasattr(module, name):
            return getattr(module, name)
    raise AttributeError(f"numpy has no {submodule}.{name}")


def _codecs_encode(text, encoding="utf-8"):
    # Protocol-2 pickles store bytes as `_codecs.encode(str, "latin1")`.
    if encoding not in ("latin1", "latin-1"):
        raise UnsafeCheckpointError(f"_codecs.encode with encoding {encoding!r} is not allowed.")
    return text.encode("latin1")


def _flat_mapping(*args, **kwargs):
    data = args[0] if args else kwargs
    if isinstance(data, (list, tuple)) and len(data) == 2 and not isinstance(data[0], tuple):
        # FlatMapping was pickled as (keys, values) in some Haiku versions.
        return dict(zip(*data))
    return dict(data)


def _jax_array(fun, args, arr_state, aval_state=None):
    """`jax._src.array._reconstruct_array`: the numpy value, no device_put."""
    if fun is not _numpy_global("multiarray", "_reconstruct"):
        raise UnsafeCheckpointError("jax array reconstruction must use numpy's _reconstruct.")
    value = fun(*args)
    if not isinstance(value, np.ndarray):
        raise UnsafeCheckpointError("jax array reconstruction did not produce a numpy array.")
    value.__setstate__(arr_state)
    return value


_NUMPY = {
    ("multiarray", "_reconstruct"),
    ("multiarray", "scalar"),
    ("numeric", "_frombuffer"),
}
_BUILTINS = {
    "dict": dict, "list": list, "tuple": tuple, "set": set, "frozenset": frozenset,
    "bytearray": bytearray, "bytes": bytes, "str": str, "int": int, "float": float,
    "complex": complex, "bool": bool, "slice": slice, "range": range,
}
_HAIKU_MODULES = ("haiku._src.data_structures", "haiku.data_structures", "haiku")
_HAIKU_NAMES = ("FlatMapping", "FlatMap", "frozendict")
_JAX_NAMES = ("_reconstruct_array", "reconstruct_device_array")


def _allowed_global(module, name):
    """The object for an allowlisted `module.name`, else None."""
    if module in ("builtins", "__builtin__") and name in _BUILTINS:
        return _BUILTINS[name]
    if module == "collections" and name == "OrderedDict":
        import collections

        return collections.OrderedDict
    if module == "_codecs" and name == "encode":
        return _codecs_encode
    if module == "numpy" and name in ("ndarray", "dtype"):
        return getattr(np, name)
    for package in ("numpy.core.", "numpy._core."):
        if module.startswith(package) and (module[len(package):], name) in _NUMPY:
            return _numpy_global(module[len(package):], name)
    if module == "numpy.dtypes" and name.endswith("DType") and hasattr(np, "dtypes"):
        value = getattr(np.dtypes, name, None)
        return value if isinstance(value, type) and issubclass(value, np.dtype) else None
    if module in _HAIKU_MODULES and name in _HAIKU_NAMES:
        return _flat_mapping
    if (module == "jax" or module.startswith(("jax.", "jax._src"))) and name in _JAX_NAMES:
        return _jax_array
    return None


class _Unpickler(pickle.Unpickler):
    """Unpickles Haiku checkpoints without Haiku, resolving only the allowlist."""

    def __init__(self, file, path):
        super().__init__(file)
        self.path = path

    def find_class(self, module, name):
        # Python 2 names (protocol < 3), mapped as pickle's own find_class does;
        # the result still has to pass the allowlist.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        value = _allowed_global(module, name)
        if value is None:
            raise UnsafeCheckpointError(
                f"{self.path}: refusing to load `{module}.{name}`; a DeepMind "
                "checkpoint may only hold numpy arrays, dtypes, scalars, builtin "
                "containers and Haiku FlatMappings (checkpoints are data, never code)."
            )
        return value

    def persistent_load(self, pid):
        raise UnsafeCheckpointError(
            f"{self.path}: refusing a persistent id in the pickle ({str(pid)[:50]!r})."
        )


def load_deepmind(path):
    """`{"module/param": array}` and BatchNorm state from a Haiku pickle.

    Returns `(params, state)`; `state` is empty for pickles without one.
    Raises `UnsafeCheckpointError` if the pickle names anything but data
    types, and `ConversionError` naming the file if it is truncated, corrupt
    or not a `{module: {name: array}}` tree.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"DeepMind checkpoint {path!r} does not exist.")
    with open(path, "rb") as f:
        raw = f.read()
    try:
        data = _Unpickler(io.BytesIO(raw), path).load()
    except UnsafeCheckpointError:
        raise
    except Exception as error:  # noqa: BLE001 - pickle raises many types on bad data
        raise ConversionError(
            f"{path}: not a readable DeepMind checkpoint (expected a Haiku pickle of "
            f"{{module: {{name: array}}}}; the file is truncated or corrupt: "
            f"{type(error).__name__}: {error})."
        ) from None
    if isinstance(data, dict) and "params" in data and isinstance(data["params"], dict):
        params, state = data["params"], data.get("state", {})
    else:
        params, state = data, {}
    return _flatten(params, path), _flatten(state, path)


def _flatten(tree, path):
    expected = "expected a Haiku tree {module: {name: array}}"
    if not isinstance(tree, dict):
        raise ConversionError(f"{path}: {expected}, got {type(tree).__name__}.")
    flat = {}
    for module, values in tree.items():
        if not isinstance(values, dict):
            raise ConversionError(
                f"{path}: {expected}; {module!r} holds {type(values).__name__}."
            )
        for name, value in values.items():
            array = np.asarray(value)
            if array.dtype.kind not in "biuf":
                raise ConversionError(
                    f"{path}: {expected}; {module}/{name} is not numeric ({array.dtype})."
                )
            flat[f"{module}/{name}"] = array
    return flat
