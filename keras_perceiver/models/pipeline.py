"""Raw-data `fit`/`evaluate`/`predict` for tasks with a data preprocessor.

`PipelineModel` is mixed into `PerceiverTask`. When `task.preprocessor` is
set (a `keras_perceiver.preprocessors.PerceiverPreprocessor`), the data
given to `fit`, `evaluate` and `predict` is raw: NumPy arrays, lists of
strings or dicts are batched into a `tf.data.Dataset` and the preprocessor
is mapped over the batches (on the CPU, with TF ops, whatever the Keras
backend); a `tf.data.Dataset` is mapped as given. With
`task.preprocessor = None` (the default) the data goes to Keras unchanged,
for pre-mapped data. The `tf.data` import happens only with a preprocessor.
"""

import functools

import keras


def _is_dataset(x):
    try:
        import tensorflow as tf
    except ImportError:  # pragma: no cover - TF is a dependency
        return False
    return isinstance(x, tf.data.Dataset)


def _to_dataset(preprocessor, x, y=None, sample_weight=None, batch_size=None, shuffle=False):
    import tensorflow as tf

    if _is_dataset(x):
        if y is not None or sample_weight is not None:
            raise ValueError("`y` and `sample_weight` must be None when `x` is a tf.data.Dataset.")
        ds = x
    else:
        data = keras.utils.pack_x_y_sample_weight(_as_tensors(x), _as_tensors(y),
                                                  _as_tensors(sample_weight))
        ds = tf.data.Dataset.from_tensor_slices(data)
        if shuffle:
            ds = ds.shuffle(int(ds.cardinality()), reshuffle_each_iteration=True)
        ds = ds.batch(batch_size or 32)
    return ds.map(preprocessor, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def _as_tensors(value):
    import numpy as np

    if value is None:
        return None
    if isinstance(value, dict):
        return {k: _as_tensors(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], (str, bytes)):
        return np.asarray(value, dtype=object)
    return value


class PipelineModel:
    """Mixin: `fit`/`evaluate`/`predict` map `self.preprocessor` over raw data.

    Every task takes `preprocessor=None` (a `PerceiverPreprocessor` or its
    serialised dict); a subclass's `get_config()` gets a `"preprocessor"`
    entry added when one is attached, so `.keras` files and `from_config`
    keep it.
    """

    EXTRA_MODEL_KWARGS = ("preprocessor",)

    def __init__(self, *args, preprocessor=None, **kwargs):
        super().__init__(*args, **kwargs)
        PipelineModel.preprocessor.fset(self, preprocessor)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        get_config = cls.__dict__.get("get_config")
        if get_config is None or getattr(get_config, "_adds_preprocessor", False):
            return

        @functools.wraps(get_config)
        def with_preprocessor(self):
            config = get_config(self)
            if self.preprocessor is not None:
                from keras_perceiver.preprocessors.preprocessor import serialize

                config["preprocessor"] = serialize(self.preprocessor)
            return config

        with_preprocessor._adds_preprocessor = True
        cls.get_config = with_preprocessor

    @property
    def preprocessor(self):
        """The data preprocessor mapped over raw data, or None (pre-mapped data)."""
        return getattr(self, "_data_preprocessor", None)

    @preprocessor.setter
    def preprocessor(self, value):
        if value is not None:
            from keras_perceiver.preprocessors.preprocessor import deserialize

            try:
                value = deserialize(value)
            except TypeError as error:
                raise TypeError(
                    f"{type(self).__name__}: expected `preprocessor` as a "
                    f"keras_perceiver.preprocessors.PerceiverPreprocessor or None ({error})"
                ) from None
        object.__setattr__(self, "_data_preprocessor", value)

    def default_preprocessor(self):
        """The data preprocessor that maps this task's raw data to its inputs."""
        raise ValueError(f"{type(self).__name__} has no default data preprocessor.")

    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, sample_weight=None,
            **kwargs):
        if self.preprocessor is None:
            return super().fit(
                x, y, batch_size=batch_size, epochs=epochs, verbose=verbose,
                callbacks=callbacks, validation_split=validation_split,
                validation_data=validation_data, shuffle=shuffle,
                sample_weight=sample_weight, **kwargs)
        if validation_split:
            raise ValueError(
                f"{self.name}.fit: validation_split is not supported with a preprocessor "
                "attached; pass validation_data (raw) instead."
            )
        ds = _to_dataset(self.preprocessor, x, y, sample_weight, batch_size, shuffle)
        if validation_data is not None:
            if not _is_dataset(validation_data):
                validation_data = keras.utils.unpack_x_y_sample_weight(tuple(validation_data))
                validation_data = _to_dataset(self.preprocessor, *validation_data,
                                              batch_size=batch_size)
            else:
                validation_data = _to_dataset(self.preprocessor, validation_data)
        return super().fit(ds, epochs=epochs, verbose=verbose, callbacks=callbacks,
                           validation_data=validation_data, shuffle=False, **kwargs)

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None,
                 **kwargs):
        if self.preprocessor is None:
            return super().evaluate(x, y, batch_size=batch_size, verbose=verbose,
                                    sample_weight=sample_weight, **kwargs)
        ds = _to_dataset(self.preprocessor, x, y, sample_weight, batch_size)
        return super().evaluate(ds, verbose=verbose, **kwargs)

    def predict(self, x, batch_size=None, verbose="auto", **kwargs):
        if self.preprocessor is None:
            return super().predict(x, batch_size=batch_size, verbose=verbose, **kwargs)
        ds = _to_dataset(self.preprocessor, x, batch_size=batch_size)
        return super().predict(ds, verbose=verbose, **kwargs)


def attach_preprocessor(model, preprocessor, saved=None):
    """Sets `model.preprocessor` as `from_preset(..., preprocessor=...)` says."""
    if preprocessor is None:
        model.preprocessor = saved
    elif preprocessor is False:
        model.preprocessor = None
    elif isinstance(preprocessor, str):
        if preprocessor != "default":
            raise ValueError(
                f"{type(model).__name__}.from_preset: preprocessor must be None, "
                f"'default', False or a PerceiverPreprocessor, received {preprocessor!r}."
            )
        model.preprocessor = saved if saved is not None else model.default_preprocessor()
    else:
        model.preprocessor = preprocessor
    return model
