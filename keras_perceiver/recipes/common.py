"""What every training recipe shares: flags, output layout, callbacks, run.

A recipe is a module `keras_perceiver/recipes/<name>.py` with
`main(argv=None) -> dict` (the final held-out metrics), listed in
`keras_perceiver.recipes.RECIPES`. Its shape (see `image_classification.py`):

    CONFIGS = {"default": {...model kwargs...}, "smoke": {...tiny...}}

    def main(argv=None):
        parser = common.make_parser("my_task", __doc__, CONFIGS, defaults=dict(
            epochs=30, batch_size=64, learning_rate=2e-3, weight_decay=1e-4),
            smoke=dict(epochs=2, steps_per_epoch=2, batch_size=8))
        parser.add_argument("--my-option", ...)          # recipe-only flags
        args = common.parse_args(parser, argv)            # fills the defaults
        run = common.Run("my_task", args)                 # seeds, dirs, distribution
        ...load data...
        def make_model():                                  # built under the distribution
            model = ...(**run.config)                      # CONFIGS[--config]
            model.compile(optimizer=run.optimizer(total_steps), loss=..., metrics=[...])
            return model
        model = run.build_model(make_model)
        run.fit(model, train_fn, steps_per_epoch, validation_data=val,
                monitor="val_accuracy", mode="max")        # train_fn(first_epoch) -> tf.data
        metrics = {"test_accuracy": ...}
        run.plot("curves.png", keras_perceiver.visualize.curves.plot_history, run.history)
        return run.finish(model, metrics, export_options={...})  # metrics.json + export

Flags (`make_parser`): `--dataset` (a tensorflow_datasets name; default the
recipe's embedded data), `--data-dir`, `--config NAME`, `--preset NAME`,
`--smoke`, `--epochs`, `--steps` (total; rounds up to whole epochs),
`--steps-per-epoch`, `--batch-size` (global), `--learning-rate`,
`--weight-decay`, `--clip-norm`, `--schedule`, `--warmup-steps`,
`--output DIR`, `--resume`, `--export DIR`, `--seed`, `--distribution`,
`--cpu-replicas`, `--mixed-precision`, `--verbose`.

Output layout under `--output` (default `runs/<name>`; an existing non-empty
directory is continued only with `--resume`, never overwritten):
`config.json` (the resolved flags), `checkpoints/backup/` (BackupAndRestore,
every epoch), `checkpoints/best.weights.h5` (ModelCheckpoint on the monitored
held-out metric), `checkpoints/final.weights.h5`, `logs/` (TensorBoard
event files and `history.csv`), `plots/*.png`, `metrics.json`.

Resume: a killed run started again with `--resume` restores the weights,
optimizer state and epoch from `checkpoints/backup/` and ends with the
weights of an uninterrupted run, provided `train_fn(first_epoch)` yields the
same batches for an epoch however it was reached (draw epoch `e`'s order and
augmentation from `(seed, e)`, e.g. with `epoch_indices`).
"""

import argparse
import csv
import json
import math
import os
import sys
import time

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
    add("--warmup-steps", type=_non_negative_int, help="warmup_cosine: linear warm-up steps")
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


def epoch_indices(num_examples, seed, epoch):
    """A permutation of `range(num_examples)` drawn from `(seed, epoch)` only
    (a `tf.Tensor`; `epoch` may be a tensor), so a resumed run sees the same
    order as an uninterrupted one.

    Example:
    >>> from keras_perceiver.recipes import common
    >>> a = common.epoch_indices(5, 0, 3).numpy(); b = common.epoch_indices(5, 0, 3).numpy()
    >>> sorted(a.tolist()), bool((a == b).all())
    ([0, 1, 2, 3, 4], True)
    """
    import tensorflow as tf

    key = tf.stack([tf.cast(seed, tf.int64), tf.cast(epoch, tf.int64)])
    return tf.argsort(tf.random.stateless_uniform([num_examples], seed=key))


def read_json(path):
    with open(path) as f:
        return json.load(f)


