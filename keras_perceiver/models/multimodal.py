"""The Kinetics-700 multimodal autoencoder (video + audio + label)."""

import math
import types

import keras
import numpy as np
from keras import ops

from keras_perceiver.layers import validation
from keras_perceiver.layers.decoders import BasicDecoder
from keras_perceiver.layers.encoder import PerceiverEncoder
from keras_perceiver.layers.multimodal import AudioPostprocessor
from keras_perceiver.layers.multimodal import AudioPreprocessor
from keras_perceiver.layers.multimodal import MultimodalPadding
from keras_perceiver.layers.multimodal import OneHotPreprocessor
from keras_perceiver.layers.multimodal import VideoPreprocessor
from keras_perceiver.layers.position_encoding import FourierPositionEncoding
from keras_perceiver.layers.position_encoding import TrainablePositionEncoding
from keras_perceiver.models.input_checks import CheckedInputs
from keras_perceiver.models.task import PerceiverTask

MODALITIES = ("audio", "image", "label")
RELEASED_MASK_PROBS = {"audio": 0.0, "image": 0.0, "label": 1.0}
# The constructor arguments, each stored as an attribute of the same name.
_CONFIG_KEYS = (
    "num_frames", "image_size", "image_channels", "patch_size", "temporal_patch_size",
    "image_num_bands", "image_max_resolution", "audio_samples", "samples_per_patch",
    "audio_num_bands", "audio_max_resolution", "fourier_rounding", "num_classes", "input_min_padding_size",
    "mask_probs", "num_latents", "num_latent_channels", "num_blocks",
    "num_self_attends_per_block", "num_cross_attention_heads", "num_self_attention_heads",
    "qk_channels", "v_channels", "cross_attention_widening_factor",
    "self_attention_widening_factor", "use_query_residual", "label_query_channels",
    "query_min_padding_size", "decoder_num_heads", "decoder_qk_channels", "decoder_v_channels",
    "decoder_widening_factor", "decoder_channels", "activation", "num_subsampled_points",
    "remat", "attention_memory_budget",
)


# Graph pieces shared by the functional model and its eager helpers; `parts`
# holds the layers (the model itself once built).
def _encode(parts, inputs, training=None):
    tokens = {
        "audio": parts.audio_preprocessor(inputs["audio"]),
        "image": parts.video_preprocessor(inputs["image"]),
        "label": parts.label_preprocessor(inputs["label"]),
    }
    return parts.encoder(parts.input_padding(tokens, training=training), training=training)


def _decode(parts, latents, audio_points, image_points, training=None):
    queries = {
        "audio": parts.audio_queries(latents, indices=audio_points),
        "image": parts.image_queries(latents, indices=image_points),
        "label": parts.label_queries(latents),
    }
    outputs = parts.decoder(latents, queries=parts.query_padding(queries), training=training)
    split = MultimodalPadding.split(outputs, {m: q.shape[1] for m, q in queries.items()})
    return {
        "audio": parts.audio_postprocessor(split["audio"]),
        "image": parts.image_postprocessor(split["image"]),
        "label": parts.label_postprocessor(split["label"])[:, 0, :],
    }


def _full_outputs(parts, outputs):
    image = ops.reshape(outputs["image"], (-1,) + parts.video_shape)
    return {"audio": outputs["audio"], "image": image, "label": outputs["label"]}


