"""The versioned directory layout TF Serving watches: `base_dir/<version>/`."""

import os
import re

_VERSION = re.compile(r"^[0-9]+$")


def existing_versions(base_dir):
    """Sorted integer versions present under `base_dir` (empty if none)."""
    if not os.path.isdir(base_dir):
        return []
    return sorted(
        int(name)
        for name in os.listdir(base_dir)
        if _VERSION.match(name) and os.path.isdir(os.path.join(base_dir, name))
    )


def resolve_version_dir(base_dir, version=None):
    """The directory a new export goes to; never an existing one.

    Args:
        base_dir: the model's base path (what TF Serving's `base_path` names).
        version: a positive integer, or None for the next free integer
            (1 for an empty or missing `base_dir`).

    Returns:
        `(version, path)` with `path = base_dir/<version>`.

    Raises:
        ValueError: if `version` is not a positive integer, or if that
            version already exists (an export never overwrites one).

    Example:
    >>> import tempfile
    >>> from keras_perceiver.export.versioning import resolve_version_dir
    >>> resolve_version_dir(tempfile.mkdtemp())[0]
    1
    """
    base_dir = os.fspath(base_dir)
    if version is None:
        versions = existing_versions(base_dir)
        version = versions[-1] + 1 if versions else 1
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(
            f"export: version must be a positive integer or None, got {version!r}."
        )
    path = os.path.join(base_dir, str(version))
    if os.path.exists(path):
        raise ValueError(
            f"export: version {version} already exists at {path}; an exported "
            "version is never overwritten. Pass version=None for the next one."
        )
    return version, path
