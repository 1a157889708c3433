"""Text data for the byte-level recipes: the embedded pydoc corpus, its labelled task, tfds text.

**Embedded corpus** (no network): Python's bundled ``pydoc_data.topics``, the
English help text of the language reference (~470 KB, 79 topics on Python
3.11; the set varies a little between Python versions). Topics are split
deterministically *by topic*: a topic is held out when
``zlib.crc32(name) % 5 == 0`` (15 topics, ~22% of the bytes on 3.11), so
held-out passages come from topics the model never saw. Whitespace runs are
collapsed to one space and each topic is cut into consecutive passages of
whole words of at most ``length`` bytes.

**Embedded labelled task** (text classification, exact labels, two heads):
every passage gets two independent seeded labels and is transformed
accordingly:

* ``shift`` (4 classes): ASCII letters Caesar-shifted by 0, 1, 2 or 3
  (``a -> b`` for 1; case kept). A byte histogram tells it apart.
* ``order`` (2 classes): whether the passage's bytes were reversed
  (``b"if x:" -> b":x fi"``; the shift is applied too, the two commute). A byte
  histogram cannot tell it: the same bytes are there either way, so the
  model has to read them in order, which a masked LM learns and one label
  per passage teaches slowly.

An earlier ``noise`` head (a quarter of the letters replaced at random, or
not) was dropped: the masked LM's encoder did not help it at the recipe's
budget (the README's text-classification section has the measurements).

**tfds**: ``load_tfds_text(name, split)`` reads any dataset with a text
feature (``wikipedia/...``, ``imdb_reviews``, ``glue/sst2``, ``glue/mnli``,
...) with ``tensorflow_datasets.load``; sentence pairs (MNLI's premise /
hypothesis) are joined as ``a [SEP] b``.

This module imports TensorFlow (``tf.data``).

Example:

>>> import keras_perceiver.data.text as text
>>> passages = text.embedded_passages("test", length=64)
>>> len(passages) > 1000, max(len(p) for p in passages) <= 64
(True, True)
>>> text.caesar_shift(b"Abz", 1)
b'Bca'
"""

import re
import zlib

import numpy as np
import tensorflow as tf

from keras_perceiver.tokenizers.bytes_tokenizer import BytesTokenizer

__all__ = [
    "EMBEDDED_TASKS",
    "TEXT_FEATURES",
    "caesar_shift",
    "embedded_passages",
    "embedded_task",
    "encode_passages",
    "load_tfds_text",
    "reverse_bytes",
    "split_topics",
]

SPLITS = ("train", "test")
# The embedded classification task: {head: number of classes}.
EMBEDDED_TASKS = {"shift": 4, "order": 2}
# Text feature names tried in order, then sentence pairs.
TEXT_FEATURES = ("text", "sentence", "content", "document", "article", "review")
PAIR_FEATURES = (("premise", "hypothesis"), ("sentence1", "sentence2"), ("question", "sentence"),
                 ("question1", "question2"))
_TOKENIZER = BytesTokenizer()
# Heading underlines ("*****", "=====", "-----") carry no text.
_RULE = re.compile(r"([*=~^-])\1{2,}")


def _check_split(split):
    if split not in SPLITS:
        raise ValueError(f"expected split in {SPLITS}, received {split!r}.")


def _check_length(length):
    if isinstance(length, bool) or not isinstance(length, int) or length < 8:
        raise ValueError(f"expected `length` as an int >= 8 (bytes per passage), received {length!r}.")


def pydoc_topics():
    """`{topic name: text}` of Python's bundled `pydoc_data.topics`."""
    from pydoc_data.topics import topics

    return dict(sorted(topics.items()))


def split_topics(names):
    """`{"train": [...], "test": [...]}`: a topic is held out when `crc32(name) % 5 == 0`."""
    names = sorted(names)
    test = [n for n in names if zlib.crc32(n.encode("utf-8")) % 5 == 0]
    return {"train": [n for n in names if n not in test], "test": test}


