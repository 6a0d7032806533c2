"""What every benchmark shares: percentiles, tables, result files, the machine, servers, Redis."""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import matplotlib  # noqa: E402

matplotlib.use("Agg")

SESSION_HEADER = "X-Amzn-Bedrock-AgentCore-Runtime-Session-Id"
#: the machine's 1-minute load average when this benchmark started (other work slows every figure)
LOAD_AT_START = round(os.getloadavg()[0], 2)


# -- numbers ----------------------------------------------------------------------------------

def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation between the closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def latency_summary(samples_ns: Sequence[int]) -> dict[str, float]:
    """p50 / p95 / p99 / mean / max in milliseconds, and the sample count."""
    ms = [s / 1e6 for s in samples_ns]
    return {
        "p50_ms": round(percentile(ms, 50), 4),
        "p95_ms": round(percentile(ms, 95), 4),
        "p99_ms": round(percentile(ms, 99), 4),
        "mean_ms": round(sum(ms) / len(ms), 4),
        "max_ms": round(max(ms), 4),
        "samples": len(ms),
    }


def fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = "  ".join("-" * w for w in widths)
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
    print(line)
    for row in cells:
        print("  ".join(c.rjust(w) if _numeric(c) else c.ljust(w) for c, w in zip(row, widths)))


def _numeric(cell: str) -> bool:
    return cell.replace(".", "", 1).replace(",", "").replace("x", "").replace("-", "").strip().isdigit()


# -- results ----------------------------------------------------------------------------------

#: "_quick" once ``quick_run`` is called: a smoke run's files never replace a full run's figures
#: (``bench/results/*_quick.*`` are ignored by git)
_results_suffix = ""


def quick_run(quick: bool) -> bool:
    """Mark this run as ``--quick`` (or not): results and plots go to ``<name>_quick.*``. Returns ``quick``."""
    global _results_suffix
    _results_suffix = "_quick" if quick else ""
    if quick:
        print("quick run: tiny sizes, to show the benchmark runs; its figures are not measurements")
    return quick


def _results_name(name: str) -> str:
    return name if name.endswith(_results_suffix) else name + _results_suffix


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": memory_gib,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "commit": commit,
        "load_average_1m": {"at_start": LOAD_AT_START, "at_end": round(os.getloadavg()[0], 2)},
        "packages": {p: _version(p) for p in ("strands-agents", "bedrock-agentcore", "botocore", "redis",
                                               "uvicorn", "starlette")},
    }


def machine_line(info: dict[str, Any] | None = None) -> str:
    info = info or machine()
    load = info["load_average_1m"]
    return (f"{info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB, {info['os']}, "
            f"Python {info['python']}, commit {info['commit']}, load {load['at_start']}-{load['at_end']}")


def write_results(name: str, data: dict[str, Any]) -> Path:
    """``bench/results/<name>.json``: the figures, when and where they were measured."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = _results_name(name)
    path = RESULTS / f"{name}.json"
    body = {"benchmark": name, "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": machine(), **data}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(body, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
    print(f"\nwrote {path.relative_to(ROOT)}")
    return path


def save_plot(fig: Any, name: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{_results_name(name)}.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    print(f"wrote {path.relative_to(ROOT)}")
    return path


@contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A temporary directory on the same disk as the repo's ``.data/`` (not a tmpfs), removed after."""
    base = ROOT / ".data"
    base.mkdir(exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f"bench-{prefix}-", dir=base))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# -- Redis ------------------------------------------------------------------------------------

@contextmanager
def redis_url() -> Iterator[str | None]:
    """The redis-server on 127.0.0.1:6379 if it answers, else a private one on a free loopback port.

    Yields None (and says why) when neither is possible.
    """
    from tests.helpers.redis_server import RedisServer, answers_ping

    if answers_ping("127.0.0.1", 6379):
        yield "redis://127.0.0.1:6379/0"
        return
    if shutil.which("redis-server") is None:
        print("note: no Redis on 127.0.0.1:6379 and redis-server is not installed: Redis figures skipped")
        yield None
        return
    with scratch_dir("redis") as directory:
        server = RedisServer(directory).start()
        try:
            yield server.url
        finally:
            server.stop()


def redis_prefix() -> str:
    return f"bench:{uuid.uuid4().hex}:"


def delete_prefix(url: str, prefix: str) -> int:
    """Remove every key a benchmark wrote under its own prefix."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        removed = 0
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                removed += client.delete(*batch)
                batch.clear()
        if batch:
            removed += client.delete(*batch)
        return removed
    finally:
        client.close()


# -- servers ----------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ping(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/ping", timeout=timeout) as r:
            return r.status == 200
    except OSError:
        return False


class ServerProcess:
    """One server (``python <script>``) on a loopback port; its output goes to a log file, never a pipe.

    ``startup_s`` is the time from ``Popen`` to the first ``GET /ping`` answering 200.
    """

    def __init__(self, name: str, script: Path, env: dict[str, str], log_dir: Path, cwd: Path = ROOT) -> None:
        self.name = name
        self.script = script
        self.port = free_port()
        self.cwd = cwd
        self.env = {**os.environ, "PORT": str(self.port), "PYTHONUNBUFFERED": "1", **env}
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.startup_s: float | None = None
        self._launched = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> ServerProcess:
        return self.launch().wait_ready(timeout)

    def launch(self) -> ServerProcess:
        """Start the process without waiting for it (``wait_ready`` waits): several servers start at once."""
        log = open(self.log_path, "wb")
        self._launched = time.perf_counter()
        self.process = subprocess.Popen([sys.executable, str(self.script)], env=self.env, cwd=self.cwd,
                                        stdout=log, stderr=subprocess.STDOUT)
        log.close()
        return self

    def wait_ready(self, timeout: float = 60.0) -> ServerProcess:
        """Wait for the first ``GET /ping`` to answer 200 (``timeout`` seconds from the launch)."""
        assert self.process is not None
        started = self._launched
        deadline = started + timeout
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            if ping(self.url, timeout=0.5):
                self.startup_s = time.perf_counter() - started
                return self
            time.sleep(0.005)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer /ping within {timeout} s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def cpu_seconds(self) -> float:
        """User + system CPU time the server process has used so far (Linux /proc)."""
        assert self.process is not None
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def timed(func: Callable[[], Any]) -> tuple[Any, int]:
    started = time.perf_counter_ns()
    result = func()
    return result, time.perf_counter_ns() - started
