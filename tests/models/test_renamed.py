"""`d_latents` -> `num_latent_channels`: the old keyword warns, old configs load."""

import json
import zipfile

import keras
import numpy as np
import pytest
from keras import ops

from keras_perceiver.models import PerceiverImageClassifier
from keras_perceiver.models import PerceiverMaskedLM
from keras_perceiver.models import PerceiverTask
from keras_perceiver.models import PerceiverTextClassifier

TEXT = dict(max_length=12, d_model=8, num_latents=4, num_self_attends_per_block=1,
            num_self_attention_heads=2, num_cross_attention_heads=2, qk_channels=8,
            v_channels=16)
CASES = {
    "image": (PerceiverImageClassifier, dict(
        num_classes=3, image_shape=(6, 6, 1), num_bands=2, num_latents=4, num_blocks=1,
        num_self_attends_per_block=1, num_self_attention_heads=2)),
    "mlm": (PerceiverMaskedLM, dict(TEXT, decoder_num_heads=2, decoder_qk_channels=8)),
    "text": (PerceiverTextClassifier, dict(TEXT, tasks={"a": 2})),
}


def _inputs(cls):
    if cls is PerceiverImageClassifier:
        return np.random.default_rng(0).normal(size=(2, 6, 6, 1)).astype("float32")
    return np.random.default_rng(0).integers(1, 262, size=(2, 12)).astype("int32")


def _outputs(model, x):
    y = model(x)
    y = y if isinstance(y, dict) else {"y": y}
    return {k: ops.convert_to_numpy(v) for k, v in y.items()}


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


@pytest.mark.parametrize("case", sorted(CASES))
def test_old_keyword_warns_and_maps_to_num_latent_channels(case):
    cls, args = CASES[case]
    with pytest.warns(DeprecationWarning, match="`d_latents` is deprecated.*num_latent_channels"):
        old = cls(d_latents=16, **args)
    assert old.get_config()["num_latent_channels"] == 16
    assert "d_latents" not in old.get_config()
    assert old.encoder.num_latent_channels == 16
    new = cls(num_latent_channels=16, **args)
    new.set_weights(old.get_weights())
    x = _inputs(cls)
    _assert_same(_outputs(old, x), _outputs(new, x))
    # The same value under both names is accepted; different values are not.
    with pytest.warns(DeprecationWarning):
        cls(d_latents=16, num_latent_channels=16, **args)
    with pytest.raises(ValueError, match="both `num_latent_channels=8` and the deprecated `d_latents=16`"):
        cls(d_latents=16, num_latent_channels=8, **args)


def _old_config(model):
    config = model.get_config()
    config["d_latents"] = config.pop("num_latent_channels")
    return config


@pytest.mark.parametrize("case", sorted(CASES))
def test_configs_saved_with_d_latents_still_load(case, tmp_path):
    cls, args = CASES[case]
    model = cls(num_latent_channels=16, **args)
    x = _inputs(cls)
    expected = _outputs(model, x)

    rebuilt = cls.from_config(_old_config(model))
    assert rebuilt.get_config() == model.get_config()

    # A preset directory written before the rename.
    preset = tmp_path / "preset"
    model.save_to_preset(preset)
    with open(preset / "config.json") as f:
        saved = json.load(f)
    saved["config"] = _old_config(model)
    with open(preset / "config.json", "w") as f:
        json.dump(saved, f)
    for loader in (cls, PerceiverTask):
        loaded = loader.from_preset(str(preset))
        assert loaded.get_config()["num_latent_channels"] == 16
        _assert_same(_outputs(loaded, x), expected)

    # A `.keras` file written before the rename.
    path = str(tmp_path / "model.keras")
    model.save(path)
    old_path = str(tmp_path / "old.keras")
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(old_path, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "config.json":
                config = json.loads(data)
                config["config"]["d_latents"] = config["config"].pop("num_latent_channels")
                data = json.dumps(config).encode()
            dst.writestr(item, data)
    assert "d_latents" in zipfile.ZipFile(old_path).read("config.json").decode()
    loaded = keras.saving.load_model(old_path)
    assert type(loaded) is cls and loaded.get_config()["num_latent_channels"] == 16
    _assert_same(_outputs(loaded, x), expected)
