"""Perceiver IO benchmarks against transformers: `python -m benchmarks.run [--quick]`.

Every figure is measured in its own subprocess (so peak RSS is per
framework and per workload) on the same machine in one run, with the same
configuration and the same weights: a seeded random transformers model is
saved, converted with `keras_perceiver.convert.from_transformers`, and each
framework loads its copy. Prints Markdown tables and writes
`benchmarks/RESULTS.md` (and `scaling.png` when matplotlib is installed).

`--quick` uses tiny models of the same structure (minutes on 2 CPU cores;
the numbers only show the harness works). The full run uses the released
sizes at batch 1 (`--batch8` adds batch 8). `--xla` also times ours with
`jit_compile=True` (TensorFlow XLA), in extra columns with its compile time.
"""

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FORWARD = ("mlm", "image_learned", "image_fourier", "image_conv", "flow", "multimodal")
TRAIN = ("mlm", "image_fourier")
PLAIN_TRANSFORMER_MAX_GB = 4.0  # never allocate more than this for M x M logits
# The time ratios (ours / transformers') issue 13 sets as targets.
TARGETS = {("mlm", "forward"): 0.8, ("image_learned", "forward"): 0.7,
           ("image_fourier", "forward"): 0.7, ("image_conv", "forward"): 0.7,
           ("flow", "forward"): 0.4, ("mlm", "train"): 0.8, ("image_fourier", "train"): 0.8}


def subprocess_json(module, spec, timeout):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
    try:
        result = subprocess.run([sys.executable, "-m", module, json.dumps(spec)], cwd=ROOT,
                                env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout}s"}
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["?"]
        return {"error": f"exit {result.returncode}: {tail[0][:200]}"}
    return json.loads(result.stdout.strip().splitlines()[-1])


def fmt(value, unit="", digits=2):
    if value is None:
        return "-"
    return f"{value:.{digits}f}{unit}"


def ratio(ours, theirs):
    if not ours or not theirs or "seconds" not in ours or "seconds" not in theirs:
        return None
    return ours["seconds"] / theirs["seconds"]


def compare(args, matmul_gflops, work_dir, log):
    from benchmarks.workloads import workload

    rows = []
    timeout = 120 if args.quick else 1800
    batches = (1, 8) if args.batch8 else (1,)
    for name in args.workloads:
        directory = os.path.join(work_dir, name)
        prep = subprocess_json("benchmarks.worker", dict(role="prepare", workload=name,
                                                         quick=args.quick, dir=directory), timeout)
        if "error" in prep:
            rows.append(dict(name=name, mode="forward", batch=1, error=prep["error"]))
            continue
        modes = [("forward", False, b) for b in batches]
        if name in TRAIN:
            modes += [("train", False, 1), ("train", True, 1)]
        for mode, remat, batch in modes:
            spec = dict(workload=name, quick=args.quick, dir=directory, batch=batch, mode=mode,
                        remat=remat, repeats=1 if args.quick else 2)
            ours = subprocess_json("benchmarks.worker", dict(spec, role="keras"), timeout)
            theirs = subprocess_json("benchmarks.worker", dict(spec, role="transformers"), timeout)
            row = dict(name=name, desc=workload(name, args.quick)["desc"], mode=mode, batch=batch,
                       remat=remat, ours=ours, theirs=theirs, params=prep["params"])
            if args.xla:
                row["xla"] = subprocess_json("benchmarks.worker", dict(spec, role="keras", jit=True),
                                             timeout)
            flops = theirs.get("flops")  # model FLOPs, see worker.torch_flops
            if "seconds" in ours and flops:
                row["gflops"] = flops / ours["seconds"] / 1e9
                row["roofline"] = row["gflops"] / matmul_gflops
            if "seconds" in theirs and flops:
                row["their_gflops"] = flops / theirs["seconds"] / 1e9
                target = TARGETS.get((name, mode)) if not remat else None
                if target:
                    row["target"] = (target, row["their_gflops"] / target)
            rows.append(row)
            log(f"  {name} {mode} b{batch}{' remat' if remat else ''}: ours {ours} theirs {theirs}"
                + (f" ours with XLA {row['xla']}" if args.xla else ""))
    return rows


