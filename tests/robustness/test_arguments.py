"""Misspelled or impossible constructor/call arguments (issue 8, item 5).

Each is rejected when constructed (or called) with a message naming the
argument, the value and what is allowed.
"""

import json

import numpy as np
import pytest

from keras_perceiver import layers as L
from keras_perceiver import models as M
from keras_perceiver.models.optical_flow import tile_origins

TEXT = dict(max_length=16, d_model=8, num_latents=4, num_latent_channels=16, num_self_attends_per_block=1,
            num_self_attention_heads=2, num_cross_attention_heads=2, qk_channels=8,
            v_channels=16)
IMAGE = dict(num_classes=3, image_shape=(8, 8, 1), num_bands=2, num_latents=4, num_latent_channels=8,
             num_blocks=1, num_self_attends_per_block=1, num_self_attention_heads=2)
FLOW = dict(image_shape=(6, 8), num_latents=4, num_latent_channels=8,
            num_self_attends_per_block=1, num_self_attention_heads=2, num_patch_channels=4,
            num_bands=2)
MULTIMODAL = dict(num_frames=2, image_size=8, audio_samples=32, samples_per_patch=4,
                  num_classes=5, image_num_bands=2, audio_num_bands=3, num_latents=4,
                  num_latent_channels=8, num_self_attends_per_block=1,
                  num_self_attention_heads=2, label_query_channels=6, decoder_channels=8)
BASES = {
    M.PerceiverMaskedLM: TEXT,
    M.PerceiverTextClassifier: dict(TEXT, tasks=2),
    M.PerceiverImageClassifier: IMAGE,
    M.PerceiverOpticalFlow: FLOW,
    M.PerceiverMultimodalAutoencoder: MULTIMODAL,
}
INT = r"must be an integer >= {}, received {}"

# (class, overrides, message regex)
TASK_CASES = [
    (M.PerceiverMaskedLM, dict(num_latents=0), r"PerceiverMaskedLM: `num_latents` " + INT.format(1, 0)),
    (M.PerceiverMaskedLM, dict(max_length=0), r"`max_length` " + INT.format(1, 0)),
    (M.PerceiverMaskedLM, dict(num_self_attends_per_block=-1),
     r"`num_self_attends_per_block` " + INT.format(0, -1)),
    (M.PerceiverMaskedLM, dict(qk_channels=0), r"`qk_channels` must be an integer >= 1 or None, received 0"),
    (M.PerceiverMaskedLM, dict(layer_norm_epsilon=-1), r"`layer_norm_epsilon` must be a finite number > 0.0, received -1"),
    (M.PerceiverMaskedLM, dict(pad_id=262), r"`pad_id` must be in \[0, vocab_size=262\), received 262"),
    (M.PerceiverMaskedLM, dict(num_self_attention_heads=0), r"`num_self_attention_heads` " + INT.format(1, 0)),
    (M.PerceiverMaskedLM, dict(decoder_num_heads=0), r"`decoder_num_heads` " + INT.format(1, 0)),
    (M.PerceiverMaskedLM, dict(dropout=1.5), r"`dropout` must be a finite number in \[0.0, 1.0\), received 1.5"),
    (M.PerceiverMaskedLM, dict(num_self_attention_heads=3), r"divisible by num_self_attention_heads=3"),
    (M.PerceiverMaskedLM, dict(num_latents=2.5), r"`num_latents` " + INT.format(1, 2.5)),
    (M.PerceiverTextClassifier, dict(num_cross_attention_heads=0), r"`num_cross_attention_heads` " + INT.format(1, 0)),
    (M.PerceiverImageClassifier, dict(num_latents=0), r"PerceiverImageClassifier: `num_latents` " + INT.format(1, 0)),
    (M.PerceiverImageClassifier, dict(num_latent_channels=10, num_self_attention_heads=3), r"divisible by num_self_attention_heads=3"),
    (M.PerceiverImageClassifier, dict(num_bands=0), r"`num_bands` " + INT.format(1, 0)),
    (M.PerceiverOpticalFlow, dict(num_blocks=0), r"PerceiverOpticalFlow: `num_blocks` " + INT.format(1, 0)),
    (M.PerceiverOpticalFlow, dict(rescale_factor=0.0), r"`rescale_factor` must be a finite number > 0.0"),
    (M.PerceiverMultimodalAutoencoder, dict(samples_per_patch=0), r"`samples_per_patch` " + INT.format(1, 0)),
    (M.PerceiverMultimodalAutoencoder, dict(num_subsampled_points={"image": 0, "audio": 2}),
     r"`num_subsampled_points\['image'\]` " + INT.format(1, 0)),
    (M.PerceiverMultimodalAutoencoder, dict(image_size=(8, 8, 8)), r"`image_size` must be an int or \(height, width\)"),
]


