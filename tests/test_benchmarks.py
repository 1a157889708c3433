"""The benchmark harness runs end to end (`--quick`); no timing assertions.

`make test` runs the harness on two workloads (MLM: forward, training and
remat rows; optical flow: the target and XLA columns); the tests marked
`slow` (`make test-slow`, ~10 minutes of subprocesses) run all six
workloads and the scaling sweep, and the GPU script on TensorFlow.
"""

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_module(args, tmp_path, timeout, backend="tensorflow"):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND=backend)
    return subprocess.run([sys.executable, "-m"] + args, cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_quick_benchmark_prints_its_table(tmp_path):
    output = tmp_path / "RESULTS.md"
    result = run_module(["benchmarks.run", "--quick", "--output", str(output)], tmp_path, 900)
    assert result.returncode == 0, result.stderr[-3000:]
    table = result.stdout
    assert "| workload | mode | batch | ours (s) | transformers (s) |" in table
    for desc in ("MLM, 2048 bytes", "ImageNet learned", "ImageNet Fourier",
                 "ImageNet conv", "optical flow", "multimodal, one decode chunk"):
        assert desc in table
    assert "train (remat)" in table
    assert "log-log slope of time in M, perceiver" in table
    assert "log-log slope of time in O, decoder" in table
    assert "of CPU time:" in table and "forward CPU (s, all threads)" in table
    assert "of working memory:" in table
    assert "exit " not in table and "timeout" not in table, table
    assert output.read_text().strip() in table
    assert re.search(r"TensorFlow [0-9.]+ GFLOP/s, PyTorch [0-9.]+ GFLOP/s", table), table
    flow = row_cells(table, "| optical flow")
    assert float(flow[7]) > 0 and float(flow[9]) > 0, flow  # GFLOP/s ours, theirs
    assert re.fullmatch(r"0\.4: [0-9]+", flow[10]), flow  # issue 13's flow target
    remat = row_cells(table, "| MLM, 2048 bytes", "| train (remat) |")
    assert float(remat[7]) > 0 and remat[9] == "-" and remat[10] == "-", remat


def row_cells(table, start, contains="|"):
    row = next(line for line in table.splitlines() if line.startswith(start) and contains in line)
    return [c.strip() for c in row.strip("|").split("|")]


def test_quick_benchmark_of_mlm_and_flow_with_xla_columns(tmp_path):
    output = tmp_path / "RESULTS.md"
    result = run_module(["benchmarks.run", "--quick", "--workloads", "mlm,flow", "--no-scaling",
                         "--xla", "--output", str(output)], tmp_path, 900)
    assert result.returncode == 0, result.stderr[-3000:]
    table = result.stdout
    assert "`python -m benchmarks.run --quick --xla`" in table
    assert "| ours, XLA (s) | ratio, XLA | XLA first call (s) | peak RSS ours, XLA (GB) |" in table
    assert "MLM, 2048 bytes" in table and "optical flow" in table
    assert "ImageNet learned" not in table
    assert output.read_text().strip() in table
    assert re.search(r"TensorFlow [0-9.]+ GFLOP/s, PyTorch [0-9.]+ GFLOP/s", table), table
    flow = row_cells(table, "| optical flow")
    assert len(flow) == 15 and all(float(c) > 0 for c in flow[11:]), flow
    assert float(flow[7]) > 0 and float(flow[9]) > 0, flow  # GFLOP/s ours, theirs
    assert re.fullmatch(r"0\.4: [0-9]+", flow[10]), flow  # issue 13's flow target
    train = row_cells(table, "| MLM, 2048 bytes", "| train |")
    assert float(train[3]) > 0 and float(train[4]) > 0, train
    remat = row_cells(table, "| MLM, 2048 bytes", "| train (remat) |")
    assert float(remat[7]) > 0 and remat[9] == "-" and remat[10] == "-", remat
    assert "exit " not in table and "timeout" not in table, table


@pytest.mark.parametrize("backend", [pytest.param("tensorflow", marks=pytest.mark.slow), "jax"])
def test_gpu_script_runs_tiny_on_cpu(tmp_path, backend):
    # jax: what a GPU machine without TensorFlow's GPU build runs (XLA).
    result = run_module(["benchmarks.gpu", "--tiny"], tmp_path, 600, backend)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert f"on {backend}, bf16 mixed precision, XLA |" in out
    assert "MLM MFU" in out and "flow forward, batch 8, 24x32, default budget (chunked)" in out
    assert "flow forward, batch 8, 24x32, budget 4 GiB" in out
    flops = re.search(r"MLM model FLOPs per step \(3x forward\): ([0-9.,]+) GFLOP", out)
    assert flops and float(flops.group(1).replace(",", "")) > 0, out


def test_unknown_workload_is_refused(capsys):

    from benchmarks import run

    with pytest.raises(SystemExit) as exit_info:
        run.main(["--quick", "--workloads", "mlm,bert"])
    assert exit_info.value.code == 2
    assert "expected names among mlm,image_learned" in capsys.readouterr().err


def test_scaling_only_and_no_scaling_exclude_each_other(capsys):

    from benchmarks import run

    with pytest.raises(SystemExit) as exit_info:
        run.main(["--quick", "--scaling-only", "--no-scaling"])
    assert exit_info.value.code == 2
    assert "exclude each other" in capsys.readouterr().err


def test_text_floors_reuses_only_runs_with_todays_flags(tmp_path):
    import json

    from benchmarks import text_floors

    extra = ["--test-copies", "8", "--seed", "1"]
    output = tmp_path / "text_scratch"
    output.mkdir()
    (output / "metrics.json").write_text(json.dumps({"metrics": {"test_accuracy": 0.9},
                                                     "wall_time_s": 1.0}))
    # A run saved with today's defaults (what the recipe writes) is reused...
    flags = text_floors.recipe_flags("text_classification", str(output), extra)
    (output / "config.json").write_text(json.dumps({"flags": flags}))
    assert text_floors.changed_flags("text_classification", str(output), extra) == []
    metrics, *_ = text_floors._run("text_classification", str(output), extra)
    assert metrics == {"test_accuracy": 0.9}
    # ...one with an earlier default is not.
    flags["train_copies"] = 4
    (output / "config.json").write_text(json.dumps({"flags": flags}))
    assert text_floors.changed_flags("text_classification", str(output), extra) == [
        "train_copies: 4, now 8"]
    with pytest.raises(SystemExit, match="train_copies: 4, now 8"):
        text_floors._run("text_classification", str(output), extra)
