"""Multimodal adapters: video, audio and label in; padded, concatenated, split.

The Kinetics autoencoder (docs/architecture.md sections 3 and 4) reads three
modalities at once. Each is turned into a token array by its own adapter
(`VideoPreprocessor`, `AudioPreprocessor`, `OneHotPreprocessor`), then
`MultimodalPadding` pads every token array to a common width with a trainable
per-modality vector, optionally replaces tokens by a trainable mask token, and
concatenates the modalities in sorted key order. The decoder queries are
padded the same way (a second `MultimodalPadding`), and
`MultimodalPadding.split` cuts the decoder output back into modalities, which
`AudioPostprocessor` and plain `Dense` layers turn into outputs.
"""

import math

import keras
from keras import ops

from keras_perceiver.layers.image import SpaceToDepth
from keras_perceiver.layers.position_encoding import FourierPositionEncoding
from keras_perceiver.layers.position_encoding import check_rounding
from keras_perceiver.layers.utils import check_rank
from keras_perceiver.layers.utils import dense_initializer
from keras_perceiver.layers.validation import check_int
from keras_perceiver.layers.validation import check_same_batch
from keras_perceiver.layers.validation import check_shape


def _check_divisible(layer, name, shape, axis, size, what):
    if shape[axis] is not None and shape[axis] % size:
        raise ValueError(
            f"{layer.name}: expected `{name}` whose axis {axis} is divisible by "
            f"{what}={size}, received shape {tuple(shape)}."
        )


@keras.saving.register_keras_serializable(package="keras_perceiver")
class VideoPreprocessor(keras.layers.Layer):
    """Space-time patches of a video, concatenated with Fourier features.

    A video `[B, T, H, W, C]` is cut into `temporal_patch_size x patch_size x
    patch_size` patches (space-to-depth, channel order `(dt, dh, dw, c)` as in
    DeepMind's `space_to_depth` and transformers); the patch grid
    `(T/pt, H/p, W/p)` gets Fourier features (`max_resolution` defaults to the
    patch grid, DeepMind's choice; transformers uses the frame size).

    Args:
        patch_size: spatial patch size `p`.
        temporal_patch_size: temporal patch size `pt`.
        num_bands: Fourier bands per grid dimension.
        max_resolution: Fourier maximum resolution, one entry per dimension.
        concat_pos, sine_only: Fourier options.
        fourier_rounding: `FourierPositionEncoding`'s `rounding`.

    Returns `[B, T/pt * H/p * W/p, pt*p*p*C + fourier channels]`.

    Example:
    >>> import numpy as np
    >>> pre = keras_perceiver.layers.VideoPreprocessor(patch_size=2, num_bands=4)
    >>> pre(np.zeros((1, 2, 4, 4, 3), "float32")).shape
    (1, 8, 39)
    """

    def __init__(self, patch_size=4, temporal_patch_size=1, num_bands=32,
                 max_resolution=None, concat_pos=True, sine_only=False,
                 fourier_rounding="exact", **kwargs):
        super().__init__(**kwargs)
        self.patch_size = check_int(self, "patch_size", patch_size)
        self.temporal_patch_size = check_int(self, "temporal_patch_size", temporal_patch_size)
        self.num_bands = check_int(self, "num_bands", num_bands)
        self.max_resolution = tuple(max_resolution) if max_resolution else None
        self.concat_pos = concat_pos
        self.sine_only = sine_only
        self.fourier_rounding = check_rounding(self.__class__.__name__, fourier_rounding)

    def build(self, video_shape):
        check_rank(self, "video", video_shape, 5)
        _check_divisible(self, "video", video_shape, 1, self.temporal_patch_size,
                         "temporal_patch_size")
        for axis in (2, 3):
            _check_divisible(self, "video", video_shape, axis, self.patch_size, "patch_size")
        self.grid = (
            video_shape[1] // self.temporal_patch_size,
            video_shape[2] // self.patch_size,
            video_shape[3] // self.patch_size,
        )
        self.patch_channels = (
            self.temporal_patch_size * self.patch_size**2 * video_shape[4]
        )
        self.space_to_depth = SpaceToDepth(
            self.patch_size, self.temporal_patch_size, dtype=self.dtype_policy,
            name="space_to_depth",
        )
        self.space_to_depth.build(video_shape)
        self._video_shape = tuple(video_shape[1:])
        self.position_encoding = FourierPositionEncoding(
            self.grid, self.num_bands, max_resolution=self.max_resolution,
            concat_pos=self.concat_pos, sine_only=self.sine_only,
            rounding=self.fourier_rounding, dtype=self.dtype_policy, name="position_encoding",
        )
        self.built = True

    @property
    def num_channels(self):
        return self.patch_channels + self.position_encoding.num_channels

    def call(self, video):
        check_shape(self, "video", video.shape, (None,) + self._video_shape)
        patches = self.space_to_depth(video)
        x = ops.reshape(patches, (-1, math.prod(self.grid), self.patch_channels))
        pos = self.position_encoding(x)
        return ops.concatenate([x, ops.cast(pos, x.dtype)], axis=-1)

    def compute_output_shape(self, video_shape):
        return (video_shape[0], math.prod(self.grid), self.num_channels)

    def get_config(self):
        config = super().get_config()
        config.update(
            patch_size=self.patch_size,
            temporal_patch_size=self.temporal_patch_size,
            num_bands=self.num_bands,
            max_resolution=self.max_resolution,
            concat_pos=self.concat_pos,
            sine_only=self.sine_only,
            fourier_rounding=self.fourier_rounding,
        )
        return config


