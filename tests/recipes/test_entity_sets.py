"""Entity sets: the embedded blob task, its batching, and the analytic FLOPs."""

import keras
import numpy as np
import pytest

from keras_perceiver.data import entity_sets
from keras_perceiver.recipes import entity_sets as recipe


def test_blob_sets_are_deterministic_padded_and_need_context():
    data = entity_sets.blob_sets(40, min_entities=32, max_entities=128, seed=3)
    again = entity_sets.blob_sets(40, min_entities=32, max_entities=128, seed=3)
    for key in data:
        np.testing.assert_array_equal(data[key], again[key])
    assert data["entities"].shape == (40, 128, 2)
    np.testing.assert_array_equal(data["mask"].sum(1), data["sizes"])
    assert ((data["labels"] >= 0) == data["mask"]).all()
    assert (32 <= data["sizes"]).all() and (data["sizes"] <= 128).all()
    for labels, mask in zip(data["labels"], data["mask"]):
        assert set(labels[mask].tolist()) == {0, 1, 2, 3}  # every blob is visible
    # One point's own coordinates tell little: the set is needed.
    assert entity_sets.context_free_accuracy(data) < 0.6
    # Standardized per set, a point's x says much more, and moving or scaling
    # a set changes nothing then.
    standardized = entity_sets.context_free_accuracy(data, standardized=True)
    assert standardized > 0.8
    moved = dict(data, entities=data["entities"] * 3.0 + np.array([5.0, -2.0], "float32"))
    assert entity_sets.context_free_accuracy(moved, standardized=True) == standardized
    assert entity_sets.context_free_accuracy(moved) != entity_sets.context_free_accuracy(data)
    other = entity_sets.blob_sets(40, min_entities=32, max_entities=128, seed=4)
    assert not np.array_equal(other["entities"], data["entities"])


def test_labels_are_the_rank_of_the_nearest_center():
    # Tight, far-apart blobs: the label is the left-to-right rank of a point's blob.
    data = entity_sets.blob_sets(5, max_entities=64, min_gap=0.5, std_range=(0.01, 0.02),
                                 seed=0)
    for points, labels, mask in zip(data["entities"], data["labels"], data["mask"]):
        x, y = points[mask, 0], labels[mask]
        means = [x[y == k].mean() for k in range(4)]
        assert means == sorted(means)
        for k in range(3):
            assert x[y == k].max() < x[y == k + 1].min()


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="min_entities <= max_entities"):
        entity_sets.blob_sets(2, min_entities=10, max_entities=5)
    with pytest.raises(ValueError, match="pad_to=8 < max_entities=16"):
        entity_sets.blob_sets(2, min_entities=4, max_entities=16, pad_to=8)
    with pytest.raises(ValueError, match="do not fit"):
        entity_sets.blob_sets(2, num_clusters=8, min_gap=0.5)


def test_batches_group_sizes_and_repeat_per_epoch():
    data = entity_sets.blob_sets(70, min_entities=16, max_entities=300, seed=1)
    epoch = list(recipe.batches(data, 4, seed=0, epoch=2))
    assert len(epoch) == recipe.steps_per_epoch(data, 4) == 17
    for inputs, labels, weights in epoch:
        n = inputs["entities"].shape[1]
        assert (n % 64 == 0 or n == 300) and inputs["mask"].shape == labels.shape == weights.shape == (4, n)
        assert inputs["mask"][:, n - n % 64 - 64 if n % 64 else -64:].any()  # no wider than needed
        assert (labels >= 0).all() and (weights == inputs["mask"]).all()
    again = list(recipe.batches(data, 4, seed=0, epoch=2))
    other = list(recipe.batches(data, 4, seed=0, epoch=3))
    same = all(np.array_equal(a[0]["entities"], b[0]["entities"]) for a, b in zip(epoch, again))
    assert same
    assert not all(a[0]["entities"].shape == b[0]["entities"].shape
                   and np.array_equal(a[0]["entities"], b[0]["entities"])
                   for a, b in zip(epoch, other))


def test_sized_held_out_sets_have_exactly_n_points_and_fixed_seeds():
    by_n = recipe.sized_sets(9, 3, large_count=2)
    assert list(by_n) == list(recipe.COST_SIZES) == [64, 256, 512, 2048]
    for n, data in by_n.items():
        assert data["mask"].shape == (3 if n <= 512 else 2, n) and data["mask"].all()
        assert (data["sizes"] == n).all() and (data["labels"] >= 0).all()
    assert np.array_equal(by_n[512]["entities"],  # N = 512 keeps the plain seed
                          entity_sets.blob_sets(3, 512, 512, seed=9)["entities"])
    again = recipe.sized_sets(9, 3, sizes=(256,))[256]
    assert np.array_equal(again["entities"], by_n[256]["entities"])
    assert not np.array_equal(recipe.sized_sets(10, 3, sizes=(256,))[256]["entities"],
                              again["entities"])


