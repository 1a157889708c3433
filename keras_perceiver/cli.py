"""`keras-perceiver` command line: `export`, `convert`, `presets`, `download`, `train`.

    keras-perceiver export --preset NAME_OR_DIR [--weights DIR_OR_FILE | --random-weights]
        --format saved_model|tflite|onnx [--quantization ...] --output PATH [--overwrite]
    keras-perceiver convert --from transformers|deepmind SRC [--preset NAME] --output DIR
    keras-perceiver presets
    keras-perceiver download NAME
    keras-perceiver train NAME [recipe flags]      (NAME: see `keras-perceiver train --help`)

`export --preset NAME` uses the released weights (downloaded and cached
once, see `keras_perceiver.models.presets`); `--random-weights` exports a
random initialisation instead. `export --format saved_model` writes
`OUTPUT/<version>/` (TF Serving's layout; the next free version unless
`--version`); `tflite` and `onnx` write `OUTPUT` if it ends in `.tflite` /
`.onnx`, else `OUTPUT/<model name>.<ext>`, never replacing an existing file
without `--overwrite`.

Errors print one line to stderr: exit status 2 for usage errors (a flag that
does not apply, a bad value), 1 for failures (a missing or damaged file, a
failed conversion); `--debug` shows the traceback instead. Only `argparse`
is imported until a command runs, so `--help` answers at once.
"""

import argparse
import json
import os
import sys

FORMATS = ("saved_model", "tflite", "onnx")
QUANTIZATIONS = ("float16", "dynamic_int8", "int8")
PROG = "keras-perceiver"
# Task classes whose presets `--class` can pick (see models.task.TASK_CLASSES).
_CLASSES = (
    "PerceiverMaskedLM",
    "PerceiverImageClassifier",
    "PerceiverOpticalFlow",
    "PerceiverMultimodalAutoencoder",
    "PerceiverTextClassifier",
)


