"""Masked-language-model masking for Perceiver IO's byte vocabulary (TF ops).

Perceiver IO's MLM (paper section 4.1) predicts 15% of the input bytes,
chosen by *whole words*: the bytes of whitespace-delimited words are masked
together. Each chosen byte then follows BERT's 80/10/10 rule: 80% become
``[MASK]`` (id 3), 10% a uniformly random byte (ids 6..261), 10% stay
unchanged. The model is trained to predict the original id at every chosen
position, so the loss and the accuracy are weighted by ``sample_weight``.

Only byte ids (``>= 6``) can be chosen: ``[PAD]``, ``[BOS]``, ``[EOS]``,
``[MASK]``, ``[CLS]`` and ``[SEP]`` are never masked (nor replaced).

Strategies:

* ``"whole_word"``: a *word* is a maximal run of non-whitespace bytes
  (whitespace: ``\\t \\n \\v \\f \\r`` and space; special ids also end a
  word). Words are taken in a random order until their bytes reach
  ``mask_rate`` times the number of maskable bytes of the sequence (the
  word that crosses that budget is taken with the probability that makes the
  expected number of masked bytes exactly the budget). Whitespace is never
  masked in this mode.
* ``"byte"``: ``floor(mask_rate * n + u)`` (``u ~ U[0, 1)``, an unbiased
  rounding) of the ``n`` maskable bytes, chosen uniformly without
  replacement.

Everything is a stateless TensorFlow op driven by an explicit ``seed`` (two
integers), so the same seed gives the same masks, inside ``tf.data.map``, a
``tf.function`` or eagerly. This module imports TensorFlow (it is for
``tf.data`` pipelines).

Example:

>>> import keras_perceiver.data.masking as masking
>>> from keras_perceiver.tokenizers import BytesTokenizer
>>> ids = BytesTokenizer().encode(["the cat sat on the mat"], max_length=24, pad=True)
>>> masked, labels, weights = masking.mask_bytes(ids, seed=(1, 2), mask_rate=0.3)
>>> masked.shape, labels.shape, weights.shape
(TensorShape([1, 24]), TensorShape([1, 24]), TensorShape([1, 24]))
>>> bool((labels.numpy() == ids).all())  # labels are the original ids
True
>>> bool((weights.numpy()[:, 22:] == 0).all())  # padding is never chosen
True
"""

import tensorflow as tf

from keras_perceiver.tokenizers.bytes_tokenizer import BytesTokenizer

__all__ = ["STRATEGIES", "WHITESPACE_BYTES", "mask_bytes", "mask_dataset"]

STRATEGIES = ("whole_word", "byte")
# ASCII whitespace: \t \n \v \f \r and space.
WHITESPACE_BYTES = (9, 10, 11, 12, 13, 32)

_FIRST_BYTE_ID = BytesTokenizer.NUM_SPECIAL_TOKENS
_VOCAB_SIZE = BytesTokenizer.VOCAB_SIZE
_MASK_ID = BytesTokenizer.MASK_ID


