"""Tests for keras_perceiver.tokenizers.BytesTokenizer (Python and TF paths)."""

import doctest
import functools
import importlib.util
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_perceiver.tokenizers import BytesTokenizer
from keras_perceiver.tokenizers import bytes_tokenizer as bytes_tokenizer_module

TOK = BytesTokenizer()
FAST = settings(max_examples=40, deadline=None)
REPLACEMENT = "\ufffd"

# Text that mixes plain text with "[MASK]" placeholders (at any position,
# possibly consecutive).
masked_text = st.lists(
    st.one_of(st.text(max_size=8), st.just("[MASK]")), max_size=6
).map("".join)


@functools.lru_cache(maxsize=None)
def graph_encoder(max_length, add_special_tokens, mask_placeholder):
    """tf_encode under tf.function with a serving-style [None] string signature."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def fn(strings):
        return TOK.tf_encode(
            strings,
            max_length=max_length,
            add_special_tokens=add_special_tokens,
            mask_placeholder=mask_placeholder,
        )

    return fn


@functools.lru_cache(maxsize=None)
def graph_decoder():
    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32)])
    def fn(ids):
        return TOK.tf_decode(ids)

    return fn


def tf_strings(tensor):
    return [s.decode("utf-8") for s in tensor.numpy().tolist()]


# ----------------------------------------------------------------------------
# Reference ids
# ----------------------------------------------------------------------------


def test_constants():
    assert (TOK.PAD_ID, TOK.BOS_ID, TOK.EOS_ID) == (0, 1, 2)
    assert (TOK.MASK_ID, TOK.CLS_ID, TOK.SEP_ID) == (3, 4, 5)
    assert TOK.NUM_SPECIAL_TOKENS == 6
    assert TOK.VOCAB_SIZE == TOK.vocab_size == 262


def test_encode_explicit_ids():
    assert TOK.encode("hello") == [104 + 6, 101 + 6, 108 + 6, 108 + 6, 111 + 6]
    assert TOK.encode("") == []
    assert TOK.encode("\x00") == [6]
    assert TOK.encode("\xff") == [0xC3 + 6, 0xBF + 6]  # UTF-8 of U+00FF
    assert TOK.encode("€") == [0xE2 + 6, 0x82 + 6, 0xAC + 6]
    assert TOK.encode(b"\xff") == [255 + 6]  # raw bytes are accepted as is


def test_special_tokens_truncation_and_padding():
    assert TOK.encode("hi", add_special_tokens=True) == [4, 110, 111, 5]
    assert TOK.encode("hello", max_length=3) == [110, 107, 114]
    # Truncation keeps [SEP]: the content is cut to max_length - 2.
    assert TOK.encode("hello", add_special_tokens=True, max_length=4) == [
        4, 110, 107, 5,
    ]
    assert TOK.encode("hi", max_length=5, pad=True) == [110, 111, 0, 0, 0]
    assert TOK.encode("", add_special_tokens=True, max_length=2) == [4, 5]
    with pytest.raises(ValueError, match="max_length"):
        TOK.encode("hi", add_special_tokens=True, max_length=1)


def test_encode_batch():
    assert TOK.encode(["a", "bc"]) == [[103], [104, 105]]
    out = TOK.encode(["a", "bcd"], pad=True)
    assert out.dtype == np.int32 and out.tolist() == [[103, 0, 0], [104, 105, 106]]
    out = TOK.encode(["a", "bcd"], max_length=2, pad=True, add_special_tokens=False)
    assert out.tolist() == [[103, 0], [104, 105]]
    out = TOK.encode(["a", ""], max_length=4, pad=True, add_special_tokens=True)
    assert out.tolist() == [[4, 103, 5, 0], [4, 5, 0, 0]]
    assert TOK.encode([], pad=True).shape == (0, 0)


def test_decode_drops_special_tokens_and_accepts_arrays():
    assert TOK.decode([4, 110, 111, 5, 0, 0]) == "hi"
    assert TOK.decode([0, 1, 2, 3, 4, 5]) == ""
    assert TOK.decode(110) == "h"
    assert TOK.decode([]) == ""
    assert TOK.decode(np.array([[110, 111], [4, 5]], np.int64)) == ["hi", ""]
    assert TOK.decode([[110, 111, 3], [104]]) == ["hi", "b"]  # ragged
    assert TOK.decode(tf.constant([110, 111])) == "hi"


def test_out_of_range_ids_raise():
    for bad in ([262], [5, -1], [[6], [300]]):
        with pytest.raises(ValueError, match=r"range \[0, 262\)"):
            TOK.decode(bad)
    with pytest.raises(TypeError):
        TOK.decode([1.5])
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"range \[0, 262\)"):
        TOK.tf_decode([[110, 262]])
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"range \[0, 262\)"):
        graph_decoder()(tf.constant([[-1, 110]]))


# ----------------------------------------------------------------------------
# Invalid UTF-8
# ----------------------------------------------------------------------------


def test_invalid_utf8_is_replaced():
    ids = [b + 6 for b in b"\xff\xfeabc"]
    assert TOK.decode(ids) == "\ufffd\ufffdabc"
    assert tf_strings(TOK.tf_decode([ids])) == ["\ufffd\ufffdabc"]
    # A truncated multi-byte sequence is one maximal subpart -> one U+FFFD.
    ids = [b + 6 for b in b"\xe2\x82a\xed\xa0\x80"]
    expected = b"\xe2\x82a\xed\xa0\x80".decode("utf-8", errors="replace")
    assert TOK.decode(ids) == expected == REPLACEMENT + "a" + REPLACEMENT * 3
    assert tf_strings(graph_decoder()(tf.constant([ids]))) == [expected]


@FAST
@given(st.lists(st.binary(max_size=24), min_size=1, max_size=4))
def test_python_and_tf_decoders_agree_on_arbitrary_bytes(chunks):
    rng = np.random.default_rng(len(chunks))
    rows = []
    for data in chunks:
        ids = [b + 6 for b in data]
        # Sprinkle special tokens in: they must be dropped before decoding.
        for _ in range(rng.integers(0, 3)):
            ids.insert(int(rng.integers(0, len(ids) + 1)), int(rng.integers(0, 6)))
        rows.append(ids)
    expected = [bytes(data).decode("utf-8", errors="replace") for data in chunks]
    assert TOK.decode(rows) == expected
    width = max(len(r) for r in rows)
    padded = [r + [0] * (width - len(r)) for r in rows]
    assert tf_strings(graph_decoder()(tf.constant(padded, tf.int32))) == expected
    assert tf_strings(TOK.tf_decode(tf.ragged.constant(rows, tf.int32))) == expected


# ----------------------------------------------------------------------------
# Round trips and Python == TF
# ----------------------------------------------------------------------------


@FAST
@given(st.text())
def test_python_round_trip(text):
    ids = TOK.encode(text)
    assert ids == [b + 6 for b in text.encode("utf-8")]
    assert TOK.decode(ids) == text
    assert TOK.decode(TOK.encode(text, add_special_tokens=True)) == text


@FAST
@given(st.lists(st.text(), min_size=1, max_size=4))
def test_tf_round_trip(texts):
    ids = graph_encoder(None, True, None)(tf.constant(texts))
    assert ids.dtype == tf.int32
    assert tf_strings(graph_decoder()(ids)) == texts
    assert tf_strings(TOK.tf_decode(TOK.tf_encode(texts))) == texts


@FAST
@given(
    texts=st.lists(st.text(max_size=20), min_size=0, max_size=5),
    max_length=st.sampled_from([None, 2, 3, 8, 32]),
    add_special_tokens=st.booleans(),
)
def test_tf_encode_matches_python(texts, max_length, add_special_tokens):
    fn = graph_encoder(max_length, add_special_tokens, None)
    got = fn(tf.constant(texts, dtype=tf.string)).numpy()
    expected = TOK.encode(
        texts, add_special_tokens=add_special_tokens, max_length=max_length, pad=True
    )
    if max_length is not None:
        assert got.shape == (len(texts), max_length)
    np.testing.assert_array_equal(got, expected)


def test_tf_encode_shapes_and_scalar_input():
    out = TOK.tf_encode(["hello", "", "hi"], max_length=4)
    assert out.numpy().tolist() == [[110, 107, 114, 114], [0, 0, 0, 0], [110, 111, 0, 0]]
    assert TOK.tf_encode("hi", max_length=3).numpy().tolist() == [110, 111, 0]
    assert TOK.tf_encode(tf.constant([], tf.string), max_length=3).shape == (0, 3)
    concrete = graph_encoder(6, False, None).get_concrete_function()
    assert concrete.structured_outputs.shape.as_list() == [None, 6]
    assert TOK.tf_decode([110, 111]).numpy() == b"hi"


# ----------------------------------------------------------------------------
# Mask placeholder
# ----------------------------------------------------------------------------


def test_mask_placeholder_explicit():
    kw = dict(mask_placeholder="[MASK]")
    assert TOK.encode("a[MASK]b", **kw) == [103, 3, 104]
    assert TOK.encode("[MASK][MASK]", **kw) == [3, 3]
    assert TOK.encode("[MASK]", add_special_tokens=True, **kw) == [4, 3, 5]
    assert TOK.encode("no mask", **kw) == TOK.encode("no mask")
    assert TOK.encode("a[MASK]b") == TOK.encode("a[MASK]b", mask_placeholder=None)
    assert TOK.decode(TOK.encode("x[MASK]y", **kw)) == "xy"  # MASK is dropped
    out = TOK.tf_encode(["a[MASK]b", "[MASK]", "", "[MASK][MASK]c"], 5, **kw)
    assert out.numpy().tolist() == [
        [103, 3, 104, 0, 0],
        [3, 0, 0, 0, 0],
        [0, 0, 0, 0, 0],
        [3, 3, 105, 0, 0],
    ]
    with pytest.raises(ValueError, match="mask_placeholder"):
        TOK.encode("a", mask_placeholder="")
    with pytest.raises(ValueError, match="mask_placeholder"):
        TOK.tf_encode(["a"], mask_placeholder="")


@FAST
@given(
    texts=st.lists(masked_text, min_size=1, max_size=4),
    max_length=st.sampled_from([None, 4, 16]),
    add_special_tokens=st.booleans(),
)
def test_mask_placeholder_python_matches_tf(texts, max_length, add_special_tokens):
    py = TOK.encode(
        texts,
        add_special_tokens=add_special_tokens,
        max_length=max_length,
        pad=True,
        mask_placeholder="[MASK]",
    )
    for text, row in zip(texts, TOK.encode(texts, mask_placeholder="[MASK]")):
        assert row.count(3) == text.count("[MASK]")
        assert TOK.decode(row) == text.replace("[MASK]", "")
    fn = graph_encoder(max_length, add_special_tokens, "[MASK]")
    np.testing.assert_array_equal(fn(tf.constant(texts)).numpy(), py)


# ----------------------------------------------------------------------------
# tf.data, SavedModel, lazy TensorFlow import, docstrings
# ----------------------------------------------------------------------------


def test_tf_data_pipeline():
    ds = tf.data.Dataset.from_tensor_slices(["hello", "hi", "€"]).batch(2)
    ds = ds.map(lambda s: TOK.tf_encode(s, max_length=4, add_special_tokens=True))
    got = np.concatenate([b.numpy() for b in ds])
    np.testing.assert_array_equal(
        got,
        TOK.encode(["hello", "hi", "€"], max_length=4, pad=True, add_special_tokens=True),
    )


def test_saved_model_round_trip(tmp_path):
    module = tf.Module()
    module.encode = graph_encoder(8, True, "[MASK]")
    module.decode = graph_decoder()
    tf.saved_model.save(module, str(tmp_path))
    loaded = tf.saved_model.load(str(tmp_path))
    ids = loaded.encode(tf.constant(["a[MASK]b", "hello world"]))
    assert ids.numpy().tolist() == [
        [4, 103, 3, 104, 5, 0, 0, 0],
        [4, 110, 107, 114, 114, 117, 38, 5],
    ]
    assert tf_strings(loaded.decode(ids)) == ["ab", "hello "]


def test_module_does_not_import_tensorflow():
    path = pathlib.Path(bytes_tokenizer_module.__file__)
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('bt', {str(path)!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "assert m.BytesTokenizer().decode(m.BytesTokenizer().encode('ok')) == 'ok'\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert importlib.util.find_spec("keras_perceiver.tokenizers") is not None


def test_docstring_examples():
    result = doctest.testmod(bytes_tokenizer_module)
    assert result.attempted > 0 and result.failed == 0
