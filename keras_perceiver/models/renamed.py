"""Deprecated constructor argument names of the task models.

The latent width was `d_latents` in the text and image models and
`num_latent_channels` in the others; it is `num_latent_channels` everywhere
now. The old keyword still works with a `DeprecationWarning`, and configs
saved under the old name (`config.json`, `.keras`) load silently.
"""

import warnings

# {old name: new name}
RENAMED_ARGUMENTS = {"d_latents": "num_latent_channels"}


def take_renamed(cls, kwargs, old, value, default):
    """Pops the deprecated keyword `old` from `kwargs`; returns the value to use.

    `value` and `default` are the new argument's received and default values;
    receiving both names with different values is an error.

    Example:
    >>> kwargs = {"d_latents": 16}
    >>> keras_perceiver.models.renamed.take_renamed(
    ...     object, kwargs, "d_latents", 1024, 1024), kwargs
    (16, {})
    """
    if old not in kwargs:
        return value
    new = RENAMED_ARGUMENTS[old]
    old_value = kwargs.pop(old)
    warnings.warn(
        f"{cls.__name__}: `{old}` is deprecated and will be removed; use `{new}` "
        "(the same value).", DeprecationWarning, stacklevel=3,
    )
    if value != default and value != old_value:
        raise ValueError(
            f"{cls.__name__}: received both `{new}={value!r}` and the deprecated "
            f"`{old}={old_value!r}`; pass only `{new}`."
        )
    return old_value


def rename_config(config):
    """A saved config with deprecated keys mapped onto the new names."""
    config = dict(config)
    for old, new in RENAMED_ARGUMENTS.items():
        if old in config:
            value = config.pop(old)
            config.setdefault(new, value)
    return config
