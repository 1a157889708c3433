"""Position encodings: trainable and Fourier features (docs/architecture.md section 2).

Fourier features are separable: the features of a grid point are the
concatenation of per-dimension features. So each dimension's table (raw
position, sines, cosines; `index_dims[d] x num_bands`) is computed once in
NumPy, and any grid, full or subsampled, is assembled from those small tables
by broadcasting or gathering. The tables are identical on every backend and no
huge constant ever lands in an exported graph.

How the tables are rounded (`rounding`) matters at full size: angles reach
`pi * 15360` for the multimodal audio, where one float32 ulp of a position or
an angle moves a feature by ~1e-2, and released checkpoints were trained on
their code's float32 features (REFERENCE.md section 2, bit-level note):
- `"exact"`: positions, bands and angles in float64, rounded once at the end.
- `"deepmind"`: JAX/XLA float32 as DeepMind's jitted code computes it:
  `linspace(a, b, n)[i] = a * (1 - i*r) + i * fl(b*r)` with `r = fl(1/(n-1))`
  (XLA reassociates `b * (i*r)`), the last point `b`; subsampled positions
  `-1 + (2i) * fl(1/n)`, each operation rounded (XLA folds them as constants).
- `"transformers"`: torch float32: `torch.linspace` (`a + i*step` for the
  first half, `b - (n-1-i)*step` for the rest, each a fused multiply-add,
  `step = fl((b-a)/(n-1))`); subsampled positions `-1 + fl(2i / n)`.
Both float32 codes then take the angle `fl(fl32(pi) * fl(pos * freq))`; its
sine and cosine are evaluated in float64 and rounded once (the references'
float32 `sin` is within 1 ulp of that).
"""

import math

import keras
import numpy as np
from keras import ops

from keras_perceiver.layers.validation import check_index_range
from keras_perceiver.layers.validation import check_int
from keras_perceiver.layers.validation import check_integer_dtype
from keras_perceiver.layers.validation import check_ints
from keras_perceiver.layers.validation import check_same_batch
from keras_perceiver.layers.validation import should_check_values


def _check_indices(layer, inputs, indices, num_positions, training):
    """`indices` `[n]` or `[B, n]` integer flat positions in `[0, num_positions)`."""
    if indices is None:
        return
    check_integer_dtype(layer, "indices", indices)
    if len(indices.shape) not in (1, 2):
        raise ValueError(
            f"{layer.__class__.__name__} {layer.name!r}: expected `indices` of shape "
            f"[n] or [batch, n], received shape {tuple(indices.shape)}."
        )
    if len(indices.shape) == 2:
        check_same_batch(layer, inputs=inputs.shape, indices=indices.shape)
    if should_check_values(indices, training):
        check_index_range(layer, "indices", indices, num_positions)


ROUNDINGS = ("exact", "deepmind", "transformers")
_F32 = np.float32


def check_rounding(owner, rounding):
    """`rounding` if it is one of `ROUNDINGS`, else a ValueError naming `owner`."""
    if rounding not in ROUNDINGS:
        raise ValueError(f"{owner}: Fourier rounding must be one of {ROUNDINGS}, got {rounding!r}.")
    return rounding


def _linspace(start, stop, num, rounding):
    """`linspace(start, stop, num)` (endpoints included) rounded like `rounding`."""
    if rounding == "exact":
        return np.linspace(start, stop, num=num)
    start, stop = _F32(start), _F32(stop)
    if num == 1:
        return np.array([start], _F32)
    i = np.arange(num, dtype=np.float64)
    if rounding == "deepmind":
        r = _F32(1) / _F32(num - 1)
        head = start * (_F32(1) - i[:-1].astype(_F32) * r) + i[:-1].astype(_F32) * (stop * r)
        return np.append(head.astype(_F32), stop)
    # transformers: float64 holds each float32 product exactly, so one rounding
    # of the float64 result is the fused multiply-add torch's kernel performs.
    step = np.float64((stop - start) / _F32(num - 1))
    first = i < num // 2
    out = np.where(first, np.float64(start) + step * i, np.float64(stop) - step * (num - 1 - i))
    return out.astype(_F32)


def _subsampled_positions(num, rounding):
    """Position of grid index `i` when decoding subsampled points: `-1 + 2i/num`."""
    i = np.arange(num, dtype=np.float64)
    if rounding == "exact":
        return -1.0 + 2.0 * i / num
    if rounding == "deepmind":
        return _F32(-1) + (2.0 * i).astype(_F32) * (_F32(1) / _F32(num))
    return (_F32(-1) + (2.0 * i).astype(_F32) / _F32(num)).astype(_F32)