@keras.saving.register_keras_serializable(package="keras_perceiver")
class AudioPreprocessor(keras.layers.Layer):
    """Audio cut into patches of `samples_per_patch` samples + Fourier features.

    `[B, S, C]` is reshaped to `[B, S*C/spp, spp]` (as DeepMind and
    transformers do) and the patch index gets 1-D Fourier features
    (`max_resolution` defaults to the number of patches; the released model
    uses the number of samples).

    Example:
    >>> import numpy as np
    >>> pre = keras_perceiver.layers.AudioPreprocessor(4, num_bands=3)
    >>> pre(np.zeros((2, 32, 1), "float32")).shape
    (2, 8, 11)
    """

    def __init__(self, samples_per_patch=16, num_bands=192, max_resolution=None,
                 concat_pos=True, sine_only=False, fourier_rounding="exact", **kwargs):
        super().__init__(**kwargs)
        self.samples_per_patch = check_int(self, "samples_per_patch", samples_per_patch)
        self.num_bands = check_int(self, "num_bands", num_bands)
        self.max_resolution = tuple(max_resolution) if max_resolution else None
        self.concat_pos = concat_pos
        self.sine_only = sine_only
        self.fourier_rounding = check_rounding(self.__class__.__name__, fourier_rounding)

    def build(self, audio_shape):
        check_rank(self, "audio", audio_shape, 3)
        samples = audio_shape[1] * audio_shape[2]
        if samples % self.samples_per_patch:
            raise ValueError(
                f"{self.name}: expected `audio` whose samples x channels is "
                f"divisible by samples_per_patch={self.samples_per_patch}, "
                f"received shape {tuple(audio_shape)}."
            )
        self.num_patches = samples // self.samples_per_patch
        self._audio_shape = tuple(audio_shape[1:])
        self.position_encoding = FourierPositionEncoding(
            (self.num_patches,), self.num_bands, max_resolution=self.max_resolution,
            concat_pos=self.concat_pos, sine_only=self.sine_only,
            rounding=self.fourier_rounding, dtype=self.dtype_policy, name="position_encoding",
        )
        self.built = True

    @property
    def num_channels(self):
        return self.samples_per_patch + self.position_encoding.num_channels

    def call(self, audio):
        check_shape(self, "audio", audio.shape, (None,) + self._audio_shape)
        x = ops.reshape(audio, (-1, self.num_patches, self.samples_per_patch))
        pos = self.position_encoding(x)
        return ops.concatenate([x, ops.cast(pos, x.dtype)], axis=-1)

    def compute_output_shape(self, audio_shape):
        return (audio_shape[0], self.num_patches, self.num_channels)

    def get_config(self):
        config = super().get_config()
        config.update(
            samples_per_patch=self.samples_per_patch,
            num_bands=self.num_bands,
            max_resolution=self.max_resolution,
            concat_pos=self.concat_pos,
            sine_only=self.sine_only,
            fourier_rounding=self.fourier_rounding,
        )
        return config


