"""The server bounds glibc's malloc arenas (``core.allocator``): eight busy request threads share one arena per
core instead of keeping one each (each holding its thread's freed memory: the RSS of docs/benchmarks.md)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from core.allocator import default_arenas

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="arenas are glibc's (this libc has none)")

#: eight threads allocate at once (the server's request threads), then the process counts glibc's arenas
#: (``malloc_info`` writes one <heap nr=...> element per arena)
SCRIPT = r"""
import ctypes, os, sys, tempfile, threading
from core.allocator import limit_malloc_arenas
print(limit_malloc_arenas(int(sys.argv[1])) if sys.argv[1] != "none" else "not limited")
start = threading.Barrier(8)
def busy():
    start.wait()
    kept = [bytearray(20_000) for _ in range(200)]  # malloc'd from this thread's arena (below the mmap threshold)
    del kept
threads = [threading.Thread(target=busy) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
libc = ctypes.CDLL(None)
libc.fopen.restype = ctypes.c_void_p
path = tempfile.mktemp()
stream = libc.fopen(path.encode(), b"w")
libc.malloc_info(0, ctypes.c_void_p(stream))
libc.fclose(ctypes.c_void_p(stream))
print(open(path).read().count("<heap nr="))
os.unlink(path)
"""


def arenas_after_eight_threads(limit: str, env: dict[str, str] | None = None) -> tuple[str, int]:
    environment = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    done = subprocess.run([sys.executable, "-c", SCRIPT, limit], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env={**environment, "PYTHONPATH": str(ROOT), **(env or {})})
    assert done.returncode == 0, done.stderr
    said, count = done.stdout.splitlines()
    return said, int(count)


def test_busy_threads_share_the_arenas_the_limit_allows() -> None:
    _, unlimited = arenas_after_eight_threads("none")
    said, limited = arenas_after_eight_threads("2")
    assert unlimited > 2, "eight threads did not make arenas of their own: the test would prove nothing"
    assert said == "2" and limited <= 2


def test_an_operators_malloc_arena_max_stands() -> None:
    said, count = arenas_after_eight_threads("2", {"MALLOC_ARENA_MAX": "3"})
    assert said == "3 (MALLOC_ARENA_MAX)"
    assert 2 < count <= 3  # glibc applied the operator's 3, and the code did not lower it to 2


def test_the_server_bounds_its_arenas_and_says_so(tmp_path: Path) -> None:
    from tests.helpers.server import Server

    server = Server({"SESSION_DB": str(tmp_path / "s.db")}, log_path=tmp_path / "log").start()
    server.stop()
    [line] = [line for line in server.log().splitlines() if "serving on " in line]
    expected = os.environ.get("MALLOC_ARENA_MAX")
    assert f"malloc_arenas=<{f'{expected} (MALLOC_ARENA_MAX)' if expected else default_arenas()}>" in line
