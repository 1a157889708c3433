"""`PerceiverImageClassifier`: the paper's ImageNet models (docs/architecture.md section 4)."""

import keras

from keras_perceiver.layers import validation
from keras_perceiver.layers.attention import ACTIVATIONS
from keras_perceiver.layers.decoders import ClassificationDecoder
from keras_perceiver.layers.encoder import PerceiverEncoder
from keras_perceiver.layers.image import STEM_PADDINGS
from keras_perceiver.layers.image import ImagePreprocessor
from keras_perceiver.models.input_checks import CheckedInputs
from keras_perceiver.models.renamed import take_renamed
from keras_perceiver.models.task import PerceiverTask

PREP_TYPES = ("learned", "fourier", "conv")

_IMAGENET = dict(
    num_classes=1000, image_shape=(224, 224, 3), num_latents=512, num_latent_channels=1024,
    num_blocks=8, num_self_attends_per_block=6, num_cross_attention_heads=1,
    num_self_attention_heads=8, num_query_channels=1024,
)


@keras.saving.register_keras_serializable(package="keras_perceiver")
class PerceiverImageClassifier(CheckedInputs, PerceiverTask):
    """Perceiver IO image classifier: `images [B, H, W, C]` -> logits `[B, num_classes]`.

    Images are float and already normalised (ImageNet: mean
    `(0.485, 0.456, 0.406) * 255`, std `(0.229, 0.224, 0.225) * 255`).

    `prep_type` selects the paper's three input adapters:
    - `"learned"`: 1x1 conv to `prep_channels` (256) + a trainable position
      encoding (`H*W x position_channels`, 256) projected to
      `project_pos_dim` (256), concatenated (512 channels at 224x224).
    - `"fourier"`: raw pixels + 2-D Fourier features (`num_bands`), 261 channels.
    - `"conv"`: the conv stem (7x7/2 conv, BatchNorm, ReLU, 3x3/2 max pool;
      `prep_channels` 64) + Fourier features of the 4x smaller grid (322
      channels). `stem_padding="deepmind"` (TF SAME: 224 -> 56x56 tokens, the
      released checkpoint) or `"transformers"` (224 -> 55x55, that port).

    Args:
        num_classes: logits.
        image_shape: `(H, W, C)`; any size (e.g. `(8, 8, 1)` digits).
        prep_type: `"learned"`, `"fourier"` or `"conv"`.
        stem_padding: conv stem padding, see above.
        num_bands: Fourier bands per dimension.
        max_resolution: Fourier max resolution; default the token grid.
        fourier_rounding: how the Fourier tables are rounded: `"exact"`,
            `"deepmind"` (the presets) or `"transformers"`
            (`keras_perceiver.layers.FourierPositionEncoding`).
        prep_channels: conv1x1 / conv stem channels (default 256 / 64).
        position_channels, project_pos_dim: trainable encoding (learned).
        num_latents, num_latent_channels: the latent array.
        num_blocks, num_self_attends_per_block: latent Transformer (shared
            weights across blocks).
        num_cross_attention_heads, num_self_attention_heads: encoder heads.
        qk_channels, v_channels: encoder attention widths (None: defaults).
        cross_attention_shape_for_attention: `"kv"` (default) or `"q"`.
        cross_attention_widening_factor, self_attention_widening_factor: MLPs.
        use_query_residual: encoder cross-attention residual.
        num_query_channels: width of the decoder's class query (default
            `num_latent_channels`).
        decoder_use_query_residual: DeepMind: off for learned, on otherwise.
        activation: `"gelu_tanh"` (DeepMind) or `"gelu"` (transformers).
        dropout, attention_dropout: dropout rates.
        remat, attention_memory_budget: gradient checkpointing of the latent
            Transformer and the attention chunking budget (`PerceiverEncoder`).

    `compile()` defaults: `SparseCategoricalCrossentropy(from_logits=True)`
    on integer labels `[B]`; metrics `accuracy` and (more than 5 classes)
    `top_5_accuracy`; AdamW at 5e-5 (see `PerceiverTask.compile`).

    Example:
    >>> import numpy as np
    >>> model = keras_perceiver.models.PerceiverImageClassifier(
    ...     num_classes=10, image_shape=(8, 8, 1), num_bands=4, num_latents=8,
    ...     num_latent_channels=16, num_blocks=1, num_self_attends_per_block=1,
    ...     num_self_attention_heads=2)
    >>> model(np.zeros((2, 8, 8, 1), "float32")).shape
    (2, 10)
    """

    PRESETS = {
        "vision_perceiver_learned": {
            "description": "ImageNet, 1x1 conv + learned position encoding "
                           "(72.7% top-1, 62.3M parameters).",
            "config": dict(_IMAGENET, prep_type="learned", decoder_use_query_residual=False),
        },
        "vision_perceiver_fourier": {
            "description": "ImageNet, pixels + 2-D Fourier features "
                           "(79.0% top-1, 48.4M parameters).",
            "config": dict(_IMAGENET, prep_type="fourier", max_resolution=(224, 224),
                           fourier_rounding="deepmind"),
        },
        "vision_perceiver_conv": {
            "description": "ImageNet, conv stem (56x56 tokens) + Fourier features "
                           "(82.1% top-1, 48.6M parameters).",
            "config": dict(_IMAGENET, prep_type="conv", max_resolution=(56, 56),
                           fourier_rounding="deepmind"),
        },
    }

    # from_preset(..., num_classes=k): the saved body, a fresh head.
    HEAD_ARGUMENTS = ("num_classes",)

    def __init__(
        self,
        num_classes=1000,
        image_shape=(224, 224, 3),
        prep_type="fourier",
        stem_padding="deepmind",
        num_bands=64,
        max_resolution=None,
        fourier_rounding="exact",
        prep_channels=None,
        position_channels=256,
        project_pos_dim=256,
        num_latents=512,
        num_latent_channels=1024,
        num_blocks=8,
        num_self_attends_per_block=6,
        num_cross_attention_heads=1,
        num_self_attention_heads=8,
        qk_channels=None,
        v_channels=None,
        cross_attention_shape_for_attention="kv",
        cross_attention_widening_factor=1,
        self_attention_widening_factor=1,
        use_query_residual=True,
        num_query_channels=None,
        decoder_use_query_residual=True,
        activation="gelu_tanh",
        dropout=0.0,
        attention_dropout=0.0,
        remat=False,
        attention_memory_budget=None,
        **kwargs,
    ):
        cls = "PerceiverImageClassifier"
        num_latent_channels = take_renamed(type(self), kwargs, "d_latents", num_latent_channels, 1024)
        validation.check_model_kwargs(type(self), kwargs)
        validation.check_arguments(cls, locals(), ints=(
            "num_classes", "num_bands", "position_channels", "num_latents", "num_latent_channels",
            "num_blocks", "num_cross_attention_heads", "num_self_attention_heads",
            "cross_attention_widening_factor", "self_attention_widening_factor",
        ), non_negative_ints=("num_self_attends_per_block",), optional_ints=(
            "prep_channels", "qk_channels", "v_channels", "num_query_channels",
        ), rates=("dropout", "attention_dropout"))
        validation.check_int(cls, "project_pos_dim", project_pos_dim, minimum=-1)
        if prep_type not in PREP_TYPES:
            raise ValueError(f"{cls}: prep_type must be one of {PREP_TYPES}, received {prep_type!r}.")
        if stem_padding not in STEM_PADDINGS:
            raise ValueError(
                f"{cls}: stem_padding must be one of {STEM_PADDINGS}, received {stem_padding!r}."
            )
        if activation not in ACTIVATIONS:
            raise ValueError(f"{cls}: activation must be one of {ACTIVATIONS}, received {activation!r}.")
        image_shape = tuple(int(n) for n in image_shape)
        if len(image_shape) != 3 or min(image_shape) < 1:
            raise ValueError(f"{cls}: image_shape must be (height, width, channels), received {image_shape}.")

        if prep_type == "learned":
            input_adapter = ImagePreprocessor(
                "conv1x1", num_channels=prep_channels or 256, position_encoding_type="trainable",
                position_channels=position_channels, project_pos_dim=project_pos_dim,
                name="image_preprocessor",
            )
        else:
            input_adapter = ImagePreprocessor(
                "conv" if prep_type == "conv" else "pixels", num_channels=prep_channels or 64,
                stem_padding=stem_padding, num_bands=num_bands, max_resolution=max_resolution,
                fourier_rounding=fourier_rounding, name="image_preprocessor",
            )
        encoder = PerceiverEncoder(
            num_latents, num_latent_channels, num_blocks=num_blocks,
            num_self_attends_per_block=num_self_attends_per_block,
            num_cross_attention_heads=num_cross_attention_heads,
            num_self_attention_heads=num_self_attention_heads,
            qk_channels=qk_channels, v_channels=v_channels,
            cross_attention_shape_for_attention=cross_attention_shape_for_attention,
            cross_attention_widening_factor=cross_attention_widening_factor,
            self_attention_widening_factor=self_attention_widening_factor,
            use_query_residual=use_query_residual, dropout=dropout,
            attention_dropout=attention_dropout, activation=activation, name="encoder",
            remat=remat, attention_memory_budget=attention_memory_budget,
        )
        decoder = ClassificationDecoder(
            num_classes, num_query_channels or num_latent_channels, num_heads=1,
            use_query_residual=decoder_use_query_residual, activation=activation,
            dropout=dropout, attention_dropout=attention_dropout, name="decoder",
        )
        images = keras.Input(shape=image_shape, name="images")
        logits = decoder(encoder(input_adapter(images)))
        super().__init__(inputs=images, outputs=logits, **kwargs)

        self.input_adapter = input_adapter
        self.encoder = encoder
        self.decoder = decoder
        self.num_classes = num_classes
        self.remat = remat
        self.attention_memory_budget = attention_memory_budget
        self.image_shape = image_shape
        self.prep_type = prep_type
        self.stem_padding = stem_padding
        self.num_bands = num_bands
        self.max_resolution = tuple(max_resolution) if max_resolution else None
        self.fourier_rounding = fourier_rounding
        self.prep_channels = prep_channels
        self.position_channels = position_channels
        self.project_pos_dim = project_pos_dim
        self.num_latents = num_latents
        self.num_latent_channels = num_latent_channels
        self.num_blocks = num_blocks
        self.num_self_attends_per_block = num_self_attends_per_block
        self.num_cross_attention_heads = num_cross_attention_heads
        self.num_self_attention_heads = num_self_attention_heads
        self.qk_channels = qk_channels
        self.v_channels = v_channels
        self.cross_attention_shape_for_attention = cross_attention_shape_for_attention
        self.cross_attention_widening_factor = cross_attention_widening_factor
        self.self_attention_widening_factor = self_attention_widening_factor
        self.use_query_residual = use_query_residual
        self.num_query_channels = num_query_channels
        self.decoder_use_query_residual = decoder_use_query_residual
        self.activation = activation
        self.dropout = dropout
        self.attention_dropout = attention_dropout

    def input_checks(self):
        return {"images": {"kind": "float", "hint": " holding normalised images (not raw uint8)"}}

    def default_preprocessor(self):
        """uint8 images of any size -> this model's normalised images.

        Center crop 224/256, bicubic resize to `image_shape`, ImageNet mean
        and std for 3 channels (`(x - 127.5) / 127.5` otherwise).
        """
        from keras_perceiver.preprocessors import PerceiverImageClassifierPreprocessor
        from keras_perceiver.preprocessors import PerceiverImageConverter

        channels = self.image_shape[-1]
        stats = {} if channels == 3 else {"mean": 127.5, "std": 127.5}
        return PerceiverImageClassifierPreprocessor(PerceiverImageConverter(
            self.image_shape[:2], num_channels=channels, **stats))

    @property
    def num_tokens(self):
        """Encoder input length `M` (e.g. 3136 for the conv stem at 224x224)."""
        return self.input_adapter.compute_output_shape((None,) + self.image_shape)[1]

    def with_image_shape(self, image_shape):
        """The same model (shared weight values) for another image size.

        Fourier and conv models carry no size-dependent weights (set
        `max_resolution` explicitly to keep the features identical); the
        learned model's positions are per pixel, so its size is fixed.
        """
        image_shape = tuple(int(n) for n in image_shape)
        if self.prep_type == "learned" and image_shape[:2] != self.image_shape[:2]:
            raise ValueError(
                f"{self.__class__.__name__}: the learned position encoding is fixed to "
                f"{self.image_shape[:2]}, received image_shape {image_shape}."
            )
        model = self.__class__.from_config({**self.get_config(), "image_shape": image_shape})
        model.set_weights(self.get_weights())
        return model

    def get_config(self):
        return {
            "name": self.name,
            "remat": self.remat,
            "attention_memory_budget": self.attention_memory_budget,
            "num_classes": self.num_classes,
            "image_shape": self.image_shape,
            "prep_type": self.prep_type,
            "stem_padding": self.stem_padding,
            "num_bands": self.num_bands,
            "max_resolution": self.max_resolution,
            "fourier_rounding": self.fourier_rounding,
            "prep_channels": self.prep_channels,
            "position_channels": self.position_channels,
            "project_pos_dim": self.project_pos_dim,
            "num_latents": self.num_latents,
            "num_latent_channels": self.num_latent_channels,
            "num_blocks": self.num_blocks,
            "num_self_attends_per_block": self.num_self_attends_per_block,
            "num_cross_attention_heads": self.num_cross_attention_heads,
            "num_self_attention_heads": self.num_self_attention_heads,
            "qk_channels": self.qk_channels,
            "v_channels": self.v_channels,
            "cross_attention_shape_for_attention": self.cross_attention_shape_for_attention,
            "cross_attention_widening_factor": self.cross_attention_widening_factor,
            "self_attention_widening_factor": self.self_attention_widening_factor,
            "use_query_residual": self.use_query_residual,
            "num_query_channels": self.num_query_channels,
            "decoder_use_query_residual": self.decoder_use_query_residual,
            "activation": self.activation,
            "dropout": self.dropout,
            "attention_dropout": self.attention_dropout,
        }

    def _default_loss(self):
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def _default_metrics(self):
        metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        if self.num_classes > 5:
            metrics.append(keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top_5_accuracy"))
        return metrics
