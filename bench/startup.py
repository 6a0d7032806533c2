"""Benchmark 4: start-up, and the first reply of the local model.

- start-up: ``agent.py``'s ``main()`` in a new ``python`` process (through ``bench/apps/serve_agent.py``,
  which only makes it listen on 127.0.0.1; ``MODEL_PROVIDER=echo``, ``MEMORY_BACKEND=sqlite`` on a fresh
  database), from ``Popen`` to the first ``GET /ping`` answering 200; then the first
  ``POST /invocations``. Repeated ``--runs`` times, each a new process. ``python -c "import agent"``
  alone is timed too: the imports are most of the start-up.
- local model: the same with ``MODEL_PROVIDER=local`` (the start-up then includes loading the
  bundled SmolLM2 GGUF into its llama.cpp server), the first reply to a short message and three
  more. Only a tree without the ``local`` provider (an old checkout run with ``--root``) skips it,
  with a note.
- memory: the server process's resident set (VmRSS from /proc; the llama.cpp server runs inside it)
  once it is healthy, and after its replies.

Every process gets ``AWS_EC2_METADATA_DISABLED=true`` and an explicit ``MODEL_PROVIDER``, so nothing
probes for AWS credentials (which could leave the machine). ``--root`` runs another checkout's
``agent.py`` with these same scripts.

``--quick``: a smoke run (one start-up of each, one local reply), written to ``startup_quick.*``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from common import (
    BENCH, ROOT, SESSION_HEADER, ServerProcess, fmt, machine_line, percentile, print_table, quick_run, save_plot,
    scratch_dir, verdict, write_results,
)

AGENT = BENCH / "apps" / "serve_agent.py"  # agent.py's own main(), listening on 127.0.0.1 only
TARGET_STARTUP_S = 3.0
TARGET_FIRST_REPLY_S = 2.0
CLEAN_ENV = ("MEMORY_BACKEND", "MEMORY_ID", "BEDROCK_AGENTCORE_MEMORY_ID", "SESSION_TTL", "MEMORY_K",
             "ROLLING_SUMMARY", "SUMMARY_BATCH", "SESSION_DB", "REDIS_URL", "KEY_PREFIX", "MODEL_PROVIDER", "LOG_LEVEL",
             "LOCAL_MODEL_PATH")
MESSAGES = ["Hello! In one sentence, what can you help me with?", "My name is Ana. Please remember it.",
            "What is my name?", "Thank you, that is all."]


def post(url: str, message: str, session: str, timeout: float = 120.0) -> tuple[float, int, Any]:
    request = urllib.request.Request(f"{url}/invocations", data=json.dumps({"message": message}).encode(),
                                     method="POST", headers={"Content-Type": "application/json",
                                                             SESSION_HEADER: session})
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            body = json.loads(r.read())
            status = r.status
    except urllib.error.HTTPError as e:
        body, status = json.loads(e.read() or b"{}"), e.code
    return time.perf_counter() - started, status, body


def rss_mib(pid: int) -> float:
    """The process's resident set size (VmRSS), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"no VmRSS for pid {pid}")


def import_seconds(root: Path, env: dict[str, str], runs: int) -> list[float]:
    """How long ``import agent`` takes inside a fresh interpreter (the modules it pulls in)."""
    code = "import time; t = time.perf_counter(); import agent; print(time.perf_counter() - t)"
    return [float(subprocess.run([sys.executable, "-c", code], cwd=root, env=env, check=True, capture_output=True,
                                 text=True).stdout.split()[-1]) for _ in range(runs)]


