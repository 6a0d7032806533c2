"""The background writer: records are embedded and stored off the request path.

``put`` only appends to a queue; one daemon thread takes what is queued in
batches (embedding a batch costs less per text than one at a time), embeds the
texts that have no vector yet and stores the batch in one transaction. It runs
at the same CPU priority as the requests: a ``nice``d thread that holds the GIL
and is not scheduled stalls every request thread (measured: 6 requests/s
instead of 60 under load), and the embedding itself runs outside the GIL.

Nothing acknowledged is lost on a clean shutdown: ``close()`` drains the queue
before it returns (``LongTermMemory.close`` calls it; an ``atexit`` hook does as
a last resort). A batch the store refuses (the file locked for too long) is
retried with backoff, then logged with its ids and dropped. The queue is
bounded (``MAX_QUEUED``): past it ``put`` waits, so a writer that cannot keep up
slows the requests down instead of growing without limit.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from core.errors import DatabaseFileChanged

from longterm.base import MessageRecord

logger = logging.getLogger(__name__)

MAX_QUEUED = 20_000
MAX_BATCH = 64
RETRY_DELAYS = (0.05, 0.5, 2.0)


@dataclass(frozen=True)
class Pending:
    record: MessageRecord
    #: the record's embedding when the request path already computed it (the query of the user message)
    vector: np.ndarray | None = None


_STOP = object()


class BackgroundWriter:
    """One queue and one thread: ``embed(texts) -> vectors``, then ``store(records, vectors) -> stored``."""

    def __init__(self, embed: Callable[[list[str]], np.ndarray],
                 store: Callable[[Sequence[MessageRecord], np.ndarray], int],
                 text_of: Callable[[MessageRecord], str], *, max_queued: int = MAX_QUEUED,
                 name: str = "longterm-writer") -> None:
        self._embed = embed
        self._store = store
        self._text_of = text_of
        self._queue: queue.Queue[Pending | object] = queue.Queue(maxsize=max_queued)
        self._closed = False
        self._close_lock = threading.Lock()
        #: records stored, and dropped after every retry failed (for the benchmark and the tests)
        self.stored = 0
        self.dropped = 0
        self.refused = 0  # stale epoch or generation: deleted meanwhile, correctly not stored
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def backlog(self) -> int:
        return self._queue.unfinished_tasks

    def put(self, items: Sequence[Pending]) -> None:
        """Queue records (waits only when ``MAX_QUEUED`` are already waiting). After ``close``: stored at once."""
        if self._closed:
            self._write([p for p in items])
            return
        for item in items:
            self._queue.put(item)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far is stored; False if ``timeout`` passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._queue.all_tasks_done.wait(remaining)
        return True

    def close(self) -> None:
        """Store everything queued, then stop the thread. Idempotent."""
        with self._close_lock:
            if self._closed:
                return
            self._queue.put(_STOP)
            self._thread.join()
            self._closed = True

    # -- the thread -------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                self._queue.task_done()
                return
            batch: list[Pending] = [first]  # type: ignore[list-item]
            stop = False
            while len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)  # type: ignore[arg-type]
            try:
                self._write(batch)
            finally:
                for _ in range(len(batch) + stop):
                    self._queue.task_done()
            if stop:
                # everything put before close() is ahead of the stop mark: the queue is drained
                return

    def _write(self, batch: list[Pending]) -> None:
        missing = [i for i, p in enumerate(batch) if p.vector is None]
        for attempt, delay in enumerate((*RETRY_DELAYS, None)):
            try:
                vectors = np.zeros((len(batch), 384), np.float32)
                if missing:
                    vectors[missing] = self._embed([self._text_of(batch[i].record) for i in missing])
                for i, p in enumerate(batch):
                    if p.vector is not None:
                        vectors[i] = p.vector
                stored = self._store([p.record for p in batch], vectors)
                self.stored += stored
                self.refused += len(batch) - stored
                return
            except Exception as e:  # the store or the model failed: retry, then give the batch up loudly
                if delay is None or isinstance(e.__cause__, DatabaseFileChanged):  # only a restart mends that
                    self.dropped += len(batch)
                    logger.error("long-term records not stored after %d attempt%s: %s: %s | %s", attempt + 1,
                                 "" if attempt == 0 else "s", type(e).__name__, e, "; ".join(
                                     f"actor_id=<{p.record.actor_id}> session_id=<{p.record.session_id}> "
                                     f"turn=<{p.record.turn}>" for p in batch[:10]))
                    return
                logger.warning("long-term write failed (attempt %d, retrying in %.2f s): %s: %s", attempt + 1, delay,
                               type(e).__name__, e)
                time.sleep(delay)

