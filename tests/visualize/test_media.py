"""Video and audio pictures, input beside reconstruction."""

import numpy as np

from keras_perceiver.visualize.media import plot_video_audio


def test_plot_video_audio_writes_png(tmp_path):
    rng = np.random.default_rng(0)
    inputs = {"image": rng.uniform(size=(2, 3, 8, 8, 3)),
              "audio": rng.uniform(-1, 1, size=(2, 64, 1)),
              "label": np.eye(3)[[0, 2]]}
    figure = plot_video_audio(inputs, inputs, max_frames=2, class_names=["a", "b", "c"])
    # Per example: 2 rows x (2 frames + 1 waveform).
    assert len(figure.axes) == 2 * 2 * 3
    assert figure.axes[0].get_ylabel() == "input\n(a)"
    path = str(tmp_path / "media.png")
    figure.savefig(path)
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