def _passages(text, length):
    """Consecutive runs of whole words of at most `length` bytes (longer words are cut)."""
    out, current = [], b""
    for word in text.encode("utf-8").split():
        candidate = word if not current else current + b" " + word
        if len(candidate) <= length:
            current = candidate
            continue
        if current:
            out.append(current)
        current = word[:length]
    if current:
        out.append(current)
    return out


def _paragraphs(topics):
    """`{split: {topic: text}}` with each paragraph kept once: several topics repeat others
    (``specialnames`` holds ``attribute-access``...), so a held-out paragraph that a training
    topic also holds is dropped, and so is a repeat within a split."""
    out = {}
    seen = set()
    for split, names in split_topics(topics).items():
        out[split] = {}
        for name in names:
            kept = []
            for paragraph in topics[name].split("\n\n"):
                paragraph = " ".join(w for w in paragraph.split() if not _RULE.fullmatch(w))
                if paragraph and paragraph not in seen:
                    seen.add(paragraph)
                    kept.append(paragraph)
            out[split][name] = " ".join(kept)
    return out


def embedded_passages(split, length=128):
    """The pydoc passages (UTF-8 `bytes`) of one split, in topic order.

    Args:
        split: `"train"` or `"test"` (held-out topics, without the
            paragraphs that training topics also hold).
        length: the maximum bytes per passage.
    """
    _check_split(split)
    _check_length(length)
    texts = _paragraphs(pydoc_topics())[split]
    return [p for name in sorted(texts) for p in _passages(texts[name], length)]


def encode_passages(passages, length, add_special_tokens=False):
    """Byte ids `int32 [N, length]`, right-padded with PAD (0); `add_special_tokens`: `[CLS] ... [SEP]`."""
    _check_length(length)
    room = length - 2 if add_special_tokens else length
    ids = np.zeros((len(passages), length), np.int32)
    for i, passage in enumerate(passages):
        if len(passage) > room:
            raise ValueError(f"passage {i} has {len(passage)} bytes, expected at most {room}.")
        row = list(np.frombuffer(passage, np.uint8).astype(np.int32) + _TOKENIZER.NUM_SPECIAL_TOKENS)
        if add_special_tokens:
            row = [_TOKENIZER.CLS_ID] + row + [_TOKENIZER.SEP_ID]
        ids[i, : len(row)] = row
    return ids


def caesar_shift(passage, shift):
    """ASCII letters of `passage` (bytes) shifted by `shift` places, wrapping, case kept."""
    a = np.frombuffer(passage, np.uint8).astype(np.int32)
    for first in (ord("a"), ord("A")):
        letters = (a >= first) & (a < first + 26)
        a = np.where(letters, (a - first + shift) % 26 + first, a)
    return a.astype(np.uint8).tobytes()


def reverse_bytes(passage):
    """`passage` (bytes) back to front, byte by byte (a multi-byte UTF-8 character's bytes too:
    the model reads bytes).

    Example:

    >>> import keras_perceiver.data.text as text
    >>> text.reverse_bytes(b"if x:")
    b':x fi'
    """
    return bytes(passage[::-1])


