"""Runs SavedModel requests the way TF Serving does, with no keras / keras_perceiver.

Run as a script in a fresh process: `python fresh_serving.py REQUESTS.pkl
RESPONSES.pkl`. Each request is `{"export_dir": dir, "signature": name,
"inputs": {input_name: array}}` (any number of export directories, each loaded
once). For each one it records the outputs (or the error) of
- `session`: `tf.compat.v1.saved_model.loader.load(sess, ["serve"], dir)` and
  `sess.run` of the SignatureDef by its tensor names (TF Serving's path);
- `function`: `tf.saved_model.load(dir).signatures[name](**inputs)`;
- `endpoint`: the restored `tf.function` attribute of the same name.
"""

import sys

sys.modules["keras_perceiver"] = None  # noqa: E402 - must precede any import
sys.modules["keras"] = None

import pickle  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def _error(error):
    return f"{type(error).__name__}: {error}"


def serve_all(requests):
    responses = [{} for _ in requests]
    for export_dir in dict.fromkeys(r["export_dir"] for r in requests):
        indices = [i for i, r in enumerate(requests) if r["export_dir"] == export_dir]
        got = serve(export_dir, [requests[i] for i in indices])
        for i, response in zip(indices, got):
            responses[i] = response
    return responses


def serve(export_dir, requests):
    responses = [{} for _ in requests]
    with tf.compat.v1.Session(graph=tf.Graph()) as sess:
        meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], export_dir)
        for request, response in zip(requests, responses):
            signature = meta.signature_def[request["signature"]]
            try:
                unknown = set(request["inputs"]) - set(signature.inputs)
                if unknown:  # TF Serving: "input tensor alias not found in signature"
                    raise KeyError(f"input tensor alias not found in signature: {sorted(unknown)}")
                feeds = {signature.inputs[k].name: v for k, v in request["inputs"].items()}
                fetches = {k: t.name for k, t in signature.outputs.items()}
                response["session"] = sess.run(fetches, feeds)
                response["signature_inputs"] = {
                    k: (tf.dtypes.as_dtype(t.dtype).name, t.name) for k, t in signature.inputs.items()
                }
            except Exception as error:  # noqa: BLE001
                response["session_error"] = _error(error)
    loaded = tf.saved_model.load(export_dir)
    for request, response in zip(requests, responses):
        name = request["signature"]
        inputs = {k: tf.constant(v) for k, v in request["inputs"].items()}
        for key, fn in (("function", loaded.signatures[name]), ("endpoint", getattr(loaded, name))):
            try:
                out = fn(**inputs)
                response[key] = {k: v.numpy() for k, v in out.items()}
            except Exception as error:  # noqa: BLE001
                response[key + "_error"] = _error(error)
    response_modules = {"keras": sys.modules.get("keras"), "keras_perceiver": sys.modules.get("keras_perceiver")}
    for response in responses:
        response["modules_blocked"] = all(v is None for v in response_modules.values())
    return responses


if __name__ == "__main__":
    request_path, response_path = sys.argv[1:3]
    with open(request_path, "rb") as f:
        requests = pickle.load(f)
    responses = serve_all(requests)
    with open(response_path, "wb") as f:
        pickle.dump(responses, f)
    np.asarray(0)  # numpy imported for unpickling the arrays
