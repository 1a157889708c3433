"""The generic Perceiver IO model: adapter -> encoder -> decoder -> adapter."""

import keras

from keras_perceiver.layers import validation
from keras_perceiver.layers.decoders import BasicDecoder
from keras_perceiver.layers.utils import dense_initializer

# Encoder inputs narrower than this are projected by `input_projection="auto"`.
MIN_INPUT_CHANNELS = 16


@keras.saving.register_keras_serializable(package="keras_perceiver")
class PerceiverIO(keras.Model):
    """A functional `keras.Model` assembled from Perceiver IO parts.

    `input_adapter` maps the raw input to `[B, M, C]` (any Keras layer; a
    layer with a `compute_padding_mask(raw)` method, like
    `TextPreprocessor`, also yields the encoder's input mask), the
    `PerceiverEncoder` reads it into latents, the decoder writes the output
    from its queries, and `output_adapter` post-processes it.

    Defaults worth knowing: the encoder's cross-attention works at the width
    `C` of its input (its `qk_channels` and `v_channels` default to `C`, and
    it LayerNorms over `C`), so a narrow input (e.g. 2-D points, `C = 2`)
    would give a 2-channel attention that learns poorly. With
    `input_projection="auto"` (the default) an input narrower than 16
    channels is first projected by a `Dense` (`input_projection` layer) to the
    encoder's `num_latent_channels`; wider inputs are used as they are. The
    decoder's `inputs` (for decoders that query with them) stay unprojected.

    Args:
        encoder: a `keras_perceiver.layers.PerceiverEncoder`.
        decoder: a decoder layer (`BasicDecoder`, `ClassificationDecoder`, ...).
        input_shape: per-example shape of the raw input, e.g. `(None,)` for
            token ids or `(M, C)` for arrays.
        input_dtype: dtype of the raw input.
        input_adapter: optional layer applied to the raw input.
        output_adapter: optional layer applied to the decoder output.
        padding_mask: if True the model takes `{"inputs", "padding_mask"}`
            and masks the encoder's cross-attention with the boolean mask.
        input_projection: width of a `Dense` applied to the encoder input:
            `"auto"` (the encoder's `num_latent_channels` when the input has
            fewer than 16 channels, else none), an int (always, to that
            width), or None (never; configs saved before this option load
            with None, unchanged).

    Example:
    >>> import numpy as np
    >>> L = keras_perceiver.layers
    >>> model = keras_perceiver.models.PerceiverIO(
    ...     encoder=L.PerceiverEncoder(8, 32, num_self_attends_per_block=2,
    ...                                num_self_attention_heads=4),
    ...     decoder=L.BasicDecoder(10, output_index_dims=12, num_query_channels=16),
    ...     input_shape=(12,), input_dtype="int32",
    ...     input_adapter=L.TextPreprocessor(10, 16, max_length=12))
    >>> model(np.zeros((2, 12), "int32")).shape
    (2, 12, 10)
    """

    def __init__(
        self,
        encoder,
        decoder,
        input_shape,
        input_dtype="float32",
        input_adapter=None,
        output_adapter=None,
        padding_mask=False,
        input_projection="auto",
        **kwargs,
    ):
        validation.check_model_kwargs(type(self), kwargs)
        width = _projection_width(input_projection)
        raw = keras.Input(shape=tuple(input_shape), dtype=input_dtype, name="inputs")
        inputs = raw
        mask = None
        if padding_mask:
            mask = keras.Input(shape=tuple(input_shape)[:1], dtype="bool", name="padding_mask")
            inputs = {"inputs": raw, "padding_mask": mask}
        x = raw
        if input_adapter is not None:
            if mask is None and hasattr(input_adapter, "compute_padding_mask"):
                if not input_adapter.built:
                    input_adapter.build(raw.shape)
                mask = input_adapter.compute_padding_mask(raw)
            x = input_adapter(raw)
        encoder_inputs = x
        projection = None
        if width == "auto":
            width = encoder.num_latent_channels if x.shape[-1] < MIN_INPUT_CHANNELS else None
        if width is not None:
            projection = keras.layers.Dense(
                width, kernel_initializer=dense_initializer("variance_scaling"),
                name="input_projection")
            encoder_inputs = projection(x)
        latents = encoder(encoder_inputs, input_mask=mask)
        if isinstance(decoder, BasicDecoder) and decoder.needs_inputs:
            outputs = decoder(latents, inputs=x)
        else:
            outputs = decoder(latents)
        if output_adapter is not None:
            outputs = output_adapter(outputs)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.encoder = encoder
        self.decoder = decoder
        self.input_adapter = input_adapter
        self.output_adapter = output_adapter
        self.padding_mask = padding_mask
        self.input_projection = input_projection
        self.input_projection_layer = projection
        self._raw_input_shape = tuple(input_shape)
        self._raw_input_dtype = input_dtype

    def get_config(self):
        serialize = keras.saving.serialize_keras_object
        return {
            "name": self.name,
            "encoder": serialize(self.encoder),
            "decoder": serialize(self.decoder),
            "input_shape": self._raw_input_shape,
            "input_dtype": self._raw_input_dtype,
            "input_adapter": serialize(self.input_adapter) if self.input_adapter else None,
            "output_adapter": serialize(self.output_adapter) if self.output_adapter else None,
            "padding_mask": self.padding_mask,
            "input_projection": self.input_projection,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config.setdefault("input_projection", None)  # saved before the option existed
        for key in ("encoder", "decoder", "input_adapter", "output_adapter"):
            if config.get(key) is not None:
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)


def _projection_width(input_projection):
    if input_projection is None or input_projection == "auto":
        return input_projection
    if isinstance(input_projection, bool) or not isinstance(input_projection, int) or (
            input_projection < 1):
        raise ValueError(
            f"PerceiverIO: input_projection must be 'auto', None or a positive int, "
            f"received {input_projection!r}."
        )
    return input_projection