def scaling(args, log):
    sizes = [512, 1024, 2048, 4096] if args.quick else [8192, 32768, 131072, 524288, 1048576]
    width, latents, layers = (32, 64, 1) if args.quick else (256, 512, 4)
    points = []
    for model in ("perceiver", "decoder", "transformer"):
        if model == "decoder" and args.quick:
            model_sizes = sizes[::3]  # two points in quick mode (the slope only)
        elif model == "transformer" and not args.quick:
            model_sizes = [2048, 4096] + sizes  # its M x M logits stop it after 8k: start lower
        else:
            model_sizes = sizes
        for m in model_sizes:
            if model == "transformer":
                need_gb = 4 * 4 * m * m / 2**30  # 4 heads of float32 M x M logits
                if need_gb > PLAIN_TRANSFORMER_MAX_GB:
                    points.append(dict(model=model, inputs=m, error=f"needs {need_gb:.0f} GB of logits"))
                    continue
            spec = dict(model=model, inputs=m, width=width, latents=latents, layers=layers,
                        budget=2**62 if model == "transformer" else None)
            result = subprocess_json("benchmarks.scaling", spec, 120 if args.quick else 1200)
            points.append(dict(model=model, inputs=m, **result))
            log(f"  scaling {model} M={m}: {result}")
    return points


def slope(points, key):
    xy = [(math.log(p["inputs"]), math.log(p[key])) for p in points if key in p and p[key] > 0]
    if len(xy) < 2:
        return None
    n = len(xy)
    mx, my = sum(x for x, _ in xy) / n, sum(y for _, y in xy) / n
    return sum((x - mx) * (y - my) for x, y in xy) / sum((x - mx) ** 2 for x, _ in xy)


def render(args, matmul_gflops, rows, points, seconds, torch_gflops=None):
    lines = [
        "# Benchmark results",
        "",
        f"`python -m benchmarks.run{' --quick' if args.quick else ''}{' --scaling-only' if args.scaling_only else ''}"
        f"{' --xla' if args.xla else ''}`, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{os.cpu_count()} CPU cores, fp32, TensorFlow backend (ours) vs transformers (PyTorch); "
        f"{seconds / 60:.1f} min in all.",
        "Each figure is one process: time = best of the timed repeats after one warm-up; peak RSS = "
        "the process's `ru_maxrss` (framework, weights and activations). The machine may be shared "
        "with other jobs, so timings are noisy." + (" **Quick mode: tiny models, the numbers only "
                                                     "show that the harness works.**" if args.quick else ""),
        "",
        f"fp32 matmul rate measured in this run (2048² square matmul): TensorFlow "
        f"{fmt(matmul_gflops, ' GFLOP/s', 1)}, PyTorch {fmt(torch_gflops, ' GFLOP/s', 1)}.",
        "",
        "GFLOP/s = the model's FLOPs (PyTorch's profiler on transformers' forward, every matmul "
        "counted; a training step = 3 forwards) / the time; share of matmul rate = our GFLOP/s / "
        "TensorFlow's matmul rate. \"target: needs\" = issue 13's time ratio for the row and the "
        "GFLOP/s our code would have to reach to meet it (transformers' GFLOP/s / the ratio), "
        "to compare with the matmul rates above.",
        "",
    ]
    xla_header = (" ours, XLA (s) | ratio, XLA | XLA first call (s) | peak RSS ours, XLA (GB) |"
                  if args.xla else "")
    if rows:
        lines += ["| workload | mode | batch | ours (s) | transformers (s) | ratio | peak RSS ours / theirs (GB) "
                  "| GFLOP/s (ours) | share of matmul rate | GFLOP/s (transformers) "
                  "| target: needs GFLOP/s |" + xla_header,
                  "|---|---|---|---|---|---|---|---|---|---|---|" + "---|" * xla_header.count("|")]
    else:
        lines.append("(`--scaling-only`: no side-by-side workloads in this run.)")
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['name']} | {r['mode']} | {r['batch']} | {r['error']} | | | | | | | |")
            continue
        ours, theirs = r["ours"], r["theirs"]
        mode = r["mode"] + (" (remat)" if r["remat"] else "")
        rss = f"{fmt(ours.get('peak_rss_gb'))} / {fmt(theirs.get('peak_rss_gb'))}"
        lines.append(
            f"| {r['desc']} | {mode} | {r['batch']} | {fmt(ours.get('seconds'), '', 3) if 'seconds' in ours else ours.get('error', '-')} "
            f"| {fmt(theirs.get('seconds'), '', 3) if 'seconds' in theirs else theirs.get('error') or theirs.get('skipped', '-')} "
            f"| {fmt(ratio(ours, theirs))} | {rss} | {fmt(r.get('gflops'), '', 1)} | {fmt(100 * r['roofline'], '%', 0) if 'roofline' in r else '-'} "
            f"| {fmt(r.get('their_gflops'), '', 1)} | {target_cell(r.get('target'))} |"
            + (xla_cells(r["xla"], theirs) if args.xla else "")
        )
    if not points:  # --no-scaling
        return "\n".join(lines) + "\n"
    lines += ["", "## Scaling in the input size M and the output size O (fixed latents)", "",
              "perceiver: encoder over M inputs; decoder: O output queries into the latents "
              "(the size column is O); transformer: one plain self-attention layer over M.", "",
              "working memory: the peak RSS minus the RSS before the first call (framework and input "
              "already allocated).", "",
              "| model | M or O | forward (s) | forward CPU (s, all threads) | peak RSS (GB) | input (GB) "
              "| working memory (GB) |", "|---|---|---|---|---|---|---|"]
    for p in points:
        detail = (f"{fmt(p.get('seconds'), '', 3)} | {fmt(p.get('cpu_seconds'), '', 3)} | {fmt(p.get('peak_rss_gb'))}"
                  f" | {fmt(p.get('input_gb'), '', 3)} | {fmt(p.get('working_gb'), '', 3)}"
                  if "seconds" in p else f"{p['error']} | - | - | - | -")
        lines.append(f"| {p['model']} | {p['inputs']} | {detail} |")
    for model, size in (("perceiver", "M"), ("decoder", "O"), ("transformer", "M")):
        pts = [p for p in points if p["model"] == model]
        lines.append(f"\nlog-log slope of time in {size}, {model}: {fmt(slope(pts, 'seconds'))}; "
                     f"of CPU time: {fmt(slope(pts, 'cpu_seconds'))}; "
                     f"of peak RSS: {fmt(slope(pts, 'peak_rss_gb'))}; "
                     f"of working memory: {fmt(slope(pts, 'working_gb'))}")
    return "\n".join(lines) + "\n"