def embedded_task(split, length=128, seed=0, add_special_tokens=True, copies=1):
    """The embedded labelled task (see the module docstring).

    Args:
        split: `"train"` or `"test"`.
        length: ids per example (passages of `length - 2` bytes wrapped as
            `[CLS] ... [SEP]` with `add_special_tokens`).
        seed: the labels' seed (each split draws from `(seed, split)`, so
            train and test labels are independent).
        add_special_tokens: wrap as `[CLS] ... [SEP]`, as the exported
            classifier's serving signature does.
        copies: labelled variants of each passage (`copies` times the
            passages, in blocks, each with its own label draws;
            `copies=1` is the first block of any larger `copies`).

    Returns:
        `(token_ids int32 [N, length], {"shift": int32 [N], "order": int32 [N]})`,
        `N = copies * len(embedded_passages(split, ...))`.
    """
    if isinstance(copies, bool) or not isinstance(copies, int) or copies < 1:
        raise ValueError(f"copies: expected a positive int, got {copies!r}.")
    if copies > 1:
        blocks = [embedded_task(split, length, seed if c == 0 else [seed, c], add_special_tokens)
                  for c in range(copies)]
        return (np.concatenate([ids for ids, _ in blocks]),
                {k: np.concatenate([labels[k] for _, labels in blocks]) for k in EMBEDDED_TASKS})
    passages = embedded_passages(split, length - 2 if add_special_tokens else length)
    rng = np.random.default_rng(np.append(seed, SPLITS.index(split)))
    shifts = rng.integers(0, EMBEDDED_TASKS["shift"], len(passages)).astype(np.int32)
    orders = rng.integers(0, EMBEDDED_TASKS["order"], len(passages)).astype(np.int32)
    out = []
    for passage, shift, order in zip(passages, shifts, orders):
        if order:
            passage = reverse_bytes(passage)
        out.append(caesar_shift(passage, int(shift)))
    return encode_passages(out, length, add_special_tokens), {"shift": shifts, "order": orders}


def _text_keys(features, name):
    keys = [k for k in TEXT_FEATURES if k in features]
    if keys:
        return (keys[0],)
    for pair in PAIR_FEATURES:
        if all(k in features for k in pair):
            return pair
    raise ValueError(
        f"{name}: expected a text feature named one of {TEXT_FEATURES} or a pair "
        f"{PAIR_FEATURES}, found features {sorted(features)}."
    )


def encode_text_tf(texts, length):
    """TF graph: one string `[B]` (or a pair `a [SEP] b`) to byte ids `int32 [B, length]`."""
    if len(texts) == 1:
        return _TOKENIZER.tf_encode(texts[0], max_length=length)
    a = _TOKENIZER.tf_encode(texts[0])
    b = _TOKENIZER.tf_encode(texts[1])
    sep = tf.fill([tf.shape(a)[0], 1], _TOKENIZER.SEP_ID)
    ragged = tf.concat(
        [tf.RaggedTensor.from_tensor(a, padding=0), tf.RaggedTensor.from_tensor(sep),
         tf.RaggedTensor.from_tensor(b, padding=0)], axis=1)
    return ragged[:, :length].to_tensor(default_value=_TOKENIZER.PAD_ID, shape=[None, length])


def load_tfds_text(name, split, length, label_key="label", data_dir=None, download=True,
                   add_special_tokens=False):
    """Reads a tfds text dataset as batched-ready `(token_ids, label)` examples.

    Args:
        name: a tfds name, e.g. `"imdb_reviews"`, `"glue/sst2"`,
            `"wikipedia/20230601.en"`.
        split: a tfds split (slicing allowed: `"train[:99%]"`).
        length: bytes per example (truncated / padded).
        label_key: the label feature; None (or absent from the dataset) for
            unlabelled text (masked LM).
        data_dir, download: passed to `tfds.load`.
        add_special_tokens: wrap as `[CLS] ... [SEP]` (within `length`).

    Returns:
        `(dataset, num_classes)`: a `tf.data.Dataset` of `token_ids int32
        [length]` (unlabelled) or `(token_ids, label int32)`, and the number
        of classes (None when unlabelled). Examples with a negative label
        (GLUE's unlabelled test splits) are dropped.
    """
    import tensorflow_datasets as tfds

    _check_length(length)
    dataset, info = tfds.load(name, split=split, with_info=True, data_dir=data_dir, download=download)
    features = info.features
    keys = _text_keys(features, name)
    num_classes = None
    if label_key is not None and label_key in features:
        num_classes = int(features[label_key].num_classes)

    def encode(example):
        texts = [tf.reshape(example[k], [1]) for k in keys]
        if not add_special_tokens:
            ids = encode_text_tf(texts, length)[0]
        else:
            ids = encode_text_tf(texts, length - 2)[0]
            ids = tf.boolean_mask(ids, ids != _TOKENIZER.PAD_ID)
            ids = tf.concat([[_TOKENIZER.CLS_ID], ids, [_TOKENIZER.SEP_ID]], 0)
            ids = tf.pad(ids, [[0, length - tf.shape(ids)[0]]])
            ids.set_shape([length])
        if num_classes is None:
            return ids
        return ids, tf.cast(example[label_key], tf.int32)

    if num_classes is not None:
        dataset = dataset.filter(lambda e: e[label_key] >= 0)
    return dataset.map(encode, num_parallel_calls=tf.data.AUTOTUNE), num_classes



