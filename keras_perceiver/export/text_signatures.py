"""Serving signatures of the text task models: raw UTF-8 text and token ids.

`PerceiverMaskedLM` and `PerceiverTextClassifier`; dispatched from
`keras_perceiver.export.signatures.serving_signatures`.
"""

import tensorflow as tf

from keras_perceiver.export import preprocessing
from keras_perceiver.export.preprocessing import check_input
from keras_perceiver.export.signatures import MASK_PLACEHOLDER
from keras_perceiver.export.signatures import Signature


def _tokenizer():
    from keras_perceiver.tokenizers import BytesTokenizer

    return BytesTokenizer()


def _encode_text(text, max_length, add_special_tokens=False, mask_placeholder=None,
                 sequence_length=None):
    """`text` tf.string `[B]` -> int32 `[B, L]`, `L <= max_length` (an error
    otherwise); batch-longest, or padded to `sequence_length`. The text
    preprocessors' tokenisation (`encode_text`)."""
    from keras_perceiver.preprocessors.text_classifier_preprocessor import encode_text

    text = check_input(text, "text", (None,), " (tf.string [batch], raw UTF-8)")
    return encode_text(text, sequence_length, add_special_tokens=add_special_tokens,
                       mask_placeholder=mask_placeholder, truncate=False,
                       max_length=max_length)


def _check_token_ids(token_ids, vocab_size, max_length):
    token_ids = check_input(token_ids, "token_ids", (None, None), " (int32 [batch, length])")
    token_ids = preprocessing.check_values(token_ids, "token_ids", 0, vocab_size - 1)
    too_long = tf.debugging.assert_less_equal(
        tf.shape(token_ids)[1], max_length,
        message=f"input `token_ids` must have at most {max_length} tokens. Tokens:",
    )
    with tf.control_dependencies([too_long]):
        return tf.identity(token_ids)


def masked_lm_signatures(model, mask_placeholder=MASK_PLACEHOLDER, **_):
    """`serving_default`: raw `text` with placeholders; `token_ids`: ids -> logits."""
    config = model.get_config()
    max_length, vocab_size = config["max_length"], config["vocab_size"]
    pad_id = config.get("pad_id", 0)
    mask_id = _tokenizer().MASK_ID

    def pad(ids):
        return tf.pad(ids, [[0, 0], [0, max_length - tf.shape(ids)[1]]],
                      constant_values=pad_id)

    def raw(text):
        ids = _encode_text(text, max_length, mask_placeholder=mask_placeholder,
                           sequence_length=max_length)
        logits = model(ids, training=False)
        predicted = tf.argmax(logits, axis=-1, output_type=tf.int32)
        filled = tf.where(tf.equal(ids, mask_id), predicted, ids)
        return {
            "logits": logits,
            "token_ids": ids,
            "filled_text": _tokenizer().tf_decode(filled),
        }

    def token_ids(token_ids):
        ids = pad(_check_token_ids(token_ids, vocab_size, max_length))
        ids.set_shape((None, max_length))
        return {"logits": model(ids, training=False)}

    return {
        "serving_default": Signature(
            raw, [("text", tf.string, (None,))],
            f"text: tf.string [batch], UTF-8, each {mask_placeholder!r} one masked "
            f"byte (<= {max_length} bytes) -> logits [batch, {max_length}, "
            f"{vocab_size}], token_ids, filled_text",
        ),
        "token_ids": Signature(
            token_ids, [("token_ids", tf.int32, (None, None))],
            f"token_ids: int32 [batch, <= {max_length}] (PAD=0 padding) -> logits",
        ),
    }


def text_classifier_signatures(model, add_special_tokens=True, **_):
    """`serving_default`: raw `text`; `token_ids`: ids. Per task: logits, probabilities, class."""
    config = model.get_config()
    max_length, vocab_size = config["max_length"], config["vocab_size"]

    def outputs(ids):
        result = {}
        for task, logits in model(ids, training=False).items():
            probabilities = tf.nn.softmax(logits, axis=-1)
            result[f"{task}_logits"] = logits
            result[f"{task}_probabilities"] = probabilities
            result[f"{task}_class"] = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        return result

    def raw(text):
        return outputs(_encode_text(text, max_length, add_special_tokens=add_special_tokens))

    def token_ids(token_ids):
        return outputs(_check_token_ids(token_ids, vocab_size, max_length))

    special = " wrapped as [CLS] ... [SEP]" if add_special_tokens else ""
    return {
        "serving_default": Signature(
            raw, [("text", tf.string, (None,))],
            f"text: tf.string [batch], UTF-8{special} -> <task>_logits, "
            "<task>_probabilities, <task>_class for each task",
        ),
        "token_ids": Signature(
            token_ids, [("token_ids", tf.int32, (None, None))],
            f"token_ids: int32 [batch, <= {max_length}] -> per-task outputs",
        ),
    }
