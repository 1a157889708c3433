"""Train a Perceiver IO image classifier: train -> evaluate -> pictures -> export.

    keras-perceiver train image_classification [--dataset mnist] [--output DIR] ...
    python -m applications.image_classification ...

Without `--dataset`, the 8x8 digits bundled with scikit-learn (no network;
the demo's 75/25 split, 10% of the training part held out for validation).
`--dataset` takes a tensorflow_datasets image classification set (`mnist`,
`cifar10`, `imagenet2012`, ...). Training follows the paper: LAMB with
optax's weight decay (biases and norms excluded), gradients clipped to
global norm 10, flat-then-cosine learning rate, label smoothing; optional
RandAugment, MixUp and CutMix (`keras.layers`). `--dataset imagenet2012`
defaults to the paper's settings (110 epochs, batch 1024, LAMB 2e-3 =
5e-4 x 1024/256, weight decay 0.1, label smoothing 0.1, RandAugment(4, 5),
MixUp 0.2 + CutMix, random resized crops; the 2-D Fourier model).

Writes under `--output` (see `keras_perceiver.recipes.common`):
`plots/curves.png` (training curves) and `plots/attention.png` (for a few
test images, the encoder's cross-attention maps of the latents the decoder's
class query attends to most), `metrics.json` with `test_accuracy`, and with
`--export DIR` a SavedModel taking raw uint8 images plus a LiteRT file.

Resume is exact (same final weights as an uninterrupted run) for the
default augmentation; RandAugment/MixUp/CutMix draw from Keras layers'
seed generators, which restart with the process.
"""

import functools

from keras_perceiver.recipes import common

NAME = "image_classification"
CONFIGS = {
    # The digits demo's model (pixels + 2-D Fourier features).
    "default": dict(prep_type="fourier", num_bands=8, num_latents=32, num_latent_channels=128,
                    num_blocks=1, num_self_attends_per_block=3, num_self_attention_heads=4,
                    num_cross_attention_heads=4, qk_channels=128, v_channels=128, dropout=0.1),
    "smoke": dict(prep_type="fourier", num_bands=2, num_latents=8, num_latent_channels=16, num_blocks=1,
                  num_self_attends_per_block=1, num_self_attention_heads=2,
                  num_cross_attention_heads=1, dropout=0.1),
    "small": dict(prep_type="fourier", num_bands=16, num_latents=128, num_latent_channels=256,
                  num_blocks=2, num_self_attends_per_block=4, num_self_attention_heads=8,
                  num_cross_attention_heads=1, dropout=0.1),
}
DEFAULTS = dict(epochs=60, batch_size=64, learning_rate=4e-3, weight_decay=1e-4,
                clip_norm=10.0, schedule="flat_cosine", warmup_steps=0)
SMOKE = dict(epochs=2, steps_per_epoch=3, batch_size=16)
PAPER = dict(epochs=110, batch_size=1024, learning_rate=2e-3, weight_decay=0.1)


def make_parser():
    parser = common.make_parser(NAME, __doc__, CONFIGS, DEFAULTS, SMOKE)
    add = parser.add_argument
    add("--label-smoothing", type=float, help="default 0 (digits), 0.1 (tfds sets)")
    add("--no-augment", action="store_true", help="no random shifts/affine maps/flips")
    add("--randaugment", action="store_true", help="keras.layers.RandAugment(4 ops, factor 0.5)")
    add("--mixup", type=float, metavar="ALPHA", help="keras.layers.MixUp(alpha)")
    add("--cutmix", action="store_true", help="keras.layers.CutMix (with --mixup: half each)")
    add("--image-size", type=int, help="resize images to this square size")
    add("--validation-fraction", type=float, default=0.1,
        help="share of the training data held out for validation (default 0.1)")
    return parser


def parse(argv=None):
    parser = make_parser()
    args = common.parse_args(parser, argv)
    paper = args.dataset == "imagenet2012" and not args.smoke
    if args.label_smoothing is None:
        args.label_smoothing = 0.1 if args.dataset else 0.0
    if paper:  # the paper's ImageNet settings where no flag says otherwise
        given = set(argv or [])
        for key, value in PAPER.items():
            if "--" + key.replace("_", "-") not in given:
                setattr(args, key, value)
        if not any(a.startswith("--config") or a.startswith("--preset") for a in given):
            args.preset = "vision_perceiver_fourier"
        args.randaugment = True
        args.cutmix = True
        args.mixup = 0.2 if args.mixup is None else args.mixup
    if not 0 <= args.validation_fraction < 1:
        parser.error("--validation-fraction must be in [0, 1)")
    return args


