"""Serving signature of `PerceiverMultimodalAutoencoder`: chunked decoding in the graph."""

import tensorflow as tf

from keras_perceiver.export import preprocessing
from keras_perceiver.export.preprocessing import check_input
from keras_perceiver.export.signatures import Signature


def _chunk_indices(count, num_chunks):
    """int32 `[num_chunks, ceil(count / num_chunks)]`, the tail padded by repeats."""
    size = -(-count // num_chunks)
    flat = tf.minimum(tf.range(num_chunks * size, dtype=tf.int32), count - 1)
    return tf.reshape(flat, (num_chunks, size)), size


def _multimodal_graph_pieces(model):
    """Graph-safe `encode(inputs)` and `decode(latents, audio_points, image_points)`.

    Uses the model module's shared graph functions (the public `encode` /
    `decode` helpers convert the points to NumPy, which a `tf.while_loop`
    cannot do).
    """
    from keras_perceiver.models import multimodal

    if hasattr(multimodal, "_encode") and hasattr(multimodal, "_decode"):
        return (
            lambda inputs: multimodal._encode(model, inputs, training=False),
            lambda lat, a, i: multimodal._decode(model, lat, a, i, training=False),
        )
    return (
        lambda inputs: model._encode(inputs, training=False),
        lambda lat, a, i: model._decode(lat, a, i, training=False),
    )


def multimodal_signatures(model, num_chunks=None, **_):
    """`serving_default`: `image`, `audio`, `label` -> their reconstructions.

    The inputs are encoded once; the decoder then runs over `num_chunks`
    chunks of the query points in a `tf.while_loop` (DeepMind's colab
    decodes 128 chunks), so the server's memory is bounded by one chunk.
    """
    config = model.get_config()
    video_shape = tuple(int(d) for d in model.video_shape)
    audio_samples, num_classes = config["audio_samples"], config["num_classes"]
    num_pixels = video_shape[0] * video_shape[1] * video_shape[2]
    num_audio = int(model.num_audio_patches)
    if num_chunks is None:
        num_chunks = min(128, num_pixels, num_audio)
    if not 1 <= num_chunks <= min(num_pixels, num_audio):
        raise ValueError(
            f"multimodal export: num_chunks must be in [1, {min(num_pixels, num_audio)}], "
            f"got {num_chunks}."
        )
    shapes = {
        "image": (None,) + video_shape,
        "audio": (None, audio_samples, 1),
        "label": (None, num_classes),
    }

    def reconstruct(image, audio, label):
        inputs = {
            name: check_input(x, name, shapes[name], " (float32)")
            for name, x in (("image", image), ("audio", audio), ("label", label))
        }
        encode, decode = _multimodal_graph_pieces(model)
        latents = encode(inputs)
        image_points, image_size = _chunk_indices(num_pixels, num_chunks)
        audio_points, audio_size = _chunk_indices(num_audio, num_chunks)
        image_parts = tf.TensorArray(tf.float32, size=num_chunks)
        audio_parts = tf.TensorArray(tf.float32, size=num_chunks)

        def body(i, image_parts, audio_parts, _):
            out = decode(latents, audio_points[i], image_points[i])
            return (
                i + 1,
                image_parts.write(i, tf.transpose(out["image"], (1, 0, 2))),
                audio_parts.write(i, tf.transpose(out["audio"], (1, 0, 2))),
                out["label"],
            )

        batch = tf.shape(latents)[0]
        _, image_parts, audio_parts, label_out = tf.while_loop(
            lambda i, *_: i < num_chunks,
            body,
            (tf.constant(0), image_parts, audio_parts, tf.zeros((batch, num_classes))),
        )
        image_out = tf.transpose(image_parts.concat(), (1, 0, 2))[:, :num_pixels]
        audio_out = tf.transpose(audio_parts.concat(), (1, 0, 2))
        audio_out = audio_out[:, : num_audio * config["samples_per_patch"]]
        return {
            "image": tf.reshape(image_out, (-1,) + video_shape),
            "audio": audio_out,
            "label": label_out,
        }

    return {
        "serving_default": Signature(
            reconstruct,
            [(name, tf.float32, shapes[name]) for name in ("image", "audio", "label")],
            f"image float32 {preprocessing.describe(shapes['image'])} in [0, 1], audio "
            f"float32 {preprocessing.describe(shapes['audio'])} in [-1, 1], label float32 "
            f"{preprocessing.describe(shapes['label'])} one-hot -> image, audio, label "
            f"reconstructions (decoded in {num_chunks} chunks)",
        ),
    }
