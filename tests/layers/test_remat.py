"""Gradient checkpointing of the latent Transformer changes no gradient."""

import keras
import numpy as np
import pytest

from keras_perceiver.layers import PerceiverEncoder


def gradients(layer, x, cotangent):
    """d sum(layer(x) * cotangent) / d(trainable weights, x), on this backend."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x, training=True) * cotangent)
        grads = tape.gradient(loss, layer.trainable_variables + [x])
        return [np.asarray(g) for g in grads]
    if backend == "jax":
        import jax

        trainable = [v.value for v in layer.trainable_variables]
        non_trainable = [v.value for v in layer.non_trainable_variables]

        def loss(weights, x):
            out, _ = layer.stateless_call(weights, non_trainable, x, training=True)
            return (out * cotangent).sum()

        weight_grads, x_grad = jax.grad(loss, argnums=(0, 1))(trainable, x)
        return [np.asarray(g) for g in weight_grads] + [np.asarray(x_grad)]
    import torch

    for v in layer.trainable_variables:
        v.value.grad = None
    x = torch.tensor(x, requires_grad=True)
    (layer(x, training=True) * torch.tensor(cotangent)).sum().backward()
    grads = [v.value.grad.cpu().numpy() for v in layer.trainable_variables]
    return grads + [x.grad.numpy()]


def encoder(remat):
    return PerceiverEncoder(
        num_latents=4, num_latent_channels=16, num_blocks=2, num_self_attends_per_block=2,
        num_self_attention_heads=2, remat=remat,
    )


def test_remat_gives_the_same_gradients(rng, monkeypatch):
    x = rng.normal(size=(2, 10, 6)).astype("float32")
    plain, checkpointed = encoder(False), encoder(True)
    plain(x)
    checkpointed(x)
    checkpointed.set_weights(plain.get_weights())
    calls = []
    original = keras.remat

    def spy(f):
        calls.append(f)
        return original(f)

    monkeypatch.setattr(keras, "remat", spy)
    cotangent = rng.normal(size=(2, 4, 16)).astype("float32")
    # The loss scale is arbitrary: normalise it so the largest gradient is 1,
    # then 1e-6 is a float32-level agreement on every backend (XLA on JAX
    # reorders the recomputed sums; TensorFlow and PyTorch agree exactly).
    scale = max(np.abs(g).max() for g in gradients(plain, x, cotangent))
    cotangent = (cotangent / scale).astype("float32")
    want = gradients(plain, x, cotangent)
    assert not calls
    got = gradients(checkpointed, x, cotangent)
    assert len(calls) == 4  # every self-attention application is checkpointed
    assert len(got) == len(want) == len(plain.trainable_variables) + 1
    assert 0.5 < max(np.abs(w).max() for w in want) < 2
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, atol=1e-6, rtol=0)


def test_remat_and_memory_budget_are_config():
    layer = PerceiverEncoder(4, 8, remat=True, attention_memory_budget=4096)
    config = layer.get_config()
    assert config["remat"] is True and config["attention_memory_budget"] == 4096
    rebuilt = PerceiverEncoder.from_config(config)
    assert rebuilt.remat and rebuilt.attention_memory_budget == 4096
    rebuilt(np.zeros((1, 3, 5), "float32"))
    assert rebuilt.cross_attention.attention.memory_budget == 4096
    assert rebuilt.self_attends[0].attention.memory_budget == 4096


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="task models: TF suite")
def test_task_models_pass_remat_through():
    from keras_perceiver.models import PerceiverMaskedLM

    model = PerceiverMaskedLM(
        max_length=8, d_model=8, num_latents=2, num_latent_channels=8, num_self_attends_per_block=1,
        num_self_attention_heads=2, num_cross_attention_heads=2, qk_channels=8,
        v_channels=8, decoder_num_heads=2, decoder_qk_channels=8, remat=True,
        attention_memory_budget=1024,
    )
    assert model.encoder.remat and model.encoder.attention_memory_budget == 1024
    rebuilt = PerceiverMaskedLM.from_config(model.get_config())
    assert rebuilt.encoder.remat and rebuilt.get_config()["remat"] is True