def startup_runs(root: Path, env: dict[str, str], directory: Path, runs: int, replies: int,
                 name: str) -> list[dict[str, Any]]:
    results = []
    for run in range(runs):
        db = directory / f"{name}-{run}.db"
        server = ServerProcess(f"{name}-{run}", AGENT, {**env, "SESSION_DB": str(db), "BENCH_AGENT_ROOT": str(root)},
                               directory, cwd=root)
        server.start(timeout=120)
        try:
            assert server.process is not None
            time.sleep(0.5)  # let start-up settle before reading RSS
            rss_started = rss_mib(server.process.pid)
            latencies = []
            answers = []
            for i in range(replies):
                seconds, status, body = post(server.url, MESSAGES[i % len(MESSAGES)], f"startup-{run}")
                if status != 200:
                    raise RuntimeError(f"{name}: HTTP {status} {body}\n{server.log_tail()}")
                latencies.append(round(seconds, 3))
                answers.append(body.get("response", "")[:200])
            rss_replied = rss_mib(server.process.pid)
        finally:
            server.stop()
        results.append({"startup_s": round(server.startup_s or 0, 3), "first_reply_s": latencies[0],
                        "reply_s": latencies, "answers": answers, "rss_after_startup_mib": rss_started,
                        "rss_after_replies_mib": rss_replied})
        print(f"  {name} run {run + 1}: healthy after {server.startup_s:.2f} s, first reply {latencies[0]:.3f} s, "
              f"RSS {rss_started:.0f} MiB after start-up, {rss_replied:.0f} MiB after {replies} replies", flush=True)
    return results


def local_unavailable(root: Path, env: dict[str, str], directory: Path) -> str | None:
    """Why MODEL_PROVIDER=local cannot start in this tree, or None when it can."""
    server = ServerProcess("local-probe", AGENT, {**env, "SESSION_DB": str(directory / "probe.db"),
                                                  "BENCH_AGENT_ROOT": str(root)}, directory, cwd=root)
    try:
        server.start(timeout=120)
    except RuntimeError as e:
        text = str(e)
        if "NotImplementedError" in text or "not available in this build" in text:
            return ("MODEL_PROVIDER=local is not available in this tree (models.create_model raises "
                    "NotImplementedError); rerun `make bench` once it is merged")
        raise
    finally:
        server.stop()
    return None


def rss_cell(runs: list[dict[str, Any]]) -> str:
    started = percentile([r["rss_after_startup_mib"] for r in runs], 50)
    replied = percentile([r["rss_after_replies_mib"] for r in runs], 50)
    return f"{started:.0f} / {replied:.0f}"


def summary(values: list[float]) -> dict[str, float]:
    return {"median": round(percentile(values, 50), 3), "min": round(min(values), 3), "max": round(max(values), 3)}


