import json
import os

import keras
import numpy as np
import pytest
from keras import ops

from keras_perceiver.models import PerceiverImageClassifier
from keras_perceiver.models import PerceiverTask

TINY = dict(num_latents=8, num_latent_channels=16, num_blocks=2, num_self_attends_per_block=1,
            num_self_attention_heads=2)
COUNTS = {  # trainable, non-trainable (docs/architecture.md section 4)
    "vision_perceiver_learned": (62_255_848, 0),
    "vision_perceiver_fourier": (48_440_627, 0),
    "vision_perceiver_conv": (48_646_522, 128),
}


def count(weights):
    return sum(int(np.prod(v.shape)) for v in weights)


def assert_same_weights(a, b):
    assert [v.path for v in a.weights] == [v.path for v in b.weights]
    for x, y in zip(a.weights, b.weights):
        np.testing.assert_array_equal(ops.convert_to_numpy(x), ops.convert_to_numpy(y))


@pytest.mark.parametrize("prep_type,tokens,channels", [
    ("fourier", 16 * 16, 3 + 2 + 2 * 2 * 64),
    ("conv", 4 * 4, 64 + 258),
    ("learned", 16 * 16, 256 + 256),
])
def test_small_models_build_and_run(prep_type, tokens, channels, rng):
    model = PerceiverImageClassifier(num_classes=5, image_shape=(16, 16, 3),
                                     prep_type=prep_type, **TINY)
    assert model.num_tokens == tokens
    assert model.encoder.cross_attention.key_value_layer_norm.gamma.shape == (channels,)
    logits = model(rng.normal(size=(2, 16, 16, 3)).astype("float32"))
    assert tuple(logits.shape) == (2, 5)
    assert model.decoder.decoding_cross_attention.attention.query_dense.kernel.shape[0] == 16


def test_presets_listed_with_descriptions():
    assert set(PerceiverImageClassifier.presets) == set(COUNTS)
    assert all("ImageNet" in d for d in PerceiverImageClassifier.presets.values())
    learned = PerceiverImageClassifier.preset_config("vision_perceiver_learned")
    assert learned["decoder_use_query_residual"] is False  # DeepMind's learned model
    assert PerceiverImageClassifier.preset_config("vision_perceiver_conv")["max_resolution"] == (56, 56)


def test_fourier_on_8x8_rgb_runs(rng):
    model = PerceiverImageClassifier(num_classes=10, image_shape=(8, 8, 3), **TINY)
    assert model.num_tokens == 64
    assert model.encoder.cross_attention.key_value_layer_norm.gamma.shape == (3 + 2 + 256,)
    logits = ops.convert_to_numpy(model(rng.normal(size=(2, 8, 8, 3)).astype("float32")))
    assert logits.shape == (2, 10) and np.isfinite(logits).all()


