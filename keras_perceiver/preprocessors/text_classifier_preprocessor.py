"""`PerceiverTextClassifierPreprocessor`: strings -> padded byte token ids."""

import keras
import tensorflow as tf

from keras_perceiver.preprocessors.checks import check_input
from keras_perceiver.preprocessors.preprocessor import PerceiverPreprocessor
from keras_perceiver.tokenizers import BytesTokenizer


def check_sequence_length(owner, sequence_length, add_special_tokens):
    minimum = 3 if add_special_tokens else 1
    if isinstance(sequence_length, bool) or not isinstance(sequence_length, int) or (
            sequence_length < minimum):
        raise ValueError(
            f"{owner}: sequence_length must be an int >= {minimum}, received "
            f"{sequence_length!r}."
        )


def encode_text(text, sequence_length=None, add_special_tokens=False, mask_placeholder=None,
                truncate=True, max_length=None, name="text"):
    """`text` tf.string `[B]` (or a scalar) -> int32 byte ids.

    `sequence_length`: pad (and truncate, keeping `[SEP]`) to exactly this
    length; None pads to the batch's longest. With `truncate=False`, a text
    longer than `sequence_length` (or `max_length`) is an error naming the
    input instead (the serving signatures). This is the one tokenisation of
    the text tasks: the preprocessors, `predict` and the exported files.
    """
    text = tf.convert_to_tensor(text)
    if text.dtype != tf.string:
        raise TypeError(f"input `{name}` must be strings (tf.string), got {text.dtype.name}.")
    if text.shape.rank not in (0, 1):
        text = check_input(text, name, (None,), " (tf.string [batch], raw UTF-8)")
    tokenizer = BytesTokenizer()
    if truncate:
        return tokenizer.tf_encode(text, max_length=sequence_length,
                                   add_special_tokens=add_special_tokens,
                                   mask_placeholder=mask_placeholder)
    ids = tokenizer.tf_encode(text, add_special_tokens=add_special_tokens,
                              mask_placeholder=mask_placeholder)
    limit = sequence_length or max_length
    if limit is not None:
        too_long = tf.debugging.assert_less_equal(
            tf.shape(ids)[-1], limit,
            message=f"input `{name}` must encode to at most {limit} tokens "
                    "(one per UTF-8 byte). Tokens:",
        )
        with tf.control_dependencies([too_long]):
            ids = tf.identity(ids)
        if sequence_length is not None:
            pad = [[0, 0]] * (ids.shape.rank - 1) + [[0, sequence_length - tf.shape(ids)[-1]]]
            ids = tf.pad(ids, pad, constant_values=BytesTokenizer.PAD_ID)
            ids.set_shape(ids.shape[:-1].concatenate([sequence_length]))
    return ids


@keras.saving.register_keras_serializable(package="keras_perceiver")
class PerceiverTextClassifierPreprocessor(PerceiverPreprocessor):
    """Strings -> `token_ids` `[B, sequence_length]` for `PerceiverTextClassifier`.

    UTF-8 bytes (`BytesTokenizer`, PAD=0), wrapped as `[CLS] ... [SEP]` by
    default, truncated (keeping `[SEP]`) and right-padded to
    `sequence_length`. The model computes its padding mask from PAD=0, so
    the preprocessor returns `token_ids` alone. Labels pass through.

    Args:
        sequence_length: the padded length (at most the model's
            `max_length`).
        add_special_tokens: wrap as `[CLS] ... [SEP]` (ids 4 and 5).

    Call arguments:
        x: strings `[B]` (a list, NumPy array or `tf.string` tensor) or one
            string.
        y, sample_weight: optional, returned unchanged.

    Example:
    >>> p = keras_perceiver.preprocessors.PerceiverTextClassifierPreprocessor(
    ...     sequence_length=6)
    >>> p(["hi"]).numpy().tolist()
    [[4, 110, 111, 5, 0, 0]]
    """

    def __init__(self, sequence_length=2048, add_special_tokens=True):
        check_sequence_length(type(self).__name__, sequence_length, add_special_tokens)
        self.sequence_length = sequence_length
        self.add_special_tokens = bool(add_special_tokens)

    def get_config(self):
        return {"sequence_length": self.sequence_length,
                "add_special_tokens": self.add_special_tokens}

    def transform(self, x):
        return encode_text(x, self.sequence_length, self.add_special_tokens)
