"""Train a Perceiver IO text classifier (one query per task): train -> evaluate -> export.

    keras-perceiver train text_classification [--dataset glue/sst2,glue/mnli] [--init-from-mlm DIR]
    python -m applications.text_classification ...

Without `--dataset`, a labelled task derived from Python's bundled pydoc text
(no network; held out by topic, `keras_perceiver.data.text`) with two heads:
`shift` (letters Caesar-shifted by 0-3) and `order` (the passage's bytes
reversed, or not). `--dataset` takes tensorflow_datasets
classification sets with a text feature (`imdb_reviews`, `glue/sst2`,
`glue/mnli`, ...); a comma-separated list trains one task per set at once,
as the paper's multitask GLUE model: one decoder query and head per task,
the losses summed, each example weighting only its own task's loss. Inputs
are wrapped as `[CLS] text [SEP]` (pairs: `[CLS] a [SEP] b [SEP]`), as the
exported serving signature does.

`--init-from-mlm PATH` starts from a masked language model's encoder
(`PerceiverTextClassifier.from_masked_lm`): PATH is a `masked_lm` recipe
output directory (its `checkpoints/final.weights.h5`), a preset directory or
a preset name (`language_perceiver` loads the released weights). Training:
LAMB (weight decay 0.01, biases and norms excluded, clip 10), warm-up then
cosine.

Writes under `--output`: `plots/curves.png`, `metrics.json` with
`test_accuracy` (the mean over tasks) and `test_<task>_accuracy`, and with
`--export DIR` a SavedModel (raw text in, per-task classes out) plus LiteRT.
"""

import os

from keras_perceiver.recipes import common
from keras_perceiver.recipes import flags
from keras_perceiver.recipes.masked_lm import ENCODERS

NAME = "text_classification"
DECODER = dict(decoder_num_heads=1)
CONFIGS = {name: dict(encoder, **DECODER) for name, encoder in ENCODERS.items()}
# 8 labelled variants of each training passage (fresh shift and order draws), 4 epochs: more
# variants learn `order` faster than more epochs at the same steps (seed 0; README).
TRAIN_COPIES = 8
DEFAULTS = dict(epochs=4, batch_size=32, learning_rate=2e-3, weight_decay=0.01, clip_norm=10.0,
                schedule="warmup_cosine", warmup_steps=50)
SMOKE = dict(epochs=2, steps_per_epoch=2, batch_size=4, warmup_steps=1)
TFDS_SPLITS = {"glue/mnli": ("train", "validation_matched"), "glue": ("train", "validation")}


def make_parser():
    parser = common.make_parser(NAME, __doc__, CONFIGS, DEFAULTS, SMOKE)
    add = parser.add_argument
    add("--init-from-mlm", metavar="PATH",
        help="masked_lm run directory, preset directory or preset name to start the encoder from")
    add("--train-split", help="tfds training split (default per data set)")
    add("--test-split", help="tfds held-out split (default per data set)")
    add("--max-eval-batches", type=int, default=200, help="held-out batches evaluated (200)")
    add("--train-copies", type=flags._positive(int), default=TRAIN_COPIES,
        help=f"embedded task: labelled variants of each training passage, each with its own shift "
             f"and order draws ({TRAIN_COPIES})")
    add("--test-copies", type=flags._positive(int), default=1,
        help="embedded task: labelled variants of each held-out passage (1; more gives a finer "
             "held-out accuracy, up to --max-eval-batches batches)")
    return parser


def task_name(dataset):
    """`glue/sst2` -> `sst2`, `imdb_reviews` -> `imdb_reviews`."""
    return dataset.split("/")[-1].split(":")[0].replace("-", "_").replace(".", "_")


def tfds_splits(args, dataset):
    family = dataset.split("/")[0]
    train, test = TFDS_SPLITS.get(dataset, TFDS_SPLITS.get(family, ("train", "test")))
    return args.train_split or train, args.test_split or test


def load_data(args, length):
    """`(train dataset, number of train examples, test dataset, tasks)`, examples being
    `(token_ids, {task: label}, {task: weight})` (weight 0 for the other sets' tasks)."""
    import numpy as np
    import tensorflow as tf

    from keras_perceiver.data import text

    if not args.dataset:
        parts, sizes = {}, {}
        for split in ("train", "test"):
            copies = args.train_copies if split == "train" else args.test_copies
            ids, labels = text.embedded_task(split, length, seed=args.seed, copies=copies)
            weights = {k: np.ones(len(ids), np.float32) for k in labels}
            parts[split] = tf.data.Dataset.from_tensor_slices((ids, labels, weights))
            sizes[split] = len(ids)
        return parts["train"], sizes["train"], parts["test"], dict(text.EMBEDDED_TASKS)
    names = [n.strip() for n in args.dataset.split(",") if n.strip()]
    tasks, sources = {}, {}
    for name in names:
        train_split, test_split = tfds_splits(args, name)
        loaded = {}
        for split, which in ((train_split, "train"), (test_split, "test")):
            ds, num_classes = text.load_tfds_text(name, split, length, data_dir=args.data_dir,
                                                  add_special_tokens=True)
            if num_classes is None:
                raise ValueError(f"{NAME}: --dataset {name} has no 'label' feature.")
            loaded[which] = ds
        tasks[task_name(name)] = num_classes
        sources[task_name(name)] = loaded
    if len(tasks) != len(names):
        raise ValueError(f"{NAME}: --dataset names two sets with the same task name: {names}.")

    def tag(task):
        def fn(ids, label):
            labels = {t: label if t == task else tf.constant(0, tf.int32) for t in tasks}
            weights = {t: tf.constant(1.0 if t == task else 0.0) for t in tasks}
            return ids, labels, weights
        return fn

    merged = {}
    for which in ("train", "test"):
        parts = [sources[t][which].map(tag(t)) for t in tasks]
        if len(parts) == 1:
            merged[which] = parts[0]
        else:
            merged[which] = tf.data.Dataset.sample_from_datasets(
                parts, seed=args.seed, stop_on_empty_dataset=False)
    return merged["train"], _count(merged["train"]), merged["test"], tasks


