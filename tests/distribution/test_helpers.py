"""keras_perceiver.distribution / distribute_tf helpers in this (TensorFlow) process."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_perceiver import distribute_tf
from keras_perceiver import distribution
from keras_perceiver.models import PerceiverMaskedLM
from tests.distribution import tiny

MLM = dict(max_length=16, d_model=8, num_latents=4, num_latent_channels=16, num_self_attends_per_block=2,
           num_self_attention_heads=2, num_cross_attention_heads=2, qk_channels=8, v_channels=16)


def _mesh(shards):
    # A mesh is a description: it needs no devices until a variable is placed.
    return keras.distribution.DeviceMesh(
        (1, shards), ["batch", "model"], devices=[f"cpu:{i}" for i in range(shards)]
    )


def test_layout_map_fits_another_instance_of_the_model():
    template, model = PerceiverMaskedLM(**MLM), PerceiverMaskedLM(**MLM)
    layouts = distribution.layout_map(template, _mesh(2))
    axes = {}
    for w in model.weights:
        inner = w.path.split("/", 1)[1]
        layout = layouts[w.path]
        # Keys ignore the top-level layer name (another instance may get a suffix).
        renamed = layouts["renamed_1/" + inner]
        assert (layout and layout.axes) == (renamed and renamed.axes), w.path
        axes[inner] = layout.axes if layout else None
    for i in range(2):
        latent = f"self_attention_{i}/"
        assert axes[latent + "attention/query/kernel"] == (None, "model")
        assert axes[latent + "attention/value/bias"] == ("model",)
        assert axes[latent + "attention/output/kernel"] == ("model", None)
        assert axes[latent + "mlp/dense1/kernel"] == (None, "model")
        assert axes[latent + "mlp/dense2/kernel"] == ("model", None)
        assert axes[latent + "mlp/dense2/bias"] is None
    assert axes["position_embedding/embeddings"] == ("model", None)  # [16, 8]
    assert axes["output_position_encoding/embeddings"] == ("model", None)  # MLM queries
    assert axes["latents/embeddings"] == ("model", None)
    assert axes["token_embedding/embeddings"] is None  # 262 bytes: not a table rule
    assert axes["cross_attention/attention/query/kernel"] is None


def test_layout_map_replicates_what_does_not_divide():
    model = tiny.make_model()  # latents [4, 8], decoder query [1, 8], kernels [8, 8]
    layouts = distribution.layout_map(model, _mesh(8))
    assert layouts["encoder/self_attention_0/attention/query/kernel"].axes == (None, "model")
    assert layouts["encoder/latents/embeddings"] is None
    assert layouts["decoder/output_position_encoding/embeddings"] is None
    with pytest.raises(ValueError, match="axes .* named 'shard'"):
        distribution.layout_map(model, _mesh(2), model_axis="shard")


def test_names_and_backends_are_checked():
    with pytest.raises(ValueError, match="Unknown distribution 'horovod'"):
        distribution.get_distribution("horovod")
    with pytest.raises(ValueError, match="needs KERAS_BACKEND=jax"):
        distribution.get_distribution("data_parallel")
    with pytest.raises(ValueError, match="needs KERAS_BACKEND=jax"):
        distribution.initialize("127.0.0.1:1234", 2, 0)
    strategy = distribution.get_distribution("mirrored", devices=["/cpu:0"])
    assert isinstance(strategy, tf.distribute.MirroredStrategy)
    assert distribution.num_replicas(strategy) == 1


def test_batch_and_learning_rate_helpers():
    assert distribution.global_batch_size(16, 4) == 64
    assert distribution.per_replica_batch_size(64, 4) == 16
    with pytest.raises(ValueError, match="does not split evenly over 3 replicas"):
        distribution.per_replica_batch_size(64, 3)
    assert distribution.scaled_learning_rate(5e-4, 1024, 256) == pytest.approx(2e-3)
    assert distribution.scaled_learning_rate(1e-3, 1024, 256, "sqrt") == pytest.approx(2e-3)
    with pytest.raises(ValueError, match="expected a replica count >= 1"):
        distribution.global_batch_size(8, 0)
    with pytest.raises(ValueError, match="shape \\(replicas, shards\\) with product 1"):
        distribution.device_mesh((2, 2), devices=keras.distribution.list_devices()[:1])


def test_tf_input_helpers(monkeypatch):
    dataset = distribute_tf.with_auto_shard(tf.data.Dataset.range(8), "file")
    policy = dataset.options().experimental_distribute.auto_shard_policy
    assert policy == tf.data.experimental.AutoShardPolicy.FILE
    with pytest.raises(ValueError, match="auto-shard policy must be one of"):
        distribute_tf.with_auto_shard(dataset, "files")

    strategy = distribute_tf.get_strategy("mirrored", devices=["/cpu:0"])
    per_worker = distribute_tf.distribute_dataset_from_function(
        strategy, lambda context: tf.data.Dataset.range(6), global_batch_size=4
    )
    batches = [np.asarray(strategy.experimental_local_results(b)[0]) for b in per_worker]
    assert [b.tolist() for b in batches] == [[0, 1, 2, 3], [4, 5]]

    workers = ["127.0.0.1:1", "127.0.0.1:2"]
    config = json.loads(distribute_tf.tf_config(workers, 1))
    assert config == {"cluster": {"worker": workers}, "task": {"type": "worker", "index": 1}}
    monkeypatch.setenv("TF_CONFIG", distribute_tf.tf_config(workers, 1))
    assert not distribute_tf.is_chief()
    monkeypatch.setenv("TF_CONFIG", distribute_tf.tf_config(workers, 0))
    assert distribute_tf.is_chief()
    monkeypatch.delenv("TF_CONFIG")
    assert distribute_tf.is_chief()
    with pytest.raises(ValueError, match="index must be in \\[0, 2\\)"):
        distribute_tf.tf_config(workers, 2)
