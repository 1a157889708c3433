"""Base class of the task models: presets, `from_preset`, `save_to_preset`."""

import inspect
import io
import json
import os

import keras

from keras_perceiver import files
from keras_perceiver.layers.validation import check_model_kwargs
from keras_perceiver.models import presets
from keras_perceiver.models.pipeline import PipelineModel
from keras_perceiver.models.pipeline import attach_preprocessor as _attach
from keras_perceiver.models.renamed import rename_config

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"
# Preset names resolve across task classes in this order ("language_perceiver"
# names both the masked LM, whose weights were released, and the classifier).
TASK_CLASSES = (
    "PerceiverMaskedLM",
    "PerceiverImageClassifier",
    "PerceiverOpticalFlow",
    "PerceiverMultimodalAutoencoder",
    "PerceiverTextClassifier",
)


class classproperty:
    def __init__(self, fget):
        self.fget = fget

    def __get__(self, instance, owner):
        return self.fget(owner)


class PerceiverTask(PipelineModel, keras.Model):
    """A functional task model rebuilt from its constructor arguments.

    Subclasses build their graph in `__init__`, return exactly their
    constructor arguments from `get_config()`, and list their presets in
    `PRESETS = {name: {"description": str, "config": dict}}`.
    `PerceiverTask.from_preset(name)` finds a preset in any task class.

    Every task also takes `preprocessor=None`: a data preprocessor
    (`keras_perceiver.preprocessors`, e.g. `task.default_preprocessor()`)
    that `fit`/`evaluate`/`predict` map over raw data (`PipelineModel`).
    """

    PRESETS = {}

    @classproperty
    def presets(cls):
        """`{name: description}` of the presets this class can build."""
        if cls is PerceiverTask:
            return {name: c.PRESETS[name]["description"] for name, c in all_presets().items()}
        return {name: p["description"] for name, p in cls.PRESETS.items()}

    @classmethod
    def preset_config(cls, name):
        if cls is PerceiverTask:
            return preset_class(name).preset_config(name)
        if name not in cls.PRESETS:
            raise ValueError(
                f"{cls.__name__}: unknown preset {name!r}; expected one of "
                f"{sorted(cls.PRESETS)} or a preset directory."
            )
        return dict(cls.PRESETS[name]["config"])

    @classmethod
    def from_preset(cls, preset, weights=None, load_weights=True, preprocessor=None,
                    **overrides):
        """Builds a preset by name, or reloads a `save_to_preset` directory.

        Args:
            preset: a name from `cls.presets` (any task class's when called
                on `PerceiverTask`) or a local preset directory.
            weights: optional weights file (`.weights.h5`) to load instead of
                the preset's own; it must exist.
            load_weights: a preset name: load the released weights
                (downloaded, converted and cached once, see
                `keras_perceiver.models.presets`); False gives a random
                initialisation. A preset directory: load its
                `model.weights.h5` (an error if it is missing, unless the
                preset was saved config-only).
            preprocessor: None: a preset directory's saved
                `preprocessor.json` if any, else no data preprocessor (the
                model takes pre-mapped inputs); `"default"`: that, or else
                `default_preprocessor()` (raw data in `fit`/`predict`);
                False: none; or a `PerceiverPreprocessor` to attach.
            **overrides: constructor arguments replacing the preset's.

        Example:
        >>> model = keras_perceiver.models.PerceiverTask.from_preset(
        ...     "vision_perceiver_conv", load_weights=False, num_classes=3,
        ...     image_shape=(32, 32, 3), num_latents=4, num_latent_channels=16,
        ...     num_self_attends_per_block=1)
        >>> type(model).__name__
        'PerceiverImageClassifier'
        """
        if weights is not None and not os.path.isfile(os.fspath(weights)):
            raise FileNotFoundError(
                f"{cls.__name__}.from_preset: weights file {os.fspath(weights)!r} does not exist."
            )
        if os.path.isdir(os.fspath(preset)):
            model = cls._from_preset_dir(os.fspath(preset), weights, load_weights, overrides)
            saved = None
            if preprocessor is None or (isinstance(preprocessor, str) and preprocessor == "default"):
                from keras_perceiver.preprocessors.preprocessor import load_preset_preprocessor

                saved = load_preset_preprocessor(preset)
            return _attach(model, preprocessor, saved)
        if cls is PerceiverTask:
            target = preset_class(preset)
            return target.from_preset(preset, weights=weights, load_weights=load_weights,
                                      preprocessor=preprocessor, **overrides)
        config = cls.preset_config(preset)
        _check_overrides(cls, overrides)  # before any download
        if weights is None and load_weights:
            return _attach(presets.load_released(cls, preset, overrides), preprocessor)
        config.update(overrides)
        model = cls.from_config(config)
        if weights is not None:
            _load_weights(model, weights)
        return _attach(model, preprocessor)

    @classmethod
    def _from_preset_dir(cls, preset, weights, load_weights, overrides):
        saved = read_preset_config(preset)
        if saved["class_name"] != cls.__name__ and cls is not PerceiverTask:
            raise ValueError(
                f"{cls.__name__}.from_preset: {preset} holds a "
                f"{saved['class_name']}, not a {cls.__name__}."
            )
        target = cls if cls is not PerceiverTask else _task_class(saved["class_name"], preset)
        config = dict(saved["config"])
        config.update(overrides)
        model = target.from_config(config)
        if weights is not None:
            _load_weights(model, weights)
        elif load_weights and saved.get("weights", WEIGHTS_FILE) is not None:
            path = os.path.join(preset, WEIGHTS_FILE)
            if not os.path.isfile(path):
                raise FileNotFoundError(
                    f"{cls.__name__}.from_preset: {preset} has no {WEIGHTS_FILE} "
                    f"(expected {path}); pass load_weights=False for a random "
                    "initialisation, or weights=PATH."
                )
            new_head = [k for k in getattr(target, "HEAD_ARGUMENTS", ())
                        if k in overrides and overrides[k] != saved["config"].get(k)]
            if new_head:  # e.g. num_classes=k: the saved body, a fresh head
                source = target.from_config(saved["config"])
                _load_weights(source, path)
                _copy_body(source, model, new_head)
            else:
                _load_weights(model, path)
        return model

    def save_to_preset(self, preset_dir, weights=True, overwrite=False):
        """Writes `config.json`, `model.weights.h5` (and `preprocessor.json`).

        `preprocessor.json` holds the attached data preprocessor, if any;
        `from_preset(preset_dir)` attaches it again.

        Args:
            preset_dir: the directory to write; it must not exist or be
                empty unless `overwrite=True`, which replaces it entirely.
            weights: False writes a config-only preset (its `from_preset`
                builds a random initialisation without complaint).
            overwrite: replace an existing non-empty `preset_dir`.

        The preset is written into a temporary directory next to
        `preset_dir` and renamed into place, so a failure (full disk,
        read-only directory) leaves any previous content unchanged.
        """
        preset_dir = os.fspath(preset_dir)
        if os.path.exists(preset_dir):
            if not os.path.isdir(preset_dir):
                raise NotADirectoryError(
                    f"save_to_preset: {preset_dir} exists and is not a directory."
                )
            if os.listdir(preset_dir) and not overwrite:
                raise FileExistsError(
                    f"save_to_preset: {preset_dir} is not empty (it holds "
                    f"{sorted(os.listdir(preset_dir))[:5]}); pass overwrite=True "
                    "to replace it, or choose a new directory."
                )
        task_config = self.get_config()
        task_config.pop("preprocessor", None)  # its own file, preprocessor.json
        config = {
            "class_name": self.__class__.__name__,
            "config": task_config,
            "weights": WEIGHTS_FILE if weights else None,
        }
        text = json.dumps(config, indent=2, default=files.json_default)
        with files.directory_aside(preset_dir, "save_to_preset") as tmp:
            with open(os.path.join(tmp, CONFIG_FILE), "w") as f:
                f.write(text)
            if weights:
                with open(os.path.join(tmp, WEIGHTS_FILE), "wb") as f:
                    f.write(weights_bytes(self))
            if self.preprocessor is not None:
                self.preprocessor.save_to_preset(tmp)
        return preset_dir

    @classmethod
    def from_config(cls, config):
        # Configs saved before a rename (e.g. `d_latents`) still load.
        return cls(**rename_config(config))

    # === compile() defaults (keras-hub style) ===
    # Subclasses override `_default_loss`, `_default_metrics` (and optionally
    # `_default_loss_weights`, `_default_weighted_metrics`); the rest is here.

    DEFAULT_LEARNING_RATE = 5e-5
    DEFAULT_WEIGHT_DECAY = 0.01

    def compile(self, optimizer="auto", loss="auto", *, metrics="auto", **kwargs):
        """Configures the model for training, with task defaults for `"auto"`.

        `model.compile(); model.fit(x, y)` trains with the task's loss and
        metrics (each task's docstring lists them). `optimizer="auto"` is
        `keras.optimizers.AdamW(5e-5, weight_decay=0.01)` (a fine-tuning
        rate; the paper's LAMB schedules are training recipes, not defaults).
        With `loss="auto"` a task may also set `loss_weights` (multimodal),
        with `metrics="auto"` also `weighted_metrics` (masked LM), unless
        given here. Anything else is passed to `keras.Model.compile`.

        Args:
            optimizer: `"auto"` or any Keras optimizer (instance or name).
            loss: `"auto"` or any Keras loss (or per-output dict).
            metrics: `"auto"`, None, or any Keras metrics.
            **kwargs: other `keras.Model.compile` arguments.

        Example:
        >>> model = keras_perceiver.models.PerceiverImageClassifier(
        ...     num_classes=3, image_shape=(4, 4, 1), num_bands=2, num_latents=4,
        ...     num_latent_channels=8, num_blocks=1, num_self_attends_per_block=1,
        ...     num_self_attention_heads=2)
        >>> model.compile()
        >>> type(model.optimizer).__name__, type(model.loss).__name__
        ('AdamW', 'SparseCategoricalCrossentropy')
        """
        if isinstance(optimizer, str) and optimizer == "auto":
            optimizer = keras.optimizers.AdamW(
                learning_rate=self.DEFAULT_LEARNING_RATE,
                weight_decay=self.DEFAULT_WEIGHT_DECAY,
            )
        if isinstance(loss, str) and loss == "auto":
            loss = self._default_loss()
            weights = self._default_loss_weights()
            if weights is not None:
                kwargs.setdefault("loss_weights", weights)
        if isinstance(metrics, str) and metrics == "auto":
            metrics = self._default_metrics()
            weighted = self._default_weighted_metrics()
            if weighted is not None:
                kwargs.setdefault("weighted_metrics", weighted)
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def _default_loss(self):
        raise ValueError(
            f"{self.__class__.__name__} has no default loss; pass "
            "`compile(loss=...)`."
        )

    def _default_metrics(self):
        return None

    def _default_loss_weights(self):
        return None

    def _default_weighted_metrics(self):
        return None


