# keras_perceiver: `make demo` (train -> export -> serve on embedded data), `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export TF_CPP_MIN_LOG_LEVEL ?= 3
# Layer and generic-model tests run on every Keras backend.
BACKEND_TESTS := tests/layers tests/models/test_perceiver_io.py tests/models/test_set_model.py \
	tests/test_optimizers.py tests/recipes/test_schedules.py

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

# `make test` leaves out the tests marked `slow` (the benchmark harness over every
# workload, minutes of subprocesses): `make test-slow` runs them.
test: install
	KERAS_BACKEND=tensorflow $(PY) -m pytest tests -q -m "not slow"
	KERAS_BACKEND=jax $(PY) -m pytest $(BACKEND_TESTS) -q
	KERAS_BACKEND=torch $(PY) -m pytest $(BACKEND_TESTS) -q

.PHONY: test-slow
test-slow: install
	KERAS_BACKEND=tensorflow $(PY) -m pytest tests -q -m slow

demo: install-demo
	KERAS_BACKEND=tensorflow $(PY) applications/digits_demo.py

# Plants known bugs (tests/mutations/mutations.py) in a temporary copy and checks
# that the tests catch each one. Slow (minutes); not part of `make test`.
.PHONY: mutations
mutations: install
	$(PY) tests/mutations/run_mutations.py
