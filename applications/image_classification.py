"""`python -m applications.image_classification [flags]`: the image classification recipe.

See `keras_perceiver.recipes.image_classification` (or `--help`). Same as
`keras-perceiver train image_classification [flags]`.
"""

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from keras_perceiver.recipes import image_classification  # noqa: E402

if __name__ == "__main__":
    image_classification.main(sys.argv[1:])