def test_comparison_table_shows_accuracy_beside_the_costs():
    row = dict(n=512, perceiver_flops=2e6, transformer_flops=8e6, flops_ratio=4.0,
               perceiver_s=0.01, transformer_s=0.04)
    rows = [dict(row, perceiver_accuracy=0.99491, transformer_accuracy=0.5),
            dict(row, n=2048, perceiver_flops=8e6, transformer_flops=1.28e8,
                 flops_ratio=16.0, perceiver_s=0.04, transformer_s=0.64)]
    lines = recipe.format_costs(rows).splitlines()
    assert lines[0].startswith("| N | Perceiver accuracy | Transformer accuracy | Perceiver MFLOPs")
    assert lines[2] == "| 512 | 99.49% | 50.00% | 2.0 | 8.0 | 4.0x | 0.010 | 0.040 |"
    assert lines[3] == "| 2048 | - | - | 8.0 | 128.0 | 16.0x | 0.040 | 0.640 |"
    assert "accuracy" not in recipe.format_costs(rows[1:]).splitlines()[0]

def test_flops_scale_linearly_for_the_perceiver_quadratically_for_the_transformer():
    config = recipe.CONFIGS["default"]
    p = [recipe.perceiver_flops(config, n) for n in (512, 1024, 1536)]
    t = [recipe.transformer_flops(config, n) for n in (512, 1024, 1536)]
    assert p[2] - 2 * p[1] + p[0] == 0
    # 2 FLOPs x (QK^T + weights x V) x depth layers: the n^2 term's second difference.
    width, depth = config["num_latent_channels"], recipe.transformer_depth(config)
    assert t[2] - 2 * t[1] + t[0] == 2 * 2 * (2 * width) * depth * 512 ** 2
    assert recipe.transformer_flops(config, 512) >= 3 * recipe.perceiver_flops(config, 512)


def _graph_flops(model, n):
    """2 x multiply-adds of every MatMul/BatchMatMul/Einsum of the traced graph."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    fn = tf.function(lambda e, m: model({"entities": e, "mask": m}, training=False))
    graph = convert_variables_to_constants_v2(fn.get_concrete_function(
        tf.TensorSpec((1, n, 2)), tf.TensorSpec((1, n), tf.bool))).graph
    total = 0
    for op in graph.get_operations():
        shapes = [t.shape.as_list() for t in op.inputs]
        if op.type == "Einsum":
            terms = op.get_attr("equation").decode().split("->")[0].split(",")
            sizes = {}
            for term, shape in zip(terms, shapes):
                sizes.update(zip(term, shape))
            total += 2 * int(np.prod(list(sizes.values())))
        elif op.type in ("MatMul", "BatchMatMulV2"):
            transposed = op.get_attr("transpose_a" if op.type == "MatMul" else "adj_x")
            inner = shapes[0][-2] if transposed else shapes[0][-1]
            total += 2 * int(np.prod(op.outputs[0].shape.as_list())) * inner
    return total


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="traced TF graph")
def test_analytic_flops_match_the_traced_graph():
    n = 37
    config = dict(recipe.CONFIGS["smoke"], num_set_classes=2, qk_channels=4,
                  decoder_widening_factor=3, decoder_num_heads=2, num_cross_attends=2)
    assert _graph_flops(recipe.build_perceiver(config), n) == recipe.perceiver_flops(config, n)
    config = recipe.CONFIGS["smoke"]
    assert _graph_flops(recipe.build_perceiver(config), n) == recipe.perceiver_flops(config, n)
    assert (_graph_flops(recipe.build_transformer(config), n)
            == recipe.transformer_flops(config, n))


def test_transformer_baseline_masks_padding_and_is_equivariant(rng):
    model = recipe.build_transformer(recipe.CONFIGS["smoke"])
    x = {"entities": rng.normal(size=(2, 12, 2)).astype("float32"),
         "mask": np.arange(12)[None] < np.array([[12], [8]])}
    a = keras.ops.convert_to_numpy(model(x))
    padded = {"entities": np.concatenate([x["entities"], rng.normal(size=(2, 5, 2))], 1)
              .astype("float32"),
              "mask": np.concatenate([x["mask"], np.zeros((2, 5), bool)], 1)}
    b = keras.ops.convert_to_numpy(model(padded))
    np.testing.assert_allclose(b[:, :12], a, atol=1e-5, rtol=0)
    assert (b[:, 12:] == 0).all() and (a[1, 8:] == 0).all()
    order = rng.permutation(12)
    c = keras.ops.convert_to_numpy(model({k: v[:, order] for k, v in x.items()}))
    np.testing.assert_allclose(c, a[:, order], atol=1e-5, rtol=0)
