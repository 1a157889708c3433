"""The generic Perceiver IO model: adapter -> encoder -> decoder -> adapter."""

import keras

from keras_perceiver.layers import validation
from keras_perceiver.layers.decoders import BasicDecoder


@keras.saving.register_keras_serializable(package="keras_perceiver")
class PerceiverIO(keras.Model):
    """A functional `keras.Model` assembled from Perceiver IO parts.

    `input_adapter` maps the raw input to `[B, M, C]` (any Keras layer; a
    layer with a `compute_padding_mask(raw)` method, like
    `TextPreprocessor`, also yields the encoder's input mask), the
    `PerceiverEncoder` reads it into latents, the decoder writes the output
    from its queries, and `output_adapter` post-processes it.

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
        **kwargs,
    ):
        validation.check_model_kwargs(type(self), kwargs)
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
        latents = encoder(x, input_mask=mask)
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
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("encoder", "decoder", "input_adapter", "output_adapter"):
            if config.get(key) is not None:
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)
