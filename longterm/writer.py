"""The background writer: stored records get their vectors off the request path.

A record's text is stored on the request path (durable and keyword-searchable
before the reply is acknowledged: ``SQLiteLongTermStore.insert``). This thread
adds the embeddings: woken by each insert, it reads the records still without a
vector from the store (oldest first, a partial index), embeds them and stores
the vectors in one transaction per batch, until none is left. Its work list is
the store itself, not a queue in memory: a process killed with records still
unembedded loses nothing, and the next start picks them up (the thread begins
with a pass over what is there). A record deleted meanwhile is not resurrected:
a vector is only added to a row still there without one.

It runs at the same CPU priority as the requests: a ``nice``d thread that holds
the GIL and is not scheduled stalls every request thread (measured: 6 requests/s
instead of 60 under load), and the embedding itself runs outside the GIL (on the
embedding worker, behind every query).

``close(drain_s)`` embeds what it can within ``drain_s`` seconds, then stops:
the rest keeps its text and is embedded at the next start. A batch that fails
(the model, or the file locked for too long) is retried with backoff, then
logged with its ids and left without a vector until the next start.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Sequence

import numpy as np

from core.errors import DatabaseFileChanged
from core.telemetry import memory_step

from longterm.sqlite_store import Unembedded

logger = logging.getLogger(__name__)

#: records embedded per transaction: small, because under load each text waits for the queries ahead of it
#: (a batch of 16 held its first vector back ≈ 0.8 s); also the granularity of a bounded drain
MAX_BATCH = 4
RETRY_DELAYS = (0.05, 0.5, 2.0)


class BackgroundWriter:
    """One thread: ``pending(limit, skip)`` -> records without vectors, ``embed(texts)``, ``store((id, vector))``."""

    def __init__(self, embed: Callable[[list[str]], np.ndarray],
                 pending: Callable[[int, Collection[str]], list[Unembedded]],
                 store: Callable[[Sequence[tuple[str, np.ndarray]]], int],
                 text_of: Callable[[Unembedded], str], *, name: str = "longterm-writer") -> None:
        self._embed = embed
        self._pending = pending
        self._store = store
        self._text_of = text_of
        self._changed = threading.Condition()
        self._requested = 1  # the first pass: what an earlier process left without vectors
        self._done = 0
        self._stopping = threading.Event()
        self._deadline = float("inf")
        #: records given up on in this process (every retry failed): left for the next start
        self._given_up: set[str] = set()
        #: vectors stored, and records given up on (for the benchmark and the tests)
        self.embedded = 0
        #: records in the batch written last (its trace's ``memory.batch_size``)
        self.last_batch = 0
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """New records without vectors were stored: embed them."""
        with self._changed:
            self._requested += 1
            self._changed.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every record stored before this call has its vector; False if ``timeout`` passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            wanted = self._requested = self._requested + 1
            self._changed.notify_all()
            while self._done < wanted:
                if not self._thread.is_alive():
                    return False
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._changed.wait(remaining if remaining is not None else 1.0)
        return True

    def close(self, drain_s: float) -> None:
        """Embed what can be embedded within ``drain_s`` seconds, then stop the thread. Idempotent."""
        with self._changed:
            if not self._stopping.is_set():
                self._deadline = time.monotonic() + max(0.0, drain_s)
                self._requested += 1
                self._stopping.set()
                self._changed.notify_all()
        # a batch started just before the deadline finishes (≈ MAX_BATCH texts); a store blocked past that is
        # left behind (a daemon thread): shutdown must stay within the runtime's grace
        self._thread.join(max(0.0, self._deadline - time.monotonic()) + 2.0)

    # -- the thread -------------------------------------------------------------------------------

    def _out_of_time(self) -> bool:
        return self._stopping.is_set() and time.monotonic() >= self._deadline

    def _run(self) -> None:
        while True:
            with self._changed:
                while self._done >= self._requested and not self._stopping.is_set():
                    self._changed.wait()
                serving = self._requested
            self._pass()
            with self._changed:
                self._done = serving
                self._changed.notify_all()
                if self._stopping.is_set() and (self._done >= self._requested or self._out_of_time()):
                    return

    def _pass(self) -> None:
        """Embed records until none is left without a vector (or the close deadline passed)."""
        while not self._out_of_time():
            try:
                batch = self._pending(MAX_BATCH, self._given_up)
            except Exception as e:  # the file is gone or locked: the next wake (or start) tries again
                logger.warning("long-term writer: reading the records without vectors failed: %s: %s",
                               type(e).__name__, e)
                return
            if not batch:
                return
            self._write(batch)

    @memory_step("longterm_embed", lambda self: {"memory.batch_size": self.last_batch,
                                                 "memory.embedded_total": self.embedded})
    def _write(self, batch: list[Unembedded]) -> None:
        self.last_batch = len(batch)
        for attempt, delay in enumerate((*RETRY_DELAYS, None)):
            try:
                vectors = self._embed([self._text_of(record) for record in batch])
                self.embedded += self._store([(record.token, vectors[i]) for i, record in enumerate(batch)])
                return
            except Exception as e:  # the store or the model failed: retry, then give the batch up loudly
                if delay is None or self._out_of_time() or isinstance(e.__cause__, DatabaseFileChanged):
                    self.dropped += len(batch)
                    self._given_up.update(record.token for record in batch)
                    logger.error("long-term vectors not stored after %d attempt%s (the records keep their text; "
                                 "the next start embeds them): %s: %s | %s", attempt + 1, "" if attempt == 0 else "s",
                                 type(e).__name__, e, "; ".join(
                                     f"actor_id=<{r.actor_id}> session_id=<{r.session_id}> turn=<{r.turn}>"
                                     for r in batch[:10]))
                    return
                logger.warning("long-term vectors not stored (attempt %d, retrying in %.2f s): %s: %s", attempt + 1,
                               delay, type(e).__name__, e)
                self._stopping.wait(delay)  # a close does not wait out the backoff
