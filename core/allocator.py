"""The C allocator's arenas, bounded for the server process (glibc only; elsewhere nothing changes).

glibc gives each thread that allocates while another holds the main arena an arena of its own, up to
eight per core, and an arena keeps what its thread freed for reuse instead of handing it back. The
server's request threads each allocate a search's temporaries (arrays of the actor's record count: 130 kB
each at 16,000 records) and the turn's objects, so under eight clients each thread's arena kept its own
high-water mark: 20 MB of the server's RSS with long-term memory on (``bench/server_throughput.py
--servers c-sqlite,c-sqlite-ltm``: 157-160 MB added by long-term memory, 136 MB with one arena per core),
for no measured change in requests/s (the threads take turns holding the GIL, so they rarely wait for
an arena). ``MALLOC_ARENA_MAX`` in the environment is glibc's own setting: when it is set, it stands.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform

logger = logging.getLogger(__name__)

#: ``mallopt``'s parameter number for the arena limit (glibc's malloc.h)
M_ARENA_MAX = -8
#: the environment variable glibc reads at start-up for the same limit
ARENA_ENV = "MALLOC_ARENA_MAX"


def default_arenas() -> int:
    """One arena per core this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def limit_malloc_arenas(arenas: int | None = None) -> str:
    """Bound the allocator's arenas to ``arenas`` (default: one per core); call before the threads start.

    Returns what applies, for the start-up log: ``"2"``, ``"4 (MALLOC_ARENA_MAX)"``, or why nothing changed.
    """
    if os.environ.get(ARENA_ENV):
        return f"{os.environ[ARENA_ENV]} ({ARENA_ENV})"
    if platform.libc_ver()[0] != "glibc":
        return "allocator default (not glibc)"
    wanted = arenas or default_arenas()
    try:
        applied = ctypes.CDLL(None).mallopt(M_ARENA_MAX, wanted) == 1
    except (AttributeError, OSError) as e:  # a libc without mallopt: the default stands
        logger.debug("malloc arenas: mallopt unavailable (%s)", e)
        applied = False
    return str(wanted) if applied else "allocator default (mallopt refused)"
