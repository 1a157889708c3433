"""Perceiver IO's byte-level (UTF-8) tokenizer.

Perceiver IO reads raw UTF-8 bytes. The ids are exactly the reference ones
(DeepMind's ``bytes_tokenizer.py`` and transformers' ``PerceiverTokenizer``):

====================  ======
token                 id
====================  ======
``[PAD]``             0
``[BOS]``             1
``[EOS]``             2
``[MASK]``            3
``[CLS]``             4
``[SEP]``             5
byte ``b`` (0..255)   ``b + 6``
====================  ======

so the vocabulary has 262 entries. Decoding drops the special ids (< 6) and
decodes the remaining bytes as UTF-8 with ``errors="replace"``: invalid UTF-8
never raises, every maximal invalid subpart becomes one U+FFFD.

Two implementations with the same results are provided:

* ``encode`` / ``decode``: plain Python / NumPy, for eager use.
* ``tf_encode`` / ``tf_decode``: TensorFlow graph ops, usable inside
  ``tf.data`` pipelines, ``tf.function`` and SavedModel serving signatures.
  TensorFlow is imported lazily, only when these are called.

TensorFlow's ``tf.strings.unicode_transcode(errors="replace")`` (ICU) replaces
invalid UTF-8 per maximal subpart, exactly like Python's
``bytes.decode("utf-8", errors="replace")``; the test suite checks that both
decoders agree on arbitrary byte strings.
"""

import numpy as np

__all__ = ["BytesTokenizer"]


def _as_bytes(value, what):
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    raise TypeError(f"{what} must be str or bytes, got {type(value).__name__}.")


