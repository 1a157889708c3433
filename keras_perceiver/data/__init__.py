"""Input pipelines and embedded datasets for the training recipes (TF-only, `tf.data`).

The modules here import TensorFlow; import the topic module directly, e.g.
`keras_perceiver.data.masking` or `keras_perceiver.data.images`.
"""