@keras.saving.register_keras_serializable(package="keras_perceiver")
class OneHotPreprocessor(keras.layers.Layer):
    """A one-hot (or any) vector `[B, K]` as a single token `[B, 1, K]`.

    Example:
    >>> import numpy as np
    >>> keras_perceiver.layers.OneHotPreprocessor()(np.zeros((2, 7))).shape
    (2, 1, 7)
    """

    def build(self, labels_shape):
        check_rank(self, "labels", labels_shape, 2)
        self._num_classes = labels_shape[1]
        self.built = True

    def call(self, labels):
        check_shape(self, "labels", labels.shape, (None, self._num_classes))
        return ops.expand_dims(labels, axis=1)

    def compute_output_shape(self, labels_shape):
        return (labels_shape[0], 1, labels_shape[1])


@keras.saving.register_keras_serializable(package="keras_perceiver")
class MultimodalPadding(keras.layers.Layer):
    """Pads modalities to one width, masks them, concatenates in sorted order.

    Each modality `m` (`[B, N_m, C_m]`) is padded on the channel axis with a
    trainable `[1, C - C_m]` vector `{m}_padding` (`C = max C_m +
    min_padding_size`); a modality listed in `mask_probs` has a trainable
    `[1, C]` mask token `{m}_mask_token` that replaces each of its tokens
    with probability `mask_probs[m]`. Probabilities 0 and 1 are applied
    always (deterministic, as in both references); other probabilities mask
    at random only when `training=True`. A mask token with probability 0 and
    the padding of a modality masked with probability 1 are never used, so
    they are frozen (not trainable, still in `weights`, in the same order).
    The modalities are concatenated along the token axis in sorted key
    order; `split` undoes it.

    Args:
        min_padding_size: padding of the widest modality.
        mask_probs: optional `{modality: probability}`.
        initializer: of the padding vectors and mask tokens (DeepMind:
            `TruncatedNormal(0.02)`).
        seed: seed of the random masking.

    Example:
    >>> import numpy as np
    >>> pad = keras_perceiver.layers.MultimodalPadding(min_padding_size=2)
    >>> pad({"b": np.ones((1, 3, 4)), "a": np.ones((1, 2, 5))}).shape
    (1, 5, 7)
    """

    def __init__(self, min_padding_size=2, mask_probs=None, initializer=None,
                 seed=None, **kwargs):
        super().__init__(**kwargs)
        self.min_padding_size = check_int(self, "min_padding_size", min_padding_size, minimum=0)
        self.mask_probs = dict(mask_probs) if mask_probs else None
        for modality, prob in (self.mask_probs or {}).items():
            if not 0.0 <= float(prob) <= 1.0:
                raise ValueError(
                    f"MultimodalPadding: mask_probs[{modality!r}] must be in "
                    f"[0, 1], received {prob}."
                )
        self.initializer = keras.initializers.get(
            initializer or keras.initializers.TruncatedNormal(stddev=0.02)
        )
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, shapes):
        if not isinstance(shapes, dict) or not shapes:
            raise ValueError(
                f"{self.name}: expected a dict of `[batch, tokens, channels]` "
                f"shapes, one per modality, received {shapes!r}."
            )
        for modality, shape in shapes.items():
            check_rank(self, modality, shape, 3)
        unknown = sorted(set(self.mask_probs or {}) - set(shapes))
        if unknown:
            raise ValueError(
                f"{self.name}: mask_probs names modality {unknown[0]!r}, expected "
                f"one of {sorted(shapes)}."
            )
        self.modality_channels = {m: int(s[-1]) for m, s in shapes.items()}
        self.num_channels = max(self.modality_channels.values()) + self.min_padding_size
        self.paddings = {}
        self.mask_tokens = {}
        for modality in sorted(shapes):
            self.paddings[modality] = self.add_weight(
                name=f"{modality}_padding",
                shape=(1, self.num_channels - self.modality_channels[modality]),
                initializer=dense_initializer(self.initializer),
            )
            if self.mask_probs is not None and modality in self.mask_probs:
                self.mask_tokens[modality] = self.add_weight(
                    name=f"{modality}_mask_token",
                    shape=(1, self.num_channels),
                    initializer=dense_initializer(self.initializer),
                )
        self._freeze_unused()
        self.built = True

    def _freeze_unused(self):
        # Variables this configuration never uses stay (same weight files and
        # checkpoint layout) but are frozen, so training does not look for
        # their gradients: the mask token of a modality masked with
        # probability 0, and the padding of one masked with probability 1.
        for modality, prob in (self.mask_probs or {}).items():
            if float(prob) == 0.0:
                self.mask_tokens[modality].trainable = False
            elif float(prob) == 1.0:
                self.paddings[modality].trainable = False

    @keras.layers.Layer.trainable.setter
    def trainable(self, value):
        keras.layers.Layer.trainable.fset(self, value)
        if getattr(self, "built", False):
            self._freeze_unused()

    def _mask(self, modality, x, training):
        prob = float(self.mask_probs[modality])
        token = ops.cast(self.mask_tokens[modality], x.dtype)[None]
        if prob == 0.0:
            return x
        if prob == 1.0:
            return ops.broadcast_to(token, ops.shape(x))
        if not training:
            return x
        draw = keras.random.uniform(ops.shape(x)[:2], seed=self.seed_generator)
        mask = ops.cast(draw < prob, x.dtype)[:, :, None]
        return (1 - mask) * x + mask * token

    def call(self, inputs, training=None):
        if set(inputs) != set(self.modality_channels):
            raise ValueError(
                f"{self.name}: expected modalities {sorted(self.modality_channels)}, "
                f"received {sorted(inputs)}."
            )
        for modality in sorted(inputs):
            check_shape(self, modality, inputs[modality].shape,
                        (None, None, self.modality_channels[modality]))
        check_same_batch(self, **{m: inputs[m].shape for m in inputs})
        padded = []
        for modality in sorted(inputs):
            x = inputs[modality]
            shape = ops.shape(x)
            pad = ops.cast(self.paddings[modality], x.dtype)[None]
            pad = ops.broadcast_to(pad, (shape[0], shape[1], pad.shape[-1]))
            x = ops.concatenate([x, pad], axis=-1)
            if modality in self.mask_tokens:
                x = self._mask(modality, x, training)
            padded.append(x)
        return ops.concatenate(padded, axis=1)

    def compute_output_shape(self, shapes):
        tokens = [s[1] for s in shapes.values()]
        total = None if any(t is None for t in tokens) else sum(tokens)
        return (next(iter(shapes.values()))[0], total, self.num_channels)

    @staticmethod
    def split(x, sizes):
        """`{modality: x[:, start:start + sizes[m]]}`, modalities in sorted order."""
        outputs, start = {}, 0
        for modality in sorted(sizes):
            outputs[modality] = x[:, start : start + sizes[modality]]
            start += sizes[modality]
        return outputs

    def get_config(self):
        config = super().get_config()
        config.update(
            min_padding_size=self.min_padding_size,
            mask_probs=self.mask_probs,
            initializer=keras.initializers.serialize(self.initializer),
            seed=self.seed,
        )
        return config