def weights_bytes(model):
    """The `.weights.h5` file of `model`, built in memory.

    h5py crashes the interpreter when a write fails (full disk, file size
    limit), so the HDF5 file is assembled in memory and written by Python.
    """
    try:
        from keras.src.saving import saving_lib

        store_class, save_state = saving_lib.H5IOStore, saving_lib._save_state
    except (ImportError, AttributeError):  # Keras internals moved: write to a temp file
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, WEIGHTS_FILE)
            model.save_weights(path)
            with open(path, "rb") as f:
                return f.read()
    buffer = io.BytesIO()
    store = store_class(buffer, mode="w")
    save_state(model, weights_store=store, assets_store=None, inner_path="",
               visited_saveables=set())
    store.close()
    return buffer.getvalue()


def _load_weights(model, path):
    try:
        model.load_weights(path)
    except Exception as error:  # noqa: BLE001 - h5py/Keras raise many types
        raise ValueError(
            f"{type(model).__name__}: could not load weights from {path} (expected a "
            f"`.weights.h5` file of this model's configuration): {str(error)[:300]}"
        ) from None


def read_preset_config(preset):
    """The validated `config.json` of a preset directory."""
    path = os.path.join(preset, CONFIG_FILE)
    expected = 'expected {"class_name": ..., "config": {...}} as written by save_to_preset'
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{preset} is not a preset directory: {path} does not exist.")
    try:
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not valid JSON ({error}); {expected}.") from None
    if not isinstance(saved, dict):
        raise ValueError(f"{path}: {expected}, got a JSON {type(saved).__name__}.")
    missing = [k for k in ("class_name", "config") if k not in saved]
    if missing:
        raise ValueError(f"{path}: missing key(s) {missing}; {expected}.")
    if not isinstance(saved["config"], dict):
        raise ValueError(f"{path}: `config` must be a JSON object; {expected}.")
    if saved.get("weights", WEIGHTS_FILE) not in (WEIGHTS_FILE, None):
        raise ValueError(f"{path}: `weights` must be {WEIGHTS_FILE!r} or null.")
    return saved


