"""Training data for the recipes: `tf.data` pipelines and embedded data sets
(TensorFlow-only modules; import the topic module, e.g.
`keras_perceiver.data.images`)."""
