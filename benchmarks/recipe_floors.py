"""Quality floors of the training recipes (issue 12), outside `make test`.

    python -m benchmarks.recipe_floors NAME [NAME ...]   # or `all`
    python -m benchmarks.recipe_floors NAME --output DIR  # keep the run's files

Runs each named recipe with its default settings (embedded data, fixed
seeds) into a fresh directory, reads the recipe's final metrics and checks
the floor. Prints one line per recipe (metric, floor, wall time) and exits
with status 1 if any is below its floor. Each entry: the metric key the
recipe's `main` returns, a check on it, and a description of the floor;
recipes with a relative floor (e.g. against a baseline the recipe also
reports) compute it from the returned metrics.
"""

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# name -> (extra flags, function metrics -> (value, passed), floor description)
FLOORS = {
    "image_classification": (
        [], lambda m: (m["test_accuracy"], m["test_accuracy"] >= 0.98),
        "digits test accuracy >= 0.98",
    ),
    # value: the smaller of the video and audio PSNR gains over the per-example mean (dB)
    "multimodal_autoencoding": (
        [], lambda m: _recipe_floor("multimodal_autoencoding")[1](m),
        "video and audio PSNR >= 3 dB above the per-example mean, masked-label accuracy >= 0.9",
    ),
    # value: held-out EPE / EPE of predicting zero flow
    "optical_flow": (
        [], lambda m: _recipe_floor("optical_flow")[1](m),
        "held-out EPE <= 0.4x that of zero flow",
    ),
}


def _recipe_floor(name):
    from keras_perceiver.recipes import get_recipe

    return get_recipe(name).FLOOR


def run(name, output=None):
    from keras_perceiver.recipes import get_recipe

    flags, check, description = FLOORS[name]
    output = output or tempfile.mkdtemp(prefix=f"floor-{name}-")
    start = time.time()
    metrics = get_recipe(name).main(flags + ["--output", os.path.join(output, name),
                                             "--verbose", "0"])
    value, passed = check(metrics)
    return value, passed, description, time.time() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="+", help=f"recipes: {sorted(FLOORS)} or 'all'")
    parser.add_argument("--output", help="directory for the runs (default: a temporary one)")
    args = parser.parse_args(argv)
    names = sorted(FLOORS) if args.names == ["all"] else args.names
    unknown = sorted(set(names) - set(FLOORS))
    if unknown:
        parser.error(f"no floor for {unknown}; expected some of {sorted(FLOORS)}")
    failed = []
    for name in names:
        value, passed, description, seconds = run(name, args.output)
        print(f"{name}: {value:.4f} ({description}: {'PASS' if passed else 'FAIL'}), "
              f"{seconds:.0f} s wall")
        if not passed:
            failed.append(name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
