"""Released weights by name: download once, convert, cache; offline errors; hub ids."""

import functools
import hashlib
import http.server
import os
import pickle
import threading

import keras
import numpy as np
import pytest

from keras_perceiver import convert
from keras_perceiver.models import PerceiverMaskedLM
from keras_perceiver.models import PerceiverTask
from keras_perceiver.models import PerceiverTextClassifier
from keras_perceiver.models import presets
from tests.convert.test_language import OVERRIDES
from tests.convert.test_language import haiku_params


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        self.server.requests.append(self.path)
        if self.path.startswith("/short/"):  # announces more bytes than it sends
            data = open(os.path.join(self.directory, self.path.split("/")[-1]), "rb").read()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            return
        super().do_GET()


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Handler, directory=str(root)))
    httpd.requests = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}", httpd.requests
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    home = tmp_path / "keras_home"
    monkeypatch.setenv("KERAS_HOME", str(home))
    return home


def register(monkeypatch, url, data, sha256=True):
    entry = dict(presets.RELEASED["language_perceiver"], url=url, overrides=OVERRIDES,
                 sha256=hashlib.sha256(data).hexdigest() if sha256 else None)
    monkeypatch.setitem(presets.RELEASED, "language_perceiver", entry)


def leftovers(home):
    found = []
    for directory, _, names in os.walk(home):
        found += [os.path.join(directory, n) for n in names]
    return found


def test_download_convert_cache_then_offline(server, keras_home, monkeypatch):
    root, base, requests = server
    data = pickle.dumps(haiku_params())
    (root / "mlm.pickle").write_bytes(data)
    register(monkeypatch, f"{base}/mlm.pickle", data)
    model = PerceiverMaskedLM.from_preset("language_perceiver")
    assert requests == ["/mlm.pickle"]
    (root / "mlm.pickle").write_bytes(b"")  # the server could vanish: no more requests
    params = haiku_params()
    embeddings = params["embed"]["embeddings"]
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(model.input_adapter.token_embedding.embeddings), embeddings)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model.head.bias),
                                  params["embedding_decoder"]["bias"])
    ids = np.arange(2 * 16).reshape(2, 16).astype("int32") % 262
    expected = keras.ops.convert_to_numpy(model(ids))
    again = PerceiverTask.from_preset("language_perceiver")
    assert type(again) is PerceiverMaskedLM and requests == ["/mlm.pickle"]
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(again(ids)), expected)
    classifier = PerceiverTextClassifier.from_preset("language_perceiver", tasks={"sst2": 2})
    for a, b in zip(model.encoder.weights, classifier.encoder.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    assert requests == ["/mlm.pickle"]
    cached = presets.cached_preset_dir("language_perceiver")
    assert sorted(os.listdir(cached)) == ["config.json", "model.weights.h5"]
    assert cached.startswith(str(keras_home))
    # Only the converted preset stays: no raw download, nothing left aside.
    assert sorted(leftovers(keras_home)) == [os.path.join(cached, "config.json"),
                                             os.path.join(cached, "model.weights.h5")]


@pytest.mark.parametrize("damage", ["sha256", "short_transfer", "not_a_checkpoint"])
def test_damaged_downloads_are_not_cached(server, keras_home, monkeypatch, damage):
    root, base, requests = server
    data = pickle.dumps(haiku_params())
    if damage == "sha256":  # truncated file, detected by its hash
        (root / "mlm.pickle").write_bytes(data[:-100])
        register(monkeypatch, f"{base}/mlm.pickle", data)
        error, message = ValueError, "does not match its sha256"
    elif damage == "short_transfer":  # connection ends early
        (root / "mlm.pickle").write_bytes(data)
        register(monkeypatch, f"{base}/short/mlm.pickle", data, sha256=False)
        error, message = OSError, "could not download"
    else:  # no hash known: the conversion check catches it
        (root / "mlm.pickle").write_bytes(pickle.dumps({"something": {"else": np.zeros(3)}}))
        register(monkeypatch, f"{base}/mlm.pickle", data, sha256=False)
        error, message = ValueError, "not the expected checkpoint"
    with pytest.raises(error, match=message):
        PerceiverMaskedLM.from_preset("language_perceiver")
    assert leftovers(keras_home) == []  # nothing cached, no partial file
    assert len(requests) == 1


def test_offline_without_cache_says_what_to_do(keras_home, monkeypatch):
    monkeypatch.setenv(presets.BASE_URL_ENV, "http://127.0.0.1:9")  # nothing listens
    with pytest.raises(OSError) as info:
        PerceiverTask.from_preset("vision_perceiver_conv")
    message = str(info.value)
    assert "http://127.0.0.1:9/imagenet_conv_preprocessing.pystate" in message
    assert "keras-perceiver convert --from deepmind" in message
    assert presets.cached_preset_dir("vision_perceiver_conv") in message
    assert "load_weights=False" in message
    assert leftovers(keras_home) == []


def test_registry_metadata_and_base_class_lookup():
    assert sorted(presets.RELEASED) == sorted(PerceiverTask.presets)
    for name, info in presets.RELEASED.items():
        assert presets.source_url(name) == f"{presets.BASE_URL}/{info['file']}"
        assert info["hub_id"].startswith("deepmind/") and info["paper_score"]
        assert info["size"].endswith("MB")
        assert type(PerceiverTask.preset_config(name)) is dict
    with pytest.raises(ValueError, match="unknown preset 'nope'"):
        PerceiverTask.from_preset("nope")


def test_hub_id_from_the_local_cache_offline(tmp_path, monkeypatch):
    from transformers import PerceiverConfig
    from transformers import PerceiverForMaskedLM

    torch_model = PerceiverForMaskedLM(PerceiverConfig(
        num_latents=4, d_latents=16, d_model=8, num_blocks=1, num_self_attends_per_block=1,
        num_self_attention_heads=2, num_cross_attention_heads=2,
        max_position_embeddings=8, qk_channels=8, v_channels=16))
    cache = tmp_path / "hub"
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / "models--deepmind--language-perceiver"
    torch_model.save_pretrained(repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = convert.from_transformers("deepmind/language-perceiver")
    direct = convert.from_transformers(str(repo / "snapshots" / commit))
    ids = np.arange(16).reshape(2, 8).astype("int32") + 6
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model(ids)),
                                  keras.ops.convert_to_numpy(direct(ids)))
    with pytest.raises(FileNotFoundError, match="deepmind/vision-perceiver-conv.*HF_HUB_OFFLINE"):
        convert.from_transformers("deepmind/vision-perceiver-conv")


def test_released_preset_with_num_classes_loads_the_body_only(keras_home):
    """A cached released preset + `num_classes=k`: its body, a fresh k-class head."""
    from keras_perceiver.models import PerceiverImageClassifier

    cached = PerceiverImageClassifier.from_preset(
        "vision_perceiver_conv", load_weights=False, image_shape=(16, 16, 3), num_latents=4,
        num_latent_channels=16, num_blocks=1, num_self_attends_per_block=1, num_classes=7)
    cached.save_to_preset(presets.cached_preset_dir("vision_perceiver_conv"))
    model = PerceiverImageClassifier.from_preset("vision_perceiver_conv", num_classes=5)
    assert model.num_classes == 5 and model.decoder.weights[-1].shape[-1] == 5
    for part in ("input_adapter", "encoder"):
        for a, b in zip(getattr(cached, part).weights, getattr(model, part).weights):
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    same = PerceiverTask.from_preset("vision_perceiver_conv", num_classes=7)  # the saved head
    for a, b in zip(cached.weights, same.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
