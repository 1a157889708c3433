"""`keras_perceiver.optimizers.Lamb` against a NumPy transcription of optax's `lamb`."""

import keras
import numpy as np
import pytest

from keras_perceiver import optimizers


def optax_lamb(params, grads_per_step, lr, weight_decay=0.0, mask=None, eps=1e-6,
               b1=0.9, b2=0.999, max_norm=None):
    """optax.chain(clip_by_global_norm, scale_by_adam(eps), add_decayed_weights(wd, mask),
    scale_by_trust_ratio(), scale(-lr)), step after step, in float32 as optax
    computes float32 parameters. `lr` is a float or one rate per step."""
    f32 = np.float32
    params = [np.asarray(p, f32) for p in params]
    mask = mask or [True] * len(params)
    rates = lr if isinstance(lr, (list, tuple)) else [lr] * len(grads_per_step)
    mu = [np.zeros_like(p) for p in params]
    nu = [np.zeros_like(p) for p in params]
    b1, b2, eps, wd = f32(b1), f32(b2), f32(eps), f32(weight_decay)
    for count, (grads, rate) in enumerate(zip(grads_per_step, rates), start=1):
        grads = [np.asarray(g, f32) for g in grads]
        if max_norm is not None:
            norm = np.sqrt(sum(np.sum(g**2) for g in grads))
            if norm >= max_norm:
                grads = [g / norm * f32(max_norm) for g in grads]
        for i, (p, g) in enumerate(zip(params, grads)):
            mu[i] = (1 - b1) * g + b1 * mu[i]
            nu[i] = (1 - b2) * g**2 + b2 * nu[i]
            t = f32(count)
            u = (mu[i] / (1 - b1**t)) / (np.sqrt(nu[i] / (1 - b2**t)) + eps)
            if mask[i]:
                u = u + wd * p
            p_norm, u_norm = np.sqrt(np.sum(p**2)), np.sqrt(np.sum(u**2))
            ratio = f32(1.0) if p_norm == 0 or u_norm == 0 else p_norm / u_norm
            params[i] = p + (u * ratio) * -f32(rate)
    return params


def _problem(seed=0, steps=3):
    rng = np.random.default_rng(seed)
    shapes = [(4, 3), (3,), (2, 5), (5,)]
    params = [rng.normal(size=s).astype("float32") for s in shapes]
    params[3] = np.zeros(5, "float32")  # zero norm: trust ratio 1
    grads = [[rng.normal(size=s).astype("float32") * 3 for s in shapes] for _ in range(steps)]
    return params, grads


def _run(optimizer, params, grads_per_step):
    variables = [keras.Variable(p, name=f"v{i}") for i, p in enumerate(params)]
    for grads in grads_per_step:
        optimizer.apply([keras.ops.convert_to_tensor(g) for g in grads], variables)
    return [keras.ops.convert_to_numpy(v) for v in variables]


@pytest.mark.parametrize("steps", [1, 4])
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_equals_optax_lamb_with_default_mask(steps, weight_decay):
    params, grads = _problem(steps=steps)
    got = _run(optimizers.Lamb(2e-2, weight_decay=weight_decay), params, grads)
    # The default mask decays rank >= 2 variables only (no biases).
    want = optax_lamb(params, grads, 2e-2, weight_decay, mask=[True, False, True, False])
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, atol=1e-6, rtol=0)


def test_equals_optax_lamb_unmasked_and_clipped():
    params, grads = _problem(steps=3)
    opt = optimizers.Lamb(1e-2, weight_decay=0.5, decay_all=True, global_clipnorm=2.0)
    got = _run(opt, params, grads)
    want = optax_lamb(params, grads, 1e-2, 0.5, mask=None, max_norm=2.0)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, atol=1e-6, rtol=0)
    # Without the clip the result differs: the clip is really applied.
    unclipped = optax_lamb(params, grads, 1e-2, 0.5)
    assert max(np.abs(a - b).max() for a, b in zip(got, unclipped)) > 1e-4


def test_schedule_is_read_per_step():
    params, grads = _problem(steps=2)
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay([0], [1e-2, 3e-2])  # step 0, then 1
    got = _run(optimizers.Lamb(schedule, weight_decay=0.1), params, grads)
    mask = [True, False, True, False]
    want = optax_lamb(params, grads, [1e-2, 3e-2], 0.1, mask=mask)
    constant = optax_lamb(params, grads, 1e-2, 0.1, mask=mask)
    assert np.abs(want[0] - constant[0]).max() > 1e-4
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, atol=1e-6, rtol=0)


def test_keras_lamb_differs_once_weight_decay_is_on():
    """Why the class exists: Keras' Lamb equals optax's without decay, not with it."""
    params, grads = _problem(steps=2)
    plain = _run(keras.optimizers.Lamb(2e-2, epsilon=1e-6), params, grads)
    for g, w in zip(plain, optax_lamb(params, grads, 2e-2)):
        np.testing.assert_allclose(g, w, atol=1e-6, rtol=0)
    decayed = _run(keras.optimizers.Lamb(2e-2, epsilon=1e-6, weight_decay=0.5), params, grads)
    want = optax_lamb(params, grads, 2e-2, 0.5)
    assert max(np.abs(a - b).max() for a, b in zip(decayed, want)) > 1e-4


def test_default_mask_on_a_perceiver():
    import keras_perceiver

    model = keras_perceiver.models.PerceiverImageClassifier(
        num_classes=3, image_shape=(8, 8, 3), prep_type="conv", num_bands=2, num_latents=4,
        d_latents=8, num_blocks=1, num_self_attends_per_block=1, num_self_attention_heads=2)
    decayed = {v.path for v in model.trainable_weights if optimizers.default_decay_mask(v)}
    assert "encoder/latents/embeddings" in decayed
    assert "image_preprocessor/stem/conv/kernel" in decayed
    assert "decoder/final_layer/kernel" in decayed
    assert not any(p.endswith(("bias", "gamma", "beta")) for p in decayed)
    assert not any("norm" in p for p in decayed)


def test_excluded_names_and_config_round_trip():
    opt = optimizers.Lamb(1e-3, weight_decay=0.1, global_clipnorm=10.0)
    opt.exclude_from_weight_decay(var_names=["keep"])
    keep = keras.Variable(np.ones((2, 2), "float32"), name="keep")
    other = keras.Variable(np.ones((2, 2), "float32"), name="other")
    assert not opt.decays(keep) and opt.decays(other)
    clone = optimizers.Lamb.from_config(opt.get_config())
    assert clone.get_config() == opt.get_config()
    with pytest.raises(ValueError, match="weight_decay must be"):
        optimizers.Lamb(weight_decay=-1.0)
