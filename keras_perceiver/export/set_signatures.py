"""Serving signature of `PerceiverSetModel`: `entities` and `mask`, dynamic N."""

import tensorflow as tf

from keras_perceiver.export.preprocessing import check_input


def set_model_signatures(model, **_):
    """`serving_default`: `entities` float32 `[B, N, F]`, `mask` bool `[B, N]`, `N <= max`.

    Outputs `entity_logits` `[B, N, K]`, `entity_probabilities` (zero for
    padded entities) and `entity_class` int32 (-1 for padded entities), plus
    `set_logits`, `set_probabilities`, `set_class` for a set-level output.
    """
    from keras_perceiver.export.signatures import Signature

    config = model.get_config()
    features, max_entities = config["num_features"], config["max_entities"]

    def serve(entities, mask):
        entities = check_input(entities, "entities", (None, None, features),
                               f" (float32 [batch, N <= {max_entities}, {features}])")
        mask = check_input(mask, "mask", (None, None), " (bool [batch, N], True = real)")
        checks = [
            tf.debugging.assert_equal(
                tf.shape(mask), tf.shape(entities)[:2],
                message="input `mask` must have the shape [batch, N] of `entities`."),
            tf.debugging.assert_less_equal(
                tf.shape(entities)[1], max_entities,
                message=f"input `entities` must hold at most {max_entities} entities (N)."),
        ]
        with tf.control_dependencies(checks):
            entities, mask = tf.identity(entities), tf.identity(mask)
        outputs = model({"entities": entities, "mask": mask}, training=False)
        if not isinstance(outputs, dict):
            outputs = {"entity_logits": outputs}
        real = mask[:, :, None]
        probabilities = tf.where(real, tf.nn.softmax(outputs["entity_logits"], -1), 0.0)
        classes = tf.argmax(outputs["entity_logits"], axis=-1, output_type=tf.int32)
        result = {
            "entity_logits": outputs["entity_logits"],
            "entity_probabilities": probabilities,
            "entity_class": tf.where(mask, classes, -1),
        }
        if "set_logits" in outputs:
            result["set_logits"] = outputs["set_logits"]
            result["set_probabilities"] = tf.nn.softmax(outputs["set_logits"], -1)
            result["set_class"] = tf.argmax(outputs["set_logits"], -1, output_type=tf.int32)
        return result

    return {
        "serving_default": Signature(
            serve, [("entities", tf.float32, (None, None, features)),
                    ("mask", tf.bool, (None, None))],
            f"entities: float32 [batch, N <= {max_entities}, {features}], mask: bool "
            "[batch, N] -> entity_logits, entity_probabilities, entity_class (-1 if padded)",
        ),
    }
