"""Sets of entities: Perceiver set model vs a plain Transformer encoder.

    python -m benchmarks.entity_sets                 # train both (same data and steps) + costs
    python -m benchmarks.entity_sets --costs-only    # FLOPs and forward time only (~1 min)

Trains `keras_perceiver.recipes.entity_sets` with `--compare` (further flags
go to the recipe, e.g. `--epochs 4 --output runs/x`), then prints the
per-entity held-out accuracy of both models (sets of 32-512, and sets of
exactly N = 64, 256, 512, 2048: 100 sets each, 32 at 2048), the FLOPs
per example (analytic: 2 x multiply-adds of every matrix product, checked
against the traced graph in tests/recipes/test_entity_sets.py) and the
forward wall time per batch of 4 sets at N = 64, 256, 512, 2048, with the
log-log slope of each in N (1 = linear, 2 = quadratic) and the Perceiver's
FLOPs advantage at N = 512. Timings share the machine with whatever else
runs (the 1-minute load average is printed).
"""

import json
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def summary(rows):
    ratio = {r["n"]: r["flops_ratio"] for r in rows}[512]
    return f"FLOPs per example at N = 512: Transformer / Perceiver = {ratio:.1f}x"


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    from keras_perceiver.recipes import entity_sets

    start, load = time.time(), os.getloadavg()[0]
    if "--costs-only" in argv:
        rows = entity_sets.set_costs(entity_sets.CONFIGS["default"])
        print(entity_sets.format_costs(rows))
        print(summary(rows))
        print(f"load average at start {load:.1f}; {time.time() - start:.0f} s")
        return {"costs": rows}
    if not any(a.startswith("--output") for a in argv):
        argv += ["--output", os.path.join("runs", f"entity_sets_compare_{int(start)}")]
    metrics = entity_sets.main(["--compare"] + argv)
    output = argv[argv.index("--output") + 1] if "--output" in argv else None
    rows = json.load(open(os.path.join(output, "comparison.json"))) if output else []
    sizes = entity_sets.COST_SIZES
    print("\n| model | test accuracy (N 32-512) | "
          + " | ".join(f"N = {n}" for n in sizes) + " | train s |")
    print("|---|---|" + "---|" * len(sizes) + "---|")
    for name, prefix in (("Perceiver", ""), ("Transformer", "transformer_")):
        print(f"| {name} | {metrics[prefix + 'test_accuracy']:.4f} | "
              + "".join(f"{metrics[f'{prefix}test_accuracy_n{n}']:.4f} | " for n in sizes)
              + f"{metrics[prefix + 'train_seconds']:.0f} |")
    gap = 100 * (metrics["transformer_test_accuracy_n512"] - metrics["test_accuracy_n512"])
    print(f"\naccuracy gap at N = 512 (Transformer - Perceiver): {gap:+.2f} points")
    if rows and not any("--smoke" == a for a in argv):
        print(summary(rows))
    print(f"load average at start {load:.1f}, at end {os.getloadavg()[0]:.1f}; "
          f"{time.time() - start:.0f} s in all")
    return metrics


if __name__ == "__main__":
    main()