def fourier_tables(num, num_bands, max_resolution, rounding="exact", subsampled=False):
    """One dimension's `(positions [n, 1], sines [n, K], cosines [n, K])`, float32.

    Example:
    >>> from keras_perceiver.layers.position_encoding import fourier_tables
    >>> pos, sin, cos = fourier_tables(5, 3, 5, rounding="deepmind")
    >>> pos[:, 0].tolist(), sin.shape
    ([-1.0, -0.5, 0.0, 0.5, 1.0], (5, 3))
    """
    check_rounding("fourier_tables", rounding)
    if subsampled:
        pos = _subsampled_positions(num, rounding)
    else:
        pos = _linspace(-1.0, 1.0, num, rounding)
    freqs = _linspace(1.0, max_resolution / 2.0, num_bands, rounding)
    if rounding == "exact":
        angle = np.pi * pos[:, None] * freqs[None, :]
    else:
        angle = (_F32(np.pi) * (pos[:, None] * freqs[None, :])).astype(np.float64)
    return tuple(
        t.astype(_F32) for t in (pos[:, None], np.sin(angle), np.cos(angle))
    )


@keras.saving.register_keras_serializable(package="keras_perceiver")
class TrainablePositionEncoding(keras.layers.Layer):
    """A learned `[prod(index_dims), num_channels]` array, broadcast to the batch.

    Args:
        index_dims: int or tuple, the positions (flattened).
        num_channels: channels per position.
        initializer: DeepMind uses `TruncatedNormal(0.02)`, the default.

    Call with any tensor whose first axis is the batch, and optionally
    `indices` (`[n]` or `[B, n]` ints) to gather a subset of positions.

    Example:
    >>> import numpy as np
    >>> pe = keras_perceiver.layers.TrainablePositionEncoding(16, 8)
    >>> pe(np.zeros((3, 5))).shape
    (3, 16, 8)
    """

    def __init__(self, index_dims, num_channels, initializer=None, **kwargs):
        super().__init__(**kwargs)
        self.index_dims = check_ints(self, "index_dims", index_dims)
        self.num_channels = check_int(self, "num_channels", num_channels)
        self.initializer = keras.initializers.get(
            initializer or keras.initializers.TruncatedNormal(stddev=0.02)
        )

    @property
    def num_positions(self):
        return math.prod(self.index_dims)

    def build(self, inputs_shape=None, indices_shape=None):
        self.embeddings = self.add_weight(
            name="embeddings",
            shape=(self.num_positions, self.num_channels),
            initializer=self.initializer,
        )
        self.built = True

    def call(self, inputs, indices=None, training=None):
        _check_indices(self, inputs, indices, self.num_positions, training)
        batch = ops.shape(inputs)[0]
        table = ops.convert_to_tensor(self.embeddings)
        if indices is not None:
            table = ops.take(table, indices, axis=0)
        if len(table.shape) == 3:
            return table
        return ops.broadcast_to(table[None], (batch,) + tuple(table.shape))

    def compute_output_shape(self, inputs_shape, indices_shape=None):
        n = self.num_positions if indices_shape is None else indices_shape[-1]
        return (inputs_shape[0], n, self.num_channels)

    def get_config(self):
        config = super().get_config()
        config.update(
            index_dims=self.index_dims,
            num_channels=self.num_channels,
            initializer=keras.initializers.serialize(self.initializer),
        )
        return config


