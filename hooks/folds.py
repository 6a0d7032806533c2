"""Rolling-summary folds after the reply, off the request path.

A fold is one summariser call (a second model round trip): made on the request path it would
make one turn in ``SUMMARY_BATCH`` wait for it. The rolling summary (``hooks/summary.py``) hands it
to this queue instead, once the exchange is stored, and the turn answers at once.

- **One fold at a time per session.** A session with a fold running and another waiting keeps
  only the newest waiting one: every fold reads the session's current summary when it starts
  and folds whatever the newest turn leaves uncovered, so the newer job covers the older's work.
- **Bounded.** At most ``max_sessions`` sessions wait; past that a fold is dropped with a
  warning. Nothing stored is lost: the next turn of that session sees the gap and folds again.
- **Delete wins.** A fold writes with the generation its turn loaded; a session cleared
  meanwhile refuses the write (see ``SessionStore.put_summary``).
- **Shutdown** (``close``): no new folds; those waiting are run for up to ``timeout`` seconds,
  the rest abandoned (logged). A fold only ever writes the summary, so abandoning one loses
  no turn: the session's next turn catches up.

The worker threads are daemons started when first needed: a fold stuck in a slow model call
cannot hold the process open at exit (the model call has its own deadline, ``MODEL_TIMEOUT_S``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable

logger = logging.getLogger(__name__)

#: sessions that may wait for a fold at once (each holds one job: a few KB)
MAX_WAITING_SESSIONS = 10_000


class FoldQueue:
    """Runs each session's folds in order on ``workers`` background threads. Thread-safe; one per process."""

    def __init__(self, workers: int = 2, max_sessions: int = MAX_WAITING_SESSIONS) -> None:
        if workers < 1:
            raise ValueError(f"workers={workers} must be at least 1")
        self.workers = workers
        self.max_sessions = max_sessions
        self._cond = threading.Condition()
        self._jobs: dict[Hashable, Callable[[], None]] = {}  # the waiting fold of each session (the newest)
        self._ready: deque[Hashable] = deque()  # sessions with a waiting fold and none running, oldest first
        self._running: set[Hashable] = set()
        self._threads: list[threading.Thread] = []
        self._closed = False
        #: folds dropped because ``max_sessions`` sessions were waiting, or abandoned at shutdown
        self.dropped = 0

    def submit(self, key: Hashable, job: Callable[[], None]) -> bool:
        """Queue ``job`` as ``key``'s next fold (replacing one still waiting); False when refused (closed, full)."""
        with self._cond:
            if self._closed:
                return False
            if key not in self._jobs and len(self._jobs) >= self.max_sessions:
                self.dropped += 1
                logger.warning("rolling summary fold dropped: %d sessions are waiting for one already "
                               "(that session's next turn folds instead)", len(self._jobs))
                return False
            waiting = key in self._jobs
            self._jobs[key] = job
            if not waiting and key not in self._running:
                self._ready.append(key)
                self._cond.notify()
            if len(self._threads) < self.workers and len(self._threads) < len(self._ready) + len(self._running):
                thread = threading.Thread(target=self._work, name=f"fold-{len(self._threads)}", daemon=True)
                self._threads.append(thread)
                thread.start()
            return True

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._ready and not self._closed:
                    self._cond.wait()
                if not self._ready:
                    return  # closed and nothing left to run
                key = self._ready.popleft()
                job = self._jobs.pop(key)
                self._running.add(key)
            try:
                job()
            except Exception:  # the jobs log their own failures; this is a bug in one, not a reason to stop
                logger.exception("rolling summary fold failed")
            finally:
                with self._cond:
                    self._running.discard(key)
                    if key in self._jobs:  # a newer fold of the session arrived while this one ran
                        self._ready.append(key)
                    self._cond.notify_all()

    @property
    def pending(self) -> int:
        """Folds waiting or running."""
        with self._cond:
            return len(self._jobs) + len(self._running)

    def join(self, timeout: float | None = None) -> bool:
        """Wait until no fold waits or runs; False if ``timeout`` seconds passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._jobs or self._running:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def close(self, timeout: float = 10.0) -> int:
        """Refuse new folds, run the waiting ones for up to ``timeout`` seconds; return how many were abandoned."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self.join(timeout)
        with self._cond:
            abandoned = len(self._jobs)
            self._jobs.clear()
            self._ready.clear()
            self.dropped += abandoned
            running = len(self._running)
        if abandoned or running:
            logger.warning("shutdown: %d rolling summary folds abandoned, %d still running (no turn is lost: "
                           "each session's next turn folds what they would have)", abandoned, running)
        return abandoned
