"""Embedded pydoc corpus, its labelled task and the tfds text reader."""

import numpy as np
import pytest
import tensorflow as tf

from keras_perceiver.data import text
from keras_perceiver.tokenizers import BytesTokenizer

TOK = BytesTokenizer()


def test_topics_split_by_name_deterministically():
    topics = text.pydoc_topics()
    split = text.split_topics(topics)
    assert set(split["train"]) | set(split["test"]) == set(topics)
    assert not set(split["train"]) & set(split["test"])
    held_out = sum(len(topics[n]) for n in split["test"]) / sum(len(t) for t in topics.values())
    assert 0.1 < held_out < 0.35
    # The rule depends on the name only: adding a topic moves no other topic.
    assert text.split_topics(list(topics) + ["zzz-new"])["test"][:3] == split["test"][:3]


def test_passages_are_whole_words_within_length():
    passages = text.embedded_passages("train", length=64)
    assert all(0 < len(p) <= 64 for p in passages)
    assert np.mean([len(p) for p in passages]) > 50  # mostly full
    topics = text.pydoc_topics()
    words = set(" ".join(topics[n] for n in text.split_topics(topics)["train"]).encode().split())
    # Every passage starts and ends on a word boundary (words shorter than the length are kept whole).
    assert all(p.split()[0] in words and p.split()[-1] in words for p in passages if len(p.split()) > 1)
    test = text.embedded_passages("test", length=64)
    assert len(set(passages) & set(test)) <= 0.01 * len(test)  # repeated paragraphs are dropped
    ids = text.encode_passages(passages[:3], 64)
    assert ids.dtype == np.int32 and ids.shape == (3, 64)
    assert TOK.decode(ids[0]) == passages[0].decode()


def _bytes(row):
    """The passage bytes of one `[CLS] ... [SEP]` id row (byte ids, not decoded text: a
    reversed passage splits multi-byte UTF-8 characters)."""
    assert row[0] == TOK.CLS_ID
    end = list(row).index(TOK.SEP_ID)
    return (np.asarray(row[1:end]) - TOK.NUM_SPECIAL_TOKENS).astype(np.uint8).tobytes()


def test_embedded_task_labels_are_exact():
    ids, labels = text.embedded_task("test", length=64, seed=0)
    passages = text.embedded_passages("test", length=62)
    assert ids.shape == (len(passages), 64) and set(labels) == set(text.EMBEDDED_TASKS)
    for i in range(len(passages)):
        unshifted = text.caesar_shift(_bytes(ids[i]), -int(labels["shift"][i]))
        expected = passages[i][::-1] if labels["order"][i] else passages[i]
        assert unshifted == expected, i
    for task, n in text.EMBEDDED_TASKS.items():
        counts = np.bincount(labels[task], minlength=n)
        assert len(counts) == n and counts.min() > 0.7 * len(passages) / n  # balanced
    # Shift and order are drawn independently: every pair occurs.
    pairs = np.bincount(labels["shift"] * 2 + labels["order"], minlength=8)
    assert pairs.min() > 0.5 * len(passages) / 8
    again = text.embedded_task("test", length=64, seed=0)
    np.testing.assert_array_equal(again[0], ids)
    other = text.embedded_task("test", length=64, seed=1)
    assert (other[1]["shift"] != labels["shift"]).any() and (other[1]["order"] != labels["order"]).any()


def test_embedded_task_copies_draw_new_labels():
    one_ids, one = text.embedded_task("test", length=64, seed=0)
    ids, labels = text.embedded_task("test", length=64, seed=0, copies=3)
    n = len(one_ids)
    assert ids.shape == (3 * n, 64) and all(len(v) == 3 * n for v in labels.values())
    np.testing.assert_array_equal(ids[:n], one_ids)  # copies=1 is the first block
    for task in text.EMBEDDED_TASKS:
        np.testing.assert_array_equal(labels[task][:n], one[task])
        # Each block draws its own labels: about 1/classes agree by chance, not all.
        agree = (labels[task][n:2 * n] == labels[task][:n]).mean()
        assert agree < 0.6, (task, agree)
    # The same passage, undone of its shift and order, is the same text in every block.
    for block in (1, 2):
        for i in range(0, n, 97):
            texts = []
            for j in (i, block * n + i):
                passage = text.caesar_shift(_bytes(ids[j]), -int(labels["shift"][j]))
                texts.append(text.reverse_bytes(passage) if labels["order"][j] else passage)
            assert texts[0] == texts[1]
    again = text.embedded_task("test", length=64, seed=0, copies=3)
    np.testing.assert_array_equal(again[0], ids)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_embedded_task_bad_copies(bad):
    with pytest.raises(ValueError, match="copies"):
        text.embedded_task("test", length=64, copies=bad)


def test_transforms():
    assert text.caesar_shift(b"xyz XYZ 09!", 3) == b"abc ABC 09!"
    assert text.caesar_shift(text.caesar_shift(b"Hello", 5), 21) == b"Hello"
    assert text.reverse_bytes(b"if x:") == b":x fi"
    assert text.reverse_bytes("’".encode()) == b"\x99\x80\xe2"  # bytes, not characters
    assert text.reverse_bytes(text.reverse_bytes(b"abc")) == b"abc"


@pytest.mark.parametrize("bad", [0, 7, 1.5, True])
def test_bad_length(bad):
    with pytest.raises(ValueError, match="length"):
        text.embedded_passages("train", length=bad)


def test_bad_split():
    with pytest.raises(ValueError, match="split"):
        text.embedded_task("validation")


def test_encode_pairs_with_sep():
    ids = text.encode_text_tf([tf.constant(["ab", "c"]), tf.constant(["d", "efgh"])], 6).numpy()
    assert ids.tolist() == [
        [103, 104, TOK.SEP_ID, 106, 0, 0],
        [105, TOK.SEP_ID, 107, 108, 109, 110],
    ]


def test_tfds_text_and_pairs_with_mock_data():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=5):
        ds, n = text.load_tfds_text("imdb_reviews", "train", length=32)
        ids, label = next(iter(ds))
        assert n == 2 and ids.shape == (32,) and ids.dtype == tf.int32 and label.dtype == tf.int32
        ds, n = text.load_tfds_text("glue/mnli", "validation_matched", length=32)
        ids, _ = next(iter(ds))
        assert n == 3 and TOK.SEP_ID in ids.numpy().tolist()
        ds, n = text.load_tfds_text("imdb_reviews", "train", length=32, label_key=None)
        assert n is None and next(iter(ds)).shape == (32,)
        ds, _ = text.load_tfds_text("glue/sst2", "validation", length=16, add_special_tokens=True)
        ids = next(iter(ds))[0].numpy().tolist()
        assert ids[0] == TOK.CLS_ID and TOK.SEP_ID in ids and len(ids) == 16