@keras.saving.register_keras_serializable(package="keras_perceiver")
class AudioPostprocessor(keras.layers.Layer):
    """Decoder output per audio patch `[B, N, D]` -> samples `[B, N * spp, 1]`.

    Example:
    >>> import numpy as np
    >>> post = keras_perceiver.layers.AudioPostprocessor(samples_per_patch=4)
    >>> post(np.ones((2, 3, 8))).shape
    (2, 12, 1)
    """

    def __init__(self, samples_per_patch=16, kernel_initializer="variance_scaling", **kwargs):
        super().__init__(**kwargs)
        self.samples_per_patch = check_int(self, "samples_per_patch", samples_per_patch)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, inputs_shape):
        check_rank(self, "inputs", inputs_shape, 3)
        self.projection = keras.layers.Dense(
            self.samples_per_patch,
            kernel_initializer=dense_initializer(self.kernel_initializer),
            dtype=self.dtype_policy, name="projection",
        )
        self.projection.build(inputs_shape)
        self.built = True

    def call(self, inputs):
        check_shape(self, "inputs", inputs.shape, (None, None, self.projection.kernel.shape[0]))
        samples = self.projection(inputs)
        if inputs.shape[1] is not None:
            return ops.reshape(samples, (-1, inputs.shape[1] * self.samples_per_patch, 1))
        return ops.reshape(samples, (ops.shape(inputs)[0], -1, 1))

    def compute_output_shape(self, inputs_shape):
        n = None if inputs_shape[1] is None else inputs_shape[1] * self.samples_per_patch
        return (inputs_shape[0], n, 1)

    def get_config(self):
        config = super().get_config()
        config.update(
            samples_per_patch=self.samples_per_patch,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config
