"""Optical flow input adapter: 3x3 patches of two frames + Fourier positions.

Perceiver IO's flow model (docs/architecture.md section 3) describes every pixel by
the 3x3 neighbourhood around it in both frames: each frame is zero-padded by
one pixel, cut into 3x3 patches at stride 1 (channels ordered kh, kw, c, as
TF's `extract_patches` with SAME padding), the two frames' patches are
stacked on channels (frame-major: 2 x 27 = 54), linearly projected, and
Fourier features of the pixel grid are concatenated.
"""

import keras
from keras import ops

from keras_perceiver.layers.position_encoding import FourierPositionEncoding
from keras_perceiver.layers.position_encoding import check_rounding
from keras_perceiver.layers.utils import check_rank
from keras_perceiver.layers.utils import dense_initializer
from keras_perceiver.layers.validation import check_int
from keras_perceiver.layers.validation import check_ints
from keras_perceiver.layers.validation import check_shape

PATCH_SIZE = 3


@keras.saving.register_keras_serializable(package="keras_perceiver")
class FramePatches(keras.layers.Layer):
    """3x3 patches around every pixel of each frame, stacked on channels.

    Input `frames` `[B, T, H, W, C]`; output `[B, H, W, T * 9 * C]`, channels
    ordered `(t, kh, kw, c)`: frame-major, then the patch row, the patch
    column and the colour channel. Frames are zero-padded by one pixel, so
    the result equals `tf.image.extract_patches(frame, [1, 3, 3, 1],
    [1, 1, 1, 1], [1, 1, 1, 1], "SAME")` per frame, concatenated.

    Example:
    >>> import numpy as np
    >>> patches = keras_perceiver.layers.FramePatches()
    >>> tuple(patches(np.zeros((1, 2, 6, 8, 3), "float32")).shape)
    (1, 6, 8, 54)
    """

    def build(self, frames_shape):
        check_rank(self, "frames", frames_shape, 5)
        self.built = True

    def call(self, frames):
        check_rank(self, "frames", frames.shape, 5)
        frames = ops.cast(frames, self.compute_dtype)
        height, width = ops.shape(frames)[2], ops.shape(frames)[3]
        padded = ops.pad(frames, [(0, 0), (0, 0), (1, 1), (1, 1), (0, 0)])
        # One slice per patch offset, in (kh, kw) order; channels stay innermost.
        pieces = [
            padded[:, :, kh : kh + height, kw : kw + width, :]
            for kh in range(PATCH_SIZE)
            for kw in range(PATCH_SIZE)
        ]
        patches = ops.concatenate(pieces, axis=-1)  # [B, T, H, W, 9C]
        patches = ops.transpose(patches, (0, 2, 3, 1, 4))  # [B, H, W, T, 9C]
        shape = ops.shape(patches)
        return ops.reshape(patches, (shape[0], shape[1], shape[2], shape[3] * shape[4]))

    def compute_output_shape(self, frames_shape):
        b, t, h, w, c = frames_shape
        channels = None if t is None or c is None else t * PATCH_SIZE * PATCH_SIZE * c
        return (b, h, w, channels)


