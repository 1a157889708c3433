"""Small helpers shared by the layers: validation and initializers."""

import keras


def check_rank(layer, name, shape, rank):
    """Raises a ValueError naming `layer` unless `shape` has `rank` dims."""
    if shape is None:
        return
    if len(shape) != rank:
        raise ValueError(
            f"{layer.name}: expected `{name}` of rank {rank}, received shape "
            f"{tuple(shape)}."
        )


def check_channels(layer, name, shape, channels):
    """Raises a ValueError naming `layer` unless the last dim is `channels`."""
    if shape[-1] is not None and channels is not None and shape[-1] != channels:
        raise ValueError(
            f"{layer.name}: expected `{name}` with {channels} channels (last "
            f"axis), received shape {tuple(shape)}."
        )


def validate_activation(layer, activation, allowed):
    if activation not in allowed:
        raise ValueError(
            f"{layer.__class__.__name__}: activation must be one of {allowed}, "
            f"received {activation!r}."
        )


def dense_initializer(initializer):
    """A fresh copy of `initializer`, so each weight draws its own values."""
    initializer = keras.initializers.get(initializer)
    return initializer.__class__.from_config(initializer.get_config())