def build_model(args, config, num_classes, image_shape):
    import keras_perceiver

    cls = keras_perceiver.models.PerceiverImageClassifier
    if args.preset:
        if args.preset not in cls.PRESETS:
            raise ValueError(f"--preset {args.preset!r}: expected one of {sorted(cls.PRESETS)}.")
        config = dict(cls.PRESETS[args.preset]["config"])
        config.pop("max_resolution", None)
    config = dict(config, num_classes=num_classes, image_shape=tuple(image_shape))
    return cls(**config, name="perceiver_image_classifier")


def main(argv=None):
    """Runs the recipe; returns `{"test_accuracy": ...}`."""
    args = parse(argv)
    run = common.Run(NAME, args)
    import keras
    import numpy as np
    import tensorflow as tf

    from keras_perceiver.data import images as data
    from keras_perceiver.visualize import attention
    from keras_perceiver.visualize import curves

    # --- data: uint8 images and int labels -------------------------------
    if args.dataset:
        train, val, test, info = data.load_tfds(args.dataset, args.data_dir,
                                                args.validation_fraction)
        settings = data.settings_for(args.dataset, info, args.image_size)
        num_classes = info.features["label"].num_classes
        num_train = int(train.reduce(0, lambda n, _: n + 1))
    else:
        (x, y), (x_test, y_test) = data.load_digits_split()
        (x, y), (x_val, y_val) = data.hold_out(x, y, args.validation_fraction, seed=0)
        settings = data.settings_for("digits", image_size=args.image_size)
        num_classes, num_train = 10, len(x)
        train = tf.data.Dataset.from_tensor_slices((x, y))
        val = tf.data.Dataset.from_tensor_slices((x_val, y_val)) if len(x_val) else None
        test = tf.data.Dataset.from_tensor_slices((x_test, y_test))
    shape, options = settings["image_shape"], settings["preprocessing"]
    batch = args.batch_size
    from keras_perceiver import distribution

    distribution.per_replica_batch_size(batch, run.replicas)  # checks it divides
    epochs, steps_per_epoch = run.epochs_and_steps(num_train // batch)
    print(f"{NAME}: {args.dataset or 'digits (scikit-learn)'}: {num_train} training images "
          f"{shape}, {num_classes} classes; {epochs} epochs x {steps_per_epoch} steps of "
          f"{batch} on {run.replicas} replica(s)")

    def eval_batches(ds):  # the serving preprocessing, image by image (any size)
        return ds.map(lambda im, lab: (data.normalise(im[None], shape, options)[0],
                                       tf.one_hot(lab, num_classes))).batch(batch)

    train_fn = functools.partial(
        _train_stream, train, num_train, args, shape, options, num_classes,
        flip=settings["flip"], epochs=epochs, steps_per_epoch=steps_per_epoch)

    def make_model():
        model = build_model(args, run.config, num_classes, shape)
        metrics = [keras.metrics.CategoricalAccuracy(name="accuracy")]
        if num_classes > 5:
            metrics.append(keras.metrics.TopKCategoricalAccuracy(5, name="top_5_accuracy"))
        model.compile(
            optimizer=run.optimizer(epochs * steps_per_epoch),
            loss=keras.losses.CategoricalCrossentropy(
                from_logits=True, label_smoothing=args.label_smoothing),
            metrics=metrics, jit_compile=False)
        return model

    model = run.build_model(make_model)
    validation = eval_batches(val) if val is not None else None
    monitor = "val_accuracy" if validation is not None else "accuracy"
    run.fit(model, train_fn, steps_per_epoch, epochs, validation_data=validation,
            monitor=monitor, mode="max")

    # --- held-out evaluation ---------------------------------------------
    correct = total = 0
    shown = None
    for x_batch, y_batch in eval_batches(test):
        logits = keras.ops.convert_to_numpy(model(x_batch, training=False))
        labels = y_batch.numpy().argmax(-1)
        correct += int((logits.argmax(-1) == labels).sum())
        total += len(labels)
        if shown is None:
            shown = (x_batch.numpy()[:4], labels[:4], logits.argmax(-1)[:4])
    metrics = {"test_accuracy": correct / max(total, 1)}

    # --- pictures ----------------------------------------------------------
    if run.history:
        run.plot("curves.png", curves.plot_history, run.history,
                 title=f"{NAME} ({args.dataset or 'digits'})")
    maps, weights = attention.image_attention(model, shown[0])
    titles = [f"label {a} / predicted {b}" for a, b in zip(shown[1], shown[2])]
    run.plot("attention.png", attention.plot_image_attention, shown[0], maps, weights,
             titles=titles)
    return run.finish(model, metrics, export_options={"image_preprocessing": options})


def _train_stream(train, num_train, args, shape, options, num_classes, first_epoch, *,
                  flip, epochs, steps_per_epoch):
    """Batches of epochs `first_epoch..epochs-1`; epoch `e`'s order and
    augmentation come from `(seed, e)` alone."""
    import tensorflow as tf

    from keras_perceiver.data import images as data

    batch, seed = args.batch_size, args.seed
    resolved = data.preprocessing.image_preprocessing_options(options, shape[2])
    mean = tf.constant(resolved["mean"], tf.float32)
    std = tf.constant(resolved["std"], tf.float32)
    imagenet_like = options.get("mode") == "center_crop"
    layers = _keras_augmenters(args)

    def to_model_size(image, key):
        if imagenet_like:
            return data.random_resized_crop(image, key, shape[:2])
        if image.shape[0] != shape[0] or image.shape[1] != shape[1]:
            image = tf.cast(tf.clip_by_value(tf.round(tf.image.resize(
                tf.cast(image, tf.float32), shape[:2], antialias=True)), 0, 255), tf.uint8)
        return image

    def one_epoch(epoch):
        key = [seed, epoch]
        ds = train.shuffle(min(num_train, 10_000), seed=seed * 1_000_003 + epoch,
                           reshuffle_each_iteration=False)
        if steps_per_epoch * batch > num_train:
            ds = ds.repeat()
        ds = ds.enumerate().map(lambda i, ex: (to_model_size(
            ex[0], tf.random.experimental.stateless_fold_in(key, i)), ex[1]))
        ds = ds.batch(batch, drop_remainder=True).take(steps_per_epoch).enumerate()

        def finish(step, ex):
            images, labels = tf.cast(ex[0], tf.float32), tf.one_hot(ex[1], num_classes)
            step_key = tf.random.experimental.stateless_fold_in(tf.constant(key, tf.int64), step)
            if layers.get("randaugment") is not None:
                images = layers["randaugment"](images)
            if not args.no_augment and not imagenet_like:
                images = data.augment_batch(images, step_key, max_shift=max(1, shape[0] // 14),
                                            flip=flip)
            elif not args.no_augment and flip:
                images = data.augment_batch(images, step_key, max_shift=0, flip=True,
                                            augment_prob=0.0)
            images, labels = _mix(layers, images, labels)
            return (images - mean) / std, labels

        return ds.map(finish)

    stream = one_epoch(first_epoch)
    for epoch in range(first_epoch + 1, epochs):
        stream = stream.concatenate(one_epoch(epoch))
    return stream.prefetch(2)


def _keras_augmenters(args):
    import keras

    layers = {}
    if args.randaugment:
        layers["randaugment"] = keras.layers.RandAugment(
            value_range=(0, 255), num_ops=4, factor=0.5, seed=args.seed)
    if args.mixup:
        layers["mixup"] = keras.layers.MixUp(alpha=args.mixup, seed=args.seed)
    if args.cutmix:
        layers["cutmix"] = keras.layers.CutMix(seed=args.seed)
    return layers


def _mix(layers, images, labels):
    """MixUp or CutMix over the batch; with both, MixUp on the first half and
    CutMix on the second (as DeepMind's ImageNet training)."""
    import tensorflow as tf

    mixup, cutmix = layers.get("mixup"), layers.get("cutmix")
    if mixup is None and cutmix is None:
        return images, labels
    if mixup is None or cutmix is None:
        out = (mixup or cutmix)({"images": images, "labels": labels})
        return out["images"], out["labels"]
    half = tf.shape(images)[0] // 2
    a = mixup({"images": images[:half], "labels": labels[:half]})
    b = cutmix({"images": images[half:], "labels": labels[half:]})
    return (tf.concat([a["images"], b["images"]], 0), tf.concat([a["labels"], b["labels"]], 0))