@keras.saving.register_keras_serializable(package="keras_perceiver")
class FourierPositionEncoding(keras.layers.Layer):
    """Fourier features of a grid: `[pos (d), sin(pi f) (d*K), cos(pi f) (d*K)]`.

    `f[d, k] = pos[d] * linspace(1, max_resolution[d] / 2, num_bands)[k]`,
    flattened dimension-major; positions are `linspace(-1, 1, n)` per axis,
    or `-1 + 2 * i / n` for subsampled indices (DeepMind's chunked decoding).

    Args:
        index_dims: the grid, e.g. `(224, 224)`.
        num_bands: `K`, frequency bands per dimension.
        max_resolution: per dimension, defaults to `index_dims`.
        concat_pos: prepend the raw positions.
        sine_only: drop the cosines.
        rounding: how the float32 tables are rounded (module docstring):
            `"exact"` (float64, rounded once), `"deepmind"` or
            `"transformers"` (each code's own float32 arithmetic; use the one
            a checkpoint was trained with).

    Call with any tensor whose first axis is the batch; with `indices`
    (flat grid indices, `[n]` or `[B, n]`) only those points are encoded.

    Example:
    >>> import numpy as np
    >>> pe = keras_perceiver.layers.FourierPositionEncoding((4, 5), num_bands=3)
    >>> pe(np.zeros((2, 1))).shape
    (2, 20, 14)
    """

    def __init__(
        self,
        index_dims,
        num_bands,
        max_resolution=None,
        concat_pos=True,
        sine_only=False,
        rounding="exact",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.rounding = check_rounding("FourierPositionEncoding", rounding)
        self.index_dims = check_ints(self, "index_dims", index_dims)
        self.num_bands = check_int(self, "num_bands", num_bands)
        self.max_resolution = tuple(max_resolution) if max_resolution else None
        if self.max_resolution and not all(
            isinstance(r, (int, float)) and not isinstance(r, bool) and r > 0
            for r in self.max_resolution
        ):
            raise ValueError(
                f"FourierPositionEncoding: `max_resolution` must hold positive numbers, "
                f"received {max_resolution!r}."
            )
        self.concat_pos = concat_pos
        self.sine_only = sine_only
        resolution = self.max_resolution or self.index_dims
        if len(resolution) != len(self.index_dims):
            raise ValueError(
                f"FourierPositionEncoding: max_resolution {resolution} must have "
                f"one entry per index dim {self.index_dims}."
            )
        self._resolution = resolution

    @property
    def num_channels(self):
        d = len(self.index_dims)
        return (d if self.concat_pos else 0) + d * self.num_bands * (1 if self.sine_only else 2)

    def _tables(self, subsampled):
        """Per dimension, float32 `(pos [n_d, 1], sin [n_d, K], cos [n_d, K])`."""
        return [
            fourier_tables(n, self.num_bands, self._resolution[d], self.rounding, subsampled)
            for d, n in enumerate(self.index_dims)
        ]

    def _assemble(self, parts_per_dim):
        """Orders per-dimension parts as [pos..., sin..., cos...]."""
        groups = [[p[0] for p in parts_per_dim]] if self.concat_pos else []
        groups.append([p[1] for p in parts_per_dim])
        if not self.sine_only:
            groups.append([p[2] for p in parts_per_dim])
        return [part for group in groups for part in group]

    def build(self, inputs_shape=None, indices_shape=None):
        self.built = True

    def call(self, inputs, indices=None, training=None):
        _check_indices(self, inputs, indices, math.prod(self.index_dims), training)
        batch = ops.shape(inputs)[0]
        if indices is None:
            table = self._full_grid_tensor()
        else:
            table = self._gather(indices)
        if len(table.shape) == 3:
            return table
        return ops.broadcast_to(table[None], (batch,) + tuple(table.shape))

    def _full_grid_tensor(self):
        rank = len(self.index_dims)
        parts = []
        for d, dim_parts in enumerate(self._tables(subsampled=False)):
            shape = [1] * rank
            shape[d] = self.index_dims[d]
            parts.append(
                tuple(
                    ops.broadcast_to(
                        ops.convert_to_tensor(
                            p.reshape(shape + [p.shape[-1]])
                        ),
                        self.index_dims + (p.shape[-1],),
                    )
                    for p in dim_parts
                )
            )
        grid = ops.concatenate(self._assemble(parts), axis=-1)
        return ops.cast(ops.reshape(grid, (-1, self.num_channels)), self.compute_dtype)

    def _gather(self, indices):
        indices = ops.cast(indices, "int32")
        strides = [math.prod(self.index_dims[d + 1 :]) for d in range(len(self.index_dims))]
        parts = []
        for d, dim_parts in enumerate(self._tables(subsampled=True)):
            axis_index = (indices // strides[d]) % self.index_dims[d]
            parts.append(
                tuple(
                    ops.take(ops.convert_to_tensor(p), axis_index, axis=0)
                    for p in dim_parts
                )
            )
        return ops.cast(ops.concatenate(self._assemble(parts), axis=-1), self.compute_dtype)

    def compute_output_shape(self, inputs_shape, indices_shape=None):
        n = math.prod(self.index_dims) if indices_shape is None else indices_shape[-1]
        return (inputs_shape[0], n, self.num_channels)

    def get_config(self):
        config = super().get_config()
        config.update(
            index_dims=self.index_dims,
            num_bands=self.num_bands,
            max_resolution=self.max_resolution,
            concat_pos=self.concat_pos,
            sine_only=self.sine_only,
            rounding=self.rounding,
        )
        return config
