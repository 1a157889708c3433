"""The flags every training recipe shares (`make_parser`, `parse_args`).

`make_parser(name, description, configs, defaults, smoke)` builds the
standard `argparse` parser: `--dataset` (a tensorflow_datasets name; default
the recipe's embedded data), `--data-dir`, `--config NAME`, `--preset NAME`,
`--smoke`, `--epochs`, `--steps` (total; rounds up to whole epochs),
`--steps-per-epoch`, `--batch-size` (global), `--learning-rate`,
`--weight-decay`, `--clip-norm`, `--schedule`, `--warmup-steps`,
`--output DIR`, `--resume`, `--export DIR`, `--seed`, `--distribution`,
`--cpu-replicas`, `--mixed-precision`, `--verbose`, `--run-eagerly`.
`parse_args` fills the numeric flags left unset from the recipe's defaults
(or its smoke defaults under `--smoke`). Both are importable from
`keras_perceiver.recipes.common` too.

Example:
>>> from keras_perceiver.recipes import flags
>>> parser = flags.make_parser("demo", "a demo", {"default": {}}, dict(epochs=3))
>>> args = flags.parse_args(parser, ["--batch-size", "8"])
>>> args.epochs, args.batch_size, args.config, args.output
(3, 8, 'default', 'runs/demo')
"""

import argparse
import os

DISTRIBUTIONS = ("none", "mirrored", "multi_worker", "data_parallel", "model_parallel")
SCHEDULES = ("flat_cosine", "warmup_cosine", "constant")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
_NUMERIC = ("epochs", "steps", "steps_per_epoch", "batch_size", "learning_rate",
            "weight_decay", "clip_norm", "warmup_steps", "schedule")
_BUILTIN_DEFAULTS = dict(epochs=10, batch_size=32, learning_rate=1e-3, weight_decay=0.0,
                         clip_norm=10.0, schedule="flat_cosine", warmup_steps=0)


def make_parser(name, description, configs, defaults=None, smoke=None):
    """The standard recipe flags (see the module docstring).

    `configs` maps config names to model keyword arguments (`"default"` is
    the default; `"smoke"` is what `--smoke` picks); `defaults` sets the
    recipe's `epochs`, `batch_size`, `learning_rate`, `weight_decay`,
    `clip_norm`, `schedule`, `warmup_steps`; `smoke` overrides them under
    `--smoke`. Flags left unset take these after `parse_args`.
    """
    defaults = {**_BUILTIN_DEFAULTS, **(defaults or {})}
    if "default" not in configs:
        raise ValueError(f"make_parser({name!r}): configs needs a 'default' entry.")
    parser = argparse.ArgumentParser(
        prog=f"keras-perceiver train {name}", description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(_recipe=name, _defaults=defaults, _smoke=dict(smoke or {}))
    add = parser.add_argument
    add("--dataset", help="a tensorflow_datasets name (default: the embedded data set)")
    add("--data-dir", help="tensorflow_datasets data_dir")
    add("--config", default=None, choices=sorted(configs),
        help="named model config (default: 'default')")
    add("--preset", help="build the architecture of this preset instead of --config")
    add("--smoke", action="store_true", help="tiny model and a few steps (a quick check)")
    add("--epochs", type=_positive(int), help=f"passes (default {defaults['epochs']})")
    add("--steps", type=_positive(int), help="total training steps (rounded up to whole epochs)")
    add("--steps-per-epoch", type=_positive(int), help="default: one pass over the data")
    add("--batch-size", type=_positive(int),
        help=f"global batch size (default {defaults['batch_size']})")
    add("--learning-rate", type=_positive(float),
        help=f"peak learning rate (default {defaults['learning_rate']})")
    add("--weight-decay", type=_non_negative, help=f"LAMB weight decay "
        f"(default {defaults['weight_decay']}; biases and norms excluded)")
    add("--clip-norm", type=_non_negative,
        help=f"gradient global-norm clip, 0 for none (default {defaults['clip_norm']})")
    add("--schedule", choices=SCHEDULES, help=f"default {defaults['schedule']}")
    add("--warmup-steps", type=_non_negative_int,
        help="warmup_cosine: linear warm-up steps (a recipe's default is capped to 25%% of a "
             "short run's steps; a value given here is kept)")
    add("--output", help=f"output directory (default runs/{name})")
    add("--resume", action="store_true",
        help="continue the run in --output from its last epoch backup")
    add("--export", help="write a SavedModel (next free version) and a LiteRT file here")
    add("--seed", type=int, default=0, help="seeds weights, data order, augmentation")
    add("--distribution", default="none", choices=DISTRIBUTIONS,
        help="mirrored/multi_worker: TensorFlow; data_parallel/model_parallel: JAX")
    add("--cpu-replicas", type=_positive(int),
        help="split the CPU into N logical devices (try mirrored without GPUs)")
    add("--mixed-precision", default="float32", choices=PRECISIONS)
    add("--verbose", type=int, choices=(0, 1, 2), help="fit display (default: 1 on a terminal)")
    add("--run-eagerly", action="store_true",
        help="no tf.function/XLA tracing (debugging; faster for a few tiny steps)")
    parser.set_defaults(_configs=configs)
    return parser


def parse_args(parser, argv=None):
    """Parses `argv` and fills unset numeric flags from the recipe defaults
    (or its smoke defaults under `--smoke`); `--smoke` selects config `smoke`."""
    args = parser.parse_args(argv)
    fill = dict(args._defaults)
    if args.smoke:
        fill.update(args._smoke)
        if args.config is None and "smoke" in args._configs:
            args.config = "smoke"
    args.config = args.config or "default"
    # A recipe's default warm-up is capped to a share of short runs; a given one is not.
    args._warmup_steps_given = args.warmup_steps is not None
    for key in _NUMERIC:
        if getattr(args, key, None) is None:
            setattr(args, key, fill.get(key))
    args.output = args.output or os.path.join("runs", args._recipe)
    if args.preset and args.config != "default":
        parser.error("--preset and --config exclude each other")
    if args.export and _backend() != "tensorflow":
        parser.error("--export needs KERAS_BACKEND=tensorflow")
    return args


def _backend():
    import keras

    return keras.backend.backend()


def _positive(kind):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}")
        if value <= 0:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}")
        return value
    return parse


def _non_negative(text):
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def _non_negative_int(text):
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return int(text)
