# Two commands do all set-up on a fresh machine:
#   make demo   - creates/updates .venv, then runs the main job (short train + compare on the built-in catalog)
#   make test   - creates/updates .venv, then runs the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench distributed test-distributed clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt "torch==2.13.0"
	$(PY) -m pip install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/shoprank demo

test: $(STAMP)
	$(VENV)/bin/pytest

bench: $(STAMP)
	$(VENV)/bin/shoprank bench

distributed: $(STAMP)
	$(PY) -m pip install -q -c constraints.txt -e ".[dev,distributed]"

# the RLlib tests, with Ray installed (make test skips them without it), the two-node cluster test included
test-distributed: distributed
	$(VENV)/bin/pytest tests/test_rllib_optional.py tests/test_rllib.py tests/test_rllib_cluster.py

clean:
	rm -rf $(VENV) .cache runs
