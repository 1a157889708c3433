"""Serving image preprocessing against independent references on real photos.

References: `transformers`' Perceiver image processor (central crop of
`int(224 / 256 * min(h, w))` with the offset rounded down, PIL bicubic resize,
ImageNet mean/std in RGB order) and NumPy formulas for the exact cases (a crop
already at the model's size, or no resize at all).
"""

import numpy as np
import pytest

import keras_perceiver.export as export
from keras_perceiver.export import preprocessing

# Differences to PIL's bicubic kernel and its uint8 rounding, in normalised
# units (x / std, std ~ 57 grey levels). Measured on the cases below: at most
# 0.144 (max) and 0.0054 (mean). The planted bugs of issue 16 give at least
# 0.29 (bilinear resize), 0.37 (BGR mean/std) and 1.8 (crop offset rounded up)
# on the cases they affect.
MAX_TOLERANCE = 0.2
MEAN_TOLERANCE = 0.01

RGB_MEAN = np.array([0.485, 0.456, 0.406]) * 255
RGB_STD = np.array([0.229, 0.224, 0.225]) * 255


def _photos():
    from sklearn.datasets import load_sample_images

    import PIL.Image

    china, flower = load_sample_images().images  # 427 x 640 RGB
    return {
        "china 427x640": china,
        "flower 427x640": flower,
        "china 640x427": np.ascontiguousarray(china.transpose(1, 0, 2)),
        "china cut 10x16": china[300:310, 100:116],
        "flower cut 10x16": flower[200:210, 300:316],
        "flower cut 13x20": flower[200:213, 300:320],
        "flower resized 300x199": np.asarray(
            PIL.Image.fromarray(flower).resize((199, 300), PIL.Image.BICUBIC)),
        "china cut 224x224": china[:224, :224],
        "flower cut 255x301": flower[:255, :301],
    }


@pytest.fixture(scope="module")
def photos():
    return _photos()


@pytest.fixture(scope="module")
def transformers_processor():
    try:  # transformers >= 5: the PIL backend under its own name
        from transformers import PerceiverImageProcessorPil as Processor
    except ImportError:
        from transformers import PerceiverImageProcessor as Processor
    return Processor()


def test_imagenet_constants_are_rgb():
    np.testing.assert_allclose(preprocessing.IMAGENET_MEAN, RGB_MEAN, rtol=1e-12)
    np.testing.assert_allclose(preprocessing.IMAGENET_STD, RGB_STD, rtol=1e-12)
    defaults = preprocessing.IMAGE_PREPROCESSING_DEFAULTS
    assert defaults["method"] == "bicubic" and defaults["crop_fraction"] == 224 / 256


def test_default_preprocessing_matches_transformers_on_photos(photos, transformers_processor):
    worst = []
    for name, image in photos.items():
        expected = transformers_processor.preprocess(image, return_tensors="np")["pixel_values"]
        expected = expected[0].transpose(1, 2, 0)  # CHW -> HWC
        got = export.preprocess_images(np.ascontiguousarray(image)[None], (224, 224, 3))
        diff = np.abs(got.numpy()[0] - expected)
        worst.append((name, diff.max(), diff.mean()))
        assert diff.max() <= MAX_TOLERANCE and diff.mean() <= MEAN_TOLERANCE, (name, diff.max(),
                                                                               diff.mean())
    print("in-graph vs transformers (max, mean):", [(n, round(float(a), 4), round(float(m), 4))
                                                     for n, a, m in worst])


def _numpy_crop(image, fraction):
    """The documented crop: side `floor(fraction * min(h, w))`, offsets rounded down."""
    h, w = image.shape[-3:-1]
    side = int(fraction * min(h, w))
    top, left = (h - side) // 2, (w - side) // 2
    return image[..., top : top + side, left : left + side, :]


@pytest.mark.parametrize("shape", [(10, 16), (11, 13), (13, 10), (10, 10)])
def test_exact_crop_and_per_channel_normalisation(photos, shape):
    """A crop already at the model's size needs no resize: exact NumPy reference."""
    h, w = shape
    image = np.stack([photos["china 427x640"][200 : 200 + h, 300 : 300 + w],
                      photos["flower 427x640"][100 : 100 + h, 50 : 50 + w]])
    mean, std = (90.0, 120.0, 150.0), (30.0, 60.0, 90.0)
    got = export.preprocess_images(image, (8, 8, 3), {"crop_fraction": 0.8, "mean": mean,
                                                      "std": std}).numpy()
    crop = _numpy_crop(image.astype("float64"), 0.8)
    assert crop.shape[1:3] == (8, 8)
    np.testing.assert_allclose(got, (crop - np.array(mean)) / np.array(std), atol=1e-6)


def test_resize_mode_without_resize_is_exact(photos):
    image = photos["china 427x640"][None, 100:108, 200:208]
    got = export.preprocess_images(image, (8, 8, 3), {"mode": "resize"}).numpy()
    np.testing.assert_allclose(got, (image - RGB_MEAN) / RGB_STD, atol=1e-5)


def test_unknown_option_is_rejected():
    with pytest.raises(ValueError, match="unknown option"):
        export.preprocess_images(np.zeros((1, 8, 8, 3), "uint8"), (8, 8, 3), {"size": 3})
