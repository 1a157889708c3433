"""`flow_to_color` against the Middlebury colour wheel (Baker et al., 2011)."""

import numpy as np
import pytest

from keras_perceiver.visualize import flow_to_color
from keras_perceiver.visualize import make_colorwheel
from keras_perceiver.visualize.flow import plot_flow_pairs


def test_colorwheel_segments():
    wheel = make_colorwheel()
    assert wheel.shape == (55, 3)
    # First colour of each segment: red, yellow, green, cyan, blue, magenta.
    starts = {0: (255, 0, 0), 15: (255, 255, 0), 21: (0, 255, 0), 25: (0, 255, 255),
              36: (0, 0, 255), 49: (255, 0, 255)}
    for index, color in starts.items():
        assert tuple(wheel[index]) == color, index
    # Ramps step by floor(255 * i / n): RY has n = 15, MR n = 6 (descending blue).
    assert wheel[1].tolist() == [255, 17, 0]
    assert wheel[54].tolist() == [255, 0, 255 - np.floor(255 * 5 / 6)]
    assert wheel[26].tolist() == [0, 255 - np.floor(255 / 11), 255]


def test_known_vectors_at_max_radius():
    flow = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    colors = flow_to_color(flow).tolist()
    assert colors[0] == [255, 0, 0]  # +x: the wheel's colour at angle 0 (red)
    assert colors[1] == [0, 209, 255]  # -x: wheel[27], halfway round
    assert colors[2] == [255, 229, 0]  # +y (down): between wheel[13] and wheel[14]
    assert colors[3] == [88, 0, 255]  # -y (up): between wheel[40] and wheel[41]


def test_zero_is_white_and_radius_desaturates():
    flow = np.array([[0.0, 0.0], [2.0, 0.0], [4.0, 0.0]])
    colors = flow_to_color(flow).tolist()  # normalised by the max radius 4
    assert colors[0] == [255, 255, 255]
    assert colors[1] == [255, 127, 127]  # half radius: 1 - 0.5 * (1 - colour)
    assert colors[2] == [255, 0, 0]
    assert flow_to_color(np.zeros((3, 4, 2))).tolist() == np.full((3, 4, 3), 255).tolist()


def test_max_radius_and_out_of_range():
    flow = np.array([[2.0, 0.0], [-0.0, -0.0]])
    colors = flow_to_color(flow, max_radius=1.0).tolist()
    assert colors[0] == [191, 0, 0]  # beyond the max radius: 75% of the colour
    assert colors[1] == [255, 255, 255]
    # A common scale: the same vector gets the same colour in two fields.
    a = flow_to_color(np.array([[1.0, 1.0], [5.0, 0.0]]), max_radius=5.0)
    b = flow_to_color(np.array([[1.0, 1.0], [2.0, 0.0]]), max_radius=5.0)
    assert a[0].tolist() == b[0].tolist()
    assert flow_to_color(np.array([[1.0, 0.0]]), bgr=True).tolist() == [[0, 0, 255]]


def test_non_finite_is_black_and_bad_input():
    colors = flow_to_color(np.array([[np.nan, 0.0], [1.0, 0.0]])).tolist()
    assert colors == [[0, 0, 0], [255, 0, 0]]
    with pytest.raises(ValueError, match=r"shape \[\.\.\., 2\]"):
        flow_to_color(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="max_radius"):
        flow_to_color(np.zeros((4, 2)), max_radius=-1.0)


def test_plot_flow_pairs_writes_png(tmp_path):
    frames = np.random.default_rng(0).integers(0, 255, (2, 2, 8, 10, 3), dtype=np.uint8)
    flow = np.random.default_rng(1).normal(size=(2, 8, 10, 2))
    figure = plot_flow_pairs(frames, flow, flow * 0.5)
    assert len(figure.axes) == 8  # 2 rows: frame 1, frame 2, truth, prediction
    path = str(tmp_path / "flow.png")
    figure.savefig(path)
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
