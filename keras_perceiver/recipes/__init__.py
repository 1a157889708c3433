"""Training recipes: `keras-perceiver train NAME` / `python -m applications.NAME`.

`RECIPES` maps each recipe name to the module whose `main(argv=None)`
trains, evaluates and exports it (returning the final metrics). A new
recipe adds one line here (sorted); nothing is imported until a recipe
runs, so the command line's `--help` stays fast. Shared code:
`keras_perceiver.recipes.common` (the run; it re-exports the flags of
`keras_perceiver.recipes.flags` and the output layout, callbacks and export
of `keras_perceiver.recipes.outputs`),
`keras_perceiver.recipes.schedules` (learning-rate schedules) and
`keras_perceiver.optimizers` (LAMB).
"""

import importlib

RECIPES = {
    "entity_sets": "keras_perceiver.recipes.entity_sets",
    "image_classification": "keras_perceiver.recipes.image_classification",
    "masked_lm": "keras_perceiver.recipes.masked_lm",
    "text_classification": "keras_perceiver.recipes.text_classification",
    "multimodal_autoencoding": "keras_perceiver.recipes.multimodal_autoencoding",
    "optical_flow": "keras_perceiver.recipes.optical_flow",
}


def get_recipe(name):
    """The module of recipe `name` (it has `main(argv=None) -> dict`).

    Example:
    >>> keras_perceiver.recipes.get_recipe("image_classification").__name__
    'keras_perceiver.recipes.image_classification'
    """
    if name not in RECIPES:
        raise ValueError(f"Unknown recipe {name!r}; expected one of {sorted(RECIPES)}.")
    return importlib.import_module(RECIPES[name])