def _check_rates(mask_rate, strategy, mask_token_rate, random_token_rate):
    for name, value in (
        ("mask_rate", mask_rate),
        ("mask_token_rate", mask_token_rate),
        ("random_token_rate", random_token_rate),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ValueError(f"mask_bytes: expected `{name}` as a float in [0, 1], received {value!r}.")
    if mask_token_rate + random_token_rate > 1:
        raise ValueError(
            "mask_bytes: expected `mask_token_rate + random_token_rate <= 1`, received "
            f"{mask_token_rate} + {random_token_rate}."
        )
    if strategy not in STRATEGIES:
        raise ValueError(f"mask_bytes: expected `strategy` in {STRATEGIES}, received {strategy!r}.")


def check_unmasked_weight(value, where="mask_bytes", name="unmasked_weight"):
    """Raises unless `value` is a float >= 0 (or a scalar tensor): the weight of the unmasked bytes."""
    if tf.is_tensor(value):
        if value.shape.rank not in (None, 0):
            raise ValueError(f"{where}: expected `{name}` as a scalar, received shape {value.shape}.")
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{where}: expected `{name}` as a float >= 0, received {value!r}.")


def _as_seed(seed):
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
    if seed.shape.rank != 1 or (seed.shape[0] is not None and seed.shape[0] != 2):
        raise ValueError(f"mask_bytes: expected `seed` as two integers (shape [2]), received shape {seed.shape}.")
    return seed


def _choose_bytes(maskable, mask_rate, seeds):
    """`floor(rate * n + u)` maskable positions per row, uniformly."""
    shape = tf.shape(maskable)
    count = tf.reduce_sum(tf.cast(maskable, tf.float32), axis=1)
    jitter = tf.random.stateless_uniform(shape[:1], seeds[0])
    k = tf.floor(mask_rate * count + jitter)
    keys = tf.random.stateless_uniform(shape, seeds[1])
    keys = tf.where(maskable, keys, 2.0)  # non-maskable positions sort last
    rank = tf.argsort(tf.argsort(keys, axis=1, stable=True), axis=1, stable=True)
    return maskable & (tf.cast(rank, tf.float32) < k[:, None])


def _choose_words(maskable, ids, mask_rate, seeds):
    """Whole words in a random order until `rate * n` bytes (see the module docstring)."""
    shape = tf.shape(ids)
    batch, length = shape[0], shape[1]
    is_space = tf.reduce_any(
        tf.equal(ids[..., None], tf.constant([b + _FIRST_BYTE_ID for b in WHITESPACE_BYTES])), axis=-1
    )
    in_word = maskable & ~is_space
    previous = tf.pad(in_word[:, :-1], [[0, 0], [1, 0]])
    starts = in_word & ~previous
    word = tf.cumsum(tf.cast(starts, tf.int32), axis=1) - 1  # word index per position (-1 before)
    word = tf.maximum(word, 0)
    # Word lengths per word slot [B, L] (a row has at most L words).
    rows = tf.range(batch)[:, None] * length
    segments = tf.where(in_word, word + rows, batch * length)
    lengths = tf.math.unsorted_segment_sum(
        tf.cast(in_word, tf.float32), segments, batch * length + 1
    )[:-1]
    lengths = tf.reshape(lengths, shape)
    # Cumulative length in a random word order.
    order = tf.argsort(tf.random.stateless_uniform(shape, seeds[0]), axis=1, stable=True)
    cumulative = tf.cumsum(tf.gather(lengths, order, batch_dims=1), axis=1)
    cumulative = tf.gather(cumulative, tf.argsort(order, axis=1, stable=True), batch_dims=1)
    before = cumulative - lengths
    budget = mask_rate * tf.reduce_sum(tf.cast(maskable, tf.float32), axis=1, keepdims=True)
    whole = cumulative <= budget
    crossing = (before < budget) & (cumulative > budget)
    take_crossing = tf.random.stateless_uniform(shape, seeds[1]) * lengths < budget - before
    chosen_words = (lengths > 0) & (whole | (crossing & take_crossing))
    return in_word & tf.gather(chosen_words, word, batch_dims=1)


def mask_bytes(
    token_ids,
    seed,
    mask_rate=0.15,
    strategy="whole_word",
    mask_token_rate=0.8,
    random_token_rate=0.1,
    unmasked_weight=0.0,
):
    """Masks byte token ids for masked-language-model training.

    Args:
        token_ids: integer tensor ``[length]`` or ``[batch, length]`` of
            ``BytesTokenizer`` ids (PAD=0 for padding).
        seed: two integers (shape ``[2]``) for the stateless random ops.
        mask_rate: fraction of the maskable bytes to choose (0.15).
        strategy: ``"whole_word"`` (the paper) or ``"byte"``.
        mask_token_rate: fraction of the chosen bytes replaced by ``[MASK]``.
        random_token_rate: fraction of the chosen bytes replaced by a random
            byte; the rest stay unchanged.
        unmasked_weight: the weight of the positions not chosen that are
            not PAD (a float >= 0, or a scalar tensor). 0 (the paper)
            scores the chosen bytes only; a positive weight adds an
            auxiliary copy loss on the unmasked bytes (see
            ``keras_perceiver.recipes.masked_lm``).

    Returns:
        ``(masked_ids, labels, sample_weight)``: the masked ids (dtype and
        shape of ``token_ids``), the original ids, and ``float32`` weights
        that are 1 at the chosen positions, ``unmasked_weight`` at the
        other non-PAD positions and 0 at PAD.

    Raises:
        ValueError: on a rate outside ``[0, 1]``, an unknown strategy, a
            seed that is not two integers, ids that are not rank 1 or 2
            or an ``unmasked_weight`` below 0 or not a scalar.
        TypeError: on non-integer ids.

    Example:

    >>> import keras_perceiver.data.masking as masking
    >>> masked, labels, weights = masking.mask_bytes(
    ...     [0, 0, 0], seed=(0, 0))  # only padding: nothing to mask
    >>> masked.numpy().tolist(), weights.numpy().tolist()
    ([0, 0, 0], [0.0, 0.0, 0.0])
    """
    _check_rates(mask_rate, strategy, mask_token_rate, random_token_rate)
    check_unmasked_weight(unmasked_weight)
    ids = tf.convert_to_tensor(token_ids)
    if not ids.dtype.is_integer:
        raise TypeError(f"mask_bytes: expected integer token ids, received dtype {ids.dtype.name}.")
    rank = ids.shape.rank
    if rank not in (1, 2):
        raise ValueError(
            f"mask_bytes: expected token ids of shape [length] or [batch, length], received shape {ids.shape}."
        )
    seeds = tf.random.experimental.stateless_split(_as_seed(seed), 4)
    labels = ids
    work = tf.cast(ids, tf.int32)
    if rank == 1:
        work = work[None]
    maskable = (work >= _FIRST_BYTE_ID) & (work < _VOCAB_SIZE)
    if strategy == "whole_word":
        chosen = _choose_words(maskable, work, float(mask_rate), seeds[:2])
    else:
        chosen = _choose_bytes(maskable, float(mask_rate), seeds[:2])
    shape = tf.shape(work)
    u = tf.random.stateless_uniform(shape, seeds[2])
    to_mask = chosen & (u < mask_token_rate)
    to_random = chosen & (u >= mask_token_rate) & (u < mask_token_rate + random_token_rate)
    random_bytes = tf.random.stateless_uniform(
        shape, seeds[3], minval=_FIRST_BYTE_ID, maxval=_VOCAB_SIZE, dtype=tf.int32
    )
    masked = tf.where(to_mask, _MASK_ID, tf.where(to_random, random_bytes, work))
    weights = tf.where(chosen, 1.0, tf.where(
        work != BytesTokenizer.PAD_ID, tf.cast(unmasked_weight, tf.float32), 0.0))
    if rank == 1:
        masked, weights = masked[0], weights[0]
    return tf.cast(masked, ids.dtype), labels, weights


def mask_dataset(dataset, seed=0, **kwargs):
    """Masks every element of a dataset of token ids, deterministically.

    Element ``i`` (counted from the start of ``dataset``) is masked with the
    seed ``(seed, i)``, so a repeated dataset gets fresh masks every epoch
    and the result does not depend on parallelism.

    Args:
        dataset: a ``tf.data.Dataset`` of integer ids ``[length]`` or
            ``[batch, length]``.
        seed: an integer.
        **kwargs: ``mask_bytes`` options (``mask_rate``, ``strategy``, ...).

    Returns:
        A dataset of ``(masked_ids, labels, sample_weight)``.

    Example:

    >>> import tensorflow as tf
    >>> import keras_perceiver.data.masking as masking
    >>> ds = tf.data.Dataset.from_tensor_slices([[110, 111, 38, 112], [110, 0, 0, 0]])
    >>> [tuple(t.shape) for t in next(iter(masking.mask_dataset(ds, seed=3)))]
    [(4,), (4,), (4,)]
    """
    _check_rates(
        kwargs.get("mask_rate", 0.15), kwargs.get("strategy", "whole_word"),
        kwargs.get("mask_token_rate", 0.8), kwargs.get("random_token_rate", 0.1),
    )
    base = tf.constant(int(seed), tf.int64)

    def fn(index, ids):
        return mask_bytes(ids, tf.stack([base, index]), **kwargs)

    return dataset.enumerate().map(fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
