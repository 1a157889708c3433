"""Sets of entities: which blob each point of a 2-D point set belongs to.

Trains `keras_perceiver.models.PerceiverSetModel` on the embedded task of
`keras_perceiver.data.entity_sets` (sets of 32-512 points from 4 Gaussian
blobs, moved and scaled at random; a point's label is the left-to-right rank
of its nearest blob center, so it needs the whole set), reports the held-out
per-entity accuracy (all sizes, and on sets of exactly N = 64, 256, 512,
2048 points), and with `--compare` trains a plain Transformer encoder of the
same width and depth on the same data and steps and prints the comparison:
accuracy, FLOPs per example and forward wall time at each N (see `set_costs`).

    python -m applications.entity_sets               # ~10 min on 2 CPU cores
    python -m applications.entity_sets --compare     # + the Transformer baseline
    python -m applications.entity_sets --save-preset # + cache as preset "set_perceiver_blobs"

The default config is the architecture of the `set_perceiver_blobs` preset:
`--save-preset` writes the trained model where
`PerceiverSetModel.from_preset("set_perceiver_blobs")` loads it (offline).
"""

import math
import time

import numpy as np

from keras_perceiver.models.set_model import BLOBS_CONFIG
from keras_perceiver.models.set_model import BLOBS_PRESET

NUM_CLASSES = 4
CONFIGS = {
    "default": {k: v for k, v in BLOBS_CONFIG.items() if k not in ("num_features", "num_classes")},
    "smoke": dict(num_latents=4, num_latent_channels=8, num_blocks=1,
                  num_self_attends_per_block=1, num_self_attention_heads=2,
                  num_cross_attention_heads=1, decoder_num_heads=1, max_entities=2048,
                  entity_normalization="isotropic"),
}
COST_SIZES = (64, 256, 512, 2048)


# --- Models ------------------------------------------------------------------


def build_perceiver(config, num_features=2, num_classes=NUM_CLASSES):
    from keras_perceiver.models import PerceiverSetModel

    return PerceiverSetModel(num_features=num_features, num_classes=num_classes, **config)


def transformer_depth(config):
    """Attention layers of the Perceiver (cross-attentions to the entities +
    latent self-attentions + decoder cross-attention): the baseline gets as
    many full self-attention layers."""
    return (config.get("num_cross_attends", 1) + 1
            + config["num_blocks"] * config["num_self_attends_per_block"])


def build_transformer(config, num_features=2, num_classes=NUM_CLASSES):
    """A plain pre-LayerNorm Transformer encoder over the entities (the
    baseline): the Perceiver's entity embedding (and `entity_normalization`),
    `transformer_depth(config)` layers of `keras.layers.MultiHeadAttention`
    (masked keys) + MLP of the same width, heads and widening, and a
    per-entity head; padded outputs 0."""
    import keras
    from keras import ops

    from keras_perceiver.models.set_embedding import EntityEmbedding

    width = config["num_latent_channels"]
    heads = config["num_self_attention_heads"]
    widening = config.get("self_attention_widening_factor", 1)
    entities = keras.Input((None, num_features), name="entities")
    mask_input = keras.Input((None,), name="mask")
    mask = ops.not_equal(mask_input, 0)
    pair_mask = ops.logical_and(mask[:, None, :], ops.ones_like(mask)[:, :, None])
    x = EntityEmbedding(width, {}, normalization=config.get("entity_normalization"),
                        name="entity_embedding")(entities, mask)
    for i in range(transformer_depth(config)):
        h = keras.layers.LayerNormalization(epsilon=1e-5, name=f"ln_attention_{i}")(x)
        h = keras.layers.MultiHeadAttention(heads, width // heads, name=f"attention_{i}")(
            h, h, attention_mask=pair_mask)
        x = x + h
        h = keras.layers.LayerNormalization(epsilon=1e-5, name=f"ln_mlp_{i}")(x)
        h = keras.layers.Dense(widening * width, activation="gelu", name=f"mlp_in_{i}")(h)
        x = x + keras.layers.Dense(width, name=f"mlp_out_{i}")(h)
    logits = keras.layers.Dense(num_classes, name="entity_head")(x)
    logits = ops.where(mask[:, :, None], logits, ops.zeros_like(logits))
    return keras.Model({"entities": entities, "mask": mask_input}, logits,
                       name="transformer_set_baseline")


