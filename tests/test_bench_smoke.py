"""Every benchmark still runs: each ``bench/*.py`` script's ``--quick`` mode, in a subprocess, exits 0 and prints
its tables (``docs/benchmarks.md``). A benchmark that rots (an import that moved, a renamed field) fails here,
not at the next ``make bench``.

The scripts run a few at a time (most of a quick run is waiting: servers starting, a model's delay), then
``bench/report.py --quick`` reads what they wrote. Their figures are not checked: at these sizes they mean
nothing. What CI provides is used, not skipped: with ``REQUIRE_TEST_SERVICES`` set, a script that left out
Redis, DynamoDB Local or the local model fails; only the OpenAI Agents SDK (its own venv) and the LoCoMo file
(outside the repository) may be missing, and the scripts say so.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
#: scripts at once: enough to overlap their waiting, few enough for 2 cores
PARALLEL = 3
TIMEOUT_S = 240

#: script -> what its quick run must print (a table's title), besides the results file it wrote
SCRIPTS = {
    "store_overhead.py": "Per-turn memory cost",
    "alternatives.py": "Memory time per turn at 20 stored turns",
    "server_throughput.py": "Server throughput (8 concurrent clients)",
    "strands_overhead.py": "Strands CPU per turn",
    "startup.py": "Start-up to healthy /ping",
    "local_conversation.py": "Per turn",
    "token_estimate.py": "token estimates vs SmolLM2's tokenizer",
    "ltm_cost.py": "CPU per turn, one thread",
    "ltm_recall.py": "Recall of evidence turns",
    "ltm_durability.py": "reply -> its records searchable (ms)",
    "ltm_natural.py": "delivered hit rate",
    "telemetry_overhead.py": "Tracing with no exporter",
}
#: run after the others: it reads what their quick runs wrote
REPORT = "report.py"
#: scripts that are not benchmarks of their own
WORKERS = {"openai_session.py": "run by alternatives.py inside the OpenAI Agents SDK's own venv"}
#: what a quick run may leave out even in CI, because CI cannot provide it
ALLOWED_NOTES = ("no OpenAI Agents SDK", "no LoCoMo file given")
LONGEST_SCRIPTS_FIRST = ("server_throughput.py", "local_conversation.py", "strands_overhead.py", "startup.py")


@dataclass(frozen=True)
class Run:
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float


def run_quick(script: str) -> Run:
    """``python bench/<script> --quick`` in its own process group (killed whole if it outlives ``TIMEOUT_S``)."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, str(BENCH / script), "--quick"], cwd=ROOT, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        stdout, stderr = process.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # its servers too
        stdout, stderr = process.communicate()
        return Run(None, stdout, stderr + f"\n(killed after {TIMEOUT_S} s)", time.perf_counter() - started)
    return Run(process.returncode, stdout, stderr, time.perf_counter() - started)


@pytest.fixture(scope="module")
def runs() -> dict[str, Run]:
    ordered = sorted(SCRIPTS, key=lambda s: s not in LONGEST_SCRIPTS_FIRST)
    with ThreadPoolExecutor(PARALLEL) as pool:
        done = dict(zip(ordered, pool.map(run_quick, ordered)))
    done[REPORT] = run_quick(REPORT)
    return done


def describe(script: str, run: Run) -> str:
    return (f"bench/{script} --quick: exit {run.returncode} after {run.seconds:.1f} s\n"
            f"--- stdout (end)\n{run.stdout[-3000:]}\n--- stderr (end)\n{run.stderr[-3000:]}")


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_each_benchmark_runs_quick_and_prints_its_table(runs: dict[str, Run], script: str) -> None:
    run = runs[script]
    assert run.returncode == 0, describe(script, run)
    assert SCRIPTS[script] in run.stdout, describe(script, run)
    name = script.removesuffix(".py")
    assert re.search(rf"^wrote bench/results/{name}_quick\.json$", run.stdout, re.M), describe(script, run)


def test_quick_runs_leave_out_only_what_ci_cannot_provide(runs: dict[str, Run]) -> None:
    notes = {script: [line for line in runs[script].stdout.splitlines() if line.startswith("note: ")]
             for script in SCRIPTS}
    if os.environ.get("REQUIRE_TEST_SERVICES", "").strip() in ("", "0"):
        found = {script: script_notes for script, script_notes in notes.items() if script_notes}
        pytest.skip(f"REQUIRE_TEST_SERVICES is not set: a quick run may leave out a service this machine lacks ({found})")
    left_out = {script: [n for n in script_notes if not any(allowed in n for allowed in ALLOWED_NOTES)]
                for script, script_notes in notes.items()}
    assert not any(left_out.values()), left_out


def test_the_report_reads_every_quick_result(runs: dict[str, Run]) -> None:
    run = runs[REPORT]
    assert run.returncode == 0, describe(REPORT, run)
    for section in ("**1. Per-turn memory cost**", "**2. The same replay", "**3. Server throughput",
                    "**4. Start-up**", "**5. A conversation with the local model**"):
        assert section in run.stdout, describe(REPORT, run)


def test_every_bench_script_has_a_quick_run_here() -> None:
    scripts = {path.name for path in BENCH.glob("*.py") if 'if __name__ == "__main__":' in path.read_text()}
    assert scripts == set(SCRIPTS) | {REPORT} | set(WORKERS)
    for script in set(SCRIPTS) | {REPORT}:
        assert '"--quick"' in (BENCH / script).read_text(), script
