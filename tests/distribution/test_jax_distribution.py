"""keras.distribution (JAX) on 4 forced host devices: DataParallel and a 2x2
ModelParallel mesh against one device, the layout map's real shardings,
mixed precision and checkpoints across distributions; two processes joined
by `distribution.initialize`. Runs jax_parallel.py / jax_multi_process.py in
subprocesses with KERAS_BACKEND=jax (this pytest process runs TensorFlow).
"""

import numpy as np
import pytest

from tests.distribution import tiny

ATOL = 1e-5
# Three SGD steps in mixed precision against float32 (measured: bf16 1.2e-3,
# fp16 1e-4 on the weights).
MIXED_ATOL = {"mixed_bfloat16": 5e-3, "mixed_float16": 1e-3}
LATENT = "encoder/self_attention_0/"
# path: (shard spec, per-device shard shape) for num_latent_channels=8 on a 2-way model axis.
SHARDED = {
    LATENT + "attention/query/kernel": ([None, "model"], [8, 4]),
    LATENT + "attention/key/kernel": ([None, "model"], [8, 4]),
    LATENT + "attention/value/kernel": ([None, "model"], [8, 4]),
    LATENT + "attention/query/bias": (["model"], [4]),
    LATENT + "attention/output/kernel": (["model", None], [4, 8]),
    LATENT + "mlp/dense1/kernel": ([None, "model"], [8, 4]),
    LATENT + "mlp/dense2/kernel": (["model", None], [4, 8]),
    "encoder/latents/embeddings": (["model", None], [2, 8]),
    "image_preprocessor/position_encoding/embeddings": (["model", None], [8, 4]),
}
# Named by the rules but left whole: one decoder query does not split in two.
REPLICATED = ["decoder/output_position_encoding/embeddings", "decoder/final_layer/kernel",
              "encoder/cross_attention/attention/query/kernel", LATENT + "layer_norm/gamma"]


@pytest.fixture(scope="module")
def jax_runs(tmp_path_factory):
    return tiny.run_script(
        "jax_parallel", tmp_path_factory.mktemp("jax"), "jax",
        env={"XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"},
    )


def _weights(arrays, prefix):
    return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}


@pytest.mark.parametrize("run", ["data_parallel", "model_parallel"])
def test_matches_single_device(jax_runs, run):
    arrays, info = jax_runs
    assert len(info["devices"]) == 4
    assert info[f"{run}/replicas"] == {"data_parallel": 4, "model_parallel": 2}[run]
    np.testing.assert_allclose(arrays[f"{run}/losses"], arrays["single/losses"], atol=ATOL)
    single, dist = _weights(arrays, "single/w/"), _weights(arrays, f"{run}/w/")
    assert len(single) > 20 and single.keys() == dist.keys()
    for path in single:
        np.testing.assert_allclose(dist[path], single[path], atol=ATOL, err_msg=path)
    np.testing.assert_allclose(arrays[f"{run}/logits"], arrays["single/logits"], atol=ATOL)
    # The three steps moved the weights away from their common start.
    model = tiny.make_model()
    tiny.set_initial_weights(model)
    start = tiny.weights(model)
    assert max(np.abs(single[k] - start[k]).max() for k in start) > 1e-2


def test_layout_map_shards_named_weights(jax_runs):
    _, info = jax_runs
    shardings = info["shardings"]
    for path, (spec, shard_shape) in SHARDED.items():
        assert shardings[path]["spec"] == spec, path
        assert shardings[path]["shard_shape"] == shard_shape, path
    for path in REPLICATED:
        assert not any(shardings[path]["spec"]), path
    assert all(s["devices"] == 4 for s in shardings.values())
    # Optimizer slots follow their weights' layouts.
    momentum = {k.split("/", 1)[1]: v for k, v in info["optimizer_shardings"].items()}
    assert momentum["encoder_self_attention_0_attention_query_kernel_momentum"] == [8, 4]
    assert momentum["encoder_self_attention_0_attention_output_kernel_momentum"] == [4, 8]


@pytest.mark.parametrize("target", ["none", "data_parallel"])
def test_model_parallel_checkpoint_restores(jax_runs, target):
    arrays, _ = jax_runs
    restored = arrays[f"restored_{target}/logits"]
    np.testing.assert_allclose(restored, arrays["model_parallel/logits"], atol=ATOL)
    assert np.abs(restored).max() > 1e-3


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_data_parallel_mixed_precision(jax_runs, policy):
    arrays, info = jax_runs
    assert info[f"{policy}/compute_dtype"] == policy.split("_")[1]
    expected = "LossScaleOptimizer" if policy == "mixed_float16" else "SGD"
    assert info[f"{policy}/optimizer"] == expected
    losses = arrays[f"data_parallel_{policy}/losses"]
    assert np.isfinite(losses).all()
    np.testing.assert_allclose(losses, arrays["single/losses"], atol=MIXED_ATOL[policy])
    single = _weights(arrays, "single/w/")
    for path, value in _weights(arrays, f"data_parallel_{policy}/w/").items():
        np.testing.assert_allclose(value, single[path], atol=MIXED_ATOL[policy], err_msg=path)


def test_two_processes_match_single_device(jax_runs, tmp_path):
    """`distribution.initialize` joins two local processes (gloo on CPU); each
    feeds half of every global batch to a DataParallel model."""
    arrays, _ = jax_runs
    coordinator = f"127.0.0.1:{tiny.free_ports(1)[0]}"
    outs = [tmp_path / f"process{index}" for index in range(2)]
    for out in outs:
        out.mkdir()
    env = {"KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    results = tiny.run_processes("jax_multi_process", outs, [env, env],
                                 args=[(coordinator, str(index)) for index in range(2)])
    single = _weights(arrays, "single/w/")
    for process, info in results:
        assert info == {"replicas": 2, "processes": 2, "devices": 2}
        np.testing.assert_allclose(process["losses"], arrays["single/losses"], atol=ATOL)
        weights = _weights(process, "w/")
        assert weights.keys() == single.keys()
        for path, value in weights.items():
            np.testing.assert_allclose(value, single[path], atol=ATOL, err_msg=path)
    (first, _), (second, _) = results
    for key in first:
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)
