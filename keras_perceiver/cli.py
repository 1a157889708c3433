"""`keras-perceiver` command line: `export` and `convert`.

    keras-perceiver export --preset NAME_OR_DIR [--weights DIR_OR_FILE]
        --format saved_model|tflite|onnx [--quantization ...] --output PATH
    keras-perceiver convert --from transformers|deepmind SRC --preset NAME --output DIR

`export --format saved_model` writes `OUTPUT/<version>/` (TF Serving's layout;
the next free version unless `--version`); `tflite` and `onnx` write
`OUTPUT` if it ends in `.tflite` / `.onnx`, else `OUTPUT/<model name>.<ext>`.
"""

import argparse
import json
import os
import sys

FORMATS = ("saved_model", "tflite", "onnx")
QUANTIZATIONS = ("float16", "dynamic_int8", "int8")
# Preset names resolve in this order ("language_perceiver" is the MLM).
_CLASSES = (
    "PerceiverMaskedLM",
    "PerceiverImageClassifier",
    "PerceiverOpticalFlow",
    "PerceiverMultimodalAutoencoder",
    "PerceiverTextClassifier",
)


def _parser():
    parser = argparse.ArgumentParser(
        prog="keras-perceiver", description="Perceiver IO for Keras 3: export and convert."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    ex = sub.add_parser("export", help="export a preset for serving (SavedModel, LiteRT, ONNX)")
    ex.add_argument("--preset", required=True,
                    help="a preset name (e.g. vision_perceiver_conv) or a preset directory")
    ex.add_argument("--weights", help="weights: a preset directory or a .weights.h5 file")
    ex.add_argument("--class", dest="class_name", choices=_CLASSES,
                    help="task class for a preset name shared by several classes")
    ex.add_argument("--format", default="saved_model", choices=FORMATS)
    ex.add_argument("--quantization", choices=QUANTIZATIONS, help="LiteRT quantization")
    ex.add_argument("--representative-data",
                    help="LiteRT int8: .npz file with one array per model input")
    ex.add_argument("--output", required=True, help="e.g. saved_models/NAME")
    ex.add_argument("--version", type=int, help="SavedModel version (default: next free)")
    ex.add_argument("--image-preprocessing", type=json.loads,
                    help='image classifiers, JSON, e.g. \'{"mode": "resize", "mean": 127.5, "std": 127.5}\'')
    ex.add_argument("--mask-placeholder", default="[MASK]", help="masked LM placeholder")
    ex.add_argument("--num-chunks", type=int, help="multimodal: decoder chunks in the graph")

    cv = sub.add_parser("convert", help="convert a transformers / DeepMind checkpoint to a preset")
    cv.add_argument("--from", dest="source", required=True, choices=("transformers", "deepmind"))
    cv.add_argument("src", help="save_pretrained directory or DeepMind .pickle/.pystate file")
    cv.add_argument("--preset", help="which preset the checkpoint holds (required for deepmind)")
    cv.add_argument("--output", required=True, help="preset directory to write")
    return parser


def _weights_file(weights):
    if weights and os.path.isdir(weights):
        from keras_perceiver.models.task import WEIGHTS_FILE

        return os.path.join(weights, WEIGHTS_FILE)
    return weights


def load_model(preset, weights=None, class_name=None):
    """A task model from a preset name or directory, with optional weights."""
    import keras_perceiver.models as models

    weights = _weights_file(weights)
    if os.path.isdir(preset):
        return models.PerceiverTask.from_preset(preset, weights=weights)
    names = [class_name] if class_name else list(_CLASSES)
    for name in names:
        cls = getattr(models, name, None)
        if cls is not None and preset in cls.PRESETS:
            return cls.from_preset(preset, weights=weights)
    known = sorted({p for n in _CLASSES if hasattr(models, n) for p in getattr(models, n).PRESETS})
    raise SystemExit(
        f"keras-perceiver: unknown preset {preset!r}; expected one of {known} or a preset directory."
    )


def _file_output(output, model, ext):
    if output.endswith(ext):
        return output
    return os.path.join(output, f"{model.name}{ext}")


def export(args):
    import keras

    if keras.backend.backend() != "tensorflow":
        raise SystemExit("keras-perceiver export needs KERAS_BACKEND=tensorflow.")
    import keras_perceiver.export as export_lib

    if args.quantization and args.format != "tflite":
        raise SystemExit("keras-perceiver: --quantization applies to --format tflite only.")
    model = load_model(args.preset, args.weights, args.class_name)
    if args.format == "saved_model":
        path = export_lib.export_saved_model(
            model, args.output, version=args.version,
            image_preprocessing=args.image_preprocessing,
            mask_placeholder=args.mask_placeholder, num_chunks=args.num_chunks,
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
        )
    else:
        path = export_lib.export_onnx(model, _file_output(args.output, model, ".onnx"))
    print(path)
    return path


def convert(args):
    import keras_perceiver.convert as convert_lib

    if args.source == "transformers":
        model = convert_lib.from_transformers(args.src)
    else:
        if not args.preset:
            raise SystemExit("keras-perceiver convert --from deepmind needs --preset.")
        model = convert_lib.from_deepmind(args.src, args.preset)
    model.save_to_preset(args.output)
    print(args.output)
    return args.output


def main(argv=None):
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "export":
        export(args)
    else:
        convert(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