# --- FLOPs (analytic) --------------------------------------------------------
# Convention: FLOPs = 2 x the multiply-adds of the matrix products (every
# Dense layer, and the attention's QK^T and weights x V) for one example of
# N entities; biases, norms, softmax, activations and embedding lookups are
# not counted (they are O(N * width), the same in both models).


def _attention_macs(queries, keys, query_width, key_width, qk, v, out):
    return (queries * query_width * qk + keys * key_width * (qk + v)
            + queries * keys * (qk + v) + queries * v * out)


def _embedding_macs(n, num_features, width):
    return n * num_features * width + 2 * n * width * 2 * width  # Dense + MLP(x2)


def perceiver_flops(config, n, num_features=2, num_classes=NUM_CLASSES):
    """FLOPs per example of `PerceiverSetModel(**config)` on `n` entities."""
    d, latents = config["num_latent_channels"], config["num_latents"]
    e = config.get("embedding_dim") or d
    qk, v = config.get("qk_channels"), config.get("v_channels")
    macs = _embedding_macs(n, num_features, e)
    cross_qk = qk or e
    per_cross = (_attention_macs(latents, n, d, e, cross_qk, v or cross_qk, d)
                 + 2 * latents * d * d * config.get("cross_attention_widening_factor", 1))
    macs += config.get("num_cross_attends", 1) * per_cross
    self_qk = qk or d
    per_self = (_attention_macs(latents, latents, d, d, self_qk, v or self_qk, d)
                + 2 * latents * d * d * config.get("self_attention_widening_factor", 1))
    macs += config["num_blocks"] * config["num_self_attends_per_block"] * per_self
    queries = n + (1 if config.get("num_set_classes") else 0)
    macs += _attention_macs(queries, latents, e, d, e, e, e)  # decoder: shape "q"
    macs += 2 * queries * e * e * config.get("decoder_widening_factor", 1)
    macs += n * e * num_classes + e * (config.get("num_set_classes") or 0)
    return 2 * macs


def transformer_flops(config, n, num_features=2, num_classes=NUM_CLASSES):
    """FLOPs per example of `build_transformer(config)` on `n` entities."""
    d = config["num_latent_channels"]
    widening = config.get("self_attention_widening_factor", 1)
    per_layer = _attention_macs(n, n, d, d, d, d, d) + 2 * n * d * d * widening
    macs = _embedding_macs(n, num_features, d) + transformer_depth(config) * per_layer
    return 2 * (macs + n * d * num_classes)


def forward_seconds(model, n, batch_size=4, repeats=5, seed=0):
    """Best wall time (of `repeats`, after warm-up) of one compiled forward pass on
    `batch_size` sets of `n` (the best is the least disturbed by other jobs)."""
    import keras

    rng = np.random.default_rng(seed)
    x = {"entities": rng.normal(size=(batch_size, n, 2)).astype("float32"),
         "mask": np.ones((batch_size, n), bool)}
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        step = tf.function(lambda inputs: model(inputs, training=False))
        tensors = {k: tf.constant(v) for k, v in x.items()}

        def run():
            step(tensors).numpy()
    else:
        def run():
            keras.ops.convert_to_numpy(model(x, training=False))
    run()  # trace / warm up (twice: a second call may still compile or allocate)
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return float(min(times))


