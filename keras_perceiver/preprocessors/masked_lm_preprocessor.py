"""`PerceiverMaskedLMPreprocessor`: strings -> masked bytes, labels, weights."""

import keras
import tensorflow as tf

from keras_perceiver.preprocessors.preprocessor import PerceiverPreprocessor
from keras_perceiver.preprocessors.text_classifier_preprocessor import check_sequence_length
from keras_perceiver.preprocessors.text_classifier_preprocessor import encode_text

_MAX_SEED = 2**31 - 1


@keras.saving.register_keras_serializable(package="keras_perceiver")
class PerceiverMaskedLMPreprocessor(PerceiverPreprocessor):
    """Strings -> `(masked token_ids, token_ids, sample_weight)` for MLM training.

    Tokenises to UTF-8 bytes padded to `sequence_length`, then masks
    `mask_rate` (15%) of the byte tokens as the paper (whole words by
    default; `keras_perceiver.data.masking.mask_bytes`): 80% become
    `[MASK]`, 10% a random byte, 10% stay. `y` is the original ids and
    `sample_weight` 1 at the chosen positions, so `PerceiverMaskedLM`'s
    `compile()` defaults limit the loss and accuracy to them. Each call
    draws fresh masks (a stateful seed, reproducible from `seed`).

    Args:
        sequence_length: the padded length (the model's `max_length`).
        mask_rate, strategy, mask_token_rate, random_token_rate: as
            `mask_bytes`.
        add_special_tokens: wrap as `[CLS] ... [SEP]` (never masked).
        seed: optional int for reproducible masks.

    Call arguments:
        x: strings `[B]` or one string. A given `y` is an error (the labels
            are the text).

    Example:
    >>> p = keras_perceiver.preprocessors.PerceiverMaskedLMPreprocessor(
    ...     sequence_length=16, mask_rate=0.5, seed=1)
    >>> x, y, w = p(["the cat sat"])
    >>> tuple(x.shape), y.numpy().tolist()[0][:3], float(w.numpy()[0, 11:].sum())
    ((1, 16), [122, 110, 107], 0.0)
    """

    def __init__(self, sequence_length=2048, mask_rate=0.15, strategy="whole_word",
                 mask_token_rate=0.8, random_token_rate=0.1, add_special_tokens=False,
                 seed=None):
        from keras_perceiver.data import masking

        check_sequence_length(type(self).__name__, sequence_length, add_special_tokens)
        masking._check_rates(mask_rate, strategy, mask_token_rate, random_token_rate)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"{type(self).__name__}: seed must be an int or None, received {seed!r}.")
        self.sequence_length = sequence_length
        self.mask_rate = mask_rate
        self.strategy = strategy
        self.mask_token_rate = mask_token_rate
        self.random_token_rate = random_token_rate
        self.add_special_tokens = bool(add_special_tokens)
        self.seed = seed

    def get_config(self):
        return {
            "sequence_length": self.sequence_length, "mask_rate": self.mask_rate,
            "strategy": self.strategy, "mask_token_rate": self.mask_token_rate,
            "random_token_rate": self.random_token_rate,
            "add_special_tokens": self.add_special_tokens, "seed": self.seed,
        }

    def tokenize(self, x):
        """Strings -> the unmasked ids `[B, sequence_length]`."""
        return encode_text(x, self.sequence_length, self.add_special_tokens)

    def mask(self, token_ids, seed=None):
        """`(masked, labels, sample_weight)` of `token_ids` (`seed`: two ints)."""
        from keras_perceiver.data import masking

        if seed is None:
            seed = tf.random.uniform([2], 0, _MAX_SEED, dtype=tf.int64, seed=self.seed)
        return masking.mask_bytes(
            token_ids, seed, mask_rate=self.mask_rate, strategy=self.strategy,
            mask_token_rate=self.mask_token_rate, random_token_rate=self.random_token_rate)

    def transform(self, x):
        return self.mask(self.tokenize(x))

    def __call__(self, x, y=None, sample_weight=None):
        if y is not None or sample_weight is not None:
            raise ValueError(
                f"{type(self).__name__}: expected raw text only; the labels and sample "
                "weights are made from it (the original bytes at the masked positions)."
            )
        return self.transform(x)
