"""Perceiver IO masked language model on UTF-8 bytes (the paper's MLM)."""

import keras
import numpy as np
from keras import ops

from keras_perceiver.layers import validation
from keras_perceiver.layers.decoders import BasicDecoder
from keras_perceiver.layers.encoder import PerceiverEncoder
from keras_perceiver.layers.text import EmbeddingDecoder
from keras_perceiver.layers.text import TextPreprocessor
from keras_perceiver.models.input_checks import CheckedInputs
from keras_perceiver.models.renamed import take_renamed
from keras_perceiver.models.task import PerceiverTask

LANGUAGE_PERCEIVER = dict(
    vocab_size=262,
    max_length=2048,
    d_model=768,
    num_latents=256,
    num_latent_channels=1280,
    num_blocks=1,
    num_self_attends_per_block=26,
    num_self_attention_heads=8,
    num_cross_attention_heads=8,
    qk_channels=256,
    v_channels=1280,
    decoder_num_heads=8,
    decoder_qk_channels=256,
    decoder_v_channels=768,
)

# Constructor arguments shared by the masked LM and the text classifier.
ENCODER_ARGS = (
    "vocab_size", "max_length", "d_model", "num_latents", "num_latent_channels", "num_blocks",
    "num_self_attends_per_block", "num_self_attention_heads",
    "num_cross_attention_heads", "qk_channels", "v_channels",
    "cross_attention_shape_for_attention", "cross_attention_widening_factor",
    "self_attention_widening_factor", "use_query_residual", "pad_id", "activation",
    "dropout", "attention_dropout", "layer_norm_epsilon", "remat", "attention_memory_budget",
)


@keras.saving.register_keras_serializable(package="keras_perceiver")
class PadToLength(keras.layers.Layer):
    """Right-pads `token_ids` `[B, L]` with `pad_id` to `[B, length]` (L <= length)."""

    def __init__(self, length, pad_id=0, **kwargs):
        super().__init__(**kwargs)
        self.length = length
        self.pad_id = pad_id

    def _check(self, shape):
        if len(shape) != 2 or (shape[1] is not None and shape[1] > self.length):
            raise ValueError(
                f"{self.name}: expected token_ids of shape [batch, <= {self.length}], "
                f"received shape {tuple(shape)}."
            )

    def build(self, input_shape):
        self._check(input_shape)
        self.built = True

    def call(self, token_ids):
        self._check(tuple(token_ids.shape))
        batch, length = ops.shape(token_ids)[0], ops.shape(token_ids)[1]
        pad = ops.full((batch, self.length - length), self.pad_id, dtype=token_ids.dtype)
        return ops.concatenate([token_ids, pad], axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.length)

    def get_config(self):
        config = super().get_config()
        config.update(length=self.length, pad_id=self.pad_id)
        return config


TEXT_INTS = (
    "vocab_size", "max_length", "d_model", "num_latents", "num_latent_channels", "num_blocks",
    "num_self_attention_heads", "num_cross_attention_heads",
    "cross_attention_widening_factor", "self_attention_widening_factor",
)


def check_text_arguments(cls, args, kwargs):
    """Checks the text tasks' shared arguments and rejects unknown ones."""
    validation.check_model_kwargs(cls, kwargs)
    validation.check_arguments(
        cls.__name__, args, ints=TEXT_INTS, non_negative_ints=("num_self_attends_per_block", "pad_id"),
        optional_ints=("qk_channels", "v_channels"), rates=("dropout", "attention_dropout"),
        positive_floats=("layer_norm_epsilon",),
    )
    if args["pad_id"] >= args["vocab_size"]:
        raise ValueError(
            f"{cls.__name__}: `pad_id` must be in [0, vocab_size={args['vocab_size']}), "
            f"received {args['pad_id']}."
        )