def epoch_stream(dataset, batch_size, steps_per_epoch, seed=0, first_epoch=0, epochs=1,
                 buffer_size=10_000):
    """Batches for epochs `first_epoch .. epochs - 1`, each epoch's order drawn from `(seed, epoch)`.

    Every epoch shuffles `dataset` with its own fixed seed, repeats it if
    needed and takes `steps_per_epoch` full batches, so a run resumed at
    epoch `e` sees the same batches as an uninterrupted one.

    Args:
        dataset: a finite `tf.data.Dataset` of examples.
        batch_size, steps_per_epoch: batches per epoch.
        seed: an integer.
        first_epoch, epochs: the epochs to stream.
        buffer_size: the shuffle buffer.

    Returns:
        A dataset of `(epoch int64, step int64, batch)`.

    Example:

    >>> import tensorflow as tf
    >>> import keras_perceiver.data.text as text
    >>> ds = text.epoch_stream(tf.data.Dataset.range(6), 4, 2, first_epoch=1, epochs=3)
    >>> [(int(e), int(s), len(b)) for e, s, b in ds]
    [(1, 0, 4), (1, 1, 4), (2, 0, 4), (2, 1, 4)]
    """

    def one_epoch(epoch):
        ds = dataset.shuffle(buffer_size, seed=int(seed) * 1_000_003 + epoch, reshuffle_each_iteration=False)
        ds = ds.repeat().batch(batch_size, drop_remainder=True).take(steps_per_epoch).enumerate()
        return ds.map(lambda step, batch: (tf.constant(epoch, tf.int64), step, batch))

    if first_epoch >= epochs:
        raise ValueError(f"expected first_epoch < epochs, received {first_epoch} and {epochs}.")
    stream = one_epoch(first_epoch)
    for epoch in range(first_epoch + 1, epochs):
        stream = stream.concatenate(one_epoch(epoch))
    return stream


def mask_stream(stream, seed=0, copy_weight=0.0, copy_epochs=0, **mask_kwargs):
    """`epoch_stream` batches of token ids -> `(masked_ids, labels, sample_weight)`, the masks drawn
    from `(seed, epoch, step)` (see `keras_perceiver.data.masking.mask_bytes`).

    `copy_weight` weighs the unmasked non-PAD bytes (an auxiliary copy loss;
    `mask_bytes`'s `unmasked_weight`) in the first `copy_epochs` epochs and
    0 after them when `copy_epochs > 0`, in every epoch otherwise."""
    from keras_perceiver.data import masking

    if tf.is_tensor(copy_weight):
        raise ValueError("mask_stream: expected `copy_weight` as a float >= 0, received a tensor.")
    masking.check_unmasked_weight(copy_weight, "mask_stream", "copy_weight")
    if isinstance(copy_epochs, bool) or not isinstance(copy_epochs, int) or copy_epochs < 0:
        raise ValueError(f"mask_stream: expected `copy_epochs` as an int >= 0, received {copy_epochs!r}.")
    base = tf.constant(int(seed), tf.int64)

    def fn(epoch, step, ids):
        index = tf.cast(epoch, tf.int64) * 1_000_003 + tf.cast(step, tf.int64)
        weight = tf.constant(float(copy_weight))
        if copy_epochs:
            weight = tf.where(epoch < copy_epochs, weight, 0.0)
        return masking.mask_bytes(ids, tf.stack([base, index]), unmasked_weight=weight, **mask_kwargs)

    return stream.map(fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
