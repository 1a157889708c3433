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

Flags: `keras_perceiver.recipes.flags` (`make_parser`, `parse_args`).
Output layout, callbacks, JSON and export: `keras_perceiver.recipes.outputs`.
Every public name of both is importable from here as well.

Resume: a killed run started again with `--resume` restores the weights,
optimizer state and epoch from `checkpoints/backup/` and ends with the
weights of an uninterrupted run, provided `train_fn(first_epoch)` yields the
same batches for an epoch however it was reached (draw epoch `e`'s order and
augmentation from `(seed, e)`, e.g. with `epoch_indices`).
"""

import math
import os
import sys
import time

from keras_perceiver.recipes.flags import DISTRIBUTIONS  # noqa: F401 - re-exported
from keras_perceiver.recipes.flags import PRECISIONS  # noqa: F401
from keras_perceiver.recipes.flags import SCHEDULES
from keras_perceiver.recipes.flags import make_parser  # noqa: F401
from keras_perceiver.recipes.flags import parse_args  # noqa: F401
from keras_perceiver.recipes.outputs import BackupAndRestore  # noqa: F401
from keras_perceiver.recipes.outputs import export
from keras_perceiver.recipes.outputs import make_output_dirs
from keras_perceiver.recipes.outputs import read_history
from keras_perceiver.recipes.outputs import read_json
from keras_perceiver.recipes.outputs import standard_callbacks
from keras_perceiver.recipes.outputs import write_json

# A recipe's default warm-up takes at most this share of a run's steps (a given one is kept).
DEFAULT_WARMUP_SHARE = 0.25


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

            output, resume = tempfile.mkdtemp(prefix=f"{self.name}-worker-"), True
        settings = {k: v for k, v in vars(self.args).items() if not k.startswith("_")}
        return make_output_dirs(output, resume, {
            "recipe": self.name, "flags": settings, "model_config": self.config})

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

    def warmup_steps(self, total_steps):
        """`--warmup-steps`; with `--schedule warmup_cosine`, the recipe's
        default (not a given value) is capped to `DEFAULT_WARMUP_SHARE` of
        `total_steps` for short runs (other schedules have no warm-up)."""
        warmup = self.args.warmup_steps
        if (getattr(self.args, "_warmup_steps_given", True)
                or self.args.schedule != "warmup_cosine"):
            return warmup
        cap = int(total_steps * DEFAULT_WARMUP_SHARE)
        if warmup > cap:
            print(f"{self.name}: {total_steps} steps: the default {warmup} warm-up steps capped "
                  f"to {cap} ({DEFAULT_WARMUP_SHARE:.0%}); --warmup-steps sets them")
            return cap
        return warmup

    def optimizer(self, total_steps, learning_rate=None, **kwargs):
        """LAMB (optax's, `keras_perceiver.optimizers.Lamb`) with `--schedule`
        over `total_steps`, `--learning-rate`, `--weight-decay`, `--clip-norm`
        and `warmup_steps(total_steps)`."""
        return make_lamb(self.args.learning_rate if learning_rate is None else learning_rate,
                         total_steps, schedule=self.args.schedule,
                         weight_decay=self.args.weight_decay, clip_norm=self.args.clip_norm,
                         warmup_steps=self.warmup_steps(total_steps), **kwargs)

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
        """The standard callbacks (`keras_perceiver.recipes.outputs.standard_callbacks`)."""
        return standard_callbacks(self.dirs, monitor, mode, self.best_so_far(monitor, mode))

    def best_so_far(self, monitor, mode):
        values = [float(v) for v in self.read_history().get(monitor, []) if v != ""]
        if not values:
            return None
        return max(values) if mode == "max" else min(values)

    def read_history(self):
        """Per-epoch logs of this run and the runs it resumed (`history.csv`)."""
        return read_history(self.dirs["logs"])

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

    rate = make_schedule(learning_rate, total_steps, schedule, warmup_steps, flat_fraction)
    return optimizers.Lamb(rate, weight_decay=weight_decay or None,
                           global_clipnorm=clip_norm or None)


def make_schedule(learning_rate, total_steps, schedule="flat_cosine", warmup_steps=0,
                  flat_fraction=0.5):
    """The learning rate of one of `SCHEDULES` (`warmup_steps` is used by
    `warmup_cosine` only, `flat_fraction` by `flat_cosine` only).

    Example:
    >>> from keras_perceiver.recipes import common
    >>> type(common.make_schedule(1e-3, 100, "warmup_cosine", warmup_steps=10)).__name__
    'WarmupCosine'
    """
    from keras_perceiver.recipes import schedules

    if schedule == "flat_cosine":
        return schedules.FlatCosine(learning_rate, total_steps, flat_fraction=flat_fraction)
    if schedule == "warmup_cosine":
        return schedules.WarmupCosine(learning_rate, total_steps, warmup_steps=warmup_steps)
    if schedule == "constant":
        return learning_rate
    raise ValueError(f"schedule must be one of {SCHEDULES}, received {schedule!r}.")
