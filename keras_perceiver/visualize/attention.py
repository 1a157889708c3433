"""Where a Perceiver looks: cross-attention weights over the input image.

`cross_attention_weights` recomputes a `CrossAttention` block's attention
probabilities (`keras.ops`, any backend). `image_attention` gives, for a
`PerceiverImageClassifier`, the encoder's latent-to-pixel attention maps and
the decoder's class-query attention over the latents; `plot_image_attention`
draws, per image, the maps of the latents the class query attends to most
and their weighted sum (the class query's view of the image through the
latents' cross-attention).
"""

import math

import numpy as np
from keras import ops


def cross_attention_weights(block, queries, inputs):
    """Softmax attention of `block` (a `keras_perceiver.layers.CrossAttention`)
    for `queries [B, T, Cq]` over `inputs [B, S, Ckv]`: `[B, heads, T, S]`
    (no mask, no dropout: inference)."""
    attention = block.attention
    q = attention.query_dense(block.query_layer_norm(queries))
    k = attention.key_dense(block.key_value_layer_norm(inputs))
    heads = attention.num_heads
    depth = q.shape[-1] // heads

    def split(x):
        x = ops.reshape(x, (ops.shape(x)[0], ops.shape(x)[1], heads, depth))
        return ops.transpose(x, (0, 2, 1, 3))

    logits = ops.matmul(split(q), ops.transpose(split(k), (0, 1, 3, 2)))
    return ops.softmax(ops.cast(logits, "float32") / math.sqrt(depth), axis=-1)


def _grid(model, num_tokens):
    h, w = model.image_shape[:2]
    for gh, gw in ((h, w), (math.ceil(h / 4), math.ceil(w / 4)), (h // 4, w // 4),
                   (h // 4 - 1, w // 4 - 1)):
        if gh * gw == num_tokens:
            return gh, gw
    raise ValueError(f"image_attention: cannot lay {num_tokens} tokens on a grid for "
                     f"images of {(h, w)}.")


def image_attention(model, images):
    """`(maps [B, N, h, w], class_weights [B, N])` for a `PerceiverImageClassifier`:
    each latent's encoder cross-attention over the token grid (mean over
    heads) and the decoder class query's attention over the latents.

    Example:
    >>> import numpy as np
    >>> model = keras_perceiver.models.PerceiverImageClassifier(
    ...     num_classes=3, image_shape=(4, 4, 1), num_bands=2, num_latents=5,
    ...     d_latents=8, num_blocks=1, num_self_attends_per_block=1,
    ...     num_self_attention_heads=2)
    >>> maps, weights = keras_perceiver.visualize.attention.image_attention(
    ...     model, np.zeros((2, 4, 4, 1), "float32"))
    >>> maps.shape, weights.shape, bool(np.allclose(maps.sum((2, 3)), 1, atol=1e-5))
    ((2, 5, 4, 4), (2, 5), True)
    """
    images = ops.convert_to_tensor(np.asarray(images, "float32"))
    tokens = model.input_adapter(images)
    encoder = model.encoder
    latents = encoder.latents(tokens)
    encoder_weights = cross_attention_weights(encoder.cross_attention, latents, tokens)
    z = encoder(tokens)
    decoder = model.decoder
    query = decoder.decoder_query(z)
    class_weights = cross_attention_weights(decoder.decoding_cross_attention, query, z)
    maps = ops.convert_to_numpy(ops.mean(encoder_weights, axis=1))  # [B, N, M]
    weights = ops.convert_to_numpy(ops.mean(class_weights, axis=1))[:, 0]  # [B, N]
    gh, gw = _grid(model, maps.shape[-1])
    return maps.reshape(maps.shape[:2] + (gh, gw)), weights


def plot_image_attention(images, maps, class_weights, num_latents=4, titles=None):
    """One row per image: the image, the `num_latents` latents the class query
    attends to most (title: their decoder weight), and the weighted sum of all
    latents' maps. `images` `[B, H, W, C]` (any range; shown rescaled).

    Example:
    >>> import numpy as np
    >>> fig = keras_perceiver.visualize.plot_image_attention(
    ...     np.zeros((1, 4, 4, 1)), np.full((1, 3, 4, 4), 1 / 16), np.ones((1, 3)) / 3,
    ...     num_latents=2)
    >>> len(fig.axes)
    4
    """
    from keras_perceiver.visualize.curves import figure

    images, maps, class_weights = (np.asarray(a, "float32") for a in (images, maps, class_weights))
    if images.ndim != 4 or maps.ndim != 4 or class_weights.shape != maps.shape[:2]:
        raise ValueError(
            "plot_image_attention: expected images [B, H, W, C], maps [B, N, h, w] and "
            f"class_weights [B, N]; received {images.shape}, {maps.shape}, {class_weights.shape}.")
    k = min(num_latents, maps.shape[1])
    fig, axes = figure(len(images), k + 2, width=2.2, height=2.4)
    for row, (image, m, w) in enumerate(zip(images, maps, class_weights)):
        shown = image[..., 0] if image.shape[-1] == 1 else image
        span = shown.max() - shown.min()
        axes[row, 0].imshow((shown - shown.min()) / (span if span else 1.0),
                            cmap="gray" if shown.ndim == 2 else None)
        axes[row, 0].set_title(titles[row] if titles else "input", fontsize=8)
        top = np.argsort(-w)[:k]
        for col, n in enumerate(top, start=1):
            axes[row, col].imshow(m[n], cmap="magma")
            axes[row, col].set_title(f"latent {n}: {w[n]:.2f}", fontsize=8)
        axes[row, k + 1].imshow(np.tensordot(w, m, axes=1), cmap="magma")
        axes[row, k + 1].set_title("class query", fontsize=8)
        for ax in axes[row]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    return fig