@keras.saving.register_keras_serializable(package="keras_perceiver")
class OpticalFlowPreprocessor(keras.layers.Layer):
    """Two frames -> `[B, H*W, num_channels + Fourier]` flow input tokens.

    `FramePatches` (54 channels for two RGB frames) -> `Dense(num_channels)`
    (DeepMind's `patches_linear`) -> flattened to tokens -> Fourier features
    of the `image_shape` grid concatenated after them.

    Args:
        image_shape: `(H, W)` of the frames.
        num_channels: width of the patch projection (64).
        num_bands: Fourier bands per dimension (64).
        max_resolution: Fourier max resolution; defaults to `image_shape`.
        fourier_rounding: `FourierPositionEncoding`'s `rounding`.
        num_frames, frame_channels: frames per example and colour channels.

    Call with `frames` `[B, num_frames, H, W, frame_channels]`.

    Example:
    >>> import numpy as np
    >>> pre = keras_perceiver.layers.OpticalFlowPreprocessor((6, 8), num_bands=4)
    >>> tuple(pre(np.zeros((2, 2, 6, 8, 3), "float32")).shape)
    (2, 48, 82)
    """

    def __init__(self, image_shape, num_channels=64, num_bands=64, max_resolution=None,
                 num_frames=2, frame_channels=3, kernel_initializer="variance_scaling",
                 fourier_rounding="exact", **kwargs):
        super().__init__(**kwargs)
        self.image_shape = check_ints(self, "image_shape", image_shape)
        if len(self.image_shape) != 2:
            raise ValueError(
                f"{self.name}: `image_shape` must be (height, width), received {image_shape!r}."
            )
        self.num_channels = check_int(self, "num_channels", num_channels)
        self.num_bands = check_int(self, "num_bands", num_bands)
        self.max_resolution = tuple(max_resolution) if max_resolution else None
        self.num_frames = check_int(self, "num_frames", num_frames)
        self.frame_channels = check_int(self, "frame_channels", frame_channels)
        self.fourier_rounding = check_rounding(self.__class__.__name__, fourier_rounding)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    @property
    def output_channels(self):
        return self.num_channels + 2 + 4 * self.num_bands

    def build(self, frames_shape):
        check_rank(self, "frames", frames_shape, 5)
        expected = (self.num_frames,) + self.image_shape + (self.frame_channels,)
        if tuple(frames_shape[1:]) != expected:
            raise ValueError(
                f"{self.name}: expected frames of shape [batch, {', '.join(map(str, expected))}], "
                f"received shape {tuple(frames_shape)}."
            )
        self.patches = FramePatches(dtype=self.dtype_policy, name="patches")
        self.patches.build(frames_shape)
        patch_channels = self.num_frames * PATCH_SIZE * PATCH_SIZE * self.frame_channels
        self.patches_linear = keras.layers.Dense(
            self.num_channels,
            kernel_initializer=dense_initializer(self.kernel_initializer),
            dtype=self.dtype_policy, name="patches_linear",
        )
        self.patches_linear.build((None, None, patch_channels))
        self.position_encoding = FourierPositionEncoding(
            self.image_shape, self.num_bands, max_resolution=self.max_resolution,
            concat_pos=True, sine_only=False, rounding=self.fourier_rounding,
            dtype=self.dtype_policy,
            name="position_encoding",
        )
        self.built = True

    def call(self, frames, positions=True):
        """Tokens `[B, H*W, output_channels]`; with `positions=False` only the
        projected patches `[B, H*W, num_channels]`, whose tokens
        `append_positions` makes a slice at a time."""
        check_shape(self, "frames", frames.shape,
                    (None, self.num_frames) + self.image_shape + (self.frame_channels,))
        patches = self.patches(frames)
        shape = ops.shape(patches)
        tokens = ops.reshape(patches, (shape[0], shape[1] * shape[2], shape[3]))
        tokens = self.patches_linear(tokens)
        if not positions:
            return tokens
        positions = self.position_encoding(tokens)
        return ops.concatenate([tokens, ops.cast(positions, tokens.dtype)], axis=-1)

    def append_positions(self, features, start=0):
        """Projected patches of pixels `start, start + 1, ...` (row-major) -> their tokens.

        `features` `[B, n, num_channels]`, a slice of `call(frames,
        positions=False)`; returns `[B, n, output_channels]`, equal to the
        same slice of `call(frames)`: the Fourier features are gathered from
        the per-axis tables of the slice's pixels only, so the model never
        holds the whole `[B, H*W, output_channels]` array (the encoder and
        decoder call this per chunk). `start` may be a tensor.
        """
        pe = self.position_encoding
        index = ops.arange(ops.shape(features)[1], dtype="int32") + start
        axes = (index // self.image_shape[1], index % self.image_shape[1])
        parts = [
            tuple(ops.take(ops.convert_to_tensor(t), axis, axis=0) for t in tables)
            for axis, tables in zip(axes, pe._tables(subsampled=False))
        ]
        # Rounded to the position encoding's dtype first, as `call` rounds them.
        positions = ops.cast(ops.concatenate(pe._assemble(parts), axis=-1), pe.compute_dtype)
        positions = ops.broadcast_to(
            ops.cast(positions, features.dtype)[None],
            (ops.shape(features)[0],) + tuple(ops.shape(positions)),
        )
        return ops.concatenate([features, positions], axis=-1)

    def compute_output_shape(self, frames_shape, positions=True):
        h, w = self.image_shape
        return (frames_shape[0], h * w, self.output_channels if positions else self.num_channels)

    def compute_output_spec(self, frames, positions=True):
        return keras.KerasTensor(
            self.compute_output_shape(frames.shape, positions), dtype=self.compute_dtype
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            image_shape=self.image_shape,
            num_channels=self.num_channels,
            num_bands=self.num_bands,
            max_resolution=self.max_resolution,
            num_frames=self.num_frames,
            frame_channels=self.frame_channels,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            fourier_rounding=self.fourier_rounding,
        )
        return config
