"""`python -m applications.text_classification [flags]`: the text classification recipe.

See `keras_perceiver.recipes.text_classification` (or `--help`). Same as
`keras-perceiver train text_classification [flags]`.
"""

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from keras_perceiver.recipes import text_classification  # noqa: E402

if __name__ == "__main__":
    text_classification.main(sys.argv[1:])