def test_fourier_on_8x8_digits_trains(rng):
    """The small-image use (8x8 digits): builds, fits, and the loss goes down."""
    keras.utils.set_random_seed(1)
    channels = 1
    model = PerceiverImageClassifier(num_classes=4, image_shape=(8, 8, channels),
                                     num_bands=4, **TINY)
    assert model.num_tokens == 64
    labels = rng.integers(0, 4, size=64)
    # Class-dependent images: a bright quadrant per class.
    images = rng.normal(scale=0.3, size=(64, 8, 8, channels)).astype("float32")
    for i, c in enumerate(labels):
        images[i, (c // 2) * 4:(c // 2) * 4 + 4, (c % 2) * 4:(c % 2) * 4 + 4] += 2.0
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    before = float(ops.convert_to_numpy(ops.mean(model.loss(labels, model(images)))))
    history = model.fit(images, labels, batch_size=16, epochs=15, verbose=0)
    assert history.history["loss"][-1] < 0.5 * before
    assert history.history["accuracy"][-1] > 0.9


def test_stem_padding_option_changes_token_grid():
    deepmind = PerceiverImageClassifier(num_classes=3, image_shape=(32, 32, 3), prep_type="conv",
                                        **TINY)
    ported = PerceiverImageClassifier(num_classes=3, image_shape=(32, 32, 3), prep_type="conv",
                                      stem_padding="transformers", **TINY)
    assert (deepmind.num_tokens, ported.num_tokens) == (64, 49)
    assert count(deepmind.weights) == count(ported.weights)


def test_with_image_shape_keeps_weights(rng):
    model = PerceiverImageClassifier(num_classes=3, image_shape=(16, 16, 3), prep_type="conv",
                                     max_resolution=(56, 56), **TINY)
    bigger = model.with_image_shape((32, 24, 3))
    assert bigger.num_tokens == 8 * 6 and bigger.image_shape == (32, 24, 3)
    assert_same_weights(model, bigger)
    learned = PerceiverImageClassifier(num_classes=3, image_shape=(8, 8, 3), prep_type="learned",
                                       **TINY)
    assert learned.with_image_shape((8, 8, 3)).num_tokens == 64
    with pytest.raises(ValueError, match="learned position encoding"):
        learned.with_image_shape((16, 16, 3))


def test_config_round_trip_and_preset_dir(rng, tmp_path):
    model = PerceiverImageClassifier(num_classes=5, image_shape=(16, 16, 3), prep_type="conv",
                                     activation="gelu", **TINY)
    images = rng.normal(size=(2, 16, 16, 3)).astype("float32")
    model(images, training=True)  # moves the BatchNorm statistics off their init
    config = model.get_config()
    assert set(config) - {"name"} <= set(
        PerceiverImageClassifier.__init__.__code__.co_varnames)
    json.dumps(config)  # serialisable as is
    clone = PerceiverImageClassifier.from_config(config)
    assert clone.get_config() == config
    model.save_to_preset(tmp_path / "preset")
    assert os.path.exists(tmp_path / "preset" / "config.json")
    for cls in (PerceiverImageClassifier, PerceiverTask):
        restored = cls.from_preset(str(tmp_path / "preset"))
        assert isinstance(restored, PerceiverImageClassifier)
        assert restored.get_config() == config
        assert_same_weights(model, restored)
        np.testing.assert_array_equal(ops.convert_to_numpy(restored(images)),
                                      ops.convert_to_numpy(model(images)))


def test_invalid_arguments_and_inputs_raise():
    with pytest.raises(ValueError, match="PerceiverImageClassifier: prep_type"):
        PerceiverImageClassifier(prep_type="pixels")
    with pytest.raises(ValueError, match="PerceiverImageClassifier: stem_padding"):
        PerceiverImageClassifier(stem_padding="same")
    with pytest.raises(ValueError, match="PerceiverImageClassifier: activation"):
        PerceiverImageClassifier(activation="relu")
    with pytest.raises(ValueError, match="image_shape"):
        PerceiverImageClassifier(image_shape=(8, 8))
    model = PerceiverImageClassifier(num_classes=3, image_shape=(8, 8, 1), num_bands=2, **TINY)
    with pytest.raises(ValueError, match=r"8, 8, 1"):
        model(np.zeros((1, 8, 8, 3), "float32"))
    with pytest.raises(ValueError, match="unknown preset"):
        PerceiverImageClassifier.from_preset("vision_perceiver_resnet")


@pytest.mark.large
@pytest.mark.parametrize("preset", sorted(COUNTS))
def test_full_preset(preset, rng, tmp_path):
    model = PerceiverImageClassifier.from_preset(preset, load_weights=False)
    assert (count(model.trainable_weights), count(model.non_trainable_weights)) == COUNTS[preset]
    expected_tokens = 3136 if preset == "vision_perceiver_conv" else 224 * 224
    assert model.num_tokens == expected_tokens
    image = rng.normal(size=(1, 224, 224, 3)).astype("float32")
    logits = ops.convert_to_numpy(model(image))
    assert logits.shape == (1, 1000) and np.isfinite(logits).all()
    model.save_to_preset(tmp_path / preset)
    restored = PerceiverImageClassifier.from_preset(str(tmp_path / preset))
    assert restored.get_config() == model.get_config()
    assert_same_weights(model, restored)  # equal weights: no second full forward