def set_costs(config, sizes=COST_SIZES, batch_size=4, repeats=5):
    """`[{n, perceiver_flops, transformer_flops, flops_ratio, perceiver_s,
    transformer_s}]`: analytic FLOPs per example and measured forward wall
    time per batch (random weights; the cost does not depend on them)."""
    perceiver, transformer = build_perceiver(config), build_transformer(config)
    rows = []
    for n in sizes:
        p, t = perceiver_flops(config, n), transformer_flops(config, n)
        rows.append(dict(n=n, perceiver_flops=p, transformer_flops=t, flops_ratio=t / p,
                         perceiver_s=forward_seconds(perceiver, n, batch_size, repeats),
                         transformer_s=forward_seconds(transformer, n, batch_size, repeats)))
    return rows


def format_costs(rows, accuracy=None):
    """The comparison as a Markdown table (FLOPs in MFLOPs per example; the
    held-out accuracy at N where a row has `perceiver_accuracy`/`transformer_accuracy`)."""
    scored = any("perceiver_accuracy" in r for r in rows)
    lines = ["| N |" + (" Perceiver accuracy | Transformer accuracy |" if scored else "")
             + " Perceiver MFLOPs | Transformer MFLOPs | ratio | Perceiver s/batch "
             "| Transformer s/batch |", "|---|---|---|---|---|---|" + "---|---|" * scored]
    for r in rows:
        acc = "".join(f" {r[k]:.2%} |" if k in r else " - |"
                      for k in ("perceiver_accuracy", "transformer_accuracy")) if scored else ""
        lines.append(f"| {r['n']} |{acc} {r['perceiver_flops'] / 1e6:.1f} | "
                     f"{r['transformer_flops'] / 1e6:.1f} | {r['flops_ratio']:.1f}x | "
                     f"{r['perceiver_s']:.3f} | {r['transformer_s']:.3f} |")
    sizes = [r["n"] for r in rows]
    if len(sizes) >= 2:  # growth between the two largest sizes
        a, b = sorted(sizes)[-2:]
        lines.append("")
        for name in ("perceiver", "transformer"):
            lines.append(f"log-log slope in N ({a} -> {b}), {name}: FLOPs "
                         f"{slope(rows, name + '_flops', a, b):.2f}, time "
                         f"{slope(rows, name + '_s', a, b):.2f} (1 = linear, 2 = quadratic)")
    if accuracy:
        lines.append("")
        lines += [f"- {k}: {v:.4f}" for k, v in accuracy.items()]
    return "\n".join(lines)


def slope(rows, key, a=512, b=2048):
    """`log(key at N=b / key at N=a) / log(b / a)`: 1 for linear growth, 2 for quadratic."""
    by_n = {r["n"]: r[key] for r in rows}
    return math.log(by_n[b] / by_n[a]) / math.log(b / a)


# --- Data --------------------------------------------------------------------


