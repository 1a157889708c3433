"""The command line: one-line errors, exit 2 for usage, 1 for failures, fast --help."""

import os
import pickle
import subprocess
import sys
import time

import pytest

from keras_perceiver import cli

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_cli(*args, env=None):
    environment = dict(os.environ, PYTHONPATH=ROOT, **(env or {}))
    return subprocess.run([sys.executable, "-m", "keras_perceiver.cli", *args],
                          capture_output=True, text=True, env=environment, timeout=600)


def assert_one_line_error(result, status, *fragments):
    assert result.returncode == status, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("keras-perceiver: error: "), result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_help_is_fast_and_silent():
    start = time.monotonic()
    result = run_cli("--help")
    elapsed = time.monotonic() - start
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.startswith("usage: keras-perceiver")
    for command in ("export", "convert", "presets", "download"):
        assert command in result.stdout
    # No TensorFlow import: --help must not pay for it (TF alone takes seconds).
    probe = subprocess.run(
        [sys.executable, "-c", "import sys, runpy; sys.argv = ['keras-perceiver', '--help'];"
         "\ntry: runpy.run_module('keras_perceiver.cli', run_name='__main__')"
         "\nexcept SystemExit: pass"
         "\nprint('TF', 'tensorflow' in sys.modules, 'keras' in sys.modules, file=sys.stderr)"],
        capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=ROOT))
    assert probe.stderr.strip() == "TF False False", probe.stderr
    print(f"\n--help took {elapsed:.2f} s")


@pytest.mark.parametrize("args, fragments", [
    (["export", "--preset", "x", "--output", "o", "--format", "onnx", "--quantization",
      "float16"], ["--quantization applies to --format tflite only"]),
    (["export", "--preset", "x", "--output", "o", "--format", "tflite", "--version", "3"],
     ["--version applies to --format saved_model only"]),
    (["export", "--preset", "x", "--output", "o", "--format", "tflite",
      "--representative-data", "d.npz"], ["--representative-data applies to"]),
    (["export", "--preset", "x", "--output", "o", "--format", "tflite", "--quantization",
      "int8"], ["needs --representative-data"]),
    (["export", "--preset", "x", "--output", "o", "--image-preprocessing", "{bad"],
     ["--image-preprocessing", "not valid JSON"]),
    (["export", "--preset", "x", "--output", "o", "--image-preprocessing", "[1]"],
     ["expected a JSON object"]),
    (["export", "--preset", "x", "--output", "o", "--version", "0"],
     ["expected a positive integer"]),
    (["export", "--preset", "x", "--output", "o", "--random-weights", "--weights", "w"],
     ["exclude each other"]),
    (["export", "--output", "o"], ["--preset"]),
    (["export", "--preset", "x", "--output", "o", "--format", "pdf"], ["invalid choice"]),
    (["convert", "--from", "transformers", "src", "--preset", "language_perceiver",
      "--output", "o"], ["--preset does not apply to --from transformers"]),
    (["convert", "--from", "deepmind", "src", "--output", "o"], ["needs --preset"]),
    (["frobnicate"], ["invalid choice"]),
])
def test_usage_errors_exit_2(args, fragments):
    assert_one_line_error(run_cli(*args), 2, *fragments)


def test_flags_for_directory_presets_exit_2(tmp_path):
    for flag in (["--class", "PerceiverMaskedLM"], ["--random-weights"]):
        result = run_cli("export", "--preset", str(tmp_path), "--output", str(tmp_path / "o"),
                         *flag)
        assert_one_line_error(result, 2, flag[0], "preset name")


def test_missing_files_exit_1(tmp_path):
    missing = str(tmp_path / "missing")
    assert_one_line_error(run_cli("export", "--preset", str(tmp_path), "--weights", missing,
                                  "--output", str(tmp_path / "o")), 1, "--weights", missing)
    assert_one_line_error(run_cli("convert", "--from", "deepmind", missing, "--preset",
                                  "language_perceiver", "--output", str(tmp_path / "o")),
                          1, missing)
    out = tmp_path / "taken"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    (tmp_path / "ckpt.pickle").write_bytes(b"")
    assert_one_line_error(run_cli("convert", "--from", "deepmind", str(tmp_path / "ckpt.pickle"),
                                  "--preset", "language_perceiver", "--output", str(out)),
                          1, "not empty", "--overwrite")
    assert (out / "mine.txt").read_text() == "keep"


def test_malicious_checkpoint_through_the_cli(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    path = tmp_path / "evil.pickle"
    path.write_bytes(pickle.dumps({"embed": {"embeddings": Evil()}}))
    result = run_cli("convert", "--from", "deepmind", str(path), "--preset",
                     "language_perceiver", "--output", str(tmp_path / "out"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]  # TF may log before it
    assert last.startswith("keras-perceiver: error: ") and "refusing to load" in last
    assert "system" in last and "evil.pickle" in last
    assert not marker.exists() and not (tmp_path / "out").exists()
    from keras_perceiver import convert

    with pytest.raises(convert.UnsafeCheckpointError):  # --debug: the exception itself
        cli.main(["--debug", "convert", "--from", "deepmind", str(path), "--preset",
                  "language_perceiver", "--output", str(tmp_path / "out")])
    assert not marker.exists()


def test_in_process_failures_return_1(tmp_path, capsys):
    preset = tmp_path / "bad"
    preset.mkdir()
    (preset / "config.json").write_text("{oops")
    assert cli.main(["export", "--preset", str(preset), "--output", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("keras-perceiver: error: ") and "config.json" in err
    assert "not valid JSON" in err and len(err.splitlines()) == 1
    assert cli.main(["export", "--preset", "no_such_model", "--output", str(tmp_path)]) == 2
    assert "unknown preset 'no_such_model'" in capsys.readouterr().err


def test_bad_image_preprocessing_option_is_a_usage_error(tmp_path, capsys):
    status = cli.main(["export", "--preset", str(tmp_path), "--output", str(tmp_path / "o"),
                       "--image-preprocessing", '{"std": 0}'])
    assert status == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("keras-perceiver: error: export: --image-preprocessing")
    assert "std must be positive" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()
