"""Image input adapters: conv stem, space-to-depth patches, image preprocessor.

`ImagePreprocessor` turns images `[B, H, W, C]` (or video `[B, T, H, W, C]`)
into the encoder's input array `[B, M, C']`: a featurisation (`prep_type`)
followed by a position encoding, concatenated or added (DeepMind's
`io_processors.ImagePreprocessor`, docs/architecture.md section 3). Everything uses
`keras.ops` / `keras.layers` only, so it runs on every Keras backend.
"""

import math

import keras
from keras import ops

from keras_perceiver.layers.position_encoding import FourierPositionEncoding
from keras_perceiver.layers.position_encoding import check_rounding
from keras_perceiver.layers.position_encoding import TrainablePositionEncoding
from keras_perceiver.layers.utils import check_rank
from keras_perceiver.layers.utils import dense_initializer
from keras_perceiver.layers.validation import check_float
from keras_perceiver.layers.validation import check_int
from keras_perceiver.layers.validation import check_shape

STEM_PADDINGS = ("deepmind", "transformers")
PREP_TYPES = ("conv", "conv1x1", "pixels", "patches")


def _check_choice(layer, name, value, allowed):
    if value not in allowed:
        raise ValueError(f"{layer}: {name} must be one of {allowed}, received {value!r}.")


