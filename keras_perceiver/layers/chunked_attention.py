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

Chunk loops are `keras_perceiver.layers.loops.scan` (a `tf.while_loop` with
one iteration in flight on TensorFlow, `lax.scan` on JAX), so only one
chunk's logits live at a time in graph mode, under XLA and in exported
SavedModels; on PyTorch, which runs eagerly, they are plain Python loops.
Gradients flow through all of them, XLA-compiled ones included.
"""

import keras
from keras import ops

from keras_perceiver.layers import loops

MASK_FILL = -1e30
# Float32 logits bytes per example (all heads) above which the layer chunks.
DEFAULT_MEMORY_BUDGET = 64 * 2**20
_MIN_QUERY_CHUNK = 256
_MIN_KEY_CHUNK = 1024
_UNBOUNDED = 2**62  # stands for a length unknown at trace time


def choose_chunk_sizes(num_heads, num_queries, num_keys, memory_budget=None):
    """Chunk sizes whose float32 logits fit `memory_budget` bytes per example.

    Returns None when the whole logits array fits, else
    `(query_chunk, key_chunk)`. Whole key rows are kept when at least
    `min(T, 256)` queries fit (no online softmax needed), otherwise all
    queries are kept with key chunks of at least 1024, and only if that does
    not fit either are both chunked. A length that is not known statically
    (None) counts as unbounded: the chunk sizes then fit any length, and
    `chunked_attention` clips them to the actual lengths in the graph.

    Example:
    >>> from keras_perceiver.layers.chunked_attention import choose_chunk_sizes
    >>> choose_chunk_sizes(1, 512, 50176, memory_budget=2**20)
    (256, 1024)
    >>> choose_chunk_sizes(8, 256, 2048) is None
    True
    >>> choose_chunk_sizes(8, 256, None)
    (256, 8192)
    """
    budget = DEFAULT_MEMORY_BUDGET if memory_budget is None else memory_budget
    num_queries = _UNBOUNDED if num_queries is None else num_queries
    num_keys = _UNBOUNDED if num_keys is None else num_keys
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


def _clip_chunk(chunk, length):
    """`min(chunk, length)`, a Python int when `length` is static."""
    if chunk is None:
        return length
    if isinstance(length, int):
        return min(chunk, length)
    return ops.minimum(ops.convert_to_tensor(chunk, dtype="int32"), length)


def _is_one(n):
    return isinstance(n, int) and n == 1


def _chunk_dropout(rate, seed_generator, nq, nk):
    """`(drop, seeds)`: `drop(probs, seed)` and per-chunk seeds `[nq, nk, 2]`.

    On JAX, where the chunk loops are `lax.scan`s, a stateful seed generator
    cannot advance inside the loop, so one seed drawn outside it yields an
    independent seed per chunk. TensorFlow (a `tf.while_loop`) and PyTorch
    (a Python loop) advance `seed_generator` chunk by chunk.
    """
    if not rate:
        return None, None
    if keras.backend.backend() == "jax":
        seeds = keras.random.randint(
            (nq, nk, 2), 0, 2**31 - 1, dtype="int32", seed=seed_generator.next()
        )
        return (lambda p, seed: keras.random.dropout(p, rate, seed=seed)), ops.cast(seeds, "uint32")
    return (lambda p, seed: keras.random.dropout(p, rate, seed=seed_generator)), None


def _online_init(q, value_width):
    """Running maximum, normaliser and weighted sum for queries `q` `[B, H, T, d]`."""
    rows = tuple(ops.shape(q)[:3])
    return (
        ops.full(rows + (1,), MASK_FILL, dtype="float32"),
        ops.zeros(rows + (1,), dtype="float32"),
        ops.zeros(rows + (value_width,), dtype="float32"),
    )


def _online_step(carry, q, k, v, valid, scale, drop, seed, compute_dtype):
    """One key chunk of the online softmax; `valid`: None or boolean `[B|1, 1, T|1, Sc]`."""
    running_max, total, acc = carry
    logits = ops.cast(ops.matmul(q, ops.swapaxes(k, -1, -2)), "float32")
    if scale != 1.0:
        logits = logits * scale
    if valid is not None:
        logits = ops.where(valid, logits, MASK_FILL)
    # The maximum cancels out of the result, so it needs no gradient.
    new_max = ops.stop_gradient(
        ops.maximum(running_max, ops.max(logits, axis=-1, keepdims=True))
    )
    correction = ops.exp(running_max - new_max)
    probs = ops.exp(logits - new_max)
    total = total * correction + ops.sum(probs, axis=-1, keepdims=True)
    if drop is not None:
        probs = drop(probs, seed)
    update = ops.matmul(ops.cast(probs, compute_dtype), v)
    return new_max, total, acc * correction + ops.cast(update, "float32")


def chunked_attention(q, k, v, mask, scale, query_chunk, key_chunk, compute_dtype,
                      dropout_rate=0.0, seed_generator=None):
    """Softmax attention over heads in chunks; see the module docstring.

    Args:
        q: queries `[B, H, T, d]`; k: keys `[B, H, S, d]`; v: values
            `[B, H, S, e]`.
        mask: None or boolean `[B, T, S]` (`True` = attend).
        scale: the logit scale (`1/sqrt(d)`).
        query_chunk, key_chunk: chunk lengths (clipped to T and S; None:
            the whole length). T and S may be unknown when traced
            (TensorFlow graphs, SavedModel signatures): the chunk counts are
            then computed in the graph and the last chunk is padded (masked
            keys, queries sliced off).
        compute_dtype: dtype of the returned heads and of the value matmul.
        dropout_rate: dropout on the attention probabilities. Dropout is
            linear, so `dropout(p / l) = dropout(p) / l`: it is applied chunk
            by chunk to the unnormalised probabilities of the value update,
            while the normaliser `l` sums the kept-and-dropped ones alike.
        seed_generator: a `keras.random.SeedGenerator` for the dropout.

    Returns:
        `[B, H, T, e]` in `compute_dtype`. Rows whose keys are all masked
        hold the average of all values (as the one-shot softmax of -1e30s
        does); the caller zeroes them.
    """
    if keras.backend.standardize_dtype(q.dtype) == "float32":
        # Scaled once here rather than every chunk's logits (T x d products, not T x S).
        # In lower precision the float32 logits are scaled after the cast instead.
        q, scale = q * scale, 1.0
    num_q, num_k = ops.shape(q)[2], ops.shape(k)[2]
    query_chunk, key_chunk = _clip_chunk(query_chunk, num_q), _clip_chunk(key_chunk, num_k)
    nq, nk = _num_chunks(num_q, query_chunk), _num_chunks(num_k, key_chunk)
    drop, seeds = _chunk_dropout(dropout_rate, seed_generator, nq, nk)
    key_pad = nk * key_chunk - num_k
    key_chunks = _to_chunks(_pad(k, 2, key_pad), 2, key_chunk, nk)
    value_chunks = _to_chunks(_pad(v, 2, key_pad), 2, key_chunk, nk)
    padded_keys = not (isinstance(key_pad, int) and key_pad == 0)
    key_valid = None
    if mask is None and padded_keys:
        key_valid = ops.reshape(
            ops.arange(nk * key_chunk) < num_k, (nk, 1, 1, key_chunk)
        )

    def attend(q_chunk, mask_chunks, chunk_seeds):
        # mask_chunks: None or [nk, B, Tc, Sc] (or [nk, 1, 1, Sc]);
        # chunk_seeds: None or [nk, 2].
        if _is_one(nk):
            logits = ops.cast(ops.matmul(q_chunk, ops.swapaxes(k, -1, -2)), "float32")
            if scale != 1.0:
                logits = logits * scale
            if mask_chunks is not None:
                logits = ops.where(mask_chunks[0][:, None], logits, MASK_FILL)
            weights = ops.softmax(logits, axis=-1)
            if drop is not None:
                weights = drop(weights, None if chunk_seeds is None else chunk_seeds[0])
            return ops.matmul(ops.cast(weights, compute_dtype), v)
        init = _online_init(q_chunk, ops.shape(v)[-1])

        def step(carry, xs):
            valid = xs["mask"][:, None] if "mask" in xs else None
            return _online_step(carry, q_chunk, xs["k"], xs["v"], valid, scale, drop,
                                xs.get("seed"), compute_dtype), None

        xs = {"k": key_chunks, "v": value_chunks}
        if mask_chunks is not None:
            xs["mask"] = mask_chunks
        if chunk_seeds is not None:
            xs["seed"] = chunk_seeds
        (_, total, acc), _ = loops.scan(step, init, xs)
        return ops.cast(acc / total, compute_dtype)

    if _is_one(nq):
        mask_chunks = key_valid
        if mask is not None:
            mask_chunks = _to_chunks(_pad(mask, 2, key_pad, False), 2, key_chunk, nk)
        return attend(q, mask_chunks, None if seeds is None else seeds[0])

    query_pad = nq * query_chunk - num_q
    xs = {"q": _to_chunks(_pad(q, 2, query_pad), 2, query_chunk, nq)}
    if mask is not None:
        mask = _pad(_pad(mask, 1, query_pad, False), 2, key_pad, False)
        mask = ops.reshape(mask, (ops.shape(mask)[0], nq, query_chunk, nk, key_chunk))
        xs["mask"] = ops.transpose(mask, (1, 3, 0, 2, 4))  # [nq, nk, B, Tc, Sc]
    if seeds is not None:
        xs["seed"] = seeds

    def query_step(carry, xs):
        out = attend(xs["q"], xs.get("mask", key_valid), xs.get("seed"))
        return carry, out

    batch, heads = ops.shape(q)[0], ops.shape(q)[1]
    init = ops.zeros((batch, heads, query_chunk, ops.shape(v)[-1]), dtype=compute_dtype)
    _, outputs = loops.scan(query_step, init, xs)  # [nq, B, H, Tc, e]
    outputs = ops.transpose(outputs, (1, 2, 0, 3, 4))
    outputs = ops.reshape(outputs, (batch, heads, nq * query_chunk, ops.shape(v)[-1]))
    if isinstance(query_pad, int) and query_pad == 0:
        return outputs
    return outputs[:, :, :num_q]


def even_chunk(chunk, length):
    """The largest chunk in `(chunk / 2, chunk]` dividing a static `length`, else `chunk`.

    Equal chunks need no overlapping last chunk (no masking, no repeated
    work). E.g. 182,528 flow pixels in chunks of 8192 -> 7936 (23 chunks).

    Example:
    >>> from keras_perceiver.layers.chunked_attention import even_chunk
    >>> even_chunk(8192, 182528)
    7936
    """
    if not (isinstance(chunk, int) and isinstance(length, int)) or chunk >= length:
        return chunk
    for size in range(chunk, chunk // 2, -1):
        if length % size == 0:
            return size
    return chunk


def chunk_start(index, chunk, length):
    """Start of chunk `index`: `index * chunk`, the last one moved back flush with `length`.

    Every chunk is then a full `chunk` long (no padding copy); the last one
    overlaps its predecessor by `num_chunks * chunk - length` entries.
    """
    if isinstance(index, int) and isinstance(length, int):
        return min(index * chunk, length - chunk)
    return ops.minimum(index * chunk, length - chunk)


def slice_chunk(x, axis, start, chunk):
    """`chunk` entries of `x` from `start` along `axis` (a dynamic slice)."""
    starts = [0] * len(x.shape)
    starts[axis] = start
    shape = [ops.shape(x)[i] for i in range(len(x.shape))]
    shape[axis] = chunk
    return ops.slice(x, starts, shape)


def merge_chunks(chunks, axis, chunk, length):
    """Stacked outputs `[n, ...]` of the chunks of `chunk_start` -> `length` along `axis`.

    The chunk axis is `axis + 1` of `chunks`; the rows that the last chunk
    repeats from its predecessor are dropped.
    """
    n = ops.shape(chunks)[0]
    merged = _flatten_chunks(chunks, axis)
    if isinstance(n, int) and isinstance(length, int) and n * chunk == length:
        return merged
    keep = (n - 1) * chunk
    lead = (slice(None),) * axis
    return ops.concatenate(
        [merged[lead + (slice(0, keep),)], merged[lead + (slice(keep + n * chunk - length, None),)]],
        axis=axis,
    )


def _flatten_chunks(chunks, axis):
    """`[n, d0, .., c, ..]` (chunk axis `axis + 1`) -> `[d0, .., n * c, ..]`."""
    order = list(range(1, axis + 1)) + [0] + list(range(axis + 1, len(chunks.shape)))
    moved = ops.transpose(chunks, order)
    shape = [ops.shape(moved)[i] for i in range(len(moved.shape))]
    return ops.reshape(moved, shape[:axis] + [shape[axis] * shape[axis + 1]] + shape[axis + 2:])


def streamed_attention(q, key_value, project, value_width, mask, scale, key_chunk,
                       compute_dtype, dropout_rate=0.0, seed_generator=None):
    """`chunked_attention` over all queries at once with keys made chunk by chunk.

    Instead of projected keys and values, takes the raw `key_value`
    `[B, S, C]` and `project(chunk, start) -> (k [B, H, Sc, d], v [B, H,
    Sc, e])` (`e = value_width`; `start`: the chunk's first token index),
    called on `key_chunk` tokens at a time inside the online-softmax loop,
    so no `[B, S, qk]` or `[B, S, v]` array (nor a normalised copy of the
    inputs, when `project` normalises) is ever held. Chunks are dynamic
    slices of `key_value`; the last one is moved back flush with `S` and
    its keys already seen are masked out (no padded copy). Same result as
    `chunked_attention` (up to float rounding).
    """
    num_k = ops.shape(key_value)[1]
    key_chunk = even_chunk(_clip_chunk(key_chunk, num_k), num_k)
    # Scaled once here rather than every chunk's logits (one array less per step).
    q = q * ops.cast(scale, q.dtype)
    nk = _num_chunks(num_k, key_chunk)
    drop, seeds = _chunk_dropout(dropout_rate, seed_generator, 1, nk)
    ragged = not (isinstance(num_k, int) and num_k % key_chunk == 0)

    def step(carry, i):
        start = chunk_start(i, key_chunk, num_k)
        k, v = project(slice_chunk(key_value, 1, start, key_chunk), start)
        valid = None
        if mask is not None:
            valid = slice_chunk(mask, 2, start, key_chunk)[:, None]  # [B, 1, T, Sc]
        if ragged:
            # Keys before i * key_chunk were the previous chunk's.
            fresh = ops.reshape(start + ops.arange(key_chunk) >= i * key_chunk, (1, 1, 1, -1))
            valid = fresh if valid is None else ops.logical_and(valid, fresh)
        seed = None if seeds is None else ops.take(seeds[0], i, axis=0)
        return _online_step(carry, q, k, v, valid, 1.0, drop, seed, compute_dtype), None

    (_, total, acc), _ = loops.scan_range(step, _online_init(q, value_width), nk)
    return ops.cast(acc / total, compute_dtype)
