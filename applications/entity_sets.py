"""`python -m applications.entity_sets [flags]`: see `keras_perceiver.recipes.entity_sets`."""

import sys

from keras_perceiver.recipes.entity_sets import main

if __name__ == "__main__":
    main(sys.argv[1:])
