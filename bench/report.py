"""Print the benchmark tables of docs/benchmarks.md (markdown) from ``bench/results/*.json``.

After ``make bench``: ``.venv/bin/python bench/report.py`` and paste its output over the
figures in docs/benchmarks.md.

``--quick``: the tables of the other scripts' ``--quick`` runs (``bench/results/*_quick.json``), so a
smoke run shows that what they write is still what this script reads.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
#: "_quick" with ``--quick``: read the quick runs' files
_suffix = ""


def load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}{_suffix}.json"
    return json.loads(path.read_text()) if path.exists() else None


def table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def ms(workload: dict[str, Any], *keys: str) -> str:
    """Latencies as "p50 / p99" (rounded ms); "-" for a window that served no request (a --quick run)."""
    return " / ".join(f"{workload[k]:.0f}" if k in workload else "-" for k in keys)


def ratio(workload: dict[str, Any], key: str) -> str:
    value = workload.get(key)
    return "-" if value is None or value != value else f"{value:.2f}"  # value != value: NaN


def targets(data: dict[str, Any]) -> str:
    return "; ".join(f"{t['target']}: **{'met' if t['met'] else 'missed'}** ({t['measured']})"
                     for t in data.get("targets", []))


def where(data: dict[str, Any]) -> str:
    m = data["machine"]
    load_avg = m["load_average_1m"]
    return (f"{data['measured_at'][:16].replace('T', ' ')} UTC, commit {m['commit']}, "
            f"load average {load_avg['at_start']}-{load_avg['at_end']}")


def rss(runs: list[dict[str, Any]]) -> str:
    if not runs or "rss_after_startup_mib" not in runs[0]:
        return "-"
    ordered = sorted(runs, key=lambda r: r["rss_after_startup_mib"])
    middle = ordered[len(ordered) // 2]
    return f"{middle['rss_after_startup_mib']:.0f} / {middle['rss_after_replies_mib']:.0f}"


def main() -> None:
    global _suffix
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the tables of the --quick runs (*_quick.json)")
    _suffix = "_quick" if parser.parse_args().quick else ""
    out: list[str] = []
    store = load("store_overhead")
    if store:
        sizes = [r["size"] for r in store["backends"]["sqlite"]]
        rows = []
        for name in ("memory", "sqlite", "redis", "dynamodb"):
            rs = store["backends"].get(name) or []
            if rs:
                rows.append([f"{name} p50 / p99 ms"] + [f"{r['latency']['p50_ms']:.3f} / {r['latency']['p99_ms']:.2f}"
                                                        for r in rs])
        ddb = store["backends"].get("dynamodb") or []
        if ddb:
            rows.append(["dynamodb calls per turn"] + [str(r["calls"]["per_turn_max"]) for r in ddb])
        ac = store["backends"].get("agentcore") or []
        rows.append(["agentcore calls per turn"] + [str(r["calls"]["per_turn_max"]) for r in ac])
        out += [f"**1. Per-turn memory cost** ({where(store)})", "",
                table(["stored turns"] + [f"{s:,}" for s in sizes], rows), "", targets(store), ""]
    alt = load("alternatives")
    if alt:
        rows = [[c["name"], f"{c['memory']['p50_ms']:.2f}", f"{c['memory']['p99_ms']:.2f}",
                 f"{c['turn']['p50_ms']:.2f}", f"**{c['memory_ratio']:.1f}x**", c["compared_with"]]
                for c in alt["contestants"]]
        out += [f"**2. The same replay at {alt['stored']:,} stored turns** ({where(alt)})", "",
                table(["contestant", "memory p50 ms", "memory p99 ms", "whole turn p50 ms", "memory time vs ours",
                       "ours ="], rows), ""]
        ac = alt["agentcore"]
        out += [table(["AgentCore Memory", "calls per turn", "by operation", "events read per turn"],
                      [[s["name"], s["calls_per_turn"], ", ".join(f"{k} {v:g}" for k, v in s["by_operation_per_turn"].items()),
                        s["events_returned_per_turn"]] for s in ac.values()]), "", targets(alt), ""]
    server = load("server_throughput")
    if server:
        echo = [r for r in server["servers"] if not r.get("model_delay_ms")]
        rows = []
        for r in echo:
            w = r["workloads"]
            d, long, h = w["distinct"], w.get("long"), w.get("hot")
            rows.append([r["label"], f"{d['requests_per_s']:.0f}", ms(d, "p50_ms", "p99_ms"),
                         ratio(d, "ratio_to_b"), ratio(d, "ratio_to_b2"), f"{d['server_cpu_ms_per_request']:.1f} ms",
                         f"{long['requests_per_s']:.0f}" if long else "-",
                         f"{h['requests_per_s']:.0f}" if h else "-",
                         ms(h, "p50_ms", "p99_ms") if h else "-"])
        out += [f"**3. Server throughput, 8 clients** ({where(server)})", "",
                table(["server", "req/s (distinct)", "p50 / p99 ms", "vs (b)", "vs (b2)", "server CPU per request",
                       "req/s (1,000 turns)", "req/s (hot)", "p50 / p99 ms (hot)"], rows), ""]
        timed = [r for r in server["servers"] if r.get("model_delay_ms")]
        if timed:
            out += [table(["model", "server", "req/s", "p50 / p95 / p99 ms", "vs (b2)", "server CPU per request"],
                          [[f"{r['model_delay_ms']} ms", r["label"], f"{d['requests_per_s']:.0f}",
                            ms(d, "p50_ms", "p95_ms", "p99_ms"), ratio(d, "ratio_to_b2"),
                            f"{d['server_cpu_ms_per_request']:.1f} ms"]
                           for r in timed for d in [r["workloads"]["distinct"]]]), ""]
        base = server["in_process"][0]
        out += [table(["the same turn in-process, one thread", "CPU ms (p50)", "CPU ms (mean)", "mean added to (b)",
                       "wall ms (p50)"],
                      [[r["label"], f"{r['cpu_p50_ms']:.2f}", f"{r.get('cpu_mean_ms', float('nan')):.2f}",
                        f"{r.get('cpu_mean_ms', float('nan')) - base.get('cpu_mean_ms', float('nan')):+.2f}",
                        f"{r['p50_ms']:.2f}"] for r in server["in_process"]]), ""]
        if server.get("bounds_cpu_ms"):
            out += [table(["what bounds (c)/(b)", "CPU ms per turn"],
                          [[b["part"], "-" if b["cpu_ms"] is None else f"{b['cpu_ms']:.2f}"]
                           for b in server["bounds_cpu_ms"]]), ""]
        out += [targets(server), ""]
    overhead = load("strands_overhead")
    if overhead:
        out += [f"**Strands' own cost of a 10-turn context** ({where(overhead)})", "",
                table(["variant", "CPU ms per turn", "vs (b2)", "the 10 turns add"],
                      [[v["label"], f"{v['cpu_ms_per_turn']:.3f}", f"{v['vs_b2_ms']:+.3f}" if v["history_turns"] else "-",
                        "-" if v.get("context_ms") is None else f"{v['context_ms']:.3f}"]
                       for v in overhead["variants"]]), ""]
    start = load("startup")
    if start:
        rows = [["`import agent` alone", f"{start['import_s']['median']:.2f}", "-"]]
        e = start["echo_summary"]
        rows.append(["echo + sqlite", f"{e['startup_s']['median']:.2f} (max {e['startup_s']['max']:.2f})",
                     f"{e['first_reply_s']['median']:.3f}"])
        rows[-1].append(rss(start["echo"]))
        if start.get("local_summary"):
            s = start["local_summary"]
            rows.append(["local model", f"{s['startup_s']['median']:.2f} (max {s['startup_s']['max']:.2f})",
                         f"{s['first_reply_s']['median']:.2f} (max {s['first_reply_s']['max']:.2f})",
                         rss(start["local"])])
        rows[0].append("-")
        out += [f"**4. Start-up** ({where(start)})", "",
                table(["", "to healthy /ping, s", "first reply, s", "RSS MiB after start-up / replies"], rows),
                "", targets(start) + "".join(f" {n}" for n in start.get("notes", [])), ""]
    talk = load("local_conversation")
    if talk:
        s = talk["summary"]
        rows = [[t["turn"], f"{t['seconds']:.2f}", t["history_length"], f"{t['prompt_tokens']} ({t['prompt_tokens_cached']})",
                 "yes" if t["truncated"] else "", "fold" if t["folded"] else "", f"{t['rss_mib']:.0f}"]
                for t in talk["turns"]]
        out += [f"**5. A conversation with the local model** ({where(talk)})", "",
                table(["turn", "seconds", "history", "prompt tokens (cached)", "cut", "summary", "RSS MiB"], rows), "",
                f"p50 {s['p50_s']} s, p95 {s['p95_s']} s, max {s['max_s']} s; second session's first reply: median "
                f"{s['second_session_median_s']} s, max {s['second_session_max_s']} s; RSS "
                f"{talk['rss_after_startup_mib']:.0f} MiB after start-up, {talk['rss_after_conversation_mib']:.0f} MiB "
                f"after the conversation, peak {talk['rss_peak_mib']:.0f} MiB", "", targets(talk), ""]
    print("\n".join(out))


if __name__ == "__main__":
    sys.exit(main())
