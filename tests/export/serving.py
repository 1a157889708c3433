"""Test helper: serve a SavedModel in a fresh process without keras."""

import os
import pickle
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def serve_fresh(export_dir, requests):
    """Runs `requests` through `fresh_serving.py` in a new Python process.

    `requests`: a list of `(signature_name, {input_name: array})`. Returns a
    list of dicts with `session` / `function` / `endpoint` outputs or the
    matching `*_error` strings.
    """
    with tempfile.TemporaryDirectory() as tmp:
        req = os.path.join(tmp, "requests.pkl")
        res = os.path.join(tmp, "responses.pkl")
        with open(req, "wb") as f:
            pickle.dump([{"signature": s, "inputs": i} for s, i in requests], f)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        proc = subprocess.run(
            [sys.executable, os.path.join(HERE, "fresh_serving.py"), export_dir, req, res],
            capture_output=True, text=True, env=env, timeout=600,
        )
        assert proc.returncode == 0, proc.stderr[-4000:]
        with open(res, "rb") as f:
            return pickle.load(f)

