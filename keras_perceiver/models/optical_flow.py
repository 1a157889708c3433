"""Perceiver IO optical flow: two frames in, a per-pixel flow field out."""

import collections
import itertools

import keras
import numpy as np

from keras_perceiver.layers import validation
from keras_perceiver.layers.decoders import BasicDecoder
from keras_perceiver.layers.encoder import PerceiverEncoder
from keras_perceiver.layers.flow import OpticalFlowPreprocessor
from keras_perceiver.models.input_checks import CheckedInputs
from keras_perceiver.models.task import PerceiverTask

TRAIN_SIZE = (368, 496)


def tile_origins(image_size, tile_size=TRAIN_SIZE, min_overlap=20):
    """Top-left corners of the tiles covering an image (DeepMind's colab).

    Per axis, `range(0, size, tile - min_overlap)` with the last start moved
    so that the last tile is flush with the image edge, then the product of
    both axes (row-major). As in DeepMind's `compute_grid_indices`; the one
    difference: where the colab would cut a tile running past the edge (the
    second-to-last start lies beyond `size - tile`), that start is clipped to
    `size - tile` too. Starts can repeat (an axis exactly `tile` long gives
    `[0, 0]`); repeated tiles count that many times in the blend, as in the
    colab (`predict_flow` evaluates each distinct tile once).

    Example:
    >>> keras_perceiver.models.optical_flow.tile_origins((436, 1024))
    [(0, 0), (0, 476), (0, 528), (68, 0), (68, 476), (68, 528)]
    """
    validation.check_int("tile_origins", "min_overlap", min_overlap, minimum=0)
    if min_overlap >= tile_size[0] or min_overlap >= tile_size[1]:
        raise ValueError(
            f"tile_origins: min_overlap must be less than the tile size "
            f"{tuple(tile_size)}, received {min_overlap}."
        )
    axes = []
    for size, tile in zip(image_size, tile_size):
        if size < tile:
            raise ValueError(
                f"tile_origins: the image {tuple(image_size)} must be at least "
                f"the tile size {tuple(tile_size)}."
            )
        starts = list(range(0, size, tile - min_overlap))
        starts[-1] = size - tile
        axes.append([min(s, size - tile) for s in starts])
    return list(itertools.product(*axes))


def blending_weights(tile_size=TRAIN_SIZE):
    """`[h, w]` weights: distance (in pixels, from 1) to the nearest tile edge.

    `min(min(x + 1, w - x), min(y + 1, h - y))`, DeepMind's colab weights.

    Example:
    >>> keras_perceiver.models.optical_flow.blending_weights((3, 4)).tolist()
    [[1.0, 1.0, 1.0, 1.0], [1.0, 2.0, 2.0, 1.0], [1.0, 1.0, 1.0, 1.0]]
    """
    h, w = tile_size
    y = np.arange(h)
    x = np.arange(w)
    wy = np.minimum(y + 1, h - y)[:, None]
    wx = np.minimum(x + 1, w - x)[None, :]
    return np.minimum(wy, wx).astype(np.float64)


