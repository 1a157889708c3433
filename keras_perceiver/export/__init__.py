"""Export for serving: SavedModel (TF Serving), LiteRT (TFLite) and ONNX.

TensorFlow-only module (`KERAS_BACKEND=tensorflow`).
"""

from keras_perceiver.export.litert import export_litert
from keras_perceiver.export.onnx import export_onnx
from keras_perceiver.export.preprocessing import preprocess_frames
from keras_perceiver.export.preprocessing import preprocess_images
from keras_perceiver.export.saved_model import describe_signatures
from keras_perceiver.export.saved_model import export_saved_model
from keras_perceiver.export.signatures import MASK_PLACEHOLDER
from keras_perceiver.export.signatures import serving_signatures
from keras_perceiver.export.versioning import resolve_version_dir

__all__ = [
    "MASK_PLACEHOLDER",
    "describe_signatures",
    "export_litert",
    "export_onnx",
    "export_saved_model",
    "preprocess_frames",
    "preprocess_images",
    "resolve_version_dir",
    "serving_signatures",
]
