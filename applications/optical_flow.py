"""`python -m applications.optical_flow [flags]`: the optical-flow recipe.

See `keras_perceiver.recipes.optical_flow` (or `--help`). Same as
`keras-perceiver train optical_flow [flags]`.
"""

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from keras_perceiver.recipes import optical_flow  # noqa: E402

if __name__ == "__main__":
    optical_flow.main(sys.argv[1:])
