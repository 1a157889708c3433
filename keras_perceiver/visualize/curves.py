"""Training curves: each metric per epoch, training beside held-out."""

import numpy as np


def figure(nrows, ncols, width=4.0, height=3.0):
    """`(Figure, axes [nrows, ncols])` without pyplot (no GUI backend, no global state)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height * nrows))
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def plot_history(history, title=None):
    """A figure with one panel per metric of `history` (`{name: [per epoch]}`,
    e.g. `keras.callbacks.History.history` or the recipes' `history.csv`):
    `name` and `val_name` share a panel; `learning_rate` gets its own.

    Example:
    >>> fig = keras_perceiver.visualize.plot_history(
    ...     {"loss": [1.0, 0.5], "val_loss": [1.1, 0.7], "accuracy": [0.5, 0.8]})
    >>> [ax.get_title() for ax in fig.axes]
    ['loss', 'accuracy']
    """
    names = [k for k in history if k != "epoch" and not k.startswith("val_")]
    names += [k[4:] for k in history if k.startswith("val_") and k[4:] not in history]
    if not names:
        raise ValueError(f"plot_history: expected metric lists, received keys {sorted(history)}.")
    fig, axes = figure(1, len(names))
    for ax, name in zip(axes[0], names):
        for key, style in ((name, "-"), (f"val_{name}", "--")):
            values = [np.nan if v == "" else float(v) for v in history.get(key, [])]
            if values:
                epochs = np.arange(1, len(values) + 1)
                ax.plot(epochs, values, style, marker="." if len(values) < 30 else None,
                        label="held-out" if key.startswith("val_") else "training")
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
