"""Set-up for keras_perceiver: Perceiver IO for Keras 3."""

from setuptools import find_packages, setup

setup(
    name="keras_perceiver",
    version="0.1.0",
    description="Perceiver IO (Jaegle et al., 2021) as Keras 3 layers, models and presets.",
    packages=find_packages(include=["keras_perceiver", "keras_perceiver.*"]),
    python_requires=">=3.10",
    install_requires=[
        "tensorflow>=2.16",
        "keras>=3.10",
        "tensorflow-datasets",
        "importlib_resources",  # tensorflow-datasets 4.9.10 imports it without declaring it
        "numpy",
    ],
    extras_require={
        "test": [
            "pytest",
            "hypothesis",
            "torch==2.13.0",
            "transformers",
            "safetensors",
            "jax[cpu]",
            "scikit-learn",
            "pillow",  # sklearn's sample photos; transformers' image processor
            "onnx",
            "onnxruntime",
            "tf2onnx",
            "ai-edge-litert",
        ],
    },
    entry_points={"console_scripts": ["keras-perceiver=keras_perceiver.cli:main"]},
)
