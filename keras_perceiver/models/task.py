"""Base class of the task models: presets, `from_preset`, `save_to_preset`."""

import json
import os

import keras

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"


class classproperty:
    def __init__(self, fget):
        self.fget = fget

    def __get__(self, instance, owner):
        return self.fget(owner)


class PerceiverTask(keras.Model):
    """A functional task model rebuilt from its constructor arguments.

    Subclasses build their graph in `__init__`, return exactly their
    constructor arguments from `get_config()`, and list their presets in
    `PRESETS = {name: {"description": str, "config": dict}}`.
    """

    PRESETS = {}

    @classproperty
    def presets(cls):
        """`{name: description}` of the presets this class can build."""
        return {name: p["description"] for name, p in cls.PRESETS.items()}

    @classmethod
    def preset_config(cls, name):
        if name not in cls.PRESETS:
            raise ValueError(
                f"{cls.__name__}: unknown preset {name!r}; expected one of "
                f"{sorted(cls.PRESETS)} or a preset directory."
            )
        return dict(cls.PRESETS[name]["config"])

    @classmethod
    def from_preset(cls, preset, weights=None, **overrides):
        """Builds a preset by name, or reloads a `save_to_preset` directory.

        Args:
            preset: a name from `cls.presets` or a local preset directory.
            weights: optional weights file (`.weights.h5`); a preset directory
                brings its own unless this is given.
            **overrides: constructor arguments replacing the preset's.
        """
        if os.path.isdir(str(preset)):
            with open(os.path.join(preset, CONFIG_FILE)) as f:
                saved = json.load(f)
            if saved["class_name"] != cls.__name__ and cls is not PerceiverTask:
                raise ValueError(
                    f"{cls.__name__}.from_preset: {preset} holds a "
                    f"{saved['class_name']}, not a {cls.__name__}."
                )
            target = cls if cls is not PerceiverTask else _task_class(saved["class_name"])
            config = dict(saved["config"])
            config.update(overrides)
            model = target.from_config(config)
            path = weights or os.path.join(preset, WEIGHTS_FILE)
            if os.path.exists(path):
                model.load_weights(path)
            return model
        config = cls.preset_config(preset)
        config.update(overrides)
        model = cls.from_config(config)
        if weights is not None:
            model.load_weights(weights)
        return model

    def save_to_preset(self, preset_dir):
        """Writes `config.json` and `model.weights.h5` into `preset_dir`."""
        os.makedirs(preset_dir, exist_ok=True)
        config = {"class_name": self.__class__.__name__, "config": self.get_config()}
        with open(os.path.join(preset_dir, CONFIG_FILE), "w") as f:
            json.dump(config, f, indent=2, default=_json_default)
        self.save_weights(os.path.join(preset_dir, WEIGHTS_FILE))

    @classmethod
    def from_config(cls, config):
        return cls(**config)

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
        ...     d_latents=8, num_blocks=1, num_self_attends_per_block=1,
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


def _json_default(value):
    if isinstance(value, tuple):
        return list(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {value!r}")


def _task_class(name):
    import keras_perceiver.models as models

    if not hasattr(models, name):
        raise ValueError(f"Unknown task class {name!r} in preset config.")
    return getattr(models, name)