def build_text_encoder(model_args):
    """The text input adapter and Perceiver encoder shared by the text tasks."""
    a = model_args
    input_adapter = TextPreprocessor(
        a["vocab_size"], a["d_model"], a["max_length"], pad_id=a["pad_id"],
        name="text_preprocessor",
    )
    encoder = PerceiverEncoder(
        num_latents=a["num_latents"],
        num_latent_channels=a["num_latent_channels"],
        num_blocks=a["num_blocks"],
        num_self_attends_per_block=a["num_self_attends_per_block"],
        num_cross_attention_heads=a["num_cross_attention_heads"],
        num_self_attention_heads=a["num_self_attention_heads"],
        qk_channels=a["qk_channels"],
        v_channels=a["v_channels"],
        cross_attention_shape_for_attention=a["cross_attention_shape_for_attention"],
        cross_attention_widening_factor=a["cross_attention_widening_factor"],
        self_attention_widening_factor=a["self_attention_widening_factor"],
        use_query_residual=a["use_query_residual"],
        dropout=a["dropout"],
        attention_dropout=a["attention_dropout"],
        activation=a["activation"],
        layer_norm_epsilon=a["layer_norm_epsilon"],
        remat=a.get("remat", False),
        attention_memory_budget=a.get("attention_memory_budget"),
        name="perceiver_encoder",
    )
    return input_adapter, encoder


def _check_spans(owner, texts, spans):
    """One span list (or None) per text; spans `(start, end)`, 0 <= start < end <= len."""
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"{owner}: expected text as str, received {type(t).__name__} at {i}.")
    if len(spans) != len(texts):
        raise ValueError(
            f"{owner}: expected one masked_spans list per text ({len(texts)} texts), "
            f"received {len(spans)} span lists."
        )
    for i, (t, row) in enumerate(zip(texts, spans)):
        for span in row or ():
            ok = isinstance(span, (list, tuple)) and len(span) == 2 and all(
                validation.is_int(v) for v in span)
            if not ok or not 0 <= span[0] < span[1] <= len(t):
                raise ValueError(
                    f"{owner}: expected spans (start, end) of ints with 0 <= start < end "
                    f"<= {len(t)} (the length of text {i}), received {span!r}."
                )