def all_presets():
    """`{preset name: task class}` over every task class (first class wins)."""
    import keras_perceiver.models as models

    found = {}
    for name in TASK_CLASSES:
        cls = getattr(models, name)
        for preset in cls.PRESETS:
            found.setdefault(preset, cls)
    return found


def preset_class(name):
    """The task class that builds preset `name`."""
    found = all_presets()
    if name not in found:
        raise ValueError(
            f"PerceiverTask: unknown preset {name!r}; expected one of "
            f"{sorted(found)} or a preset directory."
        )
    return found[name]


def _check_overrides(cls, overrides):
    """Rejects `overrides` that are not constructor arguments of `cls`."""
    own = set(inspect.signature(cls.__init__).parameters) - {"self", "kwargs"}
    check_model_kwargs(cls, {k: v for k, v in overrides.items() if k not in own})


def _copy_body(source, model, new_head):
    """Copies the input adapter and encoder weights of `source` into `model`."""
    for part in ("input_adapter", "encoder"):
        try:
            getattr(model, part).set_weights(getattr(source, part).get_weights())
        except ValueError as error:
            raise ValueError(
                f"{type(model).__name__}.from_preset: with a new head ({new_head}) only "
                f"the body's weights load, and its {part} does not match the saved "
                f"one ({str(error)[:200]}); keep the body's arguments unchanged."
            ) from None


def _task_class(name, preset="preset"):
    import keras_perceiver.models as models

    cls = getattr(models, str(name), None)
    if not (isinstance(cls, type) and issubclass(cls, PerceiverTask)):
        raise ValueError(
            f"{preset}/{CONFIG_FILE}: unknown task class {name!r}; expected one of "
            f"{list(TASK_CLASSES)}."
        )
    return cls
