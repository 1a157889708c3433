"""`make demo`'s training for several seeds: held-out accuracy per seed.

Run from the repository root (TensorFlow backend; one seed costs about as
much as `make demo`'s training):

    python -m benchmarks.demo_seeds                # seeds 0..4
    python -m benchmarks.demo_seeds --seeds 0 1 2
    python -m benchmarks.demo_seeds --repeat       # seed 0 twice: must be equal
    python -m benchmarks.demo_seeds --swa-fraction 0 --label-smoothing 0
    python -m benchmarks.demo_seeds --batch 64 --epochs 60

The last two forms measure variants of the recipe (without the weight
averaging and the label smoothing; the previous recipe's 60 epochs of
batches of 64); `make demo` is not changed.

Prints each seed's accuracy on the demo's 450 test digits and the
min / median / max, and exits non-zero if any seed is below the demo's
floor (97%) or, with `--repeat`, if two runs of one seed differ.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "applications"))

import numpy as np  # noqa: E402

import digits_demo  # noqa: E402

# Flags that change the recipe (module constants of digits_demo) for this run.
VARIANT_FLAGS = {
    "--swa-fraction": "SWA_FRACTION",
    "--swa-lr-fraction": "SWA_LR_FRACTION",
    "--label-smoothing": "LABEL_SMOOTHING",
    "--augment-prob": "AUGMENT_PROB",
    "--peak-learning-rate": "PEAK_LEARNING_RATE",
    "--affine-prob": "AFFINE_PROB",
    "--batch": "BATCH",
    "--epochs": "EPOCHS",
}
INT_FLAGS = ("--batch", "--epochs")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--repeat", action="store_true",
                        help="train the first seed twice and compare the accuracies")
    for flag, name in VARIANT_FLAGS.items():
        parser.add_argument(flag, type=int if flag in INT_FLAGS else float,
                            default=getattr(digits_demo, name),
                            help=f"digits_demo.{name} (default %(default)s)")
    parser.add_argument("--num-bands", type=int, default=digits_demo.CONFIG["num_bands"],
                        help="Fourier bands, digits_demo.CONFIG['num_bands'] (default %(default)s)")
    args = parser.parse_args(argv)
    if args.num_bands != digits_demo.CONFIG["num_bands"]:
        print(f"variant: digits_demo.CONFIG['num_bands'] = {args.num_bands}")
        digits_demo.CONFIG = {**digits_demo.CONFIG, "num_bands": args.num_bands}
    for flag, name in VARIANT_FLAGS.items():
        value = getattr(args, flag[2:].replace("-", "_"))
        if value != getattr(digits_demo, name):
            print(f"variant: digits_demo.{name} = {value}")
            setattr(digits_demo, name, value)
    seeds = [args.seeds[0]] * 2 if args.repeat else args.seeds

    x_train, x_test, y_train, y_test = digits_demo.load_data()
    accuracies = []
    for seed in seeds:
        start = time.time()
        model = digits_demo.train(seed, (x_train, y_train), epochs=digits_demo.EPOCHS)
        accuracy = digits_demo.evaluate(model, x_test, y_test)
        errors = int(round((1 - accuracy) * len(y_test)))
        print(f"seed {seed}: test accuracy {accuracy:.4f} ({errors} of {len(y_test)} wrong), "
              f"{time.time() - start:.0f} s", flush=True)
        accuracies.append(accuracy)
    print(f"{len(seeds)} runs: min {min(accuracies):.4f}, median {np.median(accuracies):.4f}, "
          f"max {max(accuracies):.4f} (floor {digits_demo.FLOOR})")
    if min(accuracies) < digits_demo.FLOOR:
        sys.exit("below the demo's floor")
    if args.repeat and accuracies[0] != accuracies[1]:
        sys.exit("two runs of one seed differ: training is not deterministic")


if __name__ == "__main__":
    main()