def target_cell(target):
    """`0.7: 226`: issue 13's ratio for the row, and the GFLOP/s it needs."""
    return "-" if target is None else f"{target[0]:g}: {target[1]:.0f}"


def xla_cells(xla, theirs):
    """The `--xla` columns: our time with `jit_compile=True`, its ratio, compile and memory."""
    if "seconds" not in xla:
        return f" {xla.get('error', '-')} | - | - | - |"
    return (f" {fmt(xla['seconds'], '', 3)} | {fmt(ratio(xla, theirs))} "
            f"| {fmt(xla.get('first_seconds'), '', 1)} | {fmt(xla.get('peak_rss_gb'))} |")


def plot(points, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for model in ("perceiver", "decoder", "transformer"):
        pts = [p for p in points if p["model"] == model and "seconds" in p]
        axes[0].loglog([p["inputs"] for p in pts], [p["seconds"] for p in pts], "o-", label=model)
        axes[1].loglog([p["inputs"] for p in pts], [p["working_gb"] for p in pts], "o-", label=model)
    axes[0].set(xlabel="inputs M (decoder: outputs O)", ylabel="forward seconds")
    axes[1].set(xlabel="inputs M (decoder: outputs O)", ylabel="working memory (GB)")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path)
    return True


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny models, ~2-3 minutes")
    parser.add_argument("--batch8", action="store_true", help="also batch 8 forwards")
    parser.add_argument("--output", default=os.path.join(HERE, "RESULTS.md"))
    parser.add_argument("--workloads", default=",".join(FORWARD),
                        help=f"comma-separated subset of {','.join(FORWARD)} (default all)")
    parser.add_argument("--no-scaling", action="store_true", help="skip the scaling sweep")
    parser.add_argument("--xla", action="store_true",
                        help="also time ours compiled with XLA (jit_compile=True), extra columns")
    parser.add_argument("--scaling-only", action="store_true",
                        help="only the scaling sweep (no side-by-side workloads)")
    args = parser.parse_args(argv)
    if args.scaling_only and args.no_scaling:
        parser.error("--scaling-only and --no-scaling exclude each other")
    args.workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = sorted(set(args.workloads) - set(FORWARD))
    if unknown or not args.workloads:
        parser.error(f"--workloads: expected names among {','.join(FORWARD)}, got {unknown or 'none'}")
    start = time.perf_counter()

    def log(message):
        print(message, file=sys.stderr, flush=True)

    matmul = subprocess_json("benchmarks.worker", dict(role="matmul", quick=args.quick), 300)
    matmul_gflops = matmul.get("gflops")
    torch_matmul = subprocess_json("benchmarks.worker", dict(role="matmul_torch", quick=args.quick), 300)
    log(f"matmul: TensorFlow {matmul}, PyTorch {torch_matmul}")
    rows = []
    if not args.scaling_only:
        with tempfile.TemporaryDirectory() as work_dir:
            rows = compare(args, matmul_gflops or float("nan"), work_dir, log)
    points = [] if args.no_scaling else scaling(args, log)
    text = render(args, matmul_gflops, rows, points, time.perf_counter() - start,
                  torch_matmul.get("gflops"))
    print(text)
    tmp = args.output + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, args.output)
    if points:
        plot(points, os.path.join(os.path.dirname(args.output), "scaling.png"))


if __name__ == "__main__":
    main()
