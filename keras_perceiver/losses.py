"""Losses and metrics of the Perceiver IO tasks that Keras does not ship.

`EndPointError` is the optical-flow loss and metric (the "EPE" the paper
reports on Sintel and KITTI): the Euclidean distance between the predicted
and the true flow vector of each pixel, averaged over pixels.
"""

import keras
from keras import ops

# Below this squared distance the gradient of the square root is cut (it is
# infinite at 0); the value changes by at most sqrt(_MIN_SQUARED) = 1e-6 px.
_MIN_SQUARED = 1e-12


def end_point_error(y_true, y_pred):
    """Per-pixel end-point error `||y_pred - y_true||_2` over the last axis.

    Args:
        y_true, y_pred: flows `[..., 2]` (any number of leading axes).

    Returns:
        `[...]`, the distance per pixel (same units as the flows).

    Example:
    >>> import numpy as np
    >>> err = keras_perceiver.losses.end_point_error(
    ...     np.zeros((1, 2), "float32"), np.array([[3.0, 4.0]], "float32"))
    >>> float(err[0])
    5.0
    """
    y_pred = ops.convert_to_tensor(y_pred)
    y_true = ops.cast(y_true, y_pred.dtype)
    squared = ops.sum(ops.square(y_pred - y_true), axis=-1)
    return ops.sqrt(ops.maximum(squared, ops.cast(_MIN_SQUARED, squared.dtype)))


@keras.saving.register_keras_serializable(package="keras_perceiver")
class EndPointError(keras.losses.Loss):
    """Optical-flow end-point error loss: mean over pixels of `||pred - true||_2`.

    `y_true`, `y_pred`: flows `[B, H, W, 2]` (or any `[..., 2]`). With the
    default reduction the loss is the mean EPE over all pixels of the batch.

    Example:
    >>> import numpy as np
    >>> loss = keras_perceiver.losses.EndPointError()
    >>> y_true = np.zeros((1, 1, 2, 2), "float32")
    >>> y_pred = np.array([[[[3.0, 4.0], [0.0, 1.0]]]], "float32")
    >>> float(loss(y_true, y_pred))  # (5 + 1) / 2
    3.0
    """

    def __init__(self, name="end_point_error", reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        return end_point_error(y_true, y_pred)

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction}


@keras.saving.register_keras_serializable(package="keras_perceiver")
class EndPointErrorMetric(keras.metrics.MeanMetricWrapper):
    """Running mean of the per-pixel end-point error (the paper's EPE).

    Example:
    >>> import numpy as np
    >>> metric = keras_perceiver.losses.EndPointErrorMetric()
    >>> metric.update_state(np.zeros((1, 2), "float32"), np.array([[3.0, 4.0]], "float32"))
    >>> float(metric.result())
    5.0
    """

    def __init__(self, name="end_point_error", dtype=None):
        super().__init__(fn=end_point_error, name=name, dtype=dtype)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}


__all__ = ["EndPointError", "EndPointErrorMetric", "end_point_error"]
