"""Pictures of what the models learned (matplotlib, the `[viz]` extra).

Modules import matplotlib only inside their plotting functions, so importing
`keras_perceiver.visualize` needs NumPy alone.
"""

from keras_perceiver.visualize.attention import plot_image_attention
from keras_perceiver.visualize.curves import plot_history

__all__ = ["plot_history", "plot_image_attention"]
