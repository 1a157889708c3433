"""Set-up for keras_perceiver: Perceiver IO for Keras 3.

`pip install -e .` installs what the layers, models, presets and the
SavedModel / LiteRT converters need (TensorFlow, Keras, NumPy); extras add
the rest:

- `[demo]`: `make demo` (scikit-learn's bundled digits).
- `[convert]`: reading transformers checkpoints (`model.safetensors`) and
  fetching them from the Hugging Face Hub.
- `[export]`: ONNX export (tf2onnx) and running exported files
  (onnxruntime, ai-edge-litert's LiteRT interpreter).
- `[viz]`: plotting and TensorBoard logs.
- `[data]`: the training recipes' data (TensorFlow Datasets; scikit-learn's
  bundled digits for the image recipe's embedded default).
- `[test]`: the test suite (all of the above, plus PyTorch, JAX and
  transformers for the backend and parity tests).
"""

from setuptools import find_packages, setup

EXTRAS = {
    "demo": ["scikit-learn"],
    "convert": ["safetensors", "huggingface_hub"],
    "export": ["onnx", "tf2onnx", "onnxruntime", "ai-edge-litert"],
    "viz": ["matplotlib", "pillow", "tensorboard"],
    "data": [
        "scikit-learn",
        "tensorflow-datasets",
        "importlib_resources",  # tensorflow-datasets 4.9.10 imports it without declaring it
    ],
}
EXTRAS["test"] = sorted({req for reqs in EXTRAS.values() for req in reqs}) + [
    "pytest",
    "hypothesis",
    "torch==2.13.0",
    "transformers",
    "jax[cpu]",
]

setup(
    name="keras_perceiver",
    version="0.1.0",
    description="Perceiver IO (Jaegle et al., 2021) as Keras 3 layers, models and presets.",
    packages=find_packages(include=["keras_perceiver", "keras_perceiver.*"]),
    python_requires=">=3.10",
    install_requires=[
        "tensorflow>=2.16",
        "keras>=3.10",
        "numpy",
    ],
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["keras-perceiver=keras_perceiver.cli:main"]},
)