def _count(dataset):
    return int(dataset.reduce(0, lambda n, _: n + 1))


def load_masked_lm(path):
    """A `PerceiverMaskedLM` from a masked_lm run directory, a preset directory or a preset name."""
    import keras_perceiver

    cls = keras_perceiver.models.PerceiverMaskedLM
    run_config = os.path.join(str(path), "config.json")
    weights = os.path.join(str(path), "checkpoints", "final.weights.h5")
    if os.path.isfile(run_config) and os.path.isfile(weights):
        config = common.read_json(run_config)
        if config.get("recipe") != "masked_lm":
            raise ValueError(f"--init-from-mlm {path}: expected a masked_lm run, found "
                             f"recipe {config.get('recipe')!r}.")
        model = cls(**config["model_config"])
        model.load_weights(weights)
        return model
    if os.path.isdir(str(path)) or path in cls.PRESETS:
        return cls.from_preset(path)
    raise FileNotFoundError(
        f"--init-from-mlm {path}: expected a masked_lm run directory (with config.json and "
        "checkpoints/final.weights.h5), a preset directory or a preset name "
        f"{sorted(cls.PRESETS)}.")


def main(argv=None):
    """Runs the recipe; returns the held-out metrics (`test_accuracy`, per task)."""
    parser = make_parser()
    args = common.parse_args(parser, argv)
    run = common.Run(NAME, args)
    import keras
    import numpy as np

    import keras_perceiver
    from keras_perceiver.data import text
    from keras_perceiver.visualize import curves

    config = dict(run.config)
    if args.preset:
        presets = keras_perceiver.models.PerceiverTextClassifier.PRESETS
        if args.preset not in presets:
            raise ValueError(f"--preset {args.preset!r}: expected one of {sorted(presets)}.")
        config = dict(presets[args.preset]["config"])
    masked_lm = load_masked_lm(args.init_from_mlm) if args.init_from_mlm else None
    if masked_lm is not None:  # the encoder is the masked LM's
        config.update({k: v for k, v in masked_lm.get_config().items()
                       if k in keras_perceiver.models.masked_lm.ENCODER_ARGS})
    length = config["max_length"]
    train, num_train, test, tasks = load_data(args, length)
    batch = args.batch_size
    if num_train < batch:
        raise ValueError(f"{NAME}: {num_train} training examples, fewer than --batch-size {batch}.")
    epochs, steps_per_epoch = run.epochs_and_steps(num_train // batch)
    print(f"{NAME}: {args.dataset or 'pydoc topics task (embedded)'}: tasks {tasks}, "
          f"{num_train} examples of {length} bytes; {epochs} epochs x {steps_per_epoch} steps "
          f"of {batch}" + (f"; encoder from {args.init_from_mlm}" if masked_lm else ""))

    def train_fn(first_epoch):
        stream = text.epoch_stream(train, batch, steps_per_epoch, args.seed, first_epoch, epochs)
        return stream.map(lambda epoch, step, example: example).prefetch(2)

    heldout = test.batch(batch).take(args.max_eval_batches).cache()

    def make_model():
        cls = keras_perceiver.models.PerceiverTextClassifier
        if masked_lm is not None:
            extra = {k: v for k, v in config.items()
                     if k not in keras_perceiver.models.masked_lm.ENCODER_ARGS}
            model = cls.from_masked_lm(masked_lm, tasks, **extra, name="perceiver_text_classifier")
        else:
            model = cls(tasks=tasks, **config, name="perceiver_text_classifier")
        model.compile(
            optimizer=run.optimizer(epochs * steps_per_epoch),
            loss={t: keras.losses.SparseCategoricalCrossentropy(from_logits=True) for t in tasks},
            weighted_metrics={t: [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
                              for t in tasks})
        return model

    model = run.build_model(make_model)
    run.fit(model, train_fn, steps_per_epoch, epochs, validation_data=heldout,
            monitor="val_loss", mode="min")

    # --- held-out evaluation (final weights) ---------------------------------
    correct = {t: 0.0 for t in tasks}
    counted = {t: 0.0 for t in tasks}
    for ids, labels, weights in heldout:
        outputs = model.predict_on_batch(ids.numpy())
        for t in tasks:
            predicted = keras.ops.convert_to_numpy(outputs[t]).argmax(-1)
            w = weights[t].numpy()
            correct[t] += float(((predicted == labels[t].numpy()) * w).sum())
            counted[t] += float(w.sum())
    metrics = {f"test_{t}_accuracy": correct[t] / max(counted[t], 1.0) for t in tasks}
    metrics["test_accuracy"] = float(np.mean(list(metrics.values())))
    metrics["test_examples"] = float(sum(counted.values()))

    if run.history:
        run.plot("curves.png", curves.plot_history, run.history,
                 title=f"{NAME} ({args.dataset or 'pydoc task'})"
                       + (" from the masked LM" if masked_lm else ""))
    return run.finish(model, metrics)
