"""Quality floors of the text recipes (issue 12), on the embedded pydoc text with the default settings.

    python -m benchmarks.text_floors masked_lm            # MLM: masked-byte accuracy >= 2x baseline
    python -m benchmarks.text_floors text_classification  # >= 90% held-out from the MLM; beats scratch
    python -m benchmarks.text_floors all
    python -m benchmarks.text_floors all --seed 1 --output runs/floors-seed1   # another seed

`masked_lm`: the default recipe; its held-out masked-byte accuracy (held-out
topics, fixed masks) must be at least twice the accuracy of always
predicting the byte most frequent among the training masked bytes.

`text_classification`: the default recipe started from the masked LM's
encoder (`--init-from-mlm`, the `masked_lm` floor run, trained first when
absent), as the paper always fine-tunes, must reach 90% held-out accuracy
(mean over its two heads) and score higher than the same recipe from
scratch at the same budget (whose accuracy is printed too). Both are
scored on `--test-copies 8` labelled variants of each held-out passage
(~5k examples, not ~630), so that a difference is not the noise of a small
held-out set.

Each run writes under `--output` (default `runs/floors`), prints the
measured values, the wall time and the load, and exits 1 when a floor fails.
A run already in `--output` is reused when its saved flags are the ones this
script would use (an earlier default, e.g. `--train-copies 4`, stops it).
Not part of `make test` (minutes each).
"""

import argparse
import json
import os
import resource
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _cpu_s():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# Flags that may differ between a run found in --output and the one this script would start.
_REUSE_IGNORED = ("output", "verbose", "init_from_mlm")


def recipe_flags(recipe, output, extra=()):
    """The flags a run of `recipe` with `extra` saves in its `config.json` (defaults filled in
    as the recipe fills them)."""
    from keras_perceiver.recipes import flags
    from keras_perceiver.recipes import get_recipe

    args = flags.parse_args(get_recipe(recipe).make_parser(), ["--output", output, *extra])
    return {k: v for k, v in vars(args).items() if not k.startswith("_")}


def changed_flags(recipe, output, extra=()):
    """`["flag: saved, now expected", ...]` for the recipe run saved in `output` (its
    `config.json`) against the flags this script would run it with (defaults of today's code)."""
    with open(os.path.join(output, "config.json")) as f:
        saved = json.load(f)["flags"]
    expected = recipe_flags(recipe, output, extra)
    return [f"{k}: {saved.get(k)!r}, now {v!r}" for k, v in sorted(expected.items())
            if k not in _REUSE_IGNORED and saved.get(k) != v]


def _run(recipe, output, extra=()):
    """`(metrics, wall s, (load before, after), CPU s user+sys)` of one recipe run (or the
    one already in `output`; its CPU time is then unknown: None)."""
    from keras_perceiver.recipes import get_recipe

    start, load, cpu = time.time(), os.getloadavg()[0], _cpu_s()
    if os.path.exists(os.path.join(output, "metrics.json")):
        changed = changed_flags(recipe, output, extra)
        if changed:
            raise SystemExit(f"{output} holds a {recipe} run with other settings than this script's "
                             f"({'; '.join(changed)}): expected a fresh --output.")
        with open(os.path.join(output, "metrics.json")) as f:
            record = json.load(f)
        print(f"{recipe}: reusing {output} ({record['wall_time_s']} s)")
        return record["metrics"], record["wall_time_s"], None, None
    metrics = get_recipe(recipe).main(["--output", output, "--verbose", "2", *extra])
    return (metrics, round(time.time() - start, 1), (load, os.getloadavg()[0]),
            round(_cpu_s() - cpu, 1))


def _seed_flags(seed):
    return [] if seed is None else ["--seed", str(seed)]


def masked_lm_floor(base, seed=None):
    metrics, wall, load, cpu = _run("masked_lm", os.path.join(base, "masked_lm"), _seed_flags(seed))
    ratio = metrics["test_masked_accuracy"] / metrics["baseline_accuracy"]
    ok = ratio >= 2.0
    print(f"FLOOR masked_lm: masked-byte accuracy {metrics['test_masked_accuracy']:.4f} = "
          f"{ratio:.2f} x most-frequent-byte {metrics['baseline_accuracy']:.4f} (floor 2x): "
          f"{'PASS' if ok else 'FAIL'}; CPU {cpu} s, wall {wall} s, load {load}")
    return ok, {"masked_lm": metrics, "masked_lm_wall_s": wall, "masked_lm_load": load,
                "masked_lm_cpu_s": cpu}


TEST_COPIES = ["--test-copies", "8"]


def text_classification_floor(base, seed=None):
    mlm_dir = os.path.join(base, "masked_lm")
    if not os.path.exists(os.path.join(mlm_dir, "metrics.json")):
        masked_lm_floor(base, seed)
    scratch, wall_a, load_a, cpu_a = _run("text_classification", os.path.join(base, "text_scratch"),
                                          [*TEST_COPIES, *_seed_flags(seed)])
    tuned, wall_b, load_b, cpu_b = _run("text_classification", os.path.join(base, "text_from_mlm"),
                                        ["--init-from-mlm", mlm_dir, *TEST_COPIES, *_seed_flags(seed)])
    ok_floor = tuned["test_accuracy"] >= 0.9
    ok_init = tuned["test_accuracy"] > scratch["test_accuracy"]
    heads = "; ".join(f"{k[5:-9]}: scratch {scratch[k]:.4f}, from the MLM {tuned[k]:.4f}"
                      for k in sorted(tuned) if k.endswith("_accuracy") and k != "test_accuracy")
    print(f"text_classification: {int(scratch['test_examples'] // 2)} held-out examples; {heads}")
    print(f"FLOOR text_classification: held-out accuracy {tuned['test_accuracy']:.4f} from the "
          f"MLM encoder (floor 0.90): {'PASS' if ok_floor else 'FAIL'}; CPU {cpu_b} s, wall {wall_b} s, "
          f"load {load_b}")
    print(f"FLOOR text_classification: from the MLM encoder {tuned['test_accuracy']:.4f} > "
          f"scratch {scratch['test_accuracy']:.4f}: {'PASS' if ok_init else 'FAIL'}; "
          f"scratch CPU {cpu_a} s, wall {wall_a} s, load {load_a}")
    return ok_floor and ok_init, {"scratch": scratch, "from_mlm": tuned, "wall_s": [wall_a, wall_b],
                                  "load": [load_a, load_b], "cpu_s": [cpu_a, cpu_b]}


FLOORS = {"masked_lm": masked_lm_floor, "text_classification": text_classification_floor}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("name", choices=sorted(FLOORS) + ["all"])
    parser.add_argument("--output", default=os.path.join("runs", "floors"))
    parser.add_argument("--seed", type=int, help="the recipes' --seed (default: theirs); use a "
                        "fresh --output per seed (runs found there are reused)")
    args = parser.parse_args(argv)
    names = sorted(FLOORS) if args.name == "all" else [args.name]
    results, ok = {}, True
    for name in names:
        passed, results[name] = FLOORS[name](args.output, args.seed)
        ok = ok and passed
    os.makedirs(args.output, exist_ok=True)
    with open(os.path.join(args.output, "text_floors.json"), "w") as f:
        json.dump(results, f, indent=2, default=str)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
