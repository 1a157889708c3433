"""LAMB as the Perceiver IO paper trained with it (optax's `lamb`).

The paper's optimizer is optax's chain `clip_by_global_norm(10)`,
`scale_by_adam(b1=0.9, b2=0.999, eps=1e-6)`, `add_decayed_weights(wd,
mask)`, `scale_by_trust_ratio()`, `scale(-lr)`. Per variable `w` with
gradient `g` (after clipping) at step `t`:

    m = b1 m + (1 - b1) g;   v = b2 v + (1 - b2) g^2
    u = (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
    u = u + wd * w                          (only where the mask says so)
    r = ||w|| / ||u||   (1 where either norm is 0)
    w = w - lr * r * u

The weight decay enters the update *before* the trust ratio.
`keras.optimizers.Lamb` computes the same thing without weight decay, but
its `weight_decay` is decoupled (`w -= lr * wd * w` outside the trust
ratio), hence this class. The default mask leaves out, as the paper's
code does, biases and normalisation parameters (LayerNorm, BatchNorm):
every variable of rank <= 1 and every variable on a normalisation layer's
path. Only `keras.ops`: it runs on the TensorFlow, JAX and PyTorch backends.
"""

import re

import keras
from keras import ops

# Path pieces of normalisation layers (Keras' default names and ours).
NORM_PATTERN = r"(?:^|/)[^/]*(?:layer_norm|layernorm|batch_norm|batchnorm|normalization)[^/]*/"


def default_decay_mask(variable):
    """True if weight decay applies to `variable`: rank >= 2 and not a
    normalisation layer's (biases, LayerNorm/BatchNorm scales and offsets
    are excluded, as in the paper's training code).

    Example:
    >>> import keras
    >>> dense = keras.layers.Dense(2)
    >>> dense.build((None, 3))
    >>> [keras_perceiver.optimizers.default_decay_mask(v) for v in dense.weights]
    [True, False]
    """
    if len(variable.shape) <= 1:
        return False
    path = getattr(variable, "path", None) or variable.name
    return re.search(NORM_PATTERN, path) is None


@keras.saving.register_keras_serializable(package="keras_perceiver")
class Lamb(keras.optimizers.Optimizer):
    """LAMB with optax's weight decay (added before the trust ratio).

    Args:
        learning_rate: float or `keras.optimizers.schedules.LearningRateSchedule`
            (see `keras_perceiver.recipes.schedules`).
        beta_1, beta_2: Adam moment decay rates.
        epsilon: Adam's epsilon, outside the square root (optax: 1e-6).
        weight_decay: decay rate `wd` (0 or None: none).
        decay_all: apply the decay to every variable (optax's `lamb` without
            a mask); default False uses `default_decay_mask`. Variables
            named in `exclude_from_weight_decay(...)` are always excluded.
        global_clipnorm: clip the gradients to this global norm first (the
            paper: 10). Other keyword arguments: `keras.optimizers.Optimizer`.

    Example:
    >>> import numpy as np, keras
    >>> opt = keras_perceiver.optimizers.Lamb(1e-3, weight_decay=0.1, global_clipnorm=10.0)
    >>> w = keras.Variable(np.ones((2, 2), "float32"))
    >>> opt.apply([np.ones((2, 2), "float32")], [w])
    >>> bool(np.allclose(keras.ops.convert_to_numpy(w), 0.999))  # w - lr * (unit step)
    True
    """

    def __init__(
        self,
        learning_rate=0.001,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-6,
        weight_decay=None,
        decay_all=False,
        name="lamb",
        **kwargs,
    ):
        if weight_decay is not None and (not isinstance(weight_decay, (int, float))
                                         or weight_decay < 0):
            raise ValueError(f"Lamb: weight_decay must be None or a float >= 0, "
                             f"received {weight_decay!r}.")
        super().__init__(learning_rate=learning_rate, weight_decay=weight_decay,
                         name=name, **kwargs)
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.decay_all = bool(decay_all)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._momentums, self._velocities = self.add_optimizer_variables(
            var_list, ["momentum", "velocity"]
        )
        # Decided once on the Keras variables (backends hand `update_step`
        # their native variables, without a path).
        self._decay_flags = [self.decays(v) for v in var_list]

    def _apply_weight_decay(self, variables):
        # The decay is part of the update (see `update_step`), not decoupled.
        return

    def decays(self, variable):
        """Whether the weight decay applies to `variable`."""
        if not self.weight_decay or not self._use_weight_decay(variable):
            return False
        return self.decay_all or default_decay_mask(variable)

    def update_step(self, gradient, variable, learning_rate):
        # Written in optax's order of operations, so that float32 results
        # agree with optax's to rounding.
        dtype = variable.dtype
        lr = ops.cast(learning_rate, dtype)
        gradient = ops.cast(gradient, dtype)
        step = ops.cast(self.iterations + 1, dtype)
        b1, b2 = ops.cast(self.beta_1, dtype), ops.cast(self.beta_2, dtype)
        index = self._get_variable_index(variable)
        m, v = self._momentums[index], self._velocities[index]
        self.assign(m, ops.add(ops.multiply(1 - b1, gradient), ops.multiply(b1, m)))
        self.assign(v, ops.add(ops.multiply(1 - b2, ops.square(gradient)), ops.multiply(b2, v)))
        m_hat = ops.divide(m, 1 - ops.power(b1, step))
        v_hat = ops.divide(v, 1 - ops.power(b2, step))
        update = ops.divide(m_hat, ops.add(ops.sqrt(v_hat), self.epsilon))
        if self._decay_flags[index]:
            update = ops.add(update, ops.multiply(ops.cast(self.weight_decay, dtype), variable))
        w_norm = ops.sqrt(ops.sum(ops.square(variable)))
        u_norm = ops.sqrt(ops.sum(ops.square(update)))
        zero = ops.logical_or(ops.equal(w_norm, 0), ops.equal(u_norm, 0))
        ratio = ops.where(zero, ops.ones_like(w_norm), ops.divide(w_norm, u_norm))
        self.assign_add(variable, ops.multiply(ops.multiply(update, ratio), ops.negative(lr)))

    def get_config(self):
        config = super().get_config()
        config.update(beta_1=self.beta_1, beta_2=self.beta_2, epsilon=self.epsilon,
                      decay_all=self.decay_all)
        return config
