"""Memory-bounded attention: queries and keys in chunks, online softmax.

`chunked_attention` computes `softmax(q k^T * scale) v` without ever holding
the whole `[B, H, T, S]` logits array: queries are processed `query_chunk`
rows at a time (a sequential scan, each chunk independent) and, inside each,
keys `key_chunk` columns at a time with a running maximum `m`, a running
normaliser `l = sum exp(s - m)` and a running weighted sum of the values, all
in float32 (the "online softmax" of Milakov & Gimelshein 2018, as in
Rabe & Staats 2021 and FlashAttention). The result equals the one-shot
softmax up to float rounding, with DeepMind's mask semantics: masked logits
are filled with -1e30 before the softmax.

Chunk loops are `keras.ops.scan` (a `tf.while_loop` with one iteration in
flight on TensorFlow, `lax.scan` on JAX), so only one chunk's logits live at
a time in graph mode, under XLA and in exported SavedModels; on PyTorch, which
runs eagerly, they are plain Python loops. Gradients flow through both.
"""

import keras
from keras import ops

MASK_FILL = -1e30
# Float32 logits bytes per example (all heads) above which the layer chunks.
DEFAULT_MEMORY_BUDGET = 64 * 2**20
_MIN_QUERY_CHUNK = 256
_MIN_KEY_CHUNK = 1024


