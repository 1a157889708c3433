"""Embedded datasets and input pipelines of the recipes (tf.data; TensorFlow only)."""
