# Two entry points on a fresh clone: `make run` (serve on :8080) and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python

.PHONY: run test bench venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

run: venv
	$(PY) agent.py

test: venv
	$(PY) -m pytest

clean:
	rm -rf $(VENV) .pytest_cache
