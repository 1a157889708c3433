"""Pictures of masked text and a masked language model's fills (matplotlib, imported lazily).

Example:

>>> import numpy as np
>>> import keras_perceiver.visualize.text as text_viz
>>> ids = np.array([[122, 110, 107, 38, 105, 103, 122]])  # "the cat"
>>> weights = np.array([[0, 0, 0, 0, 1, 1, 1]], "float32")
>>> masked = np.where(weights > 0, 3, ids)
>>> predicted = np.array([[122, 110, 107, 38, 105, 103, 116]])  # "the can"
>>> text_viz.render_fills(ids[0], masked[0], predicted[0], weights[0])
('the ___', 'the can', 'the cat')
>>> figure = text_viz.plot_masked_text(ids, masked, predicted, weights)
>>> len(figure.axes)
1
"""

import numpy as np

from keras_perceiver.tokenizers.bytes_tokenizer import BytesTokenizer

__all__ = ["plot_masked_text", "render_fills", "save_masked_text"]

_FIRST_BYTE_ID = BytesTokenizer.NUM_SPECIAL_TOKENS


def _char(token_id):
    """One printable character per id: ASCII as is, other bytes `?`, specials `·`."""
    if token_id == BytesTokenizer.MASK_ID:
        return "_"
    if token_id < _FIRST_BYTE_ID:
        return "·"
    byte = int(token_id) - _FIRST_BYTE_ID
    return chr(byte) if 32 <= byte < 127 else "?"


def _check(ids, masked, predicted, weights):
    arrays = [np.asarray(a) for a in (ids, masked, predicted, weights)]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise ValueError(
            "expected token ids, masked ids, predicted ids and sample weights of one shape, "
            f"received {[a.shape for a in arrays]}."
        )
    return arrays


def render_fills(ids, masked, predicted, weights):
    """`(input, filled, original)` strings of one sequence, one character per id, padding dropped.

    `input` shows `[MASK]` as `_`, `filled` replaces the chosen positions
    (`weights > 0`) with the model's ids.
    """
    ids, masked, predicted, weights = _check(ids, masked, predicted, weights)
    keep = ids != BytesTokenizer.PAD_ID
    filled = np.where(weights > 0, predicted, masked)
    return tuple("".join(_char(t) for t in row[keep]) for row in (masked, filled, ids))


def plot_masked_text(ids, masked, predicted, weights, max_examples=4, width=64, title=None):
    """A figure: per example, the masked input, the model's fills and the original text.

    Chosen positions are boxed: green where the fill equals the original
    byte, red where it does not.

    Args:
        ids, masked, predicted: int arrays `[B, L]` (original, model input,
            argmax prediction).
        weights: `[B, L]`, > 0 at the chosen (masked) positions.
        max_examples: how many rows of the batch to draw.
        width: characters per line.
        title: optional figure title.

    Returns:
        A `matplotlib.figure.Figure`.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ids, masked, predicted, weights = _check(ids, masked, predicted, weights)
    if ids.ndim != 2:
        raise ValueError(f"expected token ids of shape [batch, length], received {ids.shape}.")
    lines = []  # (label, [(char, colour or None)])
    for b in range(min(max_examples, ids.shape[0])):
        keep = ids[b] != BytesTokenizer.PAD_ID
        chosen = weights[b][keep] > 0
        right = (predicted[b] == ids[b])[keep]
        rows = {
            "input": [(_char(t), "#dddddd" if c else None) for t, c in zip(masked[b][keep], chosen)],
            "model": [
                (_char(p) if c else _char(t), ("#9be39b" if r else "#f19a9a") if c else None)
                for t, p, c, r in zip(masked[b][keep], predicted[b][keep], chosen, right)
            ],
            "truth": [(_char(t), "#dddddd" if c else None) for t, c in zip(ids[b][keep], chosen)],
        }
        for start in range(0, max(1, int(keep.sum())), width):
            for label, chars in rows.items():
                lines.append((label, chars[start:start + width]))
        lines.append(("", []))
    height = 0.22 * max(1, len(lines)) + 0.6
    figure, axis = plt.subplots(figsize=(0.13 * width + 1.2, height))
    axis.set_xlim(-6, width)
    axis.set_ylim(len(lines), -1)
    axis.axis("off")
    for y, (label, chars) in enumerate(lines):
        if label:
            axis.text(-5.5, y, label, family="monospace", fontsize=8, va="center", color="#555555")
        for x, (char, colour) in enumerate(chars):
            if colour:
                axis.add_patch(matplotlib.patches.Rectangle((x - 0.5, y - 0.45), 1, 0.9, color=colour, lw=0))
            axis.text(x, y, char, family="monospace", fontsize=8, ha="center", va="center")
    if title:
        axis.set_title(title, fontsize=9)
    figure.tight_layout()
    return figure


def save_masked_text(path, ids, masked, predicted, weights, **kwargs):
    """Draws `plot_masked_text` into a PNG at `path` (written aside, then renamed into place)."""
    import os

    import matplotlib.pyplot as plt

    figure = plot_masked_text(ids, masked, predicted, weights, **kwargs)
    tmp = f"{path}.tmp.png"
    try:
        figure.savefig(tmp, dpi=110)
        os.replace(tmp, path)
    finally:
        plt.close(figure)
        if os.path.exists(tmp):
            os.remove(tmp)
    return path
