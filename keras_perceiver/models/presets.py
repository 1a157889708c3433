"""Released weights by preset name: where they come from, download and cache.

`PerceiverTask.from_preset(name)` (and each task class's) loads DeepMind's
released checkpoint: downloaded once with `keras.utils.get_file` into the
Keras cache (`~/.keras/perceiver_io/`), converted with
`keras_perceiver.convert.from_deepmind`, and cached as a preset directory
(`~/.keras/perceiver_io/presets/<name>/`), so later loads need neither the
network nor the conversion. `KERAS_PERCEIVER_WEIGHTS_URL` replaces the
download base URL (a mirror); `KERAS_HOME` moves the cache.

Example:
>>> info = keras_perceiver.models.presets.RELEASED["vision_perceiver_conv"]
>>> info["hub_id"], info["paper_score"]
('deepmind/vision-perceiver-conv', 'ImageNet top-1 82.1%')
"""

import hashlib
import os
import shutil

BASE_URL = "https://storage.googleapis.com/perceiver_io"
BASE_URL_ENV = "KERAS_PERCEIVER_WEIGHTS_URL"
CACHE_SUBDIR = "perceiver_io"


def _entry(class_name, file, hub_id, task, paper_score, parameters):
    return {
        "class_name": class_name,
        "file": file,
        "hub_id": hub_id,
        "task": task,
        "paper_score": paper_score,
        "parameters": parameters,
        # float32 parameters; the pickles add a few kB of structure.
        "size": f"~{parameters * 4 / 1e6:.0f} MB",
        "sha256": None,  # not published by DeepMind; set for mirrors and tests
        "overrides": {},
    }


# preset -> where its released weights come from (the colabs' files).
RELEASED = {
    "language_perceiver": _entry(
        "PerceiverMaskedLM", "language_perceiver_io_bytes.pickle",
        "deepmind/language-perceiver", "masked language modelling (UTF-8 bytes)",
        "GLUE average 81.0 (after fine-tuning)", 201_108_230),
    "vision_perceiver_learned": _entry(
        "PerceiverImageClassifier", "imagenet_learned_position_encoding.pystate",
        "deepmind/vision-perceiver-learned", "ImageNet classification",
        "ImageNet top-1 72.7%", 62_255_848),
    "vision_perceiver_fourier": _entry(
        "PerceiverImageClassifier", "imagenet_fourier_position_encoding.pystate",
        "deepmind/vision-perceiver-fourier", "ImageNet classification",
        "ImageNet top-1 79.0%", 48_440_627),
    "vision_perceiver_conv": _entry(
        "PerceiverImageClassifier", "imagenet_conv_preprocessing.pystate",
        "deepmind/vision-perceiver-conv", "ImageNet classification",
        "ImageNet top-1 82.1%", 48_646_650),
    "optical_flow_perceiver": _entry(
        "PerceiverOpticalFlow", "optical_flow_checkpoint.pystate",
        "deepmind/optical-flow-perceiver", "optical flow",
        "Sintel clean / final EPE 1.81 / 2.42, KITTI 4.98", 41_057_134),
    "multimodal_perceiver": _entry(
        "PerceiverMultimodalAutoencoder", "video_autoencoding_checkpoint.pystate",
        "deepmind/multimodal-perceiver", "Kinetics-700 video+audio+label autoencoding",
        "video PSNR 24.37, audio PSNR 26.97", 19_858_855),
}


def source_url(name):
    """The download URL of preset `name`'s released checkpoint."""
    info = _info(name)
    if info.get("url"):
        return info["url"]
    base = os.environ.get(BASE_URL_ENV) or BASE_URL
    return f"{base.rstrip('/')}/{info['file']}"


def cache_dir():
    """`$KERAS_HOME/perceiver_io` (default `~/.keras/perceiver_io`)."""
    home = os.environ.get("KERAS_HOME")
    if not home:  # as Keras chooses it
        base = os.path.expanduser("~")
        home = os.path.join(base if os.access(base, os.W_OK) else "/tmp", ".keras")
    return os.path.join(home, CACHE_SUBDIR)


