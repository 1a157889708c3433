"""`python -m applications.masked_lm [flags]`: the masked language model recipe.

See `keras_perceiver.recipes.masked_lm` (or `--help`). Same as
`keras-perceiver train masked_lm [flags]`.
"""

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from keras_perceiver.recipes import masked_lm  # noqa: E402

if __name__ == "__main__":
    masked_lm.main(sys.argv[1:])