@pytest.mark.parametrize("cls, overrides, match", TASK_CASES,
                         ids=[f"{c.__name__}-{'-'.join(o)}" for c, o, _ in TASK_CASES])
def test_task_model_rejects_impossible_argument(cls, overrides, match):
    with pytest.raises(ValueError, match=match):
        cls(**{**BASES[cls], **overrides})


@pytest.mark.parametrize("cls", list(BASES), ids=lambda c: c.__name__)
def test_task_model_rejects_unknown_kwargs(cls):
    with pytest.raises(ValueError, match=rf"{cls.__name__}: unknown argument\(s\) 'num_latentz' \(did you mean 'num_latents'\?\)"):
        cls(**BASES[cls], num_latentz=8)
    model = cls(**BASES[cls], name="ok", trainable=False)  # keras.Model's own kwargs still work
    assert model.name == "ok" and not model.trainable


def test_from_preset_rejects_unknown_kwargs_and_config_keys(tmp_path):
    with pytest.raises(ValueError, match="unknown argument.*'num_latentz'"):
        M.PerceiverImageClassifier.from_preset("vision_perceiver_fourier", num_latentz=8)
    model = M.PerceiverImageClassifier(**IMAGE)
    model.save_weights(str(tmp_path / "model.weights.h5"))
    config = {"class_name": "PerceiverImageClassifier", "config": {**model.get_config(), "bogus": 1}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="unknown argument.*'bogus'"):
        M.PerceiverImageClassifier.from_preset(str(tmp_path))


def test_reconstruct_and_predict_flow_arguments():
    model = M.PerceiverMultimodalAutoencoder(**MULTIMODAL)
    inputs = {"image": np.zeros((1, 2, 8, 8, 3), "float32"), "audio": np.zeros((1, 32, 1), "float32"),
              "label": np.zeros((1, 5), "float32")}
    with pytest.raises(ValueError, match=r"num_chunks must be an integer in \[1, 8\], received 2.5"):
        model.reconstruct(inputs, num_chunks=2.5)
    with pytest.raises(ValueError, match=r"tile_origins: `min_overlap` " + INT.format(0, -5)):
        tile_origins((10, 10), (6, 8), min_overlap=-5)
    flow = M.PerceiverOpticalFlow(**FLOW)
    frame = np.zeros((6, 8, 3), "uint8")
    with pytest.raises(ValueError, match=r"`min_overlap` " + INT.format(0, -5)):
        flow.predict_flow(frame, frame, min_overlap=-5)