@keras.saving.register_keras_serializable(package="keras_perceiver")
class PerceiverMultimodalAutoencoder(CheckedInputs, PerceiverTask):
    """Perceiver IO autoencoding video, audio and a class label together.

    Inputs `{"image": [B, T, H, W, C], "audio": [B, S, 1], "label": [B, K]}`
    (video in [0, 1], audio in [-1, 1], label one-hot). Video is cut into
    `temporal_patch_size x patch_size x patch_size` patches, audio into
    `samples_per_patch` patches, each with Fourier features; the label is one
    token. Every modality is padded to `max channels + input_min_padding_size`
    with a trainable vector (tokens of a modality in `mask_probs` are replaced
    by a trainable mask token with that probability; the released model masks
    the label always, so the label input has no effect), the modalities are
    concatenated in sorted key order and encoded into the latents.

    Decoder queries: Fourier features of the audio patches and of every video
    pixel, and one trainable label query, padded to one width like the
    inputs, decoded by one shared `BasicDecoder` and post-processed to
    audio samples, RGB and label logits. The query positions follow the
    subsampled-point rule `-1 + 2 i / n` (DeepMind's colab decodes in
    chunks of subsampled points), so full and chunked outputs are equal.

    Outputs: full `{"image": [B, T, H, W, C], "audio": [B, S, 1],
    "label": [B, K]}`; with `num_subsampled_points={"image": n, "audio": m}`
    the model also takes int32 inputs `image_points` `[B, n]` and
    `audio_points` `[B, m]` (flat indices into the `T*H*W` pixels and the
    `S/samples_per_patch` audio patches) and returns `image` `[B, n, C]`,
    `audio` `[B, m * samples_per_patch, 1]`, `label` `[B, K]` (the paper's
    training set-up: 512 + 512 points per example). `decode` /
    `decode_points` do the same on a built model, `reconstruct` decodes
    everything in chunks with bounded memory.

    Args:
        num_frames, image_size, image_channels: the video (`image_size` an
            int or `(H, W)`).
        patch_size, temporal_patch_size: video patching.
        image_num_bands: Fourier bands per video dimension.
        image_max_resolution: Fourier maximum resolution of the video
            features and queries; `None` is the patch grid (DeepMind's
            `(16, 56, 56)`); transformers uses `(T, H, W)`.
        audio_samples, samples_per_patch, audio_num_bands: the audio.
        audio_max_resolution: `None` is `audio_samples` (both references).
        fourier_rounding: how the Fourier tables of the inputs and queries
            are rounded: `"exact"`, `"deepmind"` (the preset) or
            `"transformers"` (`keras_perceiver.layers.FourierPositionEncoding`).
        num_classes: label classes.
        input_min_padding_size, mask_probs: `MultimodalPadding` of the inputs.
        num_latents, num_latent_channels, num_blocks,
            num_self_attends_per_block, num_cross_attention_heads,
            num_self_attention_heads, qk_channels, v_channels,
            cross_attention_widening_factor, self_attention_widening_factor,
            use_query_residual: the `PerceiverEncoder`.
        label_query_channels: width of the trainable label query.
        query_min_padding_size: `MultimodalPadding` of the queries.
        decoder_num_heads, decoder_qk_channels, decoder_v_channels,
            decoder_widening_factor, decoder_channels: the shared decoder
            (`decoder_channels` is its final projection).
        activation: `"gelu_tanh"` (DeepMind) or `"gelu"` (transformers).
        num_subsampled_points: optional `{"image": n, "audio": m}`, see above.
        remat, attention_memory_budget: gradient checkpointing of the latent
            Transformer and the attention chunking budget (`PerceiverEncoder`).

    `output_names` are the modalities (`["audio", "image", "label"]`).
    `compile()` defaults: the paper's loss `0.03 * L1(image) + 1 * L1(audio)
    + 1e-4 * CE(label)`, i.e. per-output `MeanAbsoluteError`,
    `MeanAbsoluteError` and `CategoricalCrossentropy(from_logits=True)` (on
    the one-hot label) with `loss_weights={"image": 0.03, "audio": 1.0,
    "label": 1e-4}`; metrics `mean_squared_error` for image and audio and
    `accuracy` for the label; AdamW at 5e-5 (see `PerceiverTask.compile`).
    To autoencode, fit with the targets equal to the inputs:
    `model.fit(inputs, {k: inputs[k] for k in ("image", "audio", "label")})`.

    Example:
    >>> import numpy as np
    >>> model = keras_perceiver.models.PerceiverMultimodalAutoencoder(
    ...     num_frames=2, image_size=8, audio_samples=32, samples_per_patch=4,
    ...     num_classes=5, image_num_bands=2, audio_num_bands=3, num_latents=4,
    ...     num_latent_channels=8, num_self_attends_per_block=1,
    ...     num_self_attention_heads=2, label_query_channels=6, decoder_channels=8)
    >>> inputs = {"image": np.zeros((1, 2, 8, 8, 3), "float32"),
    ...           "audio": np.zeros((1, 32, 1), "float32"),
    ...           "label": np.zeros((1, 5), "float32")}
    >>> {k: v.shape for k, v in model.reconstruct(inputs, num_chunks=4).items()}
    {'audio': (1, 32, 1), 'image': (1, 2, 8, 8, 3), 'label': (1, 5)}
    """

    PRESETS = {
        "multimodal_perceiver": {
            "description": (
                "Kinetics-700 autoencoder: 16x224x224 video, 30720 audio samples "
                "and a 700-way label into 784 x 512 latents (19.9M parameters)."
            ),
            "config": {"fourier_rounding": "deepmind"},
        },
    }

    def __init__(
        self,
        num_frames=16,
        image_size=224,
        image_channels=3,
        patch_size=4,
        temporal_patch_size=1,
        image_num_bands=32,
        image_max_resolution=None,
        audio_samples=30720,
        samples_per_patch=16,
        audio_num_bands=192,
        audio_max_resolution=None,
        fourier_rounding="exact",
        num_classes=700,
        input_min_padding_size=4,
        mask_probs=RELEASED_MASK_PROBS,
        num_latents=784,
        num_latent_channels=512,
        num_blocks=1,
        num_self_attends_per_block=8,
        num_cross_attention_heads=1,
        num_self_attention_heads=8,
        qk_channels=None,
        v_channels=None,
        cross_attention_widening_factor=1,
        self_attention_widening_factor=1,
        use_query_residual=True,
        label_query_channels=1024,
        query_min_padding_size=2,
        decoder_num_heads=1,
        decoder_qk_channels=None,
        decoder_v_channels=None,
        decoder_widening_factor=1,
        decoder_channels=512,
        activation="gelu_tanh",
        num_subsampled_points=None,
        remat=False,
        attention_memory_budget=None,
        **kwargs,
    ):
        cls = "PerceiverMultimodalAutoencoder"
        validation.check_model_kwargs(type(self), kwargs)
        validation.check_arguments(cls, locals(), ints=(
            "num_frames", "image_channels", "patch_size", "temporal_patch_size",
            "image_num_bands", "audio_samples", "samples_per_patch", "audio_num_bands",
            "num_classes", "num_latents", "num_latent_channels", "num_blocks",
            "num_cross_attention_heads", "num_self_attention_heads",
            "cross_attention_widening_factor", "self_attention_widening_factor",
            "label_query_channels", "decoder_num_heads", "decoder_widening_factor",
            "decoder_channels",
        ), non_negative_ints=(
            "num_self_attends_per_block", "input_min_padding_size", "query_min_padding_size",
        ), optional_ints=("qk_channels", "v_channels", "decoder_qk_channels",
                          "decoder_v_channels"))
        image_dims = validation.check_ints(cls, "image_size", (
            (image_size, image_size) if isinstance(image_size, int) else image_size))
        if len(image_dims) != 2:
            raise ValueError(f"{cls}: `image_size` must be an int or (height, width), "
                             f"received {image_size!r}.")
        height, width = image_dims
        if audio_samples % samples_per_patch:
            raise ValueError(
                f"PerceiverMultimodalAutoencoder: audio_samples={audio_samples} must "
                f"be divisible by samples_per_patch={samples_per_patch}."
            )
        if num_subsampled_points is not None and set(num_subsampled_points) != {"audio", "image"}:
            raise ValueError(
                "PerceiverMultimodalAutoencoder: num_subsampled_points must have "
                f"the keys ['audio', 'image'], received {sorted(num_subsampled_points)}."
            )
        for modality in sorted(num_subsampled_points or {}):
            validation.check_int(cls, f"num_subsampled_points[{modality!r}]",
                                 num_subsampled_points[modality])
        # Built before the model (torch Modules cannot be attributes yet), set after.
        parts = types.SimpleNamespace()
        parts.video_shape = (num_frames, height, width, image_channels)
        parts.num_audio_patches = audio_samples // samples_per_patch
        audio_resolution = (audio_max_resolution or audio_samples,)
        if isinstance(audio_max_resolution, (list, tuple)):
            audio_resolution = tuple(audio_max_resolution)
        image_resolution = tuple(image_max_resolution) if image_max_resolution else (
            num_frames // temporal_patch_size, height // patch_size, width // patch_size)

        # === Layers ===
        parts.audio_preprocessor = AudioPreprocessor(
            samples_per_patch, audio_num_bands, max_resolution=audio_resolution,
            fourier_rounding=fourier_rounding, name="audio_preprocessor")
        parts.video_preprocessor = VideoPreprocessor(
            patch_size, temporal_patch_size, image_num_bands,
            max_resolution=image_resolution, fourier_rounding=fourier_rounding,
            name="video_preprocessor")
        parts.label_preprocessor = OneHotPreprocessor(name="label_preprocessor")
        parts.input_padding = MultimodalPadding(
            input_min_padding_size, mask_probs=mask_probs or None, name="input_padding")
        parts.encoder = PerceiverEncoder(
            num_latents, num_latent_channels, num_blocks=num_blocks,
            num_self_attends_per_block=num_self_attends_per_block,
            num_cross_attention_heads=num_cross_attention_heads,
            num_self_attention_heads=num_self_attention_heads,
            qk_channels=qk_channels, v_channels=v_channels,
            cross_attention_widening_factor=cross_attention_widening_factor,
            self_attention_widening_factor=self_attention_widening_factor,
            use_query_residual=use_query_residual, activation=activation,
            remat=remat, attention_memory_budget=attention_memory_budget,
            name="encoder")
        parts.audio_queries = FourierPositionEncoding(
            (parts.num_audio_patches,), audio_num_bands, max_resolution=audio_resolution,
            rounding=fourier_rounding, name="audio_queries")
        parts.image_queries = FourierPositionEncoding(
            (num_frames, height, width), image_num_bands,
            max_resolution=image_resolution, rounding=fourier_rounding, name="image_queries")
        parts.label_queries = TrainablePositionEncoding(
            1, label_query_channels, name="label_queries")
        parts.query_padding = MultimodalPadding(query_min_padding_size, name="query_padding")
        parts.decoder = BasicDecoder(
            decoder_channels, position_encoding_type="none", num_heads=decoder_num_heads,
            qk_channels=decoder_qk_channels, v_channels=decoder_v_channels,
            widening_factor=decoder_widening_factor, use_query_residual=False,
            final_project=True, activation=activation, name="decoder")
        parts.audio_postprocessor = AudioPostprocessor(
            samples_per_patch, name="audio_postprocessor")
        parts.image_postprocessor = keras.layers.Dense(image_channels, name="image_postprocessor")
        parts.label_postprocessor = keras.layers.Dense(num_classes, name="label_postprocessor")

        # === Functional model ===
        inputs = {
            "audio": keras.Input((audio_samples, 1), name="audio"),
            "image": keras.Input(parts.video_shape, name="image"),
            "label": keras.Input((num_classes,), name="label"),
        }
        latents = _encode(parts, inputs)
        if num_subsampled_points is None:
            outputs = _full_outputs(parts, _decode(
                parts, latents, np.arange(parts.num_audio_patches, dtype="int32"),
                np.arange(math.prod(parts.video_shape[:3]), dtype="int32")))
        else:
            for modality in ("audio", "image"):
                inputs[f"{modality}_points"] = keras.Input(
                    (num_subsampled_points[modality],), dtype="int32",
                    name=f"{modality}_points")
            outputs = _decode(parts, latents, inputs["audio_points"], inputs["image_points"])
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        # Name the outputs after the modalities (Keras would use the names of
        # the layers that produce them); same order as `self.outputs`.
        self.output_names = keras.tree.flatten({m: m for m in outputs})
        for key, value in vars(parts).items():
            setattr(self, key, value)

        # === Config ===
        self.num_frames = num_frames
        self.remat = remat
        self.attention_memory_budget = attention_memory_budget
        self.image_size = image_size
        self.image_channels = image_channels
        self.patch_size = patch_size
        self.temporal_patch_size = temporal_patch_size
        self.image_num_bands = image_num_bands
        self.image_max_resolution = image_max_resolution
        self.audio_samples = audio_samples
        self.samples_per_patch = samples_per_patch
        self.audio_num_bands = audio_num_bands
        self.audio_max_resolution = audio_max_resolution
        self.fourier_rounding = fourier_rounding
        self.num_classes = num_classes
        self.input_min_padding_size = input_min_padding_size
        self.mask_probs = dict(mask_probs) if mask_probs else mask_probs
        self.num_latents = num_latents
        self.num_latent_channels = num_latent_channels
        self.num_blocks = num_blocks
        self.num_self_attends_per_block = num_self_attends_per_block
        self.num_cross_attention_heads = num_cross_attention_heads
        self.num_self_attention_heads = num_self_attention_heads
        self.qk_channels = qk_channels
        self.v_channels = v_channels
        self.cross_attention_widening_factor = cross_attention_widening_factor
        self.self_attention_widening_factor = self_attention_widening_factor
        self.use_query_residual = use_query_residual
        self.label_query_channels = label_query_channels
        self.query_min_padding_size = query_min_padding_size
        self.decoder_num_heads = decoder_num_heads
        self.decoder_qk_channels = decoder_qk_channels
        self.decoder_v_channels = decoder_v_channels
        self.decoder_widening_factor = decoder_widening_factor
        self.decoder_channels = decoder_channels
        self.activation = activation
        self.num_subsampled_points = (
            dict(num_subsampled_points) if num_subsampled_points else None)

    def default_preprocessor(self):
        """uint8 video, int16 audio, class ids -> inputs (`PerceiverMultimodalPreprocessor`)."""
        from keras_perceiver.preprocessors import PerceiverMultimodalPreprocessor

        return PerceiverMultimodalPreprocessor(self.num_classes)

    def input_checks(self):
        return {
            "image": {"kind": "float", "hint": " holding video scaled to [0, 1]"},
            "audio": {"kind": "float"},
            "label": {"kind": "one_hot"},
            "image_points": {"kind": "ids", "high": math.prod(self.video_shape[:3])},
            "audio_points": {"kind": "ids", "high": self.num_audio_patches},
        }

    # --- eager helpers ---

    def _check_inputs(self, inputs):
        expected = {
            "audio": (self.audio_samples, 1), "image": self.video_shape,
            "label": (self.num_classes,),
        }
        if not isinstance(inputs, dict) or not set(expected) <= set(inputs):
            raise ValueError(
                f"{self.name}: expected a dict with keys {sorted(expected)}, received "
                f"{sorted(inputs) if isinstance(inputs, dict) else type(inputs).__name__}."
            )
        for key, shape in expected.items():
            got = tuple(inputs[key].shape)
            if got[1:] != tuple(shape):
                raise ValueError(
                    f"{self.name}: expected `{key}` of shape [batch, "
                    f"{', '.join(map(str, shape))}], received shape {got}."
                )

    def encode(self, inputs, training=False):
        """The latents `[B, num_latents, num_latent_channels]` of `inputs`."""
        self._check_inputs(inputs)
        self.check_input_values({k: inputs[k] for k in MODALITIES}, training)
        return _encode(self, {k: inputs[k] for k in MODALITIES}, training=training)

    def _points(self, subsampled_points, modality, count):
        points = (subsampled_points or {}).get(modality)
        if points is None:
            return np.arange(count, dtype="int32")
        values = np.asarray(ops.convert_to_numpy(points))
        if values.ndim not in (1, 2) or values.size == 0:
            raise ValueError(
                f"{self.name}: expected subsampled_points[{modality!r}] of shape "
                f"[n] or [batch, n] (n > 0), received shape {values.shape}."
            )
        if values.min() < 0 or values.max() >= count:
            raise ValueError(
                f"{self.name}: subsampled_points[{modality!r}] must be flat indices in "
                f"[0, {count}), received values in [{values.min()}, {values.max()}]."
            )
        return values.astype("int32")

    def decode(self, latents, subsampled_points=None, training=False):
        """Outputs at `subsampled_points` (`{"image", "audio"}` flat indices).

        A missing modality is decoded at all its points (`[B, T*H*W, C]`
        image, `[B, S, 1]` audio); the label is always decoded.
        """
        return _decode(
            self, latents,
            self._points(subsampled_points, "audio", self.num_audio_patches),
            self._points(subsampled_points, "image", math.prod(self.video_shape[:3])),
            training=training,
        )

    def decode_points(self, inputs, subsampled_points=None, training=False):
        """`decode(encode(inputs), subsampled_points)`."""
        return self.decode(self.encode(inputs, training=training), subsampled_points, training)

    def reconstruct(self, inputs, num_chunks=128):
        """Full outputs as NumPy arrays, decoded in `num_chunks` chunks.

        As in DeepMind's colab, chunk `i` decodes the `i`-th slice of the
        image pixels, the `i`-th slice of the audio patches and the label, so
        memory is bounded by one chunk; the inputs are encoded once.
        """
        self._check_inputs(inputs)
        num_pixels = math.prod(self.video_shape[:3])
        if not validation.is_int(num_chunks) or not 1 <= num_chunks <= min(num_pixels, self.num_audio_patches):
            raise ValueError(
                f"{self.name}: num_chunks must be an integer in [1, "
                f"{min(num_pixels, self.num_audio_patches)}], received {num_chunks}."
            )
        latents = self.encode(inputs)
        image_chunks = np.array_split(np.arange(num_pixels, dtype="int32"), num_chunks)
        audio_chunks = np.array_split(
            np.arange(self.num_audio_patches, dtype="int32"), num_chunks)
        audio, image, label = [], [], None
        for audio_points, image_points in zip(audio_chunks, image_chunks):
            outputs = _decode(self, latents, audio_points, image_points, training=False)
            audio.append(ops.convert_to_numpy(outputs["audio"]))
            image.append(ops.convert_to_numpy(outputs["image"]))
            label = ops.convert_to_numpy(outputs["label"])
        image = np.concatenate(image, axis=1)
        return {
            "audio": np.concatenate(audio, axis=1),
            "image": image.reshape((image.shape[0],) + self.video_shape),
            "label": label,
        }

    def get_config(self):
        return {"name": self.name, **{key: getattr(self, key) for key in _CONFIG_KEYS}}

    # Loss weights of the paper's Kinetics autoencoding objective.
    LOSS_WEIGHTS = {"image": 0.03, "audio": 1.0, "label": 1e-4}

    def _default_loss(self):
        return {
            "image": keras.losses.MeanAbsoluteError(),
            "audio": keras.losses.MeanAbsoluteError(),
            "label": keras.losses.CategoricalCrossentropy(from_logits=True),
        }

    def _default_loss_weights(self):
        return dict(self.LOSS_WEIGHTS)

    def _default_metrics(self):
        return {
            "image": [keras.metrics.MeanSquaredError(name="mean_squared_error")],
            "audio": [keras.metrics.MeanSquaredError(name="mean_squared_error")],
            "label": [keras.metrics.CategoricalAccuracy(name="accuracy")],
        }
