"""Input pipelines and embedded datasets for the training recipes (TF-only, `tf.data`).

The modules here import TensorFlow; import them directly, e.g.
`keras_perceiver.data.masking`.
"""
