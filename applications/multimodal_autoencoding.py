"""`python -m applications.multimodal_autoencoding [flags]`: the multimodal autoencoding recipe.

See `keras_perceiver.recipes.multimodal_autoencoding` (or `--help`). Same as
`keras-perceiver train multimodal_autoencoding [flags]`.
"""

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from keras_perceiver.recipes import multimodal_autoencoding  # noqa: E402

if __name__ == "__main__":
    multimodal_autoencoding.main(sys.argv[1:])
