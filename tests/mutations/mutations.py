"""Planted bugs that the test suite must catch (`make mutations`).

Each entry: `name`, `file` (repo-relative), `original` (a snippet that occurs
exactly once in the file), `mutated` (its replacement), `tests` (pytest paths
run on the mutated copy, TensorFlow backend). Add every bug found later here.
"""

PREPROCESSING = "keras_perceiver/preprocessors/image_converter.py"
SERVING_TESTS = ["tests/export/test_preprocessing.py", "tests/export/test_saved_model.py"]

MUTATIONS = [
    # Issue 16: these five passed every test.
    dict(
        name="ImageNet mean/std in BGR order",
        file=PREPROCESSING,
        original="IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)\n"
                 "IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)",
        mutated="IMAGENET_MEAN = (0.406 * 255, 0.456 * 255, 0.485 * 255)\n"
                "IMAGENET_STD = (0.225 * 255, 0.224 * 255, 0.229 * 255)",
        tests=SERVING_TESTS,
    ),
    dict(
        name="central-crop offset rounded up",
        file=PREPROCESSING,
        original="top = (hw[0] - side) // 2\n            left = (hw[1] - side) // 2",
        mutated="top = (hw[0] - side + 1) // 2\n            left = (hw[1] - side + 1) // 2",
        tests=SERVING_TESTS,
    ),
    dict(
        name="default resize bilinear instead of bicubic",
        file=PREPROCESSING,
        original='"method": "bicubic",',
        mutated='"method": "bilinear",',
        tests=SERVING_TESTS,
    ),
    dict(
        name="concat_preprocessed_input order swapped",
        file="keras_perceiver/layers/decoders.py",
        original="ops.concatenate([ops.cast(inputs, queries.dtype), queries], axis=-1)",
        mutated="ops.concatenate([queries, ops.cast(inputs, queries.dtype)], axis=-1)",
        tests=["tests/layers/test_decoders.py"],
    ),
    dict(
        name="ProjectionDecoder without its bias",
        file="keras_perceiver/layers/decoders.py",
        original="return self.projection(ops.mean(latents, axis=1))",
        mutated="return ops.matmul(ops.mean(latents, axis=1), self.projection.kernel)",
        tests=["tests/layers/test_decoders.py"],
    ),
    # Caught before issue 16 by the parity tests; kept so that they stay caught.
    dict(
        name="attention scale dropped",
        file="keras_perceiver/layers/attention.py",
        original='logits = ops.cast(logits, "float32") / math.sqrt(self._qk // self.num_heads)',
        mutated='logits = ops.cast(logits, "float32")',
        tests=["tests/layers/test_attention.py", "tests/models/test_perceiver_io.py"],
    ),
    dict(
        name="softmax in the compute dtype (float16)",
        file="keras_perceiver/layers/attention.py",
        original='weights = ops.cast(ops.softmax(logits, axis=-1), self.compute_dtype)',
        mutated='weights = ops.softmax(ops.cast(logits, self.compute_dtype), axis=-1)',
        tests=["tests/layers/test_attention.py", "tests/models/test_perceiver_io.py"],
    ),
    dict(
        name="Fourier sin/cos swapped",
        file="keras_perceiver/layers/position_encoding.py",
        original="tables.append((pos[:, None], np.sin(angle), np.cos(angle)))",
        mutated="tables.append((pos[:, None], np.cos(angle), np.sin(angle)))",
        tests=["tests/layers/test_decoders.py", "tests/layers/test_position_encoding.py"],
    ),
    dict(
        name="subsampled positions off by one",
        file="keras_perceiver/layers/position_encoding.py",
        original="pos = -1.0 + 2.0 * np.arange(n, dtype=np.float64) / n",
        mutated="pos = -1.0 + 2.0 * (np.arange(n, dtype=np.float64) + 1) / n",
        tests=["tests/layers/test_decoders.py", "tests/layers/test_position_encoding.py"],
    ),
    dict(
        name="cross-attention query residual dropped",
        file="keras_perceiver/layers/blocks.py",
        original="x = query + attended if self.use_query_residual else attended",
        mutated="x = attended",
        tests=["tests/layers/test_decoders.py", "tests/layers/test_blocks.py"],
    ),
    dict(
        name="LayerNorm epsilon 1e-3 (Keras default)",
        file="keras_perceiver/layers/blocks.py",
        original="layer_norm_epsilon=1e-5,",
        mutated="layer_norm_epsilon=1e-3,",
        tests=["tests/layers/test_decoders.py", "tests/layers/test_blocks.py"],
    ),
    dict(
        name="central crop dropped",
        file=PREPROCESSING,
        original='if self.mode == "center_crop":',
        mutated='if self.mode == "no_crop":',
        tests=SERVING_TESTS,
    ),
    dict(
        name="mean/std applied in the wrong order",
        file=PREPROCESSING,
        original="x = (x - mean) / std",
        mutated="x = x / std - mean",
        tests=SERVING_TESTS,
    ),
]