def write_json(path, value):
    """Writes JSON next to `path` and renames it into place."""
    from keras_perceiver import files

    with files.file_aside(path, "write") as tmp:
        with open(tmp, "w") as f:
            json.dump(value, f, indent=2, sort_keys=True, default=_json_default)
    return path


def _json_default(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


class Run:
    """One training run: seeding, output directory, distribution, fit, finish.

    Creating it seeds Python/NumPy/backend RNGs (`--seed`), turns on
    TensorFlow op determinism, sets the mixed-precision policy, builds the
    `--distribution`, and creates the output layout (refusing a non-empty
    `--output` without `--resume`). Attributes: `args`, `config` (the model
    kwargs of `--config`), `distribution`, `replicas`, `dirs` (paths),
    `history` (per-epoch metrics, filled by `fit`).
    """

    def __init__(self, name, args):
        self.name = name
        self.args = args
        self.start = time.time()
        self.config = dict(args._configs[args.config])
        if args.cpu_replicas:
            from keras_perceiver import distribute_tf

            distribute_tf.configure_logical_cpus(args.cpu_replicas)
        import keras

        keras.utils.set_random_seed(args.seed)
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            tf.config.experimental.enable_op_determinism()
        keras.config.set_dtype_policy(args.mixed_precision)
        self.distribution = None
        if args.distribution not in ("none", "model_parallel"):
            from keras_perceiver import distribution

            self.distribution = distribution.get_distribution(args.distribution)
        self.history = {}
        self.chief = self._is_chief()
        self.dirs = self._make_dirs(args.output, args.resume)

    def _is_chief(self):
        if self.args.distribution != "multi_worker":
            return True
        from keras_perceiver import distribute_tf

        return distribute_tf.is_chief()

    def _make_dirs(self, output, resume):
        if not self.chief:  # other workers write aside (TF's multi-worker advice)
            import tempfile

            output = tempfile.mkdtemp(prefix=f"{self.name}-worker-")
        elif os.path.isdir(output) and os.listdir(output) and not resume:
            raise FileExistsError(
                f"--output {output} exists and is not empty; pass --resume to continue "
                "that run, or choose another --output (nothing was overwritten)."
            )
        elif os.path.exists(output) and not os.path.isdir(output):
            raise NotADirectoryError(f"--output {output} is a file; expected a directory.")
        dirs = {key: os.path.join(output, key) for key in ("checkpoints", "logs", "plots")}
        dirs["output"] = output
        dirs["backup"] = os.path.join(dirs["checkpoints"], "backup")
        for key in ("checkpoints", "logs", "plots"):
            os.makedirs(dirs[key], exist_ok=True)
        settings = {k: v for k, v in vars(self.args).items() if not k.startswith("_")}
        write_json(os.path.join(output, "config.json"), {
            "recipe": self.name, "flags": settings, "model_config": self.config})
        return dirs

    @property
    def replicas(self):
        from keras_perceiver import distribution

        return distribution.num_replicas(self.distribution)

    def path(self, *parts):
        """A path under the output directory."""
        return os.path.join(self.dirs["output"], *parts)

    def build_model(self, make_model):
        """`make_model()` (build + compile) under the distribution's scope.

        For `model_parallel` a first model is built as the template whose
        weight paths the layout map reads (`keras_perceiver.distribution`).
        """
        from keras_perceiver import distribution

        if self.args.distribution == "model_parallel":
            template = make_model()
            self.distribution = distribution.get_distribution(
                "model_parallel", model=template)
            del template
        with distribution.distribution_scope(self.distribution):
            model = make_model()
        if self.args.run_eagerly:
            model.run_eagerly = True
        return model

    def optimizer(self, total_steps, learning_rate=None, **kwargs):
        """LAMB (optax's, `keras_perceiver.optimizers.Lamb`) with `--schedule`
        over `total_steps`, `--learning-rate`, `--weight-decay`, `--clip-norm`."""
        return make_lamb(self.args.learning_rate if learning_rate is None else learning_rate,
                         total_steps, schedule=self.args.schedule,
                         weight_decay=self.args.weight_decay, clip_norm=self.args.clip_norm,
                         warmup_steps=self.args.warmup_steps, **kwargs)

    def epochs_and_steps(self, steps_in_data):
        """`(epochs, steps_per_epoch)` from `--epochs`, `--steps`,
        `--steps-per-epoch` and the steps one pass over the data takes."""
        per_epoch = self.args.steps_per_epoch or max(1, int(steps_in_data))
        if self.args.steps:
            per_epoch = min(per_epoch, self.args.steps)
            return math.ceil(self.args.steps / per_epoch), per_epoch
        return self.args.epochs, per_epoch

    def initial_epoch(self):
        """The epoch a resumed run starts at (0 for a fresh run)."""
        meta = os.path.join(self.dirs["backup"], "training_metadata.json")
        return int(read_json(meta)["epoch"]) if os.path.exists(meta) else 0

    def callbacks(self, monitor, mode):
        import keras

        best = self.best_so_far(monitor, mode)
        return [
            BackupAndRestore(self.dirs["backup"], save_freq="epoch", delete_checkpoint=False),
            keras.callbacks.TerminateOnNaN(),
            keras.callbacks.ModelCheckpoint(
                os.path.join(self.dirs["checkpoints"], "best.weights.h5"), monitor=monitor,
                mode=mode, save_best_only=True, save_weights_only=True,
                initial_value_threshold=best, verbose=0),
            keras.callbacks.CSVLogger(os.path.join(self.dirs["logs"], "history.csv"), append=True),
            keras.callbacks.TensorBoard(self.dirs["logs"]),
        ]

    def best_so_far(self, monitor, mode):
        values = [float(v) for v in self.read_history().get(monitor, []) if v != ""]
        if not values:
            return None
        return max(values) if mode == "max" else min(values)

    def read_history(self):
        """Per-epoch logs of this run and the runs it resumed (`history.csv`)."""
        path = os.path.join(self.dirs["logs"], "history.csv")
        if not os.path.exists(path):
            return {}
        rows = {}
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                if row.get("epoch", "epoch") != "epoch":
                    rows[int(row["epoch"])] = row  # a repeated epoch: keep the last
        history = {}
        for epoch in sorted(rows):
            for key, value in rows[epoch].items():
                history.setdefault(key, []).append(float(value) if value not in ("", None) else "")
        return history

    def fit(self, model, train, steps_per_epoch, epochs, validation_data=None,
            monitor="val_loss", mode="min", callbacks=()):
        """`model.fit` with the standard callbacks; returns the history.

        `train(first_epoch)` returns a `tf.data.Dataset` of global batches
        from epoch `first_epoch` to the end (see the module docstring).
        Saves `checkpoints/final.weights.h5`.
        """
        first = self.initial_epoch()
        dataset = train(first)
        if self.distribution is not None and hasattr(self.distribution, "num_replicas_in_sync"):
            from keras_perceiver import distribute_tf

            dataset = distribute_tf.distribute_dataset(self.distribution, dataset, "data")
        verbose = self.args.verbose
        if verbose is None:
            verbose = 1 if sys.stdout.isatty() else 2
        if first and verbose:
            print(f"{self.name}: resuming at epoch {first + 1}/{epochs} from {self.dirs['backup']}")
        model.fit(dataset, epochs=epochs, steps_per_epoch=steps_per_epoch,
                  validation_data=validation_data, verbose=verbose,
                  callbacks=self.callbacks(monitor, mode) + list(callbacks))
        model.save_weights(os.path.join(self.dirs["checkpoints"], "final.weights.h5"),
                           overwrite=True)
        self.history = self.read_history()
        return self.history

    def plot(self, filename, plot_fn, *args, **kwargs):
        """Saves `plot_fn(*args, **kwargs)` (a matplotlib Figure) as `plots/filename`."""
        from keras_perceiver import files

        figure = plot_fn(*args, **kwargs)
        path = os.path.join(self.dirs["plots"], filename)
        with files.file_aside(path, "plot") as tmp:
            figure.savefig(tmp, format="png", dpi=100)
        return path

    def finish(self, model, metrics, export_options=None, representative=None):
        """Prints the held-out metrics, writes `metrics.json`, exports (`--export`)."""
        metrics = {k: float(v) for k, v in metrics.items()}
        for key, value in metrics.items():
            print(f"{self.name}: {key} = {value:.4f}")
        record = {"recipe": self.name, "metrics": metrics, "history": self.history,
                  "wall_time_s": round(time.time() - self.start, 1),
                  "distribution": self.args.distribution, "replicas": self.replicas}
        if self.args.export and self.chief:
            record["export"] = export(model, self.args.export, self.name, export_options)
            print(f"{self.name}: SavedModel {record['export']['saved_model']}, "
                  f"LiteRT {record['export']['litert']}")
        write_json(self.path("metrics.json"), record)
        return metrics


def _backup_class():
    import keras
    import numpy as np

    class BackupAndRestore(keras.callbacks.BackupAndRestore):
        """`keras.callbacks.BackupAndRestore` that also keeps the model's random
        states (dropout's `SeedGenerator`s, which `save_weights` leaves out),
        so a resumed run draws the same dropout masks as an uninterrupted one."""

        def _rng_variables(self):
            return [v for v in self.model.variables if "seed_generator_state" in v.path]

        def _save_model(self):
            super()._save_model()
            from keras_perceiver import files

            states = {f"state_{i}": keras.ops.convert_to_numpy(v)
                      for i, v in enumerate(self._rng_variables())}
            with files.file_aside(os.path.join(self.backup_dir, "rng_states.npz")) as tmp:
                with open(tmp, "wb") as f:
                    np.savez(f, **states)

        def _load_model(self):
            super()._load_model()
            path = os.path.join(self.backup_dir, "rng_states.npz")
            if not os.path.exists(path):
                return
            variables = self._rng_variables()
            with np.load(path, allow_pickle=False) as saved:
                if len(saved.files) != len(variables):
                    raise ValueError(
                        f"{path}: {len(saved.files)} random states saved, the model has "
                        f"{len(variables)}; --resume needs the same model and config.")
                for i, variable in enumerate(variables):
                    variable.assign(saved[f"state_{i}"])

    return BackupAndRestore


def BackupAndRestore(*args, **kwargs):  # noqa: N802 - a class, built lazily (keras import)
    return _backup_class()(*args, **kwargs)


def make_lamb(learning_rate, total_steps, schedule="flat_cosine", weight_decay=0.0,
              clip_norm=10.0, warmup_steps=0, flat_fraction=0.5):
    """`keras_perceiver.optimizers.Lamb` with one of `SCHEDULES`.

    Example:
    >>> from keras_perceiver.recipes import common
    >>> opt = common.make_lamb(1e-3, 100, weight_decay=0.1)
    >>> type(opt).__name__, opt.weight_decay, opt.global_clipnorm
    ('Lamb', 0.1, 10.0)
    """
    from keras_perceiver import optimizers
    from keras_perceiver.recipes import schedules

    if schedule == "flat_cosine":
        rate = schedules.FlatCosine(learning_rate, total_steps, flat_fraction=flat_fraction)
    elif schedule == "warmup_cosine":
        rate = schedules.WarmupCosine(learning_rate, total_steps, warmup_steps=warmup_steps)
    elif schedule == "constant":
        rate = learning_rate
    else:
        raise ValueError(f"schedule must be one of {SCHEDULES}, received {schedule!r}.")
    return optimizers.Lamb(rate, weight_decay=weight_decay or None,
                           global_clipnorm=clip_norm or None)


def export(model, base_dir, name, options=None):
    """SavedModel `base_dir/<next version>/` + LiteRT `base_dir/<name>_v<version>.tflite`;
    nothing existing is replaced."""
    import keras_perceiver.export as export_lib

    saved = export_lib.export_saved_model(model, base_dir, **(options or {}))
    version = os.path.basename(saved)
    litert = export_lib.export_litert(model, os.path.join(base_dir, f"{name}_v{version}.tflite"))
    return {"saved_model": saved, "litert": litert, "version": int(version)}

