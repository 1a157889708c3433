# keras_perceiver: `make demo` (train -> export -> serve on embedded data), `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export TF_CPP_MIN_LOG_LEVEL ?= 3
# Layer and generic-model tests run on every Keras backend.
BACKEND_TESTS := tests/layers tests/models/test_perceiver_io.py tests/test_optimizers.py \
	tests/recipes/test_schedules.py

.PHONY: install install-demo test test-tensorflow test-jax test-torch demo

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# One stamp per extras set, all in the one .venv: `make demo` installs only
# `-e .[demo]` (TensorFlow, Keras, scikit-learn); `make test` adds `.[test]`.
$(VENV)/.installed-%: setup.py | $(PY)
	$(PY) -m pip install -e ".[$*]"
	touch $@

install: $(VENV)/.installed-test

install-demo: $(VENV)/.installed-demo

test: install
	KERAS_BACKEND=tensorflow $(PY) -m pytest tests -q
	KERAS_BACKEND=jax $(PY) -m pytest $(BACKEND_TESTS) -q
	KERAS_BACKEND=torch $(PY) -m pytest $(BACKEND_TESTS) -q

demo: install-demo
	KERAS_BACKEND=tensorflow $(PY) applications/digits_demo.py

# Plants known bugs (tests/mutations/mutations.py) in a temporary copy and checks
# that the tests catch each one. Slow (minutes); not part of `make test`.
.PHONY: mutations
mutations: install
	$(PY) tests/mutations/run_mutations.py
