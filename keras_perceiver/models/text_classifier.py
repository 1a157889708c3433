"""Perceiver IO text classifier: the language encoder + one query per task."""

import json
import os

import keras

from keras_perceiver.layers import validation
from keras_perceiver.layers.decoders import BasicDecoder
from keras_perceiver.layers.utils import dense_initializer
from keras_perceiver.models.input_checks import CheckedInputs
from keras_perceiver.models.renamed import take_renamed
from keras_perceiver.models.masked_lm import ENCODER_ARGS
from keras_perceiver.models.masked_lm import LANGUAGE_PERCEIVER
from keras_perceiver.models.masked_lm import PerceiverMaskedLM
from keras_perceiver.models.masked_lm import build_text_encoder
from keras_perceiver.models.masked_lm import check_text_arguments
from keras_perceiver.models.pipeline import attach_preprocessor
from keras_perceiver.models.task import CONFIG_FILE
from keras_perceiver.models.task import PerceiverTask


def _check_tasks(tasks):
    if isinstance(tasks, int) and not isinstance(tasks, bool):
        tasks = {"label": tasks}
    if not isinstance(tasks, dict) or not tasks or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v > 0
        for k, v in tasks.items()
    ):
        raise ValueError(
            "PerceiverTextClassifier: expected `tasks` as a non-empty dict "
            f"{{task name: number of classes > 0}} or an int, received {tasks!r}."
        )
    return dict(tasks)


