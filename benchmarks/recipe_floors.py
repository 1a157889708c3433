"""Quality floors of all the training recipes (issue 12), outside `make test`.

    python -m benchmarks.recipe_floors all                # every recipe floor
    python -m benchmarks.recipe_floors NAME [NAME ...]
    python -m benchmarks.recipe_floors NAME --seed 1 --output DIR  # another seed; keep the files

Runs each named recipe with its default settings (embedded data, fixed
seeds; `--seed` changes the recipe's seed) into a fresh directory, reads the
recipe's final metrics and checks the floor. Prints one line per recipe
(metric, floor, wall time, CPU time user+sys, load average) and exits with
status 1 if any is below its floor. The image, flow and multimodal floors
are the recipes' own (`FLOOR` in the recipe module where it has one); the
text floors (`masked_lm`, `text_classification`) are delegated to
`benchmarks.text_floors`, which prints its own lines (the text
classification floor reuses the `masked_lm` run of the same `--output`).
"""

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# name -> (function metrics -> (value, passed), floor description); recipes with
# a FLOOR of their own use it.
FLOORS = {
    "image_classification": (
        lambda m: (m["test_accuracy"], m["test_accuracy"] >= 0.98),
        "digits test accuracy >= 0.98",
    ),
    # value: the smaller of the video and audio PSNR gains over the per-example mean (dB)
    "multimodal_autoencoding": None,
    # value: held-out EPE / EPE of predicting zero flow
    "optical_flow": None,
}
TEXT_FLOORS = ("masked_lm", "text_classification")  # benchmarks.text_floors


def _floor(name):
    from keras_perceiver.recipes import get_recipe

    return FLOORS[name] or get_recipe(name).FLOOR[::-1]


def _cpu_seconds():
    usage = os.times()
    return usage.user + usage.system


def run(name, output=None, seed=None):
    """Runs recipe `name`'s floor; returns `(value, passed, description, wall s, CPU s)`."""
    from keras_perceiver.recipes import get_recipe

    check, description = _floor(name)
    output = output or tempfile.mkdtemp(prefix=f"floor-{name}-")
    flags = ["--seed", str(seed)] if seed is not None else []
    start, cpu = time.time(), _cpu_seconds()
    metrics = get_recipe(name).main(flags + ["--output", os.path.join(output, name),
                                             "--verbose", "0"])
    value, passed = check(metrics)
    return value, passed, description, time.time() - start, _cpu_seconds() - cpu


def run_text(name, output, seed=None):
    """Delegates to `benchmarks.text_floors` (it prints its own lines); returns passed."""
    from benchmarks import text_floors

    passed, _ = text_floors.FLOORS[name](output, seed)
    return passed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    known = sorted(FLOORS) + list(TEXT_FLOORS)
    parser.add_argument("names", nargs="+", help=f"recipes: {sorted(known)} or 'all'")
    parser.add_argument("--output", help="directory for the runs (default: a temporary one)")
    parser.add_argument("--seed", type=int, help="the recipes' --seed (default: theirs)")
    args = parser.parse_args(argv)
    names = sorted(known) if args.names == ["all"] else args.names
    unknown = sorted(set(names) - set(known))
    if unknown:
        parser.error(f"no floor for {unknown}; expected some of {sorted(known)}")
    output = args.output or tempfile.mkdtemp(prefix="recipe-floors-")
    failed = []
    for name in names:
        if name in TEXT_FLOORS:
            passed = run_text(name, output, args.seed)
        else:
            value, passed, description, seconds, cpu = run(name, output, args.seed)
            load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
            print(f"{name}: {value:.4f} ({description}: {'PASS' if passed else 'FAIL'}), "
                  f"{seconds:.0f} s wall, {cpu:.0f} s CPU (user+sys), load {load}", flush=True)
        if not passed:
            failed.append(name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