def choose_chunk_sizes(num_heads, num_queries, num_keys, memory_budget=None):
    """Chunk sizes whose float32 logits fit `memory_budget` bytes per example.

    Returns None when the whole logits array fits (or a length is not known
    statically), else `(query_chunk, key_chunk)`. Whole key rows are kept
    when at least `min(T, 256)` queries fit (no online softmax needed),
    otherwise all queries are kept with key chunks of at least 1024, and
    only if that does not fit either are both chunked.

    Example:
    >>> from keras_perceiver.layers.chunked_attention import choose_chunk_sizes
    >>> choose_chunk_sizes(1, 512, 50176, memory_budget=2**20)
    (256, 1024)
    >>> choose_chunk_sizes(8, 256, 2048) is None
    True
    """
    budget = DEFAULT_MEMORY_BUDGET if memory_budget is None else memory_budget
    if num_queries is None or num_keys is None:
        return None
    per = 4 * num_heads
    if per * num_queries * num_keys <= budget:
        return None
    rows = budget // (per * num_keys)
    if rows >= min(num_queries, _MIN_QUERY_CHUNK):
        return (min(num_queries, rows), num_keys)
    cols = budget // (per * num_queries)
    if cols >= min(num_keys, _MIN_KEY_CHUNK):
        return (num_queries, min(num_keys, cols))
    cols = min(num_keys, _MIN_KEY_CHUNK)
    return (max(1, min(num_queries, budget // (per * cols))), cols)


def _scan(step, init, xs):
    """`ops.scan`, but a plain loop on PyTorch (eager; no stacked dummy ys)."""
    if keras.backend.backend() != "torch":
        return ops.scan(step, init, xs)
    carry, ys = init, []
    for i in range(int(keras.tree.flatten(xs)[0].shape[0])):
        carry, y = step(carry, keras.tree.map_structure(lambda x: x[i], xs))
        ys.append(y)
    return carry, (None if ys[0] is None else ops.stack(ys))


def _num_chunks(length, chunk):
    return (length + chunk - 1) // chunk


def _pad(x, axis, amount, value=0):
    """Pads `x` with `amount` entries at the end of `axis` (static or not)."""
    if isinstance(amount, int) and amount == 0:
        return x
    shape = [ops.shape(x)[i] for i in range(len(x.shape))]
    shape[axis] = amount
    return ops.concatenate([x, ops.full(shape, value, dtype=x.dtype)], axis=axis)


def _to_chunks(x, axis, chunk, num):
    """Splits padded `axis` into `num` chunks and moves the chunk axis first."""
    shape = [ops.shape(x)[i] for i in range(len(x.shape))]
    x = ops.reshape(x, shape[:axis] + [num, chunk] + shape[axis + 1:])
    order = [axis] + [i for i in range(len(x.shape)) if i != axis]
    return ops.transpose(x, order)


def chunked_attention(q, k, v, mask, scale, query_chunk, key_chunk, compute_dtype):
    """Softmax attention over heads in chunks; see the module docstring.

    Args:
        q: queries `[B, H, T, d]`; k: keys `[B, H, S, d]`; v: values
            `[B, H, S, e]`.
        mask: None or boolean `[B, T, S]` (`True` = attend).
        scale: the logit scale (`1/sqrt(d)`).
        query_chunk, key_chunk: chunk lengths (clipped to T and S).
        compute_dtype: dtype of the returned heads and of the value matmul.

    Returns:
        `[B, H, T, e]` in `compute_dtype`. Rows whose keys are all masked
        hold the average of all values (as the one-shot softmax of -1e30s
        does); the caller zeroes them.
    """
    num_q, num_k = ops.shape(q)[2], ops.shape(k)[2]
    if isinstance(num_q, int):
        query_chunk = min(query_chunk, num_q)
    if isinstance(num_k, int):
        key_chunk = min(key_chunk, num_k)
    nq, nk = _num_chunks(num_q, query_chunk), _num_chunks(num_k, key_chunk)
    key_pad = nk * key_chunk - num_k
    key_chunks = _to_chunks(_pad(k, 2, key_pad), 2, key_chunk, nk)
    value_chunks = _to_chunks(_pad(v, 2, key_pad), 2, key_chunk, nk)
    padded_keys = not (isinstance(key_pad, int) and key_pad == 0)
    key_valid = None
    if mask is None and padded_keys:
        key_valid = ops.reshape(
            ops.arange(nk * key_chunk) < num_k, (nk, 1, 1, key_chunk)
        )

    def attend(q_chunk, mask_chunks):
        # mask_chunks: None or [nk, B, Tc, Sc] (or [nk, 1, 1, Sc]).
        if isinstance(nk, int) and nk == 1:
            logits = ops.cast(ops.matmul(q_chunk, ops.swapaxes(k, -1, -2)), "float32") * scale
            if mask_chunks is not None:
                logits = ops.where(mask_chunks[0][:, None], logits, MASK_FILL)
            weights = ops.cast(ops.softmax(logits, axis=-1), compute_dtype)
            return ops.matmul(weights, v)
        rows = ops.shape(q_chunk)[:3]
        init = (
            ops.full(tuple(rows) + (1,), MASK_FILL, dtype="float32"),
            ops.zeros(tuple(rows) + (1,), dtype="float32"),
            ops.zeros(tuple(rows) + (ops.shape(v)[-1],), dtype="float32"),
        )

        def step(carry, xs):
            running_max, total, acc = carry
            k_c, v_c = xs[0], xs[1]
            logits = ops.cast(ops.matmul(q_chunk, ops.swapaxes(k_c, -1, -2)), "float32") * scale
            if len(xs) == 3:
                logits = ops.where(xs[2][:, None], logits, MASK_FILL)
            # The maximum cancels out of the result, so it needs no gradient.
            new_max = ops.stop_gradient(
                ops.maximum(running_max, ops.max(logits, axis=-1, keepdims=True))
            )
            correction = ops.exp(running_max - new_max)
            probs = ops.exp(logits - new_max)
            total = total * correction + ops.sum(probs, axis=-1, keepdims=True)
            update = ops.matmul(ops.cast(probs, compute_dtype), v_c)
            acc = acc * correction + ops.cast(update, "float32")
            return (new_max, total, acc), None

        xs = (key_chunks, value_chunks)
        if mask_chunks is not None:
            xs = xs + (mask_chunks,)
        (_, total, acc), _ = _scan(step, init, xs)
        return ops.cast(acc / total, compute_dtype)

    if isinstance(nq, int) and nq == 1:
        mask_chunks = key_valid
        if mask is not None:
            mask_chunks = _to_chunks(_pad(mask, 2, key_pad, False), 2, key_chunk, nk)
        return attend(q, mask_chunks)

    query_pad = nq * query_chunk - num_q
    query_chunks = _to_chunks(_pad(q, 2, query_pad), 2, query_chunk, nq)
    xs = (query_chunks,)
    if mask is not None:
        mask = _pad(_pad(mask, 1, query_pad, False), 2, key_pad, False)
        mask = ops.reshape(mask, (ops.shape(mask)[0], nq, query_chunk, nk, key_chunk))
        xs = xs + (ops.transpose(mask, (1, 3, 0, 2, 4)),)  # [nq, nk, B, Tc, Sc]

    def query_step(carry, xs):
        out = attend(xs[0], xs[1] if len(xs) == 2 else key_valid)
        return carry, out

    batch, heads = ops.shape(q)[0], ops.shape(q)[1]
    init = ops.zeros((batch, heads, query_chunk, ops.shape(v)[-1]), dtype=compute_dtype)
    _, outputs = _scan(query_step, init, xs)  # [nq, B, H, Tc, e]
    outputs = ops.transpose(outputs, (1, 2, 0, 3, 4))
    outputs = ops.reshape(outputs, (batch, heads, nq * query_chunk, ops.shape(v)[-1]))
    if isinstance(query_pad, int) and query_pad == 0:
        return outputs
    return outputs[:, :, :num_q]
