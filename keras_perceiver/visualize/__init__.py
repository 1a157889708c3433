"""Pictures of what the models learned (matplotlib, the `[viz]` extra).

Modules import matplotlib only inside their plotting functions, so importing
`keras_perceiver.visualize` needs NumPy alone; `flow_to_color` needs no
matplotlib at all.
"""

from keras_perceiver.visualize.attention import plot_image_attention
from keras_perceiver.visualize.curves import plot_history
from keras_perceiver.visualize.flow import flow_to_color
from keras_perceiver.visualize.flow import make_colorwheel
from keras_perceiver.visualize.text import plot_masked_text

__all__ = ["flow_to_color", "make_colorwheel", "plot_history", "plot_image_attention",
           "plot_masked_text"]