class BytesTokenizer:
    """Perceiver IO's byte-level tokenizer (vocabulary of 262 ids).

    Special ids: PAD=0, BOS=1, EOS=2, MASK=3, CLS=4, SEP=5; the UTF-8 byte
    ``b`` has id ``b + 6``.

    ``add_special_tokens=True`` wraps a sequence as ``[CLS] ids [SEP]``, like
    transformers' ``PerceiverTokenizer.build_inputs_with_special_tokens``
    (the released masked-language model was fed exactly that). When
    ``max_length`` is also given the content is truncated to
    ``max_length - 2`` so that ``[SEP]`` is kept.

    ``mask_placeholder`` (e.g. ``"[MASK]"``) makes every occurrence of that
    string in the text become a single ``MASK_ID`` token: this is how a
    served masked-language model receives masked text.

    Example:

    >>> import keras_perceiver
    >>> tok = keras_perceiver.tokenizers.BytesTokenizer()
    >>> tok.encode("hi")
    [110, 111]
    >>> tok.encode("hi", add_special_tokens=True, max_length=6, pad=True)
    [4, 110, 111, 5, 0, 0]
    >>> tok.encode("a[MASK]b", mask_placeholder="[MASK]")
    [103, 3, 104]
    >>> tok.decode([4, 110, 111, 5, 0, 0])
    'hi'
    >>> tok.decode([255 + 6, 104 + 6])  # invalid UTF-8 is replaced
    '\\ufffdh'
    >>> tok.tf_encode(["hi", "hello"], max_length=4).numpy().tolist()
    [[110, 111, 0, 0], [110, 107, 114, 114]]
    >>> tok.tf_decode([[110, 111, 0, 0]]).numpy().tolist()
    [b'hi']
    """

    PAD_ID = 0
    BOS_ID = 1
    EOS_ID = 2
    MASK_ID = 3
    CLS_ID = 4
    SEP_ID = 5
    NUM_SPECIAL_TOKENS = 6
    VOCAB_SIZE = 262

    @property
    def vocab_size(self):
        """Number of ids: 6 special tokens + 256 bytes = 262."""
        return self.VOCAB_SIZE

    def __repr__(self):
        return f"{type(self).__name__}(vocab_size={self.VOCAB_SIZE})"

    # ------------------------------------------------------------------
    # Python / NumPy
    # ------------------------------------------------------------------

    def _check_lengths(self, max_length, add_special_tokens):
        if max_length is None:
            return None
        max_length = int(max_length)
        minimum = 2 if add_special_tokens else 0
        if max_length < minimum:
            raise ValueError(
                f"max_length must be >= {minimum} "
                f"(add_special_tokens={add_special_tokens}), got {max_length}."
            )
        return max_length

    def _encode_one(self, text, add_special_tokens, max_length, placeholder):
        data = _as_bytes(text, "text")
        parts = data.split(placeholder) if placeholder else [data]
        ids = []
        for i, part in enumerate(parts):
            if i:
                ids.append(self.MASK_ID)
            ids.extend(b + self.NUM_SPECIAL_TOKENS for b in part)
        if max_length is not None:
            ids = ids[: max_length - 2 if add_special_tokens else max_length]
        if add_special_tokens:
            ids = [self.CLS_ID] + ids + [self.SEP_ID]
        return ids

    def encode(
        self,
        text,
        add_special_tokens=False,
        max_length=None,
        pad=False,
        mask_placeholder=None,
    ):
        """Encodes text to token ids.

        Args:
            text: a ``str`` (or UTF-8 ``bytes``), or a list of them.
            add_special_tokens: wrap as ``[CLS] ... [SEP]`` (ids 4 and 5).
            max_length: truncate to this many ids (special tokens included).
            pad: pad with ``PAD_ID`` to ``max_length`` (for a batch without
                ``max_length``: to the longest sequence).
            mask_placeholder: optional string; each occurrence becomes one
                ``MASK_ID``.

        Returns:
            For one string, a ``list`` of ints. For a list of strings, a list
            of lists, or an ``int32`` NumPy array ``[batch, length]`` when
            ``pad=True``.

        Example:

        >>> import keras_perceiver
        >>> tok = keras_perceiver.tokenizers.BytesTokenizer()
        >>> tok.encode(["a", "bcd"], max_length=2, pad=True).tolist()
        [[103, 0], [104, 105]]
        """
        max_length = self._check_lengths(max_length, add_special_tokens)
        placeholder = None
        if mask_placeholder is not None:
            placeholder = _as_bytes(mask_placeholder, "mask_placeholder")
            if not placeholder:
                raise ValueError("mask_placeholder must be a non-empty string.")
        if not isinstance(text, (str, bytes)) and not hasattr(text, "__iter__"):
            raise TypeError(
                f"text must be str or bytes, or a list of them, got {type(text).__name__}."
            )
        if isinstance(text, (str, bytes)):
            ids = self._encode_one(text, add_special_tokens, max_length, placeholder)
            if pad and max_length is not None:
                ids = ids + [self.PAD_ID] * (max_length - len(ids))
            return ids
        batch = [
            self._encode_one(t, add_special_tokens, max_length, placeholder)
            for t in text
        ]
        if not pad:
            return batch
        length = max_length
        if length is None:
            length = max((len(ids) for ids in batch), default=0)
        out = np.full((len(batch), length), self.PAD_ID, dtype=np.int32)
        for i, ids in enumerate(batch):
            out[i, : len(ids)] = ids
        return out

    def _check_ids(self, arr):
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"Token ids must be integers, got dtype {arr.dtype}.")
        arr = arr.astype(np.int64)
        bad = arr[(arr < 0) | (arr >= self.VOCAB_SIZE)]
        if bad.size:
            raise ValueError(
                f"Token ids must be in the range [0, {self.VOCAB_SIZE}) "
                f"(0-{self.NUM_SPECIAL_TOKENS - 1}: special tokens, "
                f"{self.NUM_SPECIAL_TOKENS}-{self.VOCAB_SIZE - 1}: bytes); "
                f"got out-of-range id(s) {sorted(set(bad.tolist()))[:10]}."
            )
        return arr

    def decode(self, ids):
        """Decodes token ids to text.

        Special ids (< 6) are dropped; the bytes are decoded as UTF-8 with
        ``errors="replace"``.

        Args:
            ids: an int, a 1-D sequence/array (-> ``str``) or a 2-D
                sequence/array, possibly ragged (-> ``list`` of ``str``).

        Raises:
            ValueError: if an id is outside ``[0, 262)``.

        Example:

        >>> import keras_perceiver
        >>> tok = keras_perceiver.tokenizers.BytesTokenizer()
        >>> tok.decode([[110, 111], [4, 5]])
        ['hi', '']
        """
        if (
            isinstance(ids, (list, tuple))
            and ids
            and isinstance(ids[0], (list, tuple, np.ndarray))
        ):
            return [self.decode(row) for row in ids]
        arr = np.asarray(ids)
        if arr.ndim == 2:
            return [self.decode(row) for row in arr]
        if arr.ndim > 2:
            raise ValueError(f"ids must have rank 0, 1 or 2, got shape {arr.shape}.")
        arr = self._check_ids(arr.reshape(-1))
        data = bytes(
            (arr[arr >= self.NUM_SPECIAL_TOKENS] - self.NUM_SPECIAL_TOKENS)
            .astype(np.uint8)
            .tolist()
        )
        return data.decode("utf-8", errors="replace")

    # ------------------------------------------------------------------
    # TensorFlow graph versions
    # ------------------------------------------------------------------

    def _tf_bytes_to_ids(self, strings):
        """Strings (dense or ragged) -> ragged int32 ids, one more ragged dim."""
        import tensorflow as tf

        chars = tf.strings.bytes_split(strings)
        values = tf.reshape(tf.io.decode_raw(chars.flat_values, tf.uint8), [-1])
        return chars.with_flat_values(
            tf.cast(values, tf.int32) + self.NUM_SPECIAL_TOKENS
        )

    def tf_encode(
        self,
        strings,
        max_length=None,
        add_special_tokens=False,
        mask_placeholder=None,
    ):
        """Encodes a batch of strings with TensorFlow ops (graph-safe).

        Same ids as ``encode``; works inside ``tf.data`` and ``tf.function``
        (e.g. with ``input_signature=[tf.TensorSpec([None], tf.string)]``).

        Args:
            strings: ``tf.string`` tensor of shape ``[batch]`` (or a scalar,
                giving a 1-D result).
            max_length: Python int; the output is truncated / padded with
                ``PAD_ID`` to exactly this length. ``None``: pad to the
                longest sequence of the batch.
            add_special_tokens: wrap as ``[CLS] ... [SEP]``, the content being
                truncated to ``max_length - 2``.
            mask_placeholder: optional Python string; each occurrence becomes
                one ``MASK_ID``.

        Returns:
            ``int32`` tensor ``[batch, max_length]``.

        Example:

        >>> import keras_perceiver
        >>> tok = keras_perceiver.tokenizers.BytesTokenizer()
        >>> tok.tf_encode(["a[MASK]"], 5, True, "[MASK]").numpy().tolist()
        [[4, 103, 3, 5, 0]]
        """
        import tensorflow as tf

        max_length = self._check_lengths(max_length, add_special_tokens)
        strings = tf.convert_to_tensor(strings, dtype=tf.string)
        rank = strings.shape.rank
        if rank is None or rank > 1:
            raise ValueError(
                f"strings must have shape [batch] or be a scalar, got {strings.shape}."
            )
        if rank == 0:
            strings = tf.expand_dims(strings, 0)

        if mask_placeholder is None:
            ids = self._tf_bytes_to_ids(strings)  # [B, (N)]
        else:
            placeholder = _as_bytes(mask_placeholder, "mask_placeholder")
            if not placeholder:
                raise ValueError("mask_placeholder must be a non-empty string.")
            parts = tf.strings.split(strings, sep=placeholder)  # [B, (P)], P >= 1
            part_ids = self._tf_bytes_to_ids(parts.values)  # [sum P, (N)]
            masks = tf.RaggedTensor.from_tensor(
                tf.fill([tf.shape(parts.values)[0], 1], self.MASK_ID)
            )
            # Prefix every part with MASK, flatten per row, drop the first MASK.
            part_ids = tf.concat([masks, part_ids], axis=1)
            ids = parts.with_values(part_ids).merge_dims(1, 2)[:, 1:]

        if max_length is not None:
            ids = ids[:, : max_length - 2 if add_special_tokens else max_length]
        if add_special_tokens:
            batch = ids.nrows(out_type=tf.int32)
            cls = tf.RaggedTensor.from_tensor(tf.fill([batch, 1], self.CLS_ID))
            sep = tf.RaggedTensor.from_tensor(tf.fill([batch, 1], self.SEP_ID))
            ids = tf.concat([cls, ids, sep], axis=1)
        shape = None if max_length is None else [None, max_length]
        out = ids.to_tensor(default_value=self.PAD_ID, shape=shape)
        return out[0] if rank == 0 else out

    def tf_decode(self, ids):
        """Decodes ids to UTF-8 strings with TensorFlow ops (graph-safe).

        Special ids (< 6) are dropped; invalid UTF-8 is replaced by U+FFFD per
        maximal invalid subpart, the same result as ``decode``.

        Args:
            ids: integer tensor ``[batch, length]`` (or ``tf.RaggedTensor``),
                or ``[length]`` for a scalar result.

        Returns:
            ``tf.string`` tensor ``[batch]`` (UTF-8 bytes).

        Raises:
            tf.errors.InvalidArgumentError: (at run time) if an id is outside
                ``[0, 262)``.

        Example:

        >>> import keras_perceiver
        >>> tok = keras_perceiver.tokenizers.BytesTokenizer()
        >>> tok.tf_decode([4, 110, 111, 5]).numpy().decode("utf-8")
        'hi'
        """
        import tensorflow as tf

        if not isinstance(ids, tf.RaggedTensor):
            ids = tf.convert_to_tensor(ids)
        if not ids.dtype.is_integer:
            raise TypeError(f"Token ids must be integers, got dtype {ids.dtype}.")
        ids = tf.cast(ids, tf.int32)
        rank = ids.shape.rank
        if rank is None or rank not in (1, 2):
            raise ValueError(f"ids must have rank 1 or 2, got shape {ids.shape}.")
        if rank == 1:
            ids = tf.expand_dims(ids, 0)

        flat = ids.flat_values if isinstance(ids, tf.RaggedTensor) else ids
        message = (
            f"Token ids must be in the range [0, {self.VOCAB_SIZE}) "
            f"(0-{self.NUM_SPECIAL_TOKENS - 1}: special tokens, "
            f"{self.NUM_SPECIAL_TOKENS}-{self.VOCAB_SIZE - 1}: bytes)."
        )
        checks = [
            tf.debugging.assert_greater_equal(flat, 0, message=message),
            tf.debugging.assert_less(flat, self.VOCAB_SIZE, message=message),
        ]
        with tf.control_dependencies(checks):
            ids = tf.identity(ids)

        kept = tf.ragged.boolean_mask(ids, ids >= self.NUM_SPECIAL_TOKENS)
        table = tf.constant([bytes([b]) for b in range(256)])
        pieces = kept.with_flat_values(
            tf.gather(table, kept.flat_values - self.NUM_SPECIAL_TOKENS)
        )
        raw = tf.strings.reduce_join(pieces, axis=-1)
        text = tf.strings.unicode_transcode(
            raw,
            input_encoding="UTF-8",
            output_encoding="UTF-8",
            errors="replace",
            replacement_char=0xFFFD,
            replace_control_characters=False,
        )
        return text[0] if rank == 1 else text
