"""Writing files safely: never replace a user's file unless asked, write aside.

Every writer in the package (`save_to_preset`, the converters' CLI, LiteRT
and ONNX export, the weights cache) writes into a temporary file or
directory next to the target and renames it into place, so a crash or a
full disk leaves the previous file intact and never a truncated one.
"""

import contextlib
import os
import shutil
import tempfile


def check_new_file(path, overwrite, what):
    """Raises `FileExistsError` if `path` exists and `overwrite` is False."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f"{what}: {path} is a directory; expected a file path.")
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(
            f"{what}: {path} already exists; pass overwrite=True (CLI: --overwrite) "
            "to replace it."
        )


@contextlib.contextmanager
def file_aside(path, what="write"):
    """Yields a temporary path next to `path`; renames it to `path` on success.

    On any error the temporary file is removed and `path` is untouched; an
    `OSError` (full disk, read-only directory, file size limit) is re-raised
    naming `path`.
    """
    path = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(path)
    base = os.path.basename(path)
    try:
        os.makedirs(parent, exist_ok=True)
        # Keep the extension last: some writers check it (".weights.h5", ".onnx").
        fd, tmp = tempfile.mkstemp(prefix=f".tmp-{os.getpid()}-", suffix=f"-{base}", dir=parent)
        os.close(fd)
    except OSError as error:
        raise OSError(error.errno, f"{what}: cannot write next to {path}: {error.strerror}") from None
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private
        os.replace(tmp, path)
    except OSError as error:
        raise OSError(
            error.errno, f"{what}: could not write {path} ({error.strerror or error}); "
            "any previous file there is unchanged."
        ) from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_bytes_aside(path, data, what="write"):
    with file_aside(path, what) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return os.fspath(path)


@contextlib.contextmanager
def directory_aside(path, what="write"):
    """Yields a temporary directory next to `path`; moves it to `path` on success.

    `path` must not exist or be an empty directory (callers check what they
    may replace first); an existing directory is moved away only after the
    new one is complete, and restored if the final rename fails.
    """
    path = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(path)
    try:
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.tmp-", dir=parent)
    except OSError as error:
        raise OSError(error.errno, f"{what}: cannot write next to {path}: {error.strerror}") from None
    old = None
    try:
        yield tmp
        if os.path.exists(path):
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.old-", dir=parent)
            os.rename(path, os.path.join(old, "previous"))
        try:
            os.rename(tmp, path)
        except OSError:
            if old is not None:
                os.rename(os.path.join(old, "previous"), path)
            raise
    except OSError as error:
        raise OSError(
            error.errno, f"{what}: could not write {path} ({error.strerror or error}); "
            "any previous content there is unchanged."
        ) from None
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def json_default(value):
    """`json.dumps(..., default=json_default)`: tuples and NumPy values as lists/numbers."""
    if isinstance(value, tuple):
        return list(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {value!r}")
