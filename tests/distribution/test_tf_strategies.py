"""tf.distribute: MirroredStrategy on 2 logical CPUs, MultiWorkerMirroredStrategy
on 2 local processes, mixed precision, checkpoints across strategies.

Each runs in subprocesses (logical devices and TF_CONFIG fix a process's TF
runtime); see tf_mirrored.py and tf_multi_worker.py.
"""

import numpy as np
import pytest

from tests.distribution import tiny

ATOL = 1e-5
# Three SGD steps in mixed precision against float32 (measured: bf16 8e-4,
# fp16 1e-4 on the weights).
MIXED_ATOL = {"mixed_bfloat16": 5e-3, "mixed_float16": 1e-3}


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory):
    return tiny.run_script("tf_mirrored", tmp_path_factory.mktemp("mirrored"), "tensorflow")


def _weights(arrays, prefix):
    return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}


def test_mirrored_matches_single_device(mirrored):
    arrays, info = mirrored
    assert info["replicas"] == 2 and info["per_replica_batch"] == tiny.GLOBAL_BATCH // 2
    single, dist = _weights(arrays, "single/w/"), _weights(arrays, "mirrored/w/")
    assert len(single) > 20 and single.keys() == dist.keys()
    np.testing.assert_allclose(arrays["mirrored/losses"], arrays["single/losses"], atol=ATOL)
    for path in single:
        np.testing.assert_allclose(dist[path], single[path], atol=ATOL, err_msg=path)
    # Training moved the weights: the comparison is not of two initial states.
    assert max(np.abs(v - arrays["single/w/" + k]).max() for k, v in
               _initial().items()) > 1e-2


def _initial():
    model = tiny.make_model()
    tiny.set_initial_weights(model)
    return tiny.weights(model)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mirrored_mixed_precision(mirrored, policy):
    arrays, info = mirrored
    assert info[f"{policy}/compute_dtype"] == policy.split("_")[1]
    # Keras wraps the optimizer in a LossScaleOptimizer for float16 only.
    expected = "LossScaleOptimizer" if policy == "mixed_float16" else "SGD"
    assert info[f"{policy}/optimizer"] == expected
    losses = arrays[f"mirrored_{policy}/losses"]
    assert np.isfinite(losses).all()
    np.testing.assert_allclose(losses, arrays["single/losses"], atol=MIXED_ATOL[policy])
    single = _weights(arrays, "single/w/")
    for path, value in _weights(arrays, f"mirrored_{policy}/w/").items():
        assert value.dtype == np.float32, path
        np.testing.assert_allclose(value, single[path], atol=MIXED_ATOL[policy], err_msg=path)


def test_checkpoint_from_mirrored_restores_without_strategy(mirrored):
    arrays, _ = mirrored
    np.testing.assert_allclose(arrays["restored/logits"], arrays["mirrored/logits"], atol=ATOL)
    assert np.abs(arrays["restored/logits"]).max() > 1e-3


def test_multi_worker_matches_single_process(tmp_path):
    from keras_perceiver import distribute_tf

    workers = [f"127.0.0.1:{port}" for port in tiny.free_ports(2)]
    outs = [tmp_path / f"worker{index}" for index in range(2)]
    for out in outs:
        out.mkdir()
    envs = [{"KERAS_BACKEND": "tensorflow", "TF_CONFIG": distribute_tf.tf_config(workers, index)}
            for index in range(2)]
    results = tiny.run_processes("tf_multi_worker", outs, envs)

    ref_losses, ref_weights, _ = tiny.reference_run()
    for index, (arrays, info) in enumerate(results):
        assert info["replicas"] == 2 and info["index"] == index
        assert info["is_chief"] == (index == 0)
        np.testing.assert_allclose(arrays["losses"], ref_losses, atol=ATOL)
        weights = _weights(arrays, "w/")
        assert weights.keys() == ref_weights.keys()
        for path, value in weights.items():
            np.testing.assert_allclose(value, ref_weights[path], atol=ATOL, err_msg=path)
    (first, _), (second, _) = results
    for key in first:
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)