@keras.saving.register_keras_serializable(package="keras_perceiver")
class ConvDownsample(keras.layers.Layer):
    """The 4x conv stem: Conv 7x7 stride 2 (no bias) -> BatchNorm -> ReLU -> MaxPool 3x3 stride 2.

    Args:
        num_channels: conv output channels (64 in the paper).
        padding: `"deepmind"` pads TF-style `SAME` for the conv and the pool
            (224 -> 112 -> 56); `"transformers"` pads the conv 3 on each side
            and pools unpadded (224 -> 112 -> 55), as the transformers port.
        use_batchnorm: BatchNorm after the conv.
        batchnorm_epsilon, batchnorm_momentum: 1e-5 and 0.9 (Haiku's defaults).

    Example:
    >>> import numpy as np
    >>> stem = keras_perceiver.layers.ConvDownsample(num_channels=8)
    >>> stem(np.ones((2, 32, 32, 3))).shape
    (2, 8, 8, 8)
    """

    def __init__(self, num_channels=64, padding="deepmind", use_batchnorm=True,
                 batchnorm_epsilon=1e-5, batchnorm_momentum=0.9,
                 kernel_initializer="variance_scaling", **kwargs):
        super().__init__(**kwargs)
        _check_choice("ConvDownsample", "padding", padding, STEM_PADDINGS)
        check_int(self, "num_channels", num_channels)
        check_float(self, "batchnorm_epsilon", batchnorm_epsilon)
        check_float(self, "batchnorm_momentum", batchnorm_momentum, 0.0, 1.0, min_inclusive=True)
        self.num_channels = num_channels
        self.padding = padding
        self.use_batchnorm = use_batchnorm
        self.batchnorm_epsilon = batchnorm_epsilon
        self.batchnorm_momentum = batchnorm_momentum
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def output_grid(self, height, width):
        """Spatial output size `(h, w)` for an input of `height x width`."""
        if self.padding == "deepmind":
            return tuple(math.ceil(math.ceil(n / 2) / 2) for n in (height, width))
        return tuple(((n + 6 - 7) // 2 + 1 - 3) // 2 + 1 for n in (height, width))

    def build(self, images_shape):
        check_rank(self, "images", images_shape, 4)
        same = self.padding == "deepmind"
        shape = tuple(images_shape)
        self.conv_padding = None
        if not same:
            self.conv_padding = keras.layers.ZeroPadding2D(3, dtype=self.dtype_policy)
            shape = self.conv_padding.compute_output_shape(shape)
        self.conv = keras.layers.Conv2D(
            self.num_channels, 7, strides=2, padding="same" if same else "valid",
            use_bias=False, kernel_initializer=dense_initializer(self.kernel_initializer),
            dtype=self.dtype_policy, name="conv",
        )
        self.conv.build(shape)
        shape = self.conv.compute_output_shape(shape)
        self.batchnorm = None
        if self.use_batchnorm:
            self.batchnorm = keras.layers.BatchNormalization(
                epsilon=self.batchnorm_epsilon, momentum=self.batchnorm_momentum,
                dtype=self.dtype_policy, name="batchnorm",
            )
            self.batchnorm.build(shape)
        # After the ReLU every value is >= 0, so SAME's padding can never win the max.
        self._images_channels = images_shape[-1]
        self.max_pool = keras.layers.MaxPooling2D(
            3, strides=2, padding="same" if same else "valid", dtype=self.dtype_policy
        )
        self.built = True

    def call(self, images, training=None):
        check_shape(self, "images", images.shape, (None, None, None, self._images_channels))
        x = images if self.conv_padding is None else self.conv_padding(images)
        x = self.conv(x)
        if self.batchnorm is not None:
            x = self.batchnorm(x, training=training)
        return self.max_pool(ops.relu(x))

    def compute_output_shape(self, images_shape):
        h, w = images_shape[1:3]
        if h is not None and w is not None:
            h, w = self.output_grid(h, w)
        return (images_shape[0], h, w, self.num_channels)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_channels=self.num_channels, padding=self.padding,
            use_batchnorm=self.use_batchnorm, batchnorm_epsilon=self.batchnorm_epsilon,
            batchnorm_momentum=self.batchnorm_momentum,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config


@keras.saving.register_keras_serializable(package="keras_perceiver")
class SpaceToDepth(keras.layers.Layer):
    """Patches: `[B, (h dh), (w dw), C] -> [B, h, w, (dh dw C)]`.

    Video `[B, (t dt), (h dh), (w dw), C] -> [B, t, h, w, (dt dh dw C)]`.
    The channel order matches DeepMind's `space_to_depth` (einops).

    Args:
        spatial_block_size: `dh = dw`.
        temporal_block_size: `dt` (video only).

    Example:
    >>> import numpy as np
    >>> keras_perceiver.layers.SpaceToDepth(4)(np.ones((2, 8, 12, 3))).shape
    (2, 2, 3, 48)
    """

    def __init__(self, spatial_block_size, temporal_block_size=1, **kwargs):
        super().__init__(**kwargs)
        self.spatial_block_size = check_int(self, "spatial_block_size", spatial_block_size)
        self.temporal_block_size = check_int(self, "temporal_block_size", temporal_block_size)

    def _blocks(self, rank):
        s, t = self.spatial_block_size, self.temporal_block_size
        return (s, s) if rank == 4 else (t, s, s)

    def build(self, inputs_shape):
        self._check(inputs_shape)
        self.built = True

    def _check(self, inputs_shape):
        if len(inputs_shape) not in (4, 5):
            raise ValueError(
                f"{self.name}: expected images [B, H, W, C] or video [B, T, H, W, C], "
                f"received shape {tuple(inputs_shape)}."
            )
        for n, b in zip(inputs_shape[1:-1], self._blocks(len(inputs_shape))):
            if n is not None and n % b:
                raise ValueError(
                    f"{self.name}: input dims {tuple(inputs_shape[1:-1])} must be "
                    f"divisible by the blocks {self._blocks(len(inputs_shape))}."
                )

    def call(self, inputs):
        self._check(tuple(inputs.shape))
        if any(n is None for n in inputs.shape[1:]):
            raise ValueError(
                f"{self.name}: needs static dims after the batch, received shape "
                f"{tuple(inputs.shape)}."
            )
        rank = len(inputs.shape)
        blocks = self._blocks(rank)
        dims = [inputs.shape[i] for i in range(1, rank - 1)]
        channels = inputs.shape[-1]
        split = [-1]
        for n, b in zip(dims, blocks):
            split += [n // b, b]
        x = ops.reshape(inputs, split + [channels])
        # [B, n1, b1, n2, b2, (n3, b3), C] -> [B, n1, n2, (n3), b1, b2, (b3), C]
        k = len(dims)
        order = [0] + [1 + 2 * i for i in range(k)] + [2 + 2 * i for i in range(k)] + [1 + 2 * k]
        x = ops.transpose(x, order)
        return ops.reshape(x, [-1] + [n // b for n, b in zip(dims, blocks)] + [math.prod(blocks) * channels])

    def compute_output_shape(self, inputs_shape):
        blocks = self._blocks(len(inputs_shape))
        dims = [None if n is None else n // b for n, b in zip(inputs_shape[1:-1], blocks)]
        return (inputs_shape[0], *dims, math.prod(blocks) * inputs_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(spatial_block_size=self.spatial_block_size,
                      temporal_block_size=self.temporal_block_size)
        return config


@keras.saving.register_keras_serializable(package="keras_perceiver")
class ImagePreprocessor(keras.layers.Layer):
    """Images -> `[B, M, C]`: featurise, flatten, add a position encoding.

    Featurisation (`prep_type`):
    - `"conv"`: the `ConvDownsample` stem (4x down, `num_channels` out).
    - `"conv1x1"`: a 1x1 conv to `num_channels`, stride `spatial_downsample`.
    - `"pixels"`: every (strided) pixel is a token.
    - `"patches"`: `SpaceToDepth` blocks, optionally `Dense(num_channels)`
      (`conv_after_patching`). Pixels and patches also take video
      `[B, T, H, W, C]` (`temporal_downsample`).

    The position encoding (`"fourier"` over the token grid, or `"trainable"`
    with `position_channels`), optionally projected to `project_pos_dim`, is
    concatenated after the features (`concat_or_add_pos="concat"`) or added.

    Args:
        prep_type: see above.
        spatial_downsample: default 4 for `"conv"` (the only value it
            supports), 1 otherwise.
        temporal_downsample: video only.
        num_channels: conv / conv1x1 / patch-projection output channels.
        conv_after_patching: `Dense(num_channels)` after the patches.
        stem_padding: `"deepmind"` or `"transformers"`, see `ConvDownsample`.
        position_encoding_type: `"fourier"` or `"trainable"`.
        num_bands, max_resolution, concat_pos, sine_only: Fourier options;
            `max_resolution` defaults to the token grid.
        fourier_rounding: `FourierPositionEncoding`'s `rounding`.
        position_channels: width of a trainable encoding.
        project_pos_dim: if > 0, `Dense(project_pos_dim)` on the encoding.
        concat_or_add_pos: `"concat"` or `"add"`.

    Example:
    >>> import numpy as np
    >>> prep = keras_perceiver.layers.ImagePreprocessor("pixels", num_bands=4)
    >>> prep(np.ones((2, 8, 8, 3))).shape  # 3 + 2 + 2*2*4 channels
    (2, 64, 21)
    """

    def __init__(self, prep_type="conv", spatial_downsample=None, temporal_downsample=1,
                 num_channels=64, conv_after_patching=False, stem_padding="deepmind",
                 position_encoding_type="fourier", num_bands=64, max_resolution=None,
                 concat_pos=True, sine_only=False, fourier_rounding="exact", position_channels=None,
                 project_pos_dim=-1, concat_or_add_pos="concat",
                 position_initializer=None, kernel_initializer="variance_scaling", **kwargs):
        super().__init__(**kwargs)
        name = "ImagePreprocessor"
        _check_choice(name, "prep_type", prep_type, PREP_TYPES)
        _check_choice(name, "stem_padding", stem_padding, STEM_PADDINGS)
        _check_choice(name, "position_encoding_type", position_encoding_type,
                      ("fourier", "trainable"))
        _check_choice(name, "concat_or_add_pos", concat_or_add_pos, ("concat", "add"))
        if prep_type == "conv" and spatial_downsample not in (None, 4):
            raise ValueError(
                f"{name}: prep_type='conv' downsamples by 4, received "
                f"spatial_downsample={spatial_downsample}."
            )
        if position_encoding_type == "trainable" and not position_channels:
            raise ValueError(f"{name}: a trainable position encoding needs position_channels.")
        check_int(name, "spatial_downsample", spatial_downsample, allow_none=True)
        check_int(name, "temporal_downsample", temporal_downsample)
        check_int(name, "num_channels", num_channels)
        check_int(name, "num_bands", num_bands)
        check_int(name, "position_channels", position_channels, allow_none=True)
        check_int(name, "project_pos_dim", project_pos_dim, minimum=-1)
        self.prep_type = prep_type
        self.spatial_downsample = spatial_downsample
        self.temporal_downsample = temporal_downsample
        self.num_channels = num_channels
        self.conv_after_patching = conv_after_patching
        self.stem_padding = stem_padding
        self.position_encoding_type = position_encoding_type
        self.num_bands = num_bands
        self.max_resolution = tuple(max_resolution) if max_resolution else None
        self.concat_pos = concat_pos
        self.sine_only = sine_only
        self.fourier_rounding = check_rounding(name, fourier_rounding)
        self.position_channels = position_channels
        self.project_pos_dim = project_pos_dim
        self.concat_or_add_pos = concat_or_add_pos
        self.position_initializer = keras.initializers.get(
            position_initializer or keras.initializers.TruncatedNormal(stddev=0.02)
        )
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    @property
    def _downsample(self):
        if self.spatial_downsample is not None:
            return self.spatial_downsample
        return 4 if self.prep_type == "conv" else 1

    def _featurizer_output_shape(self, images_shape):
        """`(index_dims, channels)` of the features before flattening."""
        dims = tuple(images_shape[1:-1])
        channels = images_shape[-1]
        s, t = self._downsample, self.temporal_downsample
        if self.prep_type == "conv":
            return self.stem.output_grid(*dims), self.num_channels
        if self.prep_type == "conv1x1":
            return tuple(-(-n // s) for n in dims), self.num_channels
        if self.prep_type == "pixels":
            steps = (s, s) if len(dims) == 2 else (t, s, s)
            return tuple(-(-n // k) for n, k in zip(dims, steps)), channels
        shape = self.patches.compute_output_shape(images_shape)
        return tuple(shape[1:-1]), self.num_channels if self.conv_after_patching else shape[-1]

    def build(self, images_shape):
        rank = len(images_shape)
        if rank not in (4, 5) or (rank == 5 and self.prep_type in ("conv", "conv1x1")):
            raise ValueError(
                f"{self.name}: prep_type={self.prep_type!r} expects images [B, H, W, C]"
                f"{'' if self.prep_type in ('conv', 'conv1x1') else ' or video [B, T, H, W, C]'}"
                f", received shape {tuple(images_shape)}."
            )
        if any(n is None for n in images_shape[1:]):
            raise ValueError(
                f"{self.name}: needs static image dims, received shape {tuple(images_shape)}."
            )
        self._images_shape = tuple(images_shape[1:])
        init = lambda: dense_initializer(self.kernel_initializer)  # noqa: E731
        if self.prep_type == "conv":
            self.stem = ConvDownsample(
                self.num_channels, padding=self.stem_padding,
                kernel_initializer=self.kernel_initializer, dtype=self.dtype_policy, name="stem",
            )
            self.stem.build(images_shape)
        elif self.prep_type == "conv1x1":
            self.conv1x1 = keras.layers.Conv2D(
                self.num_channels, 1, strides=self._downsample, kernel_initializer=init(),
                dtype=self.dtype_policy, name="conv1x1",
            )
            self.conv1x1.build(images_shape)
        elif self.prep_type == "patches":
            self.patches = SpaceToDepth(
                self._downsample, self.temporal_downsample, dtype=self.dtype_policy, name="patches"
            )
            self.patches.build(images_shape)
            self.patches_linear = None
            if self.conv_after_patching:
                self.patches_linear = keras.layers.Dense(
                    self.num_channels, kernel_initializer=init(), dtype=self.dtype_policy,
                    name="patches_linear",
                )
                self.patches_linear.build(self.patches.compute_output_shape(images_shape))
        self.index_dims, self._feature_channels = self._featurizer_output_shape(images_shape)
        if self.position_encoding_type == "fourier":
            self.position_encoding = FourierPositionEncoding(
                self.index_dims, self.num_bands, max_resolution=self.max_resolution,
                concat_pos=self.concat_pos, sine_only=self.sine_only,
                rounding=self.fourier_rounding, dtype=self.dtype_policy, name="position_encoding",
            )
            pos_channels = self.position_encoding.num_channels
        else:
            self.position_encoding = TrainablePositionEncoding(
                math.prod(self.index_dims), self.position_channels,
                initializer=self.position_initializer, dtype=self.dtype_policy,
                name="position_encoding",
            )
            self.position_encoding.build()
            pos_channels = self.position_channels
        self.position_projection = None
        if self.project_pos_dim > 0:
            self.position_projection = keras.layers.Dense(
                self.project_pos_dim, kernel_initializer=init(), dtype=self.dtype_policy,
                name="position_projection",
            )
            self.position_projection.build((None, None, pos_channels))
            pos_channels = self.project_pos_dim
        if self.concat_or_add_pos == "add" and pos_channels != self._feature_channels:
            raise ValueError(
                f"{self.name}: concat_or_add_pos='add' needs position channels "
                f"({pos_channels}) equal to the feature channels ({self._feature_channels})."
            )
        self.output_channels = (
            pos_channels if self.concat_or_add_pos == "add" else self._feature_channels + pos_channels
        )
        self.built = True

    def call(self, images, training=None):
        if tuple(images.shape[1:]) != self._images_shape:
            raise ValueError(
                f"{self.name}: expected images of shape [batch, "
                f"{', '.join(map(str, self._images_shape))}], received shape "
                f"{tuple(images.shape)}."
            )
        x = ops.cast(images, self.compute_dtype)
        s, t = self._downsample, self.temporal_downsample
        if self.prep_type == "conv":
            x = self.stem(x, training=training)
        elif self.prep_type == "conv1x1":
            x = self.conv1x1(x)
        elif self.prep_type == "pixels":
            x = x[:, ::s, ::s] if len(x.shape) == 4 else x[:, ::t, ::s, ::s]
        else:
            x = self.patches(x)
            if self.patches_linear is not None:
                x = self.patches_linear(x)
        x = ops.reshape(x, (-1, math.prod(self.index_dims), self._feature_channels))
        pos = self.position_encoding(x)
        if self.position_projection is not None:
            pos = self.position_projection(pos)
        if self.concat_or_add_pos == "add":
            return x + pos
        return ops.concatenate([x, pos], axis=-1)

    def compute_output_shape(self, images_shape):
        if not self.built:
            self.build(images_shape)
        return (images_shape[0], math.prod(self.index_dims), self.output_channels)

    def get_config(self):
        config = super().get_config()
        config.update(
            prep_type=self.prep_type, spatial_downsample=self.spatial_downsample,
            temporal_downsample=self.temporal_downsample, num_channels=self.num_channels,
            conv_after_patching=self.conv_after_patching, stem_padding=self.stem_padding,
            position_encoding_type=self.position_encoding_type, num_bands=self.num_bands,
            max_resolution=self.max_resolution, concat_pos=self.concat_pos,
            sine_only=self.sine_only, fourier_rounding=self.fourier_rounding,
            position_channels=self.position_channels,
            project_pos_dim=self.project_pos_dim, concat_or_add_pos=self.concat_or_add_pos,
            position_initializer=keras.initializers.serialize(self.position_initializer),
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config
