"""Optical flow in the Middlebury colour coding (Baker et al., 2011).

`flow_to_color` maps each flow vector to a colour: its direction picks a hue
on the standard 55-colour wheel (red RY 15, yellow-green YG 6, green-cyan GC
4, cyan-blue CB 11, blue-magenta BM 13, magenta-red MR 6), its length the
saturation (white at zero, the full wheel colour at the maximum radius;
vectors beyond it are darkened to 75%), as in the Middlebury `colorcode.cpp`
and the `flow_vis` package. Flow convention: channel 0 is horizontal
(+x = right), channel 1 vertical (+y = down), as the models return it; so
+x is red, -x cyan-blue, +y yellow-orange and -y blue-violet.
`plot_flow_pairs` draws frames, ground truth and predictions side by side.
"""

import numpy as np

# Number of colours in each segment of the wheel (Baker et al., section 3.3).
SEGMENTS = (("RY", 15), ("YG", 6), ("GC", 4), ("CB", 11), ("BM", 13), ("MR", 6))


def make_colorwheel():
    """The `[55, 3]` Middlebury colour wheel, RGB in [0, 255] (float64).

    Each segment ramps one channel with `floor(255 * i / n)` while another is
    held at 255, red -> yellow -> green -> cyan -> blue -> magenta -> red.

    Example:
    >>> wheel = keras_perceiver.visualize.make_colorwheel()
    >>> wheel.shape, wheel[0].tolist(), wheel[15].tolist()
    ((55, 3), [255.0, 0.0, 0.0], [255.0, 255.0, 0.0])
    """
    # (channel held at 255, channel ramped, ramp direction) per segment.
    plan = ((0, 1, +1), (1, 0, -1), (1, 2, +1), (2, 1, -1), (2, 0, +1), (0, 2, -1))
    rows = []
    for (_, n), (full, ramped, direction) in zip(SEGMENTS, plan):
        ramp = np.floor(255.0 * np.arange(n) / n)
        block = np.zeros((n, 3))
        block[:, full] = 255.0
        block[:, ramped] = ramp if direction > 0 else 255.0 - ramp
        rows.append(block)
    return np.concatenate(rows, axis=0)


def flow_to_color(flow, max_radius=None, bgr=False):
    """Colours a flow field `[..., 2]` (pixels) as uint8 RGB `[..., 3]`.

    Args:
        flow: `[..., 2]` array, channel 0 horizontal, 1 vertical.
        max_radius: the flow length shown at full colour; `None` uses the
            largest finite length in `flow` (the standard normalisation).
            Pass one value to colour several fields on the same scale.
        bgr: return BGR (OpenCV order) instead of RGB.

    Returns:
        uint8 `[..., 3]`. Zero flow is white; non-finite vectors are black.

    Example:
    >>> import numpy as np
    >>> flow = np.array([[[1.0, 0.0], [0.0, 0.0], [-1.0, 0.0]]])
    >>> keras_perceiver.visualize.flow_to_color(flow).tolist()
    [[[255, 0, 0], [255, 255, 255], [0, 209, 255]]]
    """
    flow = np.asarray(flow, dtype=np.float64)
    if flow.ndim < 1 or flow.shape[-1] != 2:
        raise ValueError(
            f"flow_to_color: expected a flow of shape [..., 2] (horizontal, "
            f"vertical), received shape {flow.shape}."
        )
    finite = np.isfinite(flow).all(axis=-1)
    u = np.where(finite, flow[..., 0], 0.0) + 0.0  # + 0.0 turns -0.0 into 0.0
    v = np.where(finite, flow[..., 1], 0.0) + 0.0
    radius = np.sqrt(u * u + v * v)
    if max_radius is None:
        max_radius = float(radius.max()) if radius.size else 0.0
    elif not np.isfinite(max_radius) or max_radius < 0:
        raise ValueError(
            f"flow_to_color: max_radius must be a finite number >= 0, received {max_radius}."
        )
    scale = 1.0 / (max_radius + np.finfo(np.float64).eps)
    u, v, radius = u * scale, v * scale, radius * scale

    wheel = make_colorwheel() / 255.0
    ncols = wheel.shape[0]
    angle = np.arctan2(-v, -u) / np.pi  # in [-1, 1]; +x flow gives -1
    fk = (angle + 1.0) / 2.0 * (ncols - 1)
    k0 = np.floor(fk).astype(np.int64)
    k1 = np.where(k0 + 1 == ncols, 0, k0 + 1)
    f = (fk - k0)[..., None]
    color = (1.0 - f) * wheel[k0] + f * wheel[k1]
    inside = (radius <= 1.0)[..., None]
    color = np.where(inside, 1.0 - radius[..., None] * (1.0 - color), color * 0.75)
    color = np.where(finite[..., None], color, 0.0)
    image = np.floor(255.0 * color).astype(np.uint8)
    return image[..., ::-1] if bgr else image


def plot_flow_pairs(frames, true_flow, pred_flow=None, max_rows=4, title=None):
    """A matplotlib Figure: frame 1, frame 2, true flow, predicted flow per row.

    Args:
        frames: `[N, 2, H, W, 3]` frames, uint8 or floats in [-1, 1].
        true_flow: `[N, H, W, 2]` ground-truth flow in pixels.
        pred_flow: optional `[N, H, W, 2]` predicted flow; each row colours
            truth and prediction with the truth's maximum radius.
        max_rows: at most this many examples.
        title: optional figure title.
    """
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state

    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        frames = np.clip((frames.astype(np.float64) + 1.0) * 127.5, 0, 255).astype(np.uint8)
    true_flow = np.asarray(true_flow)
    rows = min(max_rows, len(frames))
    cols = 3 if pred_flow is None else 4
    fig = Figure(figsize=(2.6 * cols, 2.0 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for i in range(rows):
        radius = float(np.sqrt((true_flow[i] ** 2).sum(-1)).max())
        panels = [(frames[i, 0], "frame 1"), (frames[i, 1], "frame 2"),
                  (flow_to_color(true_flow[i], max_radius=radius), f"true flow (max {radius:.1f} px)")]
        if pred_flow is not None:
            panels.append((flow_to_color(np.asarray(pred_flow[i]), max_radius=radius), "predicted"))
        for ax, (image, label) in zip(axes[i], panels):
            ax.imshow(image)
            ax.set_title(label, fontsize=8)
            ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