@keras.saving.register_keras_serializable(package="keras_perceiver")
class PerceiverMaskedLM(CheckedInputs, PerceiverTask):
    """Perceiver IO masked language model on UTF-8 bytes.

    `token_ids` `[B, L]` (int32, `L <= max_length`, PAD=0 marks padding) are
    right-padded to `max_length` inside the model, embedded
    (`TextPreprocessor`), read by the `PerceiverEncoder` with the padding
    mask, and decoded by `max_length` trainable queries (`BasicDecoder`,
    no query residual, no final projection); the tied `EmbeddingDecoder`
    returns logits `[B, max_length, vocab_size]`.

    As in DeepMind's code, the padding mask also masks the decoder queries
    (`mask_decoder_queries=True`): every padded position gets the same
    constant logits. `transformers` does not mask them; both agree at the
    real positions. Set `mask_decoder_queries=False` to reproduce
    `transformers` everywhere.

    Args:
        vocab_size, max_length, d_model: bytes vocabulary (262), sequence
            length (2048) and embedding width (768).
        num_latents, num_latent_channels: the latent array (256 x 1280).
        num_blocks, num_self_attends_per_block: latent Transformer depth.
        num_self_attention_heads, num_cross_attention_heads: encoder heads.
        qk_channels, v_channels: encoder attention widths (None: defaults).
        cross_attention_shape_for_attention: `"kv"` or `"q"`.
        cross_attention_widening_factor, self_attention_widening_factor: MLPs.
        use_query_residual: residual around the encoder cross-attention.
        decoder_num_heads, decoder_qk_channels, decoder_v_channels,
        decoder_widening_factor: the decoder cross-attention
            (`decoder_v_channels=None` means `d_model`).
        mask_decoder_queries: mask padded decoder queries (DeepMind).
        pad_id: the padding token id.
        activation: `"gelu_tanh"` (DeepMind) or `"gelu"` (transformers).
        dropout, attention_dropout, layer_norm_epsilon: as in the layers.
        remat, attention_memory_budget: gradient checkpointing of the latent
            Transformer and the attention chunking budget (`PerceiverEncoder`).

    `compile()` defaults: `SparseCategoricalCrossentropy(from_logits=True)`
    on the original token ids `[B, max_length]`, and a weighted `accuracy`
    (`weighted_metrics`), so a `sample_weight` `[B, max_length]` that is 1 at
    the masked positions and 0 elsewhere limits both the loss and the
    accuracy to the masked bytes (the loss is the mean over the weighted
    positions: `sum(w * CE) / sum(w)`); AdamW at 5e-5 (see
    `PerceiverTask.compile`).

    Example:
    >>> import numpy as np
    >>> model = keras_perceiver.models.PerceiverMaskedLM(
    ...     max_length=16, d_model=8, num_latents=4, num_latent_channels=16,
    ...     num_self_attends_per_block=1, num_self_attention_heads=2,
    ...     num_cross_attention_heads=2, qk_channels=8, v_channels=16,
    ...     decoder_num_heads=2, decoder_qk_channels=8)
    >>> tuple(model(np.ones((2, 10), "int32")).shape)
    (2, 16, 262)
    """

    PRESETS = {
        "language_perceiver": {
            "description": (
                "Perceiver IO MLM on UTF-8 bytes (paper section 4.1): 2048 bytes, "
                "256 x 1280 latents, 26 self-attention layers, 201M parameters."
            ),
            "config": LANGUAGE_PERCEIVER,
        },
    }

    def __init__(
        self,
        vocab_size=262,
        max_length=2048,
        d_model=768,
        num_latents=256,
        num_latent_channels=1280,
        num_blocks=1,
        num_self_attends_per_block=26,
        num_self_attention_heads=8,
        num_cross_attention_heads=8,
        qk_channels=256,
        v_channels=1280,
        cross_attention_shape_for_attention="kv",
        cross_attention_widening_factor=1,
        self_attention_widening_factor=1,
        use_query_residual=True,
        decoder_num_heads=8,
        decoder_qk_channels=256,
        decoder_v_channels=None,
        decoder_widening_factor=1,
        mask_decoder_queries=True,
        pad_id=0,
        activation="gelu_tanh",
        dropout=0.0,
        attention_dropout=0.0,
        layer_norm_epsilon=1e-5,
        remat=False,
        attention_memory_budget=None,
        **kwargs,
    ):
        num_latent_channels = take_renamed(type(self), kwargs, "d_latents", num_latent_channels, 1280)
        args = {k: v for k, v in locals().items() if k not in ("self", "kwargs", "__class__")}
        check_text_arguments(type(self), args, kwargs)
        validation.check_arguments(
            type(self).__name__, args, ints=("decoder_num_heads", "decoder_widening_factor"),
            optional_ints=("decoder_qk_channels", "decoder_v_channels"))
        input_adapter, encoder = build_text_encoder(args)
        decoder = BasicDecoder(
            output_num_channels=d_model,
            output_index_dims=max_length,
            position_encoding_type="trainable",
            num_query_channels=d_model,
            num_heads=decoder_num_heads,
            qk_channels=decoder_qk_channels,
            v_channels=decoder_v_channels or d_model,
            widening_factor=decoder_widening_factor,
            use_query_residual=False,
            final_project=False,
            activation=activation,
            layer_norm_epsilon=layer_norm_epsilon,
            dropout=dropout,
            attention_dropout=attention_dropout,
            name="basic_decoder",
        )
        head = EmbeddingDecoder(vocab_size, name="embedding_decoder")

        token_ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
        padded = PadToLength(max_length, pad_id, name="pad_to_length")(token_ids)
        input_adapter.build(padded.shape)
        mask = input_adapter.compute_padding_mask(padded)
        latents = encoder(input_adapter(padded), input_mask=mask)
        hidden = decoder(latents, query_mask=mask if mask_decoder_queries else None)
        logits = head(hidden, input_adapter.token_embedding.embeddings)
        super().__init__(inputs=token_ids, outputs=logits, **kwargs)

        self.input_adapter = input_adapter
        self.encoder = encoder
        self.decoder = decoder
        self.head = head
        self._args = args

    def get_config(self):
        return {"name": self.name, **self._args}

    def input_checks(self):
        return {"token_ids": {"kind": "ids", "high": self._args["vocab_size"]}}

    def default_preprocessor(self):
        """Strings -> 15% whole-word masked bytes, labels and weights (training)."""
        from keras_perceiver.preprocessors import PerceiverMaskedLMPreprocessor

        return PerceiverMaskedLMPreprocessor(self._args["max_length"])

    def _default_loss(self):
        # The mean over the weighted (masked) positions, not over all of them.
        return keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, reduction="mean_with_sample_weight")

    def _default_weighted_metrics(self):
        return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]

    def fill_mask(self, text, mask_placeholder="[MASK]", masked_spans=None,
                  add_special_tokens=False):
        """Completes masked text with the model's argmax bytes.

        Each occurrence of `mask_placeholder` becomes one MASK token (one
        byte to predict; write it 9 times to mask 9 bytes). Alternatively
        `masked_spans` lists `(start, end)` character ranges of `text` whose
        bytes are masked.

        Args:
            text: a string, or a list of strings.
            mask_placeholder: the placeholder string, or None.
            masked_spans: `[(start, end), ...]` (one list per string for a
                list of strings), or None.
            add_special_tokens: wrap as `[CLS] ... [SEP]` (transformers style;
                DeepMind's colab feeds the bare bytes).

        Returns:
            The completed string (a list of strings for a list input).

        Example:
        >>> model = keras_perceiver.models.PerceiverMaskedLM(
        ...     max_length=16, d_model=8, num_latents=4, num_latent_channels=16,
        ...     num_self_attends_per_block=1, num_self_attention_heads=2,
        ...     num_cross_attention_heads=2, qk_channels=8, v_channels=16,
        ...     decoder_num_heads=2, decoder_qk_channels=8)
        >>> completed = model.fill_mask("ab[MASK]d")  # "ab?d", ? = the argmax byte
        >>> completed[:2], completed[-1]
        ('ab', 'd')
        """
        from keras_perceiver.tokenizers import BytesTokenizer

        tokenizer = BytesTokenizer()
        single = isinstance(text, str)
        texts = [text] if single else list(text)
        spans = [masked_spans] if single else (masked_spans or [None] * len(texts))
        _check_spans(f"{self.name}.fill_mask", texts, spans)
        if not texts:
            return []
        rows = []
        for t, row_spans in zip(texts, spans):
            if row_spans:
                ids = np.asarray(tokenizer.encode(t), np.int32)
                for start, end in row_spans:
                    ids[len(t[:start].encode()):len(t[:end].encode())] = tokenizer.MASK_ID
                ids = ids.tolist()
                if add_special_tokens:
                    ids = [tokenizer.CLS_ID] + ids + [tokenizer.SEP_ID]
            else:
                ids = tokenizer.encode(t, add_special_tokens=add_special_tokens,
                                       mask_placeholder=mask_placeholder)
            if len(ids) > self._args["max_length"]:
                raise ValueError(
                    f"{self.name}.fill_mask: expected at most {self._args['max_length']} "
                    f"tokens, received {len(ids)}."
                )
            rows.append(ids)
        batch = np.full((len(rows), self._args["max_length"]), self._args["pad_id"], np.int32)
        for i, ids in enumerate(rows):
            batch[i, :len(ids)] = ids
        logits = ops.convert_to_numpy(self(batch, training=False))
        predictions = logits.argmax(-1)
        completed = np.where(batch == tokenizer.MASK_ID, predictions, batch)
        out = [tokenizer.decode(row[:len(ids)]) for row, ids in zip(completed, rows)]
        return out[0] if single else out