def batches(data, batch_size, seed, epoch, round_to=64):
    """One epoch of `(inputs, labels, sample_weight)` NumPy batches: sets of
    similar size batched together (shuffled from `(seed, epoch)`), each batch
    padded to its largest set rounded up to `round_to` (at most the data's width)."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(data["sizes"]))
    chunk = batch_size * 16
    groups = []
    for start in range(0, len(order) - batch_size + 1, chunk):
        part = order[start:start + chunk]
        part = part[np.argsort(data["sizes"][part], kind="stable")]
        groups += [part[i:i + batch_size] for i in range(0, len(part) - batch_size + 1,
                                                          batch_size)]
    for i in rng.permutation(len(groups)):
        index = np.sort(groups[i])
        n = int(math.ceil(data["sizes"][index].max() / round_to) * round_to)
        n = min(n, data["mask"].shape[1])
        mask = data["mask"][index, :n]
        yield ({"entities": data["entities"][index, :n], "mask": mask},
               np.maximum(data["labels"][index, :n], 0), mask.astype("float32"))


def steps_per_epoch(data, batch_size):
    chunk = batch_size * 16
    sizes = [min(chunk, len(data["sizes"]) - s) for s in range(0, len(data["sizes"]), chunk)]
    return sum(s // batch_size for s in sizes if s >= batch_size)


def train_dataset(data, batch_size, seed, first_epoch, epochs):
    """A `tf.data.Dataset` of `batches` for epochs `first_epoch..epochs-1`."""
    import tensorflow as tf

    def generate():
        for epoch in range(first_epoch, epochs):
            yield from batches(data, batch_size, seed, epoch)

    spec = ({"entities": tf.TensorSpec((None, None, 2), tf.float32),
             "mask": tf.TensorSpec((None, None), tf.bool)},
            tf.TensorSpec((None, None), tf.int32), tf.TensorSpec((None, None), tf.float32))
    return tf.data.Dataset.from_generator(generate, output_signature=spec).prefetch(2)


def sized_sets(seed, count, sizes=COST_SIZES, large_count=32):
    """`{N: held-out sets of exactly N points}` for each N of `sizes`: `count`
    sets each (at most `large_count` above 512), seed `seed` at N = 512 (the
    earlier N = 512 set) and `[seed, N]` otherwise."""
    from keras_perceiver.data import entity_sets

    return {n: entity_sets.blob_sets(count if n <= 512 else min(count, large_count),
                                     min_entities=n, max_entities=n,
                                     seed=seed if n == 512 else [seed, n]) for n in sizes}


def sized_accuracy(model, by_n, prefix=""):
    """`{f"{prefix}test_accuracy_n{N}": per-entity accuracy on by_n[N]}`."""
    return {f"{prefix}test_accuracy_n{n}": accuracy(model, data, 16 if n <= 512 else 4)
            for n, data in by_n.items()}


def accuracy(model, data, batch_size=16):
    """Per-entity accuracy over the real entities of `data`."""
    import keras

    correct = total = 0
    for start in range(0, len(data["sizes"]), batch_size):
        sl = slice(start, start + batch_size)
        n = int(data["sizes"][sl].max())
        x = {"entities": data["entities"][sl, :n], "mask": data["mask"][sl, :n]}
        logits = keras.ops.convert_to_numpy(model(x, training=False))
        real = x["mask"]
        correct += int((logits.argmax(-1)[real] == data["labels"][sl, :n][real]).sum())
        total += int(real.sum())
    return correct / total


# --- Recipe ------------------------------------------------------------------


def _add_flags(parser):
    add = parser.add_argument
    add("--train-sets", type=int, default=6000, help="training sets (default 6000)")
    add("--test-sets", type=int, default=300, help="held-out sets (default 300)")
    add("--max-entities", type=int, default=128,
        help="largest training set (default 128; held-out sets go up to 512)")
    add("--save-preset", action="store_true",
        help=f"write the trained model (default config only) as the cached preset "
             f"{BLOBS_PRESET!r}, replacing an earlier one")
    add("--compare", action="store_true",
        help="also train the Transformer baseline on the same data and steps, and "
             "measure FLOPs and forward time at N = 64, 256, 512, 2048")


def _train(run, name, build, data, held_out, epochs, per_epoch, total_steps):
    import keras

    def make_model():
        model = build(run.config)
        model.compile(optimizer=run.optimizer(total_steps),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      weighted_metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
        return model

    model = run.build_model(make_model)
    start = time.time()
    run.fit(model, lambda first: train_dataset(data, run.args.batch_size, run.args.seed,
                                               first, epochs),
            per_epoch, epochs, validation_data=held_out, monitor="val_accuracy", mode="max")
    return model, time.time() - start


def main(argv=None):
    """Trains (and with `--compare` compares) on the embedded blob sets; returns the metrics."""
    from keras_perceiver.data import entity_sets
    from keras_perceiver.recipes import common

    parser = common.make_parser(
        "entity_sets", __doc__, CONFIGS,
        defaults=dict(epochs=8, batch_size=32, learning_rate=2e-3, weight_decay=1e-4,
                      schedule="flat_cosine"),
        smoke=dict(epochs=1, steps_per_epoch=2, batch_size=4))
    _add_flags(parser)
    args = common.parse_args(parser, argv)
    if args.smoke:
        args.train_sets, args.test_sets, args.max_entities = 16, 4, 64
    if args.save_preset and args.config != "default":
        parser.error(f"--save-preset needs the default config (the {BLOBS_PRESET!r} "
                     f"architecture), not {args.config!r}")
    run = common.Run("entity_sets", args)
    train = entity_sets.blob_sets(args.train_sets, max_entities=args.max_entities,
                                  seed=args.seed * 3 + 1)
    test = entity_sets.blob_sets(args.test_sets, max_entities=512 if not args.smoke else 64,
                                 seed=args.seed * 3 + 2)
    by_n = sized_sets(args.seed * 3 + 3, max(args.test_sets // 3, 2))
    epochs, per_epoch = run.epochs_and_steps(steps_per_epoch(train, args.batch_size))
    held_out = next(iter(train_dataset(test, len(test["sizes"]), 0, 0, 1).take(1)))
    model, seconds = _train(run, "perceiver", build_perceiver, train, held_out, epochs,
                            per_epoch, epochs * per_epoch)
    metrics = {"test_accuracy": accuracy(model, test), **sized_accuracy(model, by_n),
               "train_seconds": seconds,
               "context_free_accuracy": entity_sets.context_free_accuracy(test),
               "context_free_accuracy_standardized":
                   entity_sets.context_free_accuracy(test, standardized=True)}
    if args.compare:
        metrics.update(_compare(run, train, held_out, test, by_n, epochs, per_epoch, metrics))
    if args.save_preset and run.chief:
        print(f"entity_sets: preset {BLOBS_PRESET!r} cached at {save_preset(model)}")
    return run.finish(model, metrics)


def save_preset(model):
    """Writes `model` (the preset's architecture) as the cached preset
    `set_perceiver_blobs` (written aside, then renamed into place); returns
    its directory."""
    from keras_perceiver.models import presets

    config = {k: v for k, v in model.get_config().items() if k != "name"}
    expected = {**config, **BLOBS_CONFIG}
    if config != expected:
        differ = sorted(k for k in config if config[k] != expected[k])
        raise ValueError(f"save_preset: the model is not the {BLOBS_PRESET!r} architecture "
                         f"(it differs in {differ}).")
    directory = presets.cached_preset_dir(BLOBS_PRESET)
    model.save_to_preset(directory, overwrite=True)
    return directory


def _compare(run, train, held_out, test, by_n, epochs, per_epoch, metrics):
    import os

    from keras_perceiver.recipes import common

    baseline = common.Run("entity_sets_transformer", _baseline_args(run.args))
    model, seconds = _train(baseline, "transformer", build_transformer, train, held_out,
                            epochs, per_epoch, epochs * per_epoch)
    result = {"transformer_test_accuracy": accuracy(model, test),
              **sized_accuracy(model, by_n, "transformer_"),
              "transformer_train_seconds": seconds}
    sizes = COST_SIZES if not run.args.smoke else (16, 32)
    rows = set_costs(run.config, sizes=sizes)
    for row in rows:
        result[f"flops_ratio_n{row['n']}"] = row["flops_ratio"]
        if row["n"] in by_n:
            row["perceiver_accuracy"] = metrics[f"test_accuracy_n{row['n']}"]
            row["transformer_accuracy"] = result[f"transformer_test_accuracy_n{row['n']}"]
    common.write_json(run.path("comparison.json"), rows)
    print(format_costs(rows))
    print(f"(written to {os.path.join(run.dirs['output'], 'comparison.json')})")
    return result


def _baseline_args(args):
    import argparse
    import os

    values = dict(vars(args))
    values["output"] = os.path.join(args.output, "transformer")
    values["export"] = None
    return argparse.Namespace(**values)
