"""Encoder and decoder parity with `transformers`' PerceiverModel at random init."""

import numpy as np
import pytest
import torch
from keras import ops
from transformers import PerceiverConfig
from transformers import PerceiverModel
from transformers.models.perceiver.modeling_perceiver import PerceiverBasicDecoder

from keras_perceiver.convert.common import WeightSource
from keras_perceiver.convert.common import assign_basic_decoder
from keras_perceiver.convert.common import assign_encoder
from keras_perceiver.layers import BasicDecoder
from keras_perceiver.layers import PerceiverEncoder
from tests.torch_reference import unit_scale_


@pytest.mark.parametrize("hidden_act, activation", [("gelu", "gelu"),
                                                    ("gelu_pytorch_tanh", "gelu_tanh")])
def test_encoder_and_decoder_match_transformers(hidden_act, activation):
    config = PerceiverConfig(
        num_latents=6, d_latents=16, d_model=16, num_blocks=2, num_self_attends_per_block=2,
        num_self_attention_heads=4, num_cross_attention_heads=2, qk_channels=8, v_channels=16,
        cross_attention_widening_factor=2, self_attention_widening_factor=3,
        hidden_act=hidden_act, attention_probs_dropout_prob=0.0,
    )
    decoder = PerceiverBasicDecoder(
        config, output_num_channels=5, output_index_dims=7, num_channels=12, num_heads=2,
        qk_channels=8, v_channels=12, widening_factor=2, use_query_residual=True,
        trainable_position_encoding_kwargs=dict(num_channels=12, index_dims=7),
    )
    reference = PerceiverModel(config, decoder=decoder).eval()
    unit_scale_(reference)

    rng = np.random.default_rng(1)
    inputs = rng.normal(size=(3, 9, 16)).astype("float32")
    mask = (np.arange(9)[None] < np.array([[9], [5], [2]])).astype("int64")
    with torch.no_grad():
        out = reference(inputs=torch.from_numpy(inputs), attention_mask=torch.from_numpy(mask))
    ref_latents = out.last_hidden_state.numpy()
    ref_outputs = out.logits.numpy()
    assert np.abs(ref_outputs).mean() > 0.1  # O(1) outputs make 1e-5 meaningful

    encoder = PerceiverEncoder(
        num_latents=6, num_latent_channels=16, num_blocks=2, num_self_attends_per_block=2,
        num_self_attention_heads=4, num_cross_attention_heads=2, qk_channels=8, v_channels=16,
        cross_attention_widening_factor=2, self_attention_widening_factor=3,
        activation=activation,
    )
    ours_decoder = BasicDecoder(
        5, output_index_dims=7, num_query_channels=12, num_heads=2, qk_channels=8,
        v_channels=12, widening_factor=2, use_query_residual=True, activation=activation,
    )
    latents = encoder(inputs, input_mask=mask.astype(bool))
    ours_decoder(latents)
    state = {k: v.numpy() for k, v in reference.state_dict().items()}
    source = WeightSource(state, "PerceiverModel")
    assign_encoder(encoder, source, "torch", prefix="")
    assign_basic_decoder(ours_decoder, source, "decoder", "torch")
    source.finish()

    latents = ops.convert_to_numpy(encoder(inputs, input_mask=mask.astype(bool)))
    outputs = ops.convert_to_numpy(ours_decoder(latents))
    np.testing.assert_allclose(latents, ref_latents, atol=1e-5, rtol=0)
    np.testing.assert_allclose(outputs, ref_outputs, atol=1e-5, rtol=0)
