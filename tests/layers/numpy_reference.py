"""Independent NumPy formulas of the Perceiver IO blocks (REFERENCE.md section 1-2).

They read only the weights of a built layer, never call its sublayers, so a
wiring bug (an order, a missing bias, residual or scale) shows as a mismatch.
"""

import numpy as np


def randomize(layer, rng):
    """Unit-scale random weights, non-zero biases and LayerNorm offsets."""
    for w in layer.weights:
        shape = tuple(w.shape)
        if len(shape) == 1:
            value = 0.5 + 0.3 * rng.normal(size=shape)
        elif len(shape) == 2 and not w.path.endswith("embeddings"):  # Dense kernels [in, out]
            value = rng.normal(size=shape) / np.sqrt(shape[0])
        else:
            value = rng.normal(size=shape)
        w.assign(value.astype("float32"))
    return layer


def weights(layer):
    return [np.asarray(w, dtype="float64") for w in layer.weights]


def dense(x, layer):
    return x @ np.asarray(layer.kernel, "float64") + np.asarray(layer.bias, "float64")


def layer_norm(x, layer, epsilon=1e-5):
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    gamma, beta = np.asarray(layer.gamma, "float64"), np.asarray(layer.beta, "float64")
    return (x - mean) / np.sqrt(var + epsilon) * gamma + beta


def gelu(x, approximate=True):
    if approximate:
        return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
    from scipy.special import erf

    return 0.5 * x * (1 + erf(x / np.sqrt(2)))


def attention(layer, q_in, kv_in, mask=None):
    """Multi-head attention: contiguous heads, logits / sqrt(head dim), masks as DeepMind."""
    q = dense(q_in, layer.query_dense)
    k = dense(kv_in, layer.key_dense)
    v = dense(kv_in, layer.value_dense)
    h = layer.num_heads

    def split(x):
        return x.reshape(x.shape[0], x.shape[1], h, -1).transpose(0, 2, 1, 3)

    q, k, v = split(q), split(k), split(v)
    logits = q @ k.transpose(0, 1, 3, 2) / np.sqrt(q.shape[-1])
    if mask is not None:
        logits = np.where(mask[:, None], logits, -1e30)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    out = (probs @ v).transpose(0, 2, 1, 3).reshape(q_in.shape[0], q_in.shape[1], -1)
    if mask is not None:
        out = np.where(mask.any(-1, keepdims=True), out, 0.0)
    return dense(out, layer.output_dense)


def mlp(x, layer, approximate=True):
    return dense(gelu(dense(x, layer.dense1), approximate), layer.dense2)


def cross_attention(block, q, kv, mask=None, epsilon=1e-5):
    """`x = [q +] Attn(LN(q), LN(kv)); x + MLP(LN(x))`."""
    approximate = block.activation == "gelu_tanh"
    attended = attention(block.attention, layer_norm(q, block.query_layer_norm, epsilon),
                         layer_norm(kv, block.key_value_layer_norm, epsilon), mask)
    x = q + attended if block.use_query_residual else attended
    return x + mlp(layer_norm(x, block.mlp_layer_norm, epsilon), block.mlp, approximate)


def self_attention(block, x, mask=None, epsilon=1e-5):
    approximate = block.activation == "gelu_tanh"
    normed = layer_norm(x, block.layer_norm, epsilon)
    x = x + attention(block.attention, normed, normed, mask)
    return x + mlp(layer_norm(x, block.mlp_layer_norm, epsilon), block.mlp, approximate)


def fourier_features(index_dims, num_bands, max_resolution=None, indices=None, concat_pos=True):
    """`[pos, sin(pi f), cos(pi f)]`, f dimension-major; positions on the full
    grid are `linspace(-1, 1, n)`, subsampled ones `-1 + 2 * i / n`."""
    max_resolution = max_resolution or index_dims
    if indices is None:
        axes = [np.linspace(-1.0, 1.0, n) for n in index_dims]
        pos = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(index_dims))
    else:
        idx = np.stack(np.unravel_index(np.asarray(indices), index_dims), -1)
        pos = -1.0 + 2.0 * idx / np.asarray(index_dims, "float64")
    freqs = [np.linspace(1.0, r / 2, num_bands) for r in max_resolution]
    f = np.concatenate([pos[:, d : d + 1] * freqs[d][None] for d in range(len(index_dims))], -1)
    parts = ([pos] if concat_pos else []) + [np.sin(np.pi * f), np.cos(np.pi * f)]
    return np.concatenate(parts, -1)
