"""Reading reference checkpoints into flat `{key: numpy array}` dicts."""

import json
import os
import pickle

import numpy as np


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
    path = str(path_or_model)
    with open(os.path.join(path, "config.json")) as f:
        config = json.load(f)
    architectures = config.get("architectures") or []
    if not architectures:
        raise ValueError(f"{path}/config.json names no `architectures`.")
    safetensors_file = os.path.join(path, "model.safetensors")
    if os.path.exists(safetensors_file):
        from safetensors.numpy import load_file

        state = load_file(safetensors_file)
    else:
        import torch

        bin_file = os.path.join(path, "pytorch_model.bin")
        if not os.path.exists(bin_file):
            raise FileNotFoundError(f"{path}: no model.safetensors or pytorch_model.bin.")
        state = {k: v.numpy() for k, v in torch.load(bin_file, map_location="cpu").items()}
    return config, architectures[0], state


class _Unpickler(pickle.Unpickler):
    """Unpickles Haiku checkpoints without Haiku: FlatMapping becomes a dict."""

    def find_class(self, module, name):
        if module.startswith("haiku") and name in ("FlatMapping", "FlatMap"):
            return _flat_mapping
        if module.startswith("jax") or module.startswith("jaxlib"):
            return _array
        return super().find_class(module, name)


def _flat_mapping(*args):
    data = args[0] if args else {}
    if isinstance(data, (list, tuple)) and len(data) == 2 and not isinstance(data[0], tuple):
        # FlatMapping was pickled as (keys, values) in some Haiku versions.
        return dict(zip(*data))
    return dict(data)


def _array(*args, **kwargs):
    return np.asarray(args[0]) if args else np.asarray([])


def load_deepmind(path):
    """`{"module/param": array}` and BatchNorm state from a Haiku pickle.

    Returns `(params, state)`; `state` is empty for pickles without one.
    """
    with open(path, "rb") as f:
        data = _Unpickler(f).load()
    if isinstance(data, dict) and "params" in data and isinstance(data["params"], dict):
        params, state = data["params"], data.get("state", {})
    else:
        params, state = data, {}
    return _flatten(params), _flatten(state)


def _flatten(tree):
    flat = {}
    for module, values in dict(tree).items():
        for name, value in dict(values).items():
            flat[f"{module}/{name}"] = np.asarray(value)
    return flat
