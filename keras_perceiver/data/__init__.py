"""Data pipelines and embedded datasets of the training recipes (tf.data).

Each topic module (`flow`, `multimodal`, ...) builds NumPy arrays or
`tf.data.Dataset`s; they need TensorFlow and are imported on demand:
`from keras_perceiver.data import flow`.
"""