def cached_preset_dir(name):
    """Where the converted preset of `name` is (or will be) cached."""
    return os.path.join(cache_dir(), "presets", name)


def _info(name):
    if name not in RELEASED:
        raise ValueError(
            f"no released weights for preset {name!r}; expected one of {sorted(RELEASED)}."
        )
    return RELEASED[name]


def download(name):
    """Downloads, checks, converts and caches preset `name`; returns its directory.

    A cached conversion is returned without any network access. A download
    that is truncated, fails its `sha256` (when one is known) or does not
    convert is deleted and never cached.
    """
    target = cached_preset_dir(name)
    if os.path.isfile(os.path.join(target, "config.json")):
        return target
    info = _info(name)
    url = source_url(name)
    raw = _fetch(name, info, url)
    try:
        from keras_perceiver import convert

        try:
            model = convert.from_deepmind(raw, name, **info["overrides"])
        except (convert.ConversionError, OSError) as error:
            raise ValueError(
                f"preset {name!r}: the file downloaded from {url} is not the expected "
                f"checkpoint ({error}); it was deleted, nothing was cached."
            ) from None
        model.save_to_preset(target, overwrite=True)
    finally:
        if os.path.exists(raw):
            os.remove(raw)
    return target


def _fetch(name, info, url):
    import keras

    fname = f"{info['file']}.download-{os.getpid()}-{os.urandom(4).hex()}"
    try:
        # get_file falls back to /tmp/.keras when the cache directory does not exist yet.
        os.makedirs(cache_dir(), exist_ok=True)
        path = keras.utils.get_file(
            fname=fname, origin=url, cache_dir=os.path.dirname(cache_dir()),
            cache_subdir=CACHE_SUBDIR, file_hash=info["sha256"], hash_algorithm="sha256",
            force_download=True,
        )
    except Exception as error:  # noqa: BLE001 - get_file raises plain Exception
        partial = os.path.join(cache_dir(), fname)
        if os.path.exists(partial):
            os.remove(partial)
        if "hash does not match" in str(error):
            raise ValueError(
                f"preset {name!r}: the file downloaded from {url} does not match its "
                "sha256 (truncated or corrupted); it was deleted, nothing was cached."
            ) from None
        raise OSError(
            f"preset {name!r}: could not download its weights from {url} ({error}). "
            f"Download that file yourself and convert it with `keras-perceiver convert "
            f"--from deepmind FILE --preset {name} --output {cached_preset_dir(name)}`, "
            "or pass load_weights=False for a random initialisation "
            "(CLI: --random-weights)."
        ) from None
    if info["sha256"] is not None and _sha256(path) != info["sha256"]:
        os.remove(path)
        raise ValueError(
            f"preset {name!r}: the file downloaded from {url} does not match its "
            "sha256 (truncated or corrupted); it was deleted, nothing was cached."
        )
    return path


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_released(cls, name, overrides):
    """`cls` built from preset `name` with its released weights (cached)."""
    from keras_perceiver import models

    info = _info(name)
    owner = getattr(models, info["class_name"])
    preset_dir = download(name)
    if cls is owner:
        return cls.from_preset(preset_dir, **overrides)
    if hasattr(cls, "from_masked_lm") and owner is models.PerceiverMaskedLM:
        return cls.from_masked_lm(owner.from_preset(preset_dir), **overrides)
    raise ValueError(
        f"{cls.__name__}.from_preset({name!r}): the released weights are a "
        f"{owner.__name__}; pass load_weights=False for a random initialisation."
    )


def clear_cache(name):
    """Removes the cached conversion of preset `name` (re-downloaded on next use)."""
    shutil.rmtree(cached_preset_dir(name), ignore_errors=True)