@keras.saving.register_keras_serializable(package="keras_perceiver")
class PerceiverOpticalFlow(CheckedInputs, PerceiverTask):
    """Perceiver IO for optical flow (the paper's Sintel/KITTI model).

    Input `frames` `[B, 2, H, W, 3]`, two RGB frames scaled to [-1, 1]
    (`uint8 / 255 * 2 - 1`), `(H, W) = image_shape`. Each pixel becomes a
    token: its 3x3 patch in both frames (54 values) projected to
    `num_patch_channels`, with 2-D Fourier features concatenated
    (`keras_perceiver.layers.OpticalFlowPreprocessor`). The decoder queries
    are those same tokens (no extra position encoding), one per pixel.

    Output: flow `[B, H, W, 2]` **in pixels** (channel 0 horizontal, 1
    vertical, as DeepMind's colab reads it). The decoder's final linear layer is divided by
    `rescale_factor` (100; this is what transformers' `PerceiverForOpticalFlow`
    returns as `logits`) and then multiplied by `flow_scale_factor` (20, the
    `FLOW_SCALE_FACTOR` of DeepMind's colab): net x0.2, so
    `transformers logits == our flow / 20`.

    Args:
        image_shape: `(H, W)` the model works on (368x496 for the released
            weights); larger images go through `predict_flow`'s tiling.
        num_latents, num_latent_channels: the latent array (2048 x 512).
        num_blocks, num_self_attends_per_block: the latent Transformer.
        num_self_attention_heads, num_cross_attention_heads: encoder heads.
        qk_channels, v_channels: encoder attention widths (None: defaults).
        cross_attention_widening_factor, self_attention_widening_factor: MLPs.
        cross_attention_shape_for_attention: `"kv"` (both references).
        use_query_residual: encoder cross-attention residual.
        num_patch_channels: width of the patch projection (64).
        num_bands: Fourier bands per dimension (64).
        max_resolution: Fourier max resolution (None: `image_shape`).
        fourier_rounding: how the Fourier tables are rounded: `"exact"`,
            `"deepmind"` (the preset) or `"transformers"`.
        decoder_num_heads, decoder_qk_channels, decoder_v_channels: decoder.
        rescale_factor: the decoder output is divided by this (100).
        flow_scale_factor: then multiplied by this (20) to give pixels.
        activation: `"gelu_tanh"` (DeepMind) or `"gelu"` (transformers).
        dropout: dropout rate of the attention blocks.
        remat, attention_memory_budget: gradient checkpointing of the latent
            Transformer and the attention chunking budget (`PerceiverEncoder`).

    `compile()` defaults: the end-point error in pixels
    (`keras_perceiver.losses.EndPointError`, targets `[B, H, W, 2]`) as loss
    and as metric `end_point_error`; AdamW at 5e-5 (see
    `PerceiverTask.compile`).

    Example:
    >>> import numpy as np
    >>> model = keras_perceiver.models.PerceiverOpticalFlow(
    ...     image_shape=(6, 8), num_latents=4, num_latent_channels=16,
    ...     num_self_attends_per_block=1, num_self_attention_heads=2,
    ...     num_patch_channels=8, num_bands=2)
    >>> tuple(model(np.zeros((1, 2, 6, 8, 3), "float32")).shape)
    (1, 6, 8, 2)
    """

    PRESETS = {
        "optical_flow_perceiver": {
            "description": (
                "Perceiver IO optical flow (AutoFlow-trained in the paper): two "
                "368x496 frames, 3x3 patches + Fourier features, 2048x512 "
                "latents, 24 self-attends; flow in pixels. 41,057,134 params."
            ),
            "config": {"fourier_rounding": "deepmind"},
        },
    }

    def __init__(
        self,
        image_shape=TRAIN_SIZE,
        num_latents=2048,
        num_latent_channels=512,
        num_blocks=1,
        num_self_attends_per_block=24,
        num_self_attention_heads=16,
        num_cross_attention_heads=1,
        qk_channels=None,
        v_channels=None,
        cross_attention_widening_factor=1,
        self_attention_widening_factor=1,
        cross_attention_shape_for_attention="kv",
        use_query_residual=True,
        num_patch_channels=64,
        num_bands=64,
        max_resolution=None,
        fourier_rounding="exact",
        decoder_num_heads=1,
        decoder_qk_channels=None,
        decoder_v_channels=None,
        rescale_factor=100.0,
        flow_scale_factor=20.0,
        activation="gelu_tanh",
        dropout=0.0,
        remat=False,
        attention_memory_budget=None,
        **kwargs,
    ):
        validation.check_model_kwargs(type(self), kwargs)
        validation.check_arguments("PerceiverOpticalFlow", locals(), ints=(
            "num_latents", "num_latent_channels", "num_blocks", "num_self_attention_heads",
            "num_cross_attention_heads", "cross_attention_widening_factor",
            "self_attention_widening_factor", "num_patch_channels", "num_bands",
            "decoder_num_heads",
        ), non_negative_ints=("num_self_attends_per_block",), optional_ints=(
            "qk_channels", "v_channels", "decoder_qk_channels", "decoder_v_channels",
        ), rates=("dropout",), positive_floats=("rescale_factor",))
        validation.check_float("PerceiverOpticalFlow", "flow_scale_factor", flow_scale_factor,
                               minimum=None)
        image_shape = tuple(int(n) for n in image_shape)
        if len(image_shape) != 2 or min(image_shape) < 1:
            raise ValueError(
                f"PerceiverOpticalFlow: image_shape must be (height, width), "
                f"received {image_shape}."
            )
        max_resolution = tuple(max_resolution) if max_resolution else None
        frames = keras.Input(shape=(2,) + image_shape + (3,), dtype="float32", name="frames")
        preprocessor = OpticalFlowPreprocessor(
            image_shape, num_channels=num_patch_channels, num_bands=num_bands,
            max_resolution=max_resolution, fourier_rounding=fourier_rounding,
            name="image_preprocessor",
        )
        tokens_shape = preprocessor.compute_output_shape(frames.shape)
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
            activation=activation, name="perceiver_encoder",
            remat=remat, attention_memory_budget=attention_memory_budget,
            inputs_channels=tokens_shape[-1],
        )
        decoder = BasicDecoder(
            output_num_channels=2, position_encoding_type="none",
            num_heads=decoder_num_heads, qk_channels=decoder_qk_channels,
            v_channels=decoder_v_channels, use_query_residual=False,
            activation=activation, dropout=dropout, inputs_channels=tokens_shape[-1],
            name="flow_decoder",
        )
        # The [B, H*W, C] tokens (~235 MB at 368x496) are never made whole:
        # the encoder's streamed keys and the decoder's query chunks append
        # the Fourier features to the projected patches chunk by chunk; both
        # know the tokens' width (`inputs_channels`), so they build from the
        # raw features too (`keras.models.clone_model` re-calls this graph).
        features = preprocessor(frames, positions=False)
        encoder.build(tokens_shape)
        latents = encoder(features, inputs_expand=preprocessor.append_positions)
        decoder.build(encoder.compute_output_shape(tokens_shape), inputs_shape=tokens_shape)
        outputs = decoder(latents, inputs=features, inputs_expand=preprocessor.append_positions)
        # The two references' scalings, kept apart: /100 (transformers'
        # logits, DeepMind's FlowDecoder), then x20 (DeepMind's colab) -> px.
        outputs = keras.layers.Rescaling(1.0 / rescale_factor, name="rescale")(outputs)
        outputs = keras.layers.Rescaling(flow_scale_factor, name="flow_scale")(outputs)
        flow = keras.layers.Reshape(image_shape + (2,), name="flow")(outputs)
        super().__init__(inputs=frames, outputs=flow, **kwargs)
        self.input_adapter = preprocessor
        self.encoder = encoder
        self.decoder = decoder
        self.image_shape = image_shape
        self.remat = remat
        self.attention_memory_budget = attention_memory_budget
        self.num_latents = num_latents
        self.num_latent_channels = num_latent_channels
        self.num_blocks = num_blocks
        self.num_self_attends_per_block = num_self_attends_per_block
        self.num_self_attention_heads = num_self_attention_heads
        self.num_cross_attention_heads = num_cross_attention_heads
        self.qk_channels = qk_channels
        self.v_channels = v_channels
        self.cross_attention_widening_factor = cross_attention_widening_factor
        self.self_attention_widening_factor = self_attention_widening_factor
        self.cross_attention_shape_for_attention = cross_attention_shape_for_attention
        self.use_query_residual = use_query_residual
        self.num_patch_channels = num_patch_channels
        self.num_bands = num_bands
        self.max_resolution = max_resolution
        self.fourier_rounding = fourier_rounding
        self.decoder_num_heads = decoder_num_heads
        self.decoder_qk_channels = decoder_qk_channels
        self.decoder_v_channels = decoder_v_channels
        self.rescale_factor = rescale_factor
        self.flow_scale_factor = flow_scale_factor
        self.activation = activation
        self.dropout = dropout

    def get_config(self):
        return {
            "name": self.name,
            "remat": self.remat,
            "attention_memory_budget": self.attention_memory_budget,
            "image_shape": self.image_shape,
            "num_latents": self.num_latents,
            "num_latent_channels": self.num_latent_channels,
            "num_blocks": self.num_blocks,
            "num_self_attends_per_block": self.num_self_attends_per_block,
            "num_self_attention_heads": self.num_self_attention_heads,
            "num_cross_attention_heads": self.num_cross_attention_heads,
            "qk_channels": self.qk_channels,
            "v_channels": self.v_channels,
            "cross_attention_widening_factor": self.cross_attention_widening_factor,
            "self_attention_widening_factor": self.self_attention_widening_factor,
            "cross_attention_shape_for_attention": self.cross_attention_shape_for_attention,
            "use_query_residual": self.use_query_residual,
            "num_patch_channels": self.num_patch_channels,
            "num_bands": self.num_bands,
            "max_resolution": self.max_resolution,
            "fourier_rounding": self.fourier_rounding,
            "decoder_num_heads": self.decoder_num_heads,
            "decoder_qk_channels": self.decoder_qk_channels,
            "decoder_v_channels": self.decoder_v_channels,
            "rescale_factor": self.rescale_factor,
            "flow_scale_factor": self.flow_scale_factor,
            "activation": self.activation,
            "dropout": self.dropout,
        }

    def input_checks(self):
        return {"frames": {"kind": "float", "range": (-1.0, 1.0),
                           "hint": " scaled to [-1, 1] (uint8 / 255 * 2 - 1; or use predict_flow)"}}

    def default_preprocessor(self):
        """uint8 frame pairs -> [-1, 1] (`PerceiverOpticalFlowFramesPreprocessor`)."""
        from keras_perceiver.preprocessors import PerceiverOpticalFlowFramesPreprocessor

        return PerceiverOpticalFlowFramesPreprocessor(self.image_shape)

    def _default_loss(self):
        from keras_perceiver.losses import EndPointError

        return EndPointError()

    def _default_metrics(self):
        from keras_perceiver.losses import EndPointErrorMetric

        return [EndPointErrorMetric()]

    def predict_flow(self, frame1, frame2, min_overlap=20):
        """Flow in pixels between two uint8 frames of any size >= `image_shape`.

        The frames are scaled to [-1, 1], cut into `image_shape` tiles
        overlapping by at least `min_overlap` pixels (`tile_origins`), and
        the tiles' flows are blended with `blending_weights` (DeepMind's
        colab): each pixel gets the weighted mean over the tiles covering it.

        Args:
            frame1, frame2: uint8 `[H, W, 3]`, or batched `[B, H, W, 3]`.
            min_overlap: minimum overlap of neighbouring tiles.

        Returns:
            float32 NumPy flow `[H, W, 2]` (or `[B, H, W, 2]`).
        """
        frame1, frame2 = np.asarray(frame1), np.asarray(frame2)
        for frame in (frame1, frame2):
            if frame.dtype != np.uint8:
                raise ValueError(
                    f"{self.name}.predict_flow: expected uint8 frames, received "
                    f"dtype {frame.dtype}."
                )
            if frame.ndim not in (3, 4) or frame.shape[-1] != 3:
                raise ValueError(
                    f"{self.name}.predict_flow: expected frames of shape [H, W, 3] "
                    f"or [B, H, W, 3], received shape {frame.shape}."
                )
        if frame1.shape != frame2.shape:
            raise ValueError(
                f"{self.name}.predict_flow: the frames' shapes differ: "
                f"{frame1.shape} and {frame2.shape}."
            )
        batched = frame1.ndim == 4
        if not batched:
            frame1, frame2 = frame1[None], frame2[None]
        height, width = frame1.shape[1:3]
        tile_h, tile_w = self.image_shape
        if height < tile_h or width < tile_w:
            raise ValueError(
                f"{self.name}.predict_flow: frames must be at least "
                f"{tile_h}x{tile_w} (pad or resize them), received shape "
                f"{frame1.shape}."
            )
        frames = np.stack([frame1, frame2], axis=1).astype(np.float32) / 255.0 * 2 - 1
        weights = blending_weights(self.image_shape)
        flow = np.zeros((frames.shape[0], height, width, 2), np.float64)
        total = np.zeros((height, width), np.float64)
        origins = collections.Counter(
            tile_origins((height, width), self.image_shape, min_overlap)
        )
        for (y, x), repeats in origins.items():
            tile = frames[:, :, y : y + tile_h, x : x + tile_w]
            tile_flow = np.asarray(self.predict_on_batch(tile), np.float64)
            flow[:, y : y + tile_h, x : x + tile_w] += (
                repeats * tile_flow * weights[None, :, :, None]
            )
            total[y : y + tile_h, x : x + tile_w] += repeats * weights
        flow = (flow / total[None, :, :, None]).astype(np.float32)
        return flow if batched else flow[0]