def plot(data: dict[str, Any]) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    groups = [("echo + sqlite", data["echo"])] + ([("local model", data["local"])] if data.get("local") else [])
    labels, startup, first = [], [], []
    for label, runs in groups:
        labels.append(label)
        startup.append([r["startup_s"] for r in runs])
        first.append([r["first_reply_s"] for r in runs])
    xs = range(len(labels))
    ax.bar([x - 0.2 for x in xs], [percentile(s, 50) for s in startup], 0.38, label="start to healthy /ping",
           color="tab:blue")
    ax.bar([x + 0.2 for x in xs], [percentile(f, 50) for f in first], 0.38, label="first reply", color="tab:green")
    for x, s, f in zip(xs, startup, first):
        ax.plot([x - 0.2] * len(s), s, "k.", ms=4)
        ax.plot([x + 0.2] * len(f), f, "k.", ms=4)
    ax.axhline(TARGET_STARTUP_S, color="tab:blue", ls=":", lw=0.8, label="start-up target")
    ax.axhline(TARGET_FIRST_REPLY_S, color="tab:green", ls=":", lw=0.8, label="first-reply target (local)")
    if data.get("import_s"):
        ax.axhline(data["import_s"]["median"], color="gray", ls="--", lw=0.8, label="`import agent` alone")
    ax.set_xticks(list(xs), labels)
    ax.set_ylabel("seconds (median; dots: each run)")
    ax.set_title("Start-up and first reply" + ("" if data.get("local") else " (local model not in this tree)"))
    ax.legend(fontsize=7)
    fig.suptitle(data["machine_line"], fontsize=7, y=0.01)
    save_plot(fig, "startup")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--local-runs", type=int, default=3)
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout whose agent.py is started")
    parser.add_argument("--quick", action="store_true", help="a smoke run: one start-up of each, one local reply")
    args = parser.parse_args()
    quick = quick_run(args.quick)
    if quick:
        parser.set_defaults(runs=1, local_runs=1)
        args = parser.parse_args()  # flags given still win
    root = args.root.resolve()
    env = {k: v for k, v in os.environ.items() if k not in CLEAN_ENV}
    env.update(AWS_EC2_METADATA_DISABLED="true", MEMORY_BACKEND="sqlite")
    print(f"start-up: {args.runs} runs of {root / 'agent.py'}")
    data: dict[str, Any] = {"root": str(root), "notes": []}
    with scratch_dir("startup") as directory:
        imports = import_seconds(root, env, 1 if quick else 3)
        data["import_s"] = summary(imports)
        data["echo"] = startup_runs(root, {**env, "MODEL_PROVIDER": "echo"}, directory, args.runs, 1, "echo")
        local_env = {**env, "MODEL_PROVIDER": "local"}
        # only another checkout (--root) may lack the local provider: this one has it, no probe start needed
        why = local_unavailable(root, local_env, directory) if root != ROOT else None
        if why:
            print(f"note: {why}")
            data["notes"].append(why)
            data["local"] = None
        else:
            data["local"] = startup_runs(root, local_env, directory, args.local_runs, 1 if quick else len(MESSAGES),
                                         "local")

    rows = [["`import agent` alone", fmt(data["import_s"]["median"], 2), "-", "-", "-"]]
    echo_start = summary([r["startup_s"] for r in data["echo"]])
    echo_first = summary([r["first_reply_s"] for r in data["echo"]])
    rows.append(["echo + sqlite", f"{echo_start['median']:.2f} ({echo_start['min']:.2f}-{echo_start['max']:.2f})",
                 f"{echo_first['median']:.3f}", "-", rss_cell(data["echo"])])
    checks = [("start-up <= 3 s (echo + sqlite)", echo_start["max"] <= TARGET_STARTUP_S,
               f"median {echo_start['median']:.2f} s, max {echo_start['max']:.2f} s")]
    if data["local"]:
        local_start = summary([r["startup_s"] for r in data["local"]])
        local_first = summary([r["first_reply_s"] for r in data["local"]])
        later = [s for r in data["local"] for s in r["reply_s"][1:]]
        rows.append(["local model", f"{local_start['median']:.2f} ({local_start['min']:.2f}-{local_start['max']:.2f})",
                     f"{local_first['median']:.3f} (max {local_first['max']:.3f})", fmt(percentile(later, 50)),
                     rss_cell(data["local"])])
        checks.append(("start-up <= 3 s (local model)", local_start["max"] <= TARGET_STARTUP_S,
                       f"median {local_start['median']:.2f} s, max {local_start['max']:.2f} s"))
        checks.append(("first reply <= 2 s (local model)", local_first["max"] <= TARGET_FIRST_REPLY_S,
                       f"median {local_first['median']:.2f} s, max {local_first['max']:.2f} s"))
        data["local_summary"] = {"startup_s": local_start, "first_reply_s": local_first,
                                 "later_reply_p50_s": round(percentile(later, 50), 3)}
        print(f"  local answers (run 1): {data['local'][0]['answers']}")
    data["echo_summary"] = {"startup_s": echo_start, "first_reply_s": echo_first}
    print_table("Start-up to healthy /ping, and replies (seconds)",
                ["configuration", "start-up median (min-max)", "first reply", "later replies p50",
                 "RSS MiB (started / replied)"], rows)
    print_table("Targets", ["target", "result", "measured"], [[c[0], verdict(c[1]), c[2]] for c in checks])
    data["machine_line"] = machine_line()
    data["targets"] = [{"target": c[0], "met": c[1], "measured": c[2]} for c in checks]
    write_results("startup", data)
    plot(data)


if __name__ == "__main__":
    sys.exit(main())
