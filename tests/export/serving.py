"""Test helper: serve SavedModels in one fresh process without keras."""

import os
import pickle
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def serve_fresh(requests):
    """Runs `requests` through `fresh_serving.py` in one new Python process.

    `requests`: a list of `(export_dir, signature_name, {input_name: array})`,
    any number of export directories. Returns one dict per request with
    `session` / `function` / `endpoint` outputs or the matching `*_error`
    strings.
    """
    with tempfile.TemporaryDirectory() as tmp:
        req = os.path.join(tmp, "requests.pkl")
        res = os.path.join(tmp, "responses.pkl")
        with open(req, "wb") as f:
            pickle.dump([{"export_dir": d, "signature": s, "inputs": i} for d, s, i in requests], f)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        proc = subprocess.run(
            [sys.executable, os.path.join(HERE, "fresh_serving.py"), req, res],
            capture_output=True, text=True, env=env, timeout=600,
        )
        assert proc.returncode == 0, proc.stderr[-4000:]
        with open(res, "rb") as f:
            return pickle.load(f)