@keras.saving.register_keras_serializable(package="keras_perceiver")
class PerceiverTextClassifier(CheckedInputs, PerceiverTask):
    """The language Perceiver's encoder with a classification decoder.

    `token_ids` `[B, L]` (int32, `L <= max_length`, PAD=0 masked in the
    encoder) are encoded as in `PerceiverMaskedLM`; a `BasicDecoder` with one
    trainable query per task (the paper's multitask queries) cross-attends
    to the latents, and one `Dense` head per task maps its query to logits.
    With one task this is exactly transformers'
    `PerceiverForSequenceClassification` (a `ClassificationDecoder`).

    Outputs a dict `{task: logits [B, num_classes]}`.

    Args:
        tasks: `{task name: num_classes}` (or an int: one task `"label"`).
        num_query_channels: width of the task queries (None: `num_latent_channels`).
        decoder_num_heads, decoder_qk_channels, decoder_v_channels,
        decoder_widening_factor, decoder_use_query_residual: the decoder
            cross-attention (transformers: 1 head, defaults, residual on).
        The other arguments are the text encoder's, as in `PerceiverMaskedLM`.

    `compile()` defaults, per task (a dict keyed by task name):
    `SparseCategoricalCrossentropy(from_logits=True)` and `accuracy` on
    integer labels `[B]` when `num_classes > 1`; `MeanSquaredError` and
    `pearson_correlation` on float targets `[B, 1]` when `num_classes == 1`
    (regression, e.g. STS-B); AdamW at 5e-5 (see `PerceiverTask.compile`).

    Use `from_preset("language_perceiver", tasks=...)`; a preset directory
    (or `weights`) holding a `PerceiverMaskedLM` transfers its encoder
    weights (`from_masked_lm`).

    Example:
    >>> import numpy as np
    >>> model = keras_perceiver.models.PerceiverTextClassifier(
    ...     tasks={"sst2": 2, "mnli": 3}, max_length=16, d_model=8,
    ...     num_latents=4, num_latent_channels=16, num_self_attends_per_block=1,
    ...     num_self_attention_heads=2, num_cross_attention_heads=2,
    ...     qk_channels=8, v_channels=16)
    >>> outputs = model(np.ones((2, 10), "int32"))
    >>> tuple(outputs["sst2"].shape), tuple(outputs["mnli"].shape)
    ((2, 2), (2, 3))
    """

    # from_preset(..., tasks=...): the saved encoder, fresh task heads.
    HEAD_ARGUMENTS = ("tasks",)

    PRESETS = {
        "language_perceiver": {
            "description": (
                "The language Perceiver's encoder (2048 bytes, 256 x 1280 latents, "
                "26 self-attention layers) with one learned query per task; pass "
                "`tasks={name: num_classes}`."
            ),
            "config": {k: v for k, v in LANGUAGE_PERCEIVER.items() if not k.startswith("decoder_")},
        },
    }

    def __init__(
        self,
        tasks,
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
        num_query_channels=None,
        decoder_num_heads=1,
        decoder_qk_channels=None,
        decoder_v_channels=None,
        decoder_widening_factor=1,
        decoder_use_query_residual=True,
        pad_id=0,
        activation="gelu_tanh",
        dropout=0.0,
        attention_dropout=0.0,
        layer_norm_epsilon=1e-5,
        remat=False,
        attention_memory_budget=None,
        **kwargs,
    ):
        tasks = _check_tasks(tasks)
        num_latent_channels = take_renamed(type(self), kwargs, "d_latents", num_latent_channels, 1280)
        args = {k: v for k, v in locals().items() if k not in ("self", "kwargs", "__class__")}
        check_text_arguments(type(self), args, kwargs)
        validation.check_arguments(
            type(self).__name__, args, ints=("decoder_num_heads", "decoder_widening_factor"),
            optional_ints=("num_query_channels", "decoder_qk_channels", "decoder_v_channels"))
        input_adapter, encoder = build_text_encoder(args)
        query_channels = num_query_channels or num_latent_channels
        decoder = BasicDecoder(
            output_num_channels=query_channels,
            output_index_dims=len(tasks),
            position_encoding_type="trainable",
            num_query_channels=query_channels,
            num_heads=decoder_num_heads,
            qk_channels=decoder_qk_channels,
            v_channels=decoder_v_channels,
            widening_factor=decoder_widening_factor,
            use_query_residual=decoder_use_query_residual,
            final_project=False,
            activation=activation,
            layer_norm_epsilon=layer_norm_epsilon,
            dropout=dropout,
            attention_dropout=attention_dropout,
            name="classification_decoder",
        )
        heads = {
            name: keras.layers.Dense(
                num_classes, kernel_initializer=dense_initializer("variance_scaling"),
                name=f"{name}_head",
            )
            for name, num_classes in tasks.items()
        }

        token_ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
        input_adapter.build(token_ids.shape)
        mask = input_adapter.compute_padding_mask(token_ids)
        latents = encoder(input_adapter(token_ids), input_mask=mask)
        queries = decoder(latents)
        outputs = {name: head(queries[:, i]) for i, (name, head) in enumerate(heads.items())}
        super().__init__(inputs=token_ids, outputs=outputs, **kwargs)

        self.input_adapter = input_adapter
        self.encoder = encoder
        self.decoder = decoder
        self.heads = heads
        self._args = args

    def get_config(self):
        return {"name": self.name, **self._args}

    def input_checks(self):
        return {"token_ids": {"kind": "ids", "high": self._args["vocab_size"]}}

    def default_preprocessor(self):
        """Strings -> `[CLS] bytes [SEP]` ids padded to `max_length`."""
        from keras_perceiver.preprocessors import PerceiverTextClassifierPreprocessor

        return PerceiverTextClassifierPreprocessor(self._args["max_length"])

    def _default_loss(self):
        return {
            task: keras.losses.SparseCategoricalCrossentropy(from_logits=True)
            if n > 1 else keras.losses.MeanSquaredError()
            for task, n in self._args["tasks"].items()
        }

    def _default_metrics(self):
        return {
            task: [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
            if n > 1 else [keras.metrics.PearsonCorrelation(name="pearson_correlation")]
            for task, n in self._args["tasks"].items()
        }

    @classmethod
    def from_masked_lm(cls, masked_lm, tasks, **overrides):
        """A classifier whose text encoder holds `masked_lm`'s weights.

        Args:
            masked_lm: a `PerceiverMaskedLM` (e.g. the `language_perceiver`
                preset with its weights).
            tasks: `{task name: num_classes}`.
            **overrides: other constructor arguments (e.g. dropout).
        """
        if not isinstance(masked_lm, PerceiverMaskedLM):
            raise ValueError(
                f"{cls.__name__}.from_masked_lm: expected a PerceiverMaskedLM, "
                f"received {type(masked_lm).__name__}."
            )
        config = {k: v for k, v in masked_lm.get_config().items() if k in ENCODER_ARGS}
        config.update(overrides)
        model = cls(tasks=tasks, **config)
        model.input_adapter.set_weights(masked_lm.input_adapter.get_weights())
        model.encoder.set_weights(masked_lm.encoder.get_weights())
        return model

    @classmethod
    def from_preset(cls, preset, weights=None, tasks=None, load_weights=True,
                    preprocessor=None, **overrides):
        """Builds a classifier from a preset name or directory.

        A `PerceiverMaskedLM` preset directory, or a preset name with
        `weights` of the masked LM, transfers the encoder weights to a new
        classifier with `tasks` (`load_weights=False`: random weights); a
        `PerceiverTextClassifier` directory reloads it exactly, or with
        other `tasks` its encoder only (fresh heads). `preprocessor` as in
        `PerceiverTask.from_preset`.
        """
        if tasks is not None:
            overrides["tasks"] = tasks
        saved_class = None
        if os.path.isdir(str(preset)):
            with open(os.path.join(preset, CONFIG_FILE)) as f:
                saved_class = json.load(f)["class_name"]
        if saved_class == PerceiverMaskedLM.__name__ or (saved_class is None and weights):
            if "tasks" not in overrides:
                raise ValueError(
                    f"{cls.__name__}.from_preset: pass `tasks={{name: num_classes}}` "
                    f"to build a classifier from the masked LM {preset!r}."
                )
            masked_lm = PerceiverMaskedLM.from_preset(
                preset, weights=weights, load_weights=load_weights, preprocessor=False)
            return attach_preprocessor(cls.from_masked_lm(masked_lm, **overrides), preprocessor)
        if saved_class is None and "tasks" not in overrides:
            raise ValueError(
                f"{cls.__name__}.from_preset: pass `tasks={{name: num_classes}}` "
                f"with the preset {preset!r}."
            )
        return super().from_preset(preset, weights=weights, load_weights=load_weights,
                                   preprocessor=preprocessor, **overrides)