class UsageError(Exception):
    """A flag that does not apply or a bad value: exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        command = self.prog[len(PROG):].strip()
        raise UsageError(f"{command + ': ' if command else ''}{message} (see {self.prog} --help)")


def _json_object(text):
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not valid JSON ({error}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def _image_size(text):
    parts = text.lower().replace("x", ",").split(",")
    try:
        size = tuple(int(p) for p in parts)
    except ValueError:
        size = ()
    if len(size) != 2 or min(size) < 1:
        raise argparse.ArgumentTypeError(f"expected HEIGHT,WIDTH (e.g. 224,224), got {text!r}")
    return size


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _parser():
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show the Python traceback of an error")
    parser = _Parser(prog=PROG, parents=[debug],
                     description="Perceiver IO for Keras 3: export, convert, presets.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    ex = sub.add_parser("export", parents=[debug],
                        help="export a preset for serving (SavedModel, LiteRT, ONNX)")
    ex.add_argument("--preset", required=True,
                    help="a preset name (e.g. vision_perceiver_conv) or a preset directory")
    ex.add_argument("--weights", help="weights: a preset directory or a .weights.h5 file")
    ex.add_argument("--random-weights", action="store_true",
                    help="export a preset name with random weights (no download)")
    ex.add_argument("--class", dest="class_name", choices=_CLASSES,
                    help="task class for a preset name shared by several classes")
    ex.add_argument("--format", default="saved_model", choices=FORMATS)
    ex.add_argument("--quantization", choices=QUANTIZATIONS, help="LiteRT quantization")
    ex.add_argument("--representative-data",
                    help="LiteRT int8: .npz file with one array per model input")
    ex.add_argument("--output", required=True, help="e.g. saved_models/NAME")
    ex.add_argument("--overwrite", action="store_true",
                    help="tflite/onnx: replace an existing output file")
    ex.add_argument("--version", type=_positive_int,
                    help="SavedModel version (default: next free)")
    ex.add_argument("--image-preprocessing", type=_json_object,
                    help='SavedModel image classifiers, JSON, e.g. '
                         '\'{"mode": "resize", "mean": 127.5, "std": 127.5}\'')
    ex.add_argument("--raw-image-size", type=_image_size, metavar="H,W",
                    help="tflite/onnx image classifiers: take uint8 images of this size, "
                         "preprocess them as the SavedModel does (--image-preprocessing), "
                         "return named logits, probabilities, top_5_classes")
    ex.add_argument("--mask-placeholder", help="SavedModel masked LM placeholder ([MASK])")
    ex.add_argument("--num-chunks", type=_positive_int,
                    help="SavedModel multimodal: decoder chunks in the graph")

    cv = sub.add_parser("convert", parents=[debug],
                        help="convert a transformers / DeepMind checkpoint to a preset")
    cv.add_argument("--from", dest="source", required=True, choices=("transformers", "deepmind"))
    cv.add_argument("src", help="save_pretrained directory or DeepMind .pickle/.pystate file")
    cv.add_argument("--preset", help="deepmind: which preset the checkpoint holds")
    cv.add_argument("--output", required=True, help="preset directory to write")
    cv.add_argument("--overwrite", action="store_true",
                    help="replace an existing non-empty output directory")

    sub.add_parser("presets", parents=[debug],
                   help="list the presets with their source, size and paper score")
    dl = sub.add_parser("download", parents=[debug],
                        help="download and convert a preset's released weights into the cache")
    dl.add_argument("name", help="a preset name (see `keras-perceiver presets`)")
    sub.add_parser("train", parents=[debug], add_help=False,
                   help="train a task with its recipe: `train NAME --help` for its flags")
    return parser


def _check_export_flags(args):
    """Flags that do not apply to this export are usage errors, never ignored."""
    is_dir = os.path.isdir(args.preset)
    tflite = args.format == "tflite"
    rules = [
        (args.class_name and is_dir, "--class applies to preset names, not a preset directory"),
        (args.random_weights and is_dir, "--random-weights applies to preset names only"),
        (args.random_weights and args.weights, "--random-weights and --weights exclude each other"),
        (args.quantization and not tflite, "--quantization applies to --format tflite only"),
        (args.representative_data and args.quantization != "int8",
         "--representative-data applies to --format tflite --quantization int8 only"),
        (args.quantization == "int8" and not args.representative_data,
         "--quantization int8 needs --representative-data (calibration examples)"),
        (args.overwrite and args.format == "saved_model",
         "--overwrite does not apply to saved_model (a new version is written each time)"),
        (args.raw_image_size and args.format == "saved_model",
         "--raw-image-size applies to --format tflite/onnx (a SavedModel takes any size)"),
        (args.image_preprocessing is not None and args.format != "saved_model"
         and not args.raw_image_size,
         "--image-preprocessing applies to --format saved_model, or tflite/onnx with "
         "--raw-image-size"),
    ]
    for flag, value in (("--version", args.version), ("--mask-placeholder", args.mask_placeholder),
                        ("--num-chunks", args.num_chunks)):
        rules.append((value is not None and args.format != "saved_model",
                      f"{flag} applies to --format saved_model only"))
    for broken, message in rules:
        if broken:
            raise UsageError(f"export: {message}.")
    if args.weights and not os.path.exists(args.weights):
        raise FileNotFoundError(f"--weights {args.weights}: no such file or directory.")
    if args.representative_data and not os.path.isfile(args.representative_data):
        raise FileNotFoundError(f"--representative-data {args.representative_data}: no such file.")


def _weights_file(weights):
    if weights and os.path.isdir(weights):
        path = os.path.join(weights, "model.weights.h5")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"--weights {weights}: the directory has no model.weights.h5.")
        return path
    return weights


def load_model(preset, weights=None, class_name=None, random_weights=False):
    """A task model from a preset name or directory.

    A name loads its released weights unless `weights` (a file or preset
    directory) or `random_weights` is given.
    """
    import keras_perceiver.models as models
    from keras_perceiver.models.task import all_presets

    weights = _weights_file(weights)
    if os.path.isdir(preset):
        return models.PerceiverTask.from_preset(preset, weights=weights)
    known = all_presets()
    if preset not in known:
        raise UsageError(
            f"export: unknown preset {preset!r}; expected one of {sorted(known)} "
            "or a preset directory."
        )
    cls = getattr(models, class_name) if class_name else known[preset]
    if preset not in cls.PRESETS:
        raise UsageError(f"export: {cls.__name__} has no preset {preset!r}.")
    return cls.from_preset(preset, weights=weights, load_weights=not random_weights)


def _file_output(output, model, ext):
    if output.endswith(ext):
        return output
    return os.path.join(output, f"{model.name}{ext}")


def export(args):
    _check_export_flags(args)
    import keras

    if keras.backend.backend() != "tensorflow":
        raise UsageError(f"export needs KERAS_BACKEND=tensorflow.")
    import keras_perceiver.export as export_lib

    if args.image_preprocessing is not None:
        try:
            export_lib.preprocessing.image_preprocessing_options(args.image_preprocessing)
        except (TypeError, ValueError) as error:
            raise UsageError(f"export: --image-preprocessing: {error}") from None
    model = load_model(args.preset, args.weights, args.class_name, args.random_weights)
    raw = {} if not args.raw_image_size else dict(
        raw_inputs=True, image_size=args.raw_image_size,
        image_preprocessing=args.image_preprocessing)
    if args.format == "saved_model":
        options = {} if args.mask_placeholder is None else {
            "mask_placeholder": args.mask_placeholder}
        path = export_lib.export_saved_model(
            model, args.output, version=args.version,
            image_preprocessing=args.image_preprocessing,
            num_chunks=args.num_chunks, **options,
        )
    elif args.format == "tflite":
        data = None
        if args.representative_data:
            import numpy as np

            with np.load(args.representative_data) as npz:
                data = {k: npz[k] for k in npz.files}
        path = export_lib.export_litert(
            model, _file_output(args.output, model, ".tflite"),
            quantization=args.quantization, representative_data=data,
            overwrite=args.overwrite, **raw,
        )
    else:
        path = export_lib.export_onnx(model, _file_output(args.output, model, ".onnx"),
                                      overwrite=args.overwrite, **raw)
    print(path)
    return path


def convert(args):
    if args.source == "transformers" and args.preset:
        raise UsageError(
            f"convert: --preset does not apply to --from transformers (the "
            "checkpoint's config.json says what it holds)."
        )
    if args.source == "deepmind" and not args.preset:
        raise UsageError(f"convert --from deepmind needs --preset NAME.")
    if not os.path.exists(args.src):
        raise FileNotFoundError(f"{args.src}: no such file or directory.")
    if os.path.isdir(args.output) and os.listdir(args.output) and not args.overwrite:
        raise FileExistsError(
            f"--output {args.output} is not empty; pass --overwrite to replace it."
        )
    import keras_perceiver.convert as convert_lib

    if args.source == "transformers":
        model = convert_lib.from_transformers(args.src)
    else:
        model = convert_lib.from_deepmind(args.src, args.preset)
    model.save_to_preset(args.output, overwrite=args.overwrite)
    print(args.output)
    return args.output


def list_presets(args):
    from keras_perceiver.models import presets
    from keras_perceiver.models.task import all_presets

    for name, cls in sorted(all_presets().items()):
        info = presets.RELEASED.get(name)
        classes = ", ".join(c.__name__ for c in _classes_with(name))
        print(f"{name}  [{classes}]")
        print(f"    {cls.PRESETS[name]['description']}")
        if info:
            print(f"    weights: {presets.source_url(name)} ({info['size']}, "
                  f"hub: {info['hub_id']}); paper: {info['paper_score']}")
            cached = os.path.isdir(presets.cached_preset_dir(name))
            print(f"    cache: {presets.cached_preset_dir(name)}"
                  f"{'' if cached else ' (not downloaded)'}")


def _classes_with(name):
    import keras_perceiver.models as models

    return [getattr(models, c) for c in _CLASSES if name in getattr(models, c).PRESETS]


def download(args):
    from keras_perceiver.models import presets

    if args.name not in presets.RELEASED:
        raise UsageError(
            f"download: no released weights for {args.name!r}; expected one of "
            f"{sorted(presets.RELEASED)}."
        )
    print(presets.download(args.name))


def train(argv):
    """`train NAME [flags]`: runs `keras_perceiver.recipes.<NAME>.main(flags)`."""
    from keras_perceiver.recipes import RECIPES

    argv = [a for a in argv if a != "--debug"]
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: {PROG} train NAME [recipe flags]  (NAME --help lists the flags)\n\n"
              "recipes:\n" + "\n".join(f"  {name}" for name in sorted(RECIPES)))
        return 0
    if argv[0] not in RECIPES:
        raise UsageError(f"train: unknown recipe {argv[0]!r}; expected one of {sorted(RECIPES)}.")
    from keras_perceiver.recipes import get_recipe

    try:
        get_recipe(argv[0]).main(argv[1:])
    except SystemExit as exit_:  # argparse: --help (0) or a usage error (2)
        return exit_.code if isinstance(exit_.code, int) else 2
    return 0


def _one_line(error):
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 600 else text[:597] + "..."


def main(argv=None):
    """Runs the command line; returns the exit status (0, 1 or 2)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    debug = "--debug" in argv
    try:
        if argv[:1] == ["train"]:  # the recipe parses its own flags
            return train(argv[1:])
        args = _parser().parse_args(argv)
        command = {"export": export, "convert": convert, "presets": list_presets,
                   "download": download}[args.command]
        command(args)
    except UsageError as error:
        if debug:
            raise
        print(f"{PROG}: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - the CLI reports every failure in one line
        if debug:
            raise
        print(f"{PROG}: error: {_one_line(error)} (--debug for the traceback)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
