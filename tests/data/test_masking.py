"""MLM byte masking: rates, the 80/10/10 split, specials never masked, whole words, determinism."""

import numpy as np
import pytest
import tensorflow as tf

from keras_perceiver.data import masking
from keras_perceiver.tokenizers import BytesTokenizer

TOK = BytesTokenizer()
SPACE_IDS = [b + TOK.NUM_SPECIAL_TOKENS for b in masking.WHITESPACE_BYTES]


def corpus(rows=256, length=256, seed=0):
    """Random words (1-12 bytes) separated by 1-2 whitespace bytes, padded by a random amount,
    with [CLS] first and [SEP]/[BOS]/[EOS]/[MASK] specials sprinkled in."""
    rng = np.random.default_rng(seed)
    out = np.zeros((rows, length), np.int32)
    for r in range(rows):
        used = length - int(rng.integers(0, length // 2))
        row = [TOK.CLS_ID]
        while len(row) < used:
            row += list(rng.integers(33 + 6, 127 + 6, size=int(rng.integers(1, 13))))
            row += list(rng.choice(SPACE_IDS, size=int(rng.integers(1, 3))))
            if rng.random() < 0.05:
                row.append(int(rng.choice([TOK.BOS_ID, TOK.EOS_ID, TOK.MASK_ID, TOK.SEP_ID])))
        out[r, :used] = row[:used]
    return out


def words(row):
    """(start, end) of the maximal runs of non-whitespace byte ids."""
    spans, start = [], None
    for i, v in enumerate(list(row) + [0]):
        inside = v >= TOK.NUM_SPECIAL_TOKENS and v not in SPACE_IDS
        if inside and start is None:
            start = i
        elif not inside and start is not None:
            spans.append((start, i))
            start = None
    return spans


@pytest.fixture(scope="module")
def ids():
    return corpus()


@pytest.mark.parametrize("strategy", masking.STRATEGIES)
def test_masked_fraction_and_80_10_10_split(ids, strategy):
    masked, labels, weights = (t.numpy() for t in masking.mask_bytes(ids, (7, 11), strategy=strategy))
    np.testing.assert_array_equal(labels, ids)
    chosen = weights > 0
    maskable = ids >= TOK.NUM_SPECIAL_TOKENS
    # ~48k maskable bytes: the standard error of the fraction is ~0.002.
    assert abs(chosen.sum() / maskable.sum() - 0.15) < 0.006
    # Per row: within one byte (byte) or one word of at most 12 bytes (whole_word) of 15%.
    slack = 1 if strategy == "byte" else 12
    assert np.all(np.abs(chosen.sum(1) - 0.15 * maskable.sum(1)) <= slack)
    n = chosen.sum()  # ~7k chosen: standard error of a 10% share is ~0.0036
    to_mask = (masked == TOK.MASK_ID) & chosen
    changed = (masked != ids) & ~to_mask & chosen
    unchanged = (masked == ids) & chosen
    assert abs(to_mask.sum() / n - 0.8) < 0.02
    # A random byte equals the original 1 time in 256.
    assert abs(changed.sum() / n - 0.1 * 255 / 256) < 0.018
    assert abs(unchanged.sum() / n - (0.1 + 0.1 / 256)) < 0.018
    # Random replacements are bytes, spread over the byte range.
    assert masked[changed].min() >= TOK.NUM_SPECIAL_TOKENS and masked[changed].max() < TOK.VOCAB_SIZE
    assert len(np.unique(masked[changed])) > 150
    # Outside the chosen positions nothing changes.
    np.testing.assert_array_equal(masked[~chosen], ids[~chosen])


@pytest.mark.parametrize("strategy", masking.STRATEGIES)
def test_specials_and_padding_never_masked(ids, strategy):
    masked, _, weights = (t.numpy() for t in masking.mask_bytes(ids, (1, 2), mask_rate=1.0, strategy=strategy))
    special = ids < TOK.NUM_SPECIAL_TOKENS
    assert special.sum() > 1000 and (ids == 0).sum() > 1000
    assert not weights[special].any()
    np.testing.assert_array_equal(masked[special], ids[special])
    if strategy == "byte":  # rate 1: every byte is chosen
        np.testing.assert_array_equal(weights > 0, ~special)


def test_whole_word_chooses_whole_words(ids):
    _, _, weights = masking.mask_bytes(ids, (3, 4), strategy="whole_word")
    weights = weights.numpy()
    assert not weights[np.isin(ids, SPACE_IDS)].any()  # whitespace is never masked
    taken = 0
    for row, w in zip(ids, weights):
        spans = words(row)
        for start, end in spans:
            assert w[start:end].min() == w[start:end].max(), (start, end)
            taken += int(w[start])
        covered = sum(end - start for start, end in spans if w[start])
        assert covered == w.sum()
        # At most one word beyond the 15% budget.
        longest = max(end - start for start, end in spans)
        assert w.sum() <= 0.15 * (row >= TOK.NUM_SPECIAL_TOKENS).sum() + longest
    assert taken > 1000


def test_byte_strategy_masks_single_bytes(ids):
    _, _, weights = masking.mask_bytes(ids, (3, 4), strategy="byte")
    weights = weights.numpy()
    partial = sum(
        0 < w[s:e].sum() < e - s for row, w in zip(ids, weights) for s, e in words(row)
    )
    assert partial > 500  # single bytes, not words
    assert weights[np.isin(ids, SPACE_IDS)].any()


def test_seeded_and_deterministic(ids):
    a = [t.numpy() for t in masking.mask_bytes(ids[:8], (5, 6))]
    b = [t.numpy() for t in masking.mask_bytes(ids[:8], (5, 6))]
    c = [t.numpy() for t in masking.mask_bytes(ids[:8], (5, 7))]
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert (a[2] != c[2]).any()
    graph = tf.function(lambda x, s: masking.mask_bytes(x, s))(tf.constant(ids[:8]), tf.constant([5, 6]))
    for x, y in zip(a, graph):
        np.testing.assert_array_equal(x, y.numpy())
    # Rank 1 and int64 ids keep their shape and dtype.
    masked, labels, weights = masking.mask_bytes(tf.constant(ids[0], tf.int64), (5, 6))
    assert masked.dtype == tf.int64 and masked.shape == (256,) and weights.shape == (256,)


@pytest.mark.parametrize("strategy", masking.STRATEGIES)
def test_unmasked_weight_scores_the_other_bytes_but_never_pad(ids, strategy):
    """The auxiliary copy loss's weights: chosen bytes 1, other non-PAD ids `w`, PAD 0; the
    masks themselves do not depend on `w`."""
    plain = [t.numpy() for t in masking.mask_bytes(ids, (3, 4), strategy=strategy)]
    masked, labels, weights = [
        t.numpy() for t in masking.mask_bytes(ids, (3, 4), strategy=strategy, unmasked_weight=0.25)]
    np.testing.assert_array_equal(masked, plain[0])
    np.testing.assert_array_equal(labels, plain[1])
    chosen, pad = plain[2] == 1, ids == TOK.PAD_ID
    assert set(np.unique(plain[2])) == {0.0, 1.0} and chosen.any() and pad.any()
    np.testing.assert_array_equal(weights[chosen], 1.0)
    np.testing.assert_array_equal(weights[pad], 0.0)
    np.testing.assert_array_equal(weights[~chosen & ~pad], 0.25)
    assert (~chosen & ~pad).sum() > 4 * chosen.sum()


def test_mask_stream_drops_the_copy_weight_after_copy_epochs():
    from keras_perceiver.data import text

    ids = tf.data.Dataset.from_tensor_slices(corpus(rows=8, length=64))
    stream = text.mask_stream(text.epoch_stream(ids, 4, 1, 0, 0, 4), 0, copy_weight=0.5, copy_epochs=2)
    unmasked = []
    for masked, labels, weights in stream:
        w = weights.numpy()[(labels.numpy() != TOK.PAD_ID) & (weights.numpy() != 1)]
        unmasked.append(sorted(set(w.tolist())))
    assert unmasked == [[0.5], [0.5], [0.0], [0.0]]
    with pytest.raises(ValueError, match="copy_weight"):
        text.mask_stream(stream, copy_weight=-1.0)


def test_mask_dataset_gives_each_element_its_own_deterministic_mask():
    row = corpus(rows=1, length=512)[0]
    ds = tf.data.Dataset.from_tensor_slices(np.stack([row] * 6))
    first = [[t.numpy() for t in el] for el in masking.mask_dataset(ds, seed=9)]
    second = [[t.numpy() for t in el] for el in masking.mask_dataset(ds, seed=9)]
    for x, y in zip(first, second):
        for u, v in zip(x, y):
            np.testing.assert_array_equal(u, v)
    weights = np.stack([el[2] for el in first])
    assert len({w.tobytes() for w in weights}) == 6
    np.testing.assert_array_equal(first[0][2], masking.mask_bytes(row, (9, 0))[2].numpy())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"mask_rate": 1.5}, "mask_rate"),
        ({"mask_token_rate": 0.95, "random_token_rate": 0.1}, "<= 1"),
        ({"strategy": "span"}, "strategy"),
        ({"seed": (1, 2, 3)}, "seed"),
        ({"token_ids": np.zeros((1, 2, 3), np.int32)}, "shape"),
        ({"unmasked_weight": -0.1}, "unmasked_weight"),
        ({"unmasked_weight": tf.ones([2])}, "unmasked_weight"),
    ],
)
def test_bad_arguments(kwargs, match):
    args = {"token_ids": np.zeros((2, 4), np.int32), "seed": (0, 0), **kwargs}
    with pytest.raises(ValueError, match=match):
        masking.mask_bytes(**args)


def test_float_ids_rejected():
    with pytest.raises(TypeError, match="integer"):
        masking.mask_bytes(np.zeros((2, 4), np.float32), (0, 0))
