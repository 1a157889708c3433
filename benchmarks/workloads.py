"""Benchmark workloads: the same configuration for transformers and for us.

Each workload names a transformers class, its `PerceiverConfig` arguments
(full = the released model; quick = a tiny model of the same structure) and
how to make one batch of inputs for each framework.
"""

import numpy as np

FULL = {
    "mlm": dict(
        cls="PerceiverForMaskedLM",
        config=dict(vocab_size=262, max_position_embeddings=2048, d_model=768,
                    num_latents=256, d_latents=1280, num_blocks=1,
                    num_self_attends_per_block=26, num_self_attention_heads=8,
                    num_cross_attention_heads=8, qk_channels=256, v_channels=1280),
        desc="MLM, 2048 bytes",
    ),
    "image_learned": dict(
        cls="PerceiverForImageClassificationLearned",
        config=dict(image_size=224, num_labels=1000, num_latents=512, d_latents=1024,
                    d_model=512, num_blocks=8, num_self_attends_per_block=6,
                    num_self_attention_heads=8, num_cross_attention_heads=1),
        desc="ImageNet learned, 224²",
    ),
    "image_fourier": dict(
        cls="PerceiverForImageClassificationFourier",
        config=dict(image_size=224, num_labels=1000, num_latents=512, d_latents=1024,
                    d_model=261, num_blocks=8, num_self_attends_per_block=6,
                    num_self_attention_heads=8, num_cross_attention_heads=1),
        desc="ImageNet Fourier, 224²",
    ),
    "image_conv": dict(
        cls="PerceiverForImageClassificationConvProcessing",
        config=dict(image_size=224, num_labels=1000, num_latents=512, d_latents=1024,
                    d_model=322, num_blocks=8, num_self_attends_per_block=6,
                    num_self_attention_heads=8, num_cross_attention_heads=1),
        desc="ImageNet conv, 224²",
    ),
    "flow": dict(
        cls="PerceiverForOpticalFlow",
        config=dict(num_latents=2048, d_latents=512, d_model=322, num_blocks=1,
                    num_self_attends_per_block=24, num_self_attention_heads=16,
                    num_cross_attention_heads=1, train_size=[368, 496]),
        desc="optical flow, 368×496",
    ),
    # One of DeepMind's colab's 128 decode chunks (the last): 6272 pixels and
    # 15 audio patches of the 16x224x224 video and 30720 audio samples.
    "multimodal": dict(
        cls="PerceiverForMultimodalAutoencoding",
        config=dict(num_latents=784, d_latents=512, d_model=704, num_blocks=1,
                    num_self_attends_per_block=8, num_self_attention_heads=8,
                    num_cross_attention_heads=1, num_frames=16, audio_samples_per_frame=1920,
                    samples_per_patch=16, image_size=224, output_shape=[1, 16, 224, 224],
                    output_num_channels=512, num_labels=700),
        desc="multimodal, one decode chunk",
        chunks=128,
    ),
}

QUICK_SMALL = dict(num_latents=16, d_latents=64, num_blocks=1, num_self_attends_per_block=2,
                   num_self_attention_heads=2)
QUICK = {
    "mlm": dict(max_position_embeddings=256, d_model=64, num_cross_attention_heads=2,
                qk_channels=32, v_channels=64, **QUICK_SMALL),
    "image_learned": dict(image_size=32, num_labels=10, **QUICK_SMALL),
    "image_fourier": dict(image_size=32, num_labels=10, **QUICK_SMALL),
    "image_conv": dict(image_size=32, num_labels=10, **QUICK_SMALL),
    "flow": dict(train_size=[24, 32], **QUICK_SMALL),
    "multimodal": dict(num_latents=8, d_latents=16, d_model=768, num_blocks=1,
                       num_self_attends_per_block=2, num_self_attention_heads=2,
                       num_frames=2, audio_samples_per_frame=16, samples_per_patch=4,
                       image_size=8, output_shape=[1, 2, 8, 8], output_num_channels=12,
                       num_labels=5),
}


def workload(name, quick):
    spec = dict(FULL[name])
    spec["config"] = dict(spec["config"], **(QUICK[name] if quick else {}))
    if quick:
        spec["desc"] += " (tiny quick model)"
        if "chunks" in spec:
            spec["chunks"] = 4
    return spec


def inputs(name, config, batch, framework, seed=0):
    """One batch for `framework` ("keras" or "transformers")."""
    rng = np.random.default_rng(seed)
    if name == "mlm":
        ids = rng.integers(6, 262, size=(batch, config["max_position_embeddings"])).astype("int32")
        return ids if framework == "keras" else {"inputs": ids.astype("int64")}
    if name.startswith("image"):
        size = config["image_size"]
        images = rng.normal(size=(batch, size, size, 3)).astype("float32")
        return images if framework == "keras" else {"inputs": images.transpose(0, 3, 1, 2)}
    if name == "multimodal":
        return multimodal_inputs(config, batch, framework, rng)
    h, w = config["train_size"]
    frames = rng.uniform(-1, 1, size=(batch, 2, h, w, 3)).astype("float32")
    if framework == "keras":
        return frames
    return {"inputs": flow_patches(frames)}


def multimodal_points(config, chunks):
    """The last of `chunks` decode chunks: flat image and audio-patch indices."""
    frames, size = config["num_frames"], config["image_size"]
    pixels = frames * size * size
    patches = frames * config["audio_samples_per_frame"] // config["samples_per_patch"]
    image, audio = pixels // chunks, patches // chunks
    return {"image": np.arange(pixels - image, pixels, dtype="int32"),
            "audio": np.arange(patches - audio, patches, dtype="int32")}


def multimodal_inputs(config, batch, framework, rng):
    frames, size = config["num_frames"], config["image_size"]
    video = rng.normal(size=(batch, frames, size, size, 3)).astype("float32")
    audio = rng.normal(size=(batch, frames * config["audio_samples_per_frame"], 1)).astype("float32")
    label = np.zeros((batch, config["num_labels"]), "float32")
    if framework == "keras":
        return {"image": video, "audio": audio, "label": label}
    return {"inputs": {"image": video.transpose(0, 1, 4, 2, 3), "audio": audio, "label": label}}


def flow_patches(frames):
    """transformers' flow input: 3x3 patches of SAME-padded NCHW frames, [B, 2, 27, H, W]."""
    b, t, h, w, c = frames.shape
    padded = np.pad(frames, ((0, 0), (0, 0), (1, 1), (1, 1), (0, 0)))
    patches = [padded[:, :, i:i + h, j:j + w, :] for i in range(3) for j in range(3)]
    out = np.stack(patches, axis=2)  # B, T, 9(kh,kw), H, W, C
    out = out.transpose(0, 1, 2, 5, 3, 4)  # B, T, 9, C, H, W
    return np.ascontiguousarray(out.reshape(b, t, 9 * c, h, w)).astype("float32")


def train_labels(name, config, batch, seed=1):
    rng = np.random.default_rng(seed)
    if name == "mlm":
        return rng.integers(6, 262, size=(batch, config["max_position_embeddings"])).astype("int32")
    return rng.integers(0, config["num_labels"], size=(batch,)).astype("int32")