# (layer factory, message regex): rejected at construction.
LAYER_CASES = [
    (lambda: L.Attention(num_heads=0), r"attention\w*: `num_heads` " + INT.format(1, 0)),
    (lambda: L.Attention(num_heads=3, qk_channels=8), r"qk_channels=8 must be divisible by num_heads=3"),
    (lambda: L.Attention(attention_dropout=-0.1), r"`attention_dropout` must be a finite number in \[0.0, 1.0\)"),
    (lambda: L.MLP(widening_factor=0), r"`widening_factor` " + INT.format(1, 0)),
    (lambda: L.SelfAttention(num_heads=2, layer_norm_epsilon=0), r"`layer_norm_epsilon` must be a finite number > 0.0, received 0"),
    (lambda: L.CrossAttention(num_heads=2, v_channels=5), r"v_channels=5 must be divisible by num_heads=2"),
    (lambda: L.PerceiverEncoder(0, 8), r"`num_latents` " + INT.format(1, 0)),
    (lambda: L.PerceiverEncoder(4, 8, num_self_attends_per_block=-1), r"`num_self_attends_per_block` " + INT.format(0, -1)),
    (lambda: L.PerceiverEncoder(4, 10, num_self_attention_heads=4), r"num_latent_channels=10 must be divisible by num_self_attention_heads=4"),
    (lambda: L.PerceiverEncoder(4, 8, cross_attention_shape_for_attention="x"), r"cross_attention_shape_for_attention` must be one of"),
    (lambda: L.BasicDecoder(0, output_index_dims=3, num_query_channels=4), r"`output_num_channels` " + INT.format(1, 0)),
    (lambda: L.BasicDecoder(3, num_query_channels=4), r"`output_index_dims` must be a non-empty tuple of integers >= 1, received None"),
    (lambda: L.BasicDecoder(3, output_index_dims=(4, 0), num_query_channels=4), r"`output_index_dims`.*received \(4, 0\)"),
    (lambda: L.ClassificationDecoder(0, 4), r"`output_num_channels` " + INT.format(1, 0)),
    (lambda: L.ProjectionDecoder(0), r"`num_classes` " + INT.format(1, 0)),
    (lambda: L.TextPreprocessor(262, 8, max_length=0), r"`max_length` " + INT.format(1, 0)),
    (lambda: L.TextPreprocessor(262, 8, max_length=4, pad_id=262), r"`pad_id` must be in \[0, vocab_size=262\), received 262"),
    (lambda: L.EmbeddingDecoder(0), r"`vocab_size` " + INT.format(1, 0)),
    (lambda: L.FourierPositionEncoding((4, 0), 3), r"`index_dims`.*received \(4, 0\)"),
    (lambda: L.FourierPositionEncoding((4, 5), 0), r"`num_bands` " + INT.format(1, 0)),
    (lambda: L.FourierPositionEncoding((4, 5), 2, max_resolution=(4, -1)), r"`max_resolution` must hold positive numbers"),
    (lambda: L.TrainablePositionEncoding(4, 0), r"`num_channels` " + INT.format(1, 0)),
    (lambda: L.OpticalFlowPreprocessor((4, 5, 6)), r"`image_shape` must be \(height, width\)"),
    (lambda: L.ConvDownsample(batchnorm_momentum=1.5), r"`batchnorm_momentum` must be a finite number in \[0.0, 1.0\)"),
    (lambda: L.SpaceToDepth(0), r"`spatial_block_size` " + INT.format(1, 0)),
    (lambda: L.ImagePreprocessor("pixels", num_bands=0), r"ImagePreprocessor: `num_bands` " + INT.format(1, 0)),
    (lambda: L.VideoPreprocessor(patch_size=0), r"`patch_size` " + INT.format(1, 0)),
    (lambda: L.AudioPreprocessor(samples_per_patch=-2), r"`samples_per_patch` " + INT.format(1, -2)),
    (lambda: L.AudioPostprocessor(samples_per_patch=0), r"`samples_per_patch` " + INT.format(1, 0)),
    (lambda: L.MultimodalPadding(min_padding_size=-1), r"`min_padding_size` " + INT.format(0, -1)),
]


@pytest.mark.parametrize("factory, match", LAYER_CASES, ids=[m[:40] for _, m in LAYER_CASES])
def test_layer_rejects_impossible_argument(factory, match):
    with pytest.raises(ValueError, match=match):
        factory()


def test_perceiver_io_rejects_unknown_kwargs():
    with pytest.raises(ValueError, match=r"PerceiverIO: unknown argument\(s\) 'input_dtpye' \(did you mean 'input_dtype'\?\)"):
        M.PerceiverIO(encoder=None, decoder=None, input_shape=(3,), input_dtpye="int32")
