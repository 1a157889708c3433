"""Runnable recipes: `python -m applications.NAME [flags]` (see `keras_perceiver.recipes`)."""
