"""One turn at a time per session, a short FIFO queue behind it, and a 429 beyond that.

A request that waits for its session must not hold a thread, or a retry storm on one
session would starve ``/ping`` and every other session of threads. On the server a
request therefore queues a *job* (``submit``): a free session's job starts at once on the
turn threads; a busy session's job waits in the session's queue, holding nothing, and
runs on the thread that finished the turn before it, straight after it (no hop through an
event loop or behind other sessions' work). Direct callers on their own threads (tests,
embedders) wait on a ``threading.Event`` instead (``acquire_blocking``); both kinds share
one queue per session, served in arrival order.

A queued job whose client hangs up leaves the queue (``withdraw``) and never runs.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Hashable

from core.errors import ClientGone, SessionBusy

logger = logging.getLogger(__name__)

#: weight of the newest turn in the running mean of how long a turn holds its session
HOLD_SMOOTHING = 0.2


def _settle(loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], outcome: Any) -> None:
    """From any thread: complete ``future`` with ``outcome`` (an exception is raised by it), if still pending."""
    def settle() -> None:
        if future.done():
            return
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)

    try:
        loop.call_soon_threadsafe(settle)
    except RuntimeError:  # the loop has closed (shutting down): nobody awaits it any more
        pass


class _ThreadWaiter:
    """A direct caller blocked on its own thread until the slot is handed to it."""

    def __init__(self) -> None:
        self.event = threading.Event()


class Job:
    """Work that runs holding its session's slot (it must not raise: it reports its own outcome)."""

    def __init__(self, work: Callable[[], None]) -> None:
        self.work = work


@dataclass
class _Slot:
    held_since: float
    waiters: deque[_ThreadWaiter | Job] = field(default_factory=deque)


class SessionSlots:
    """One slot per key (an actor's session): held by the running turn, at most ``max_waiting`` queued behind it.

    ``executor``: the turn threads a job starts on when its session is free.
    """

    def __init__(self, max_waiting: int, executor: Executor) -> None:
        self.max_waiting = max_waiting
        self._executor = executor
        self._guard = threading.Lock()
        self._slots: dict[Hashable, _Slot] = {}
        self._mean_hold = 0.0  # seconds a turn holds its session, smoothed; only feeds Retry-After

    def _take_or_queue(self, key: Hashable, waiter: _ThreadWaiter | Job) -> bool:
        """True: the slot was free and is now ``waiter``'s. False: queued. ``SessionBusy`` when the queue is full."""
        with self._guard:
            slot = self._slots.get(key)
            if slot is None:
                self._slots[key] = _Slot(time.monotonic())
                return True
            if len(slot.waiters) >= self.max_waiting:
                waiting = len(slot.waiters)
                retry_after = max(1, math.ceil(self._mean_hold * (waiting + 1)))
                raise SessionBusy(
                    f"this session is busy: a turn is running and {waiting} more requests are waiting "
                    f"(SESSION_QUEUE_MAX={self.max_waiting}); retry after {retry_after} s", retry_after)
            slot.waiters.append(waiter)
            return False

    def _hand_on(self, key: Hashable) -> Job | None:
        """Release the slot: to the next waiter (a ``Job`` is returned, for the caller to run), or free it."""
        with self._guard:
            slot = self._slots[key]
            now = time.monotonic()
            self._mean_hold += HOLD_SMOOTHING * ((now - slot.held_since) - self._mean_hold)
            if not slot.waiters:
                del self._slots[key]
                return None
            slot.held_since = now
            waiter = slot.waiters.popleft()
        if isinstance(waiter, Job):
            return waiter
        waiter.event.set()
        return None

    def _run_chain(self, key: Hashable, job: Job | None) -> None:
        """Run ``job``, then each job queued behind it, on this thread, holding the slot throughout."""
        while job is not None:
            try:
                job.work()
            except Exception:  # a job reports its own outcome; this is a bug in one, logged, never a stuck session
                logger.exception("a session job failed")
            finally:
                job = self._hand_on(key)

    def submit(self, key: Hashable, job: Job) -> None:
        """Run ``job`` holding the slot: now on a turn thread when the session is free, else after the jobs ahead.

        Raises ``SessionBusy`` (nothing queued) when ``max_waiting`` are already waiting.
        """
        if self._take_or_queue(key, job):
            try:
                self._executor.submit(self._run_chain, key, job)
            except BaseException:
                self.release(key)
                raise

    def withdraw(self, key: Hashable, job: Job) -> bool:
        """Take a queued job out of the queue (its client left); False when it has started already."""
        with self._guard:
            slot = self._slots.get(key)
            if slot is not None and job in slot.waiters:
                slot.waiters.remove(job)
                return True
        return False

    def acquire_blocking(self, key: Hashable) -> None:
        """Wait for the slot on this thread (direct callers, which own their threads); ``release`` it after."""
        waiter = _ThreadWaiter()
        if not self._take_or_queue(key, waiter):
            waiter.event.wait()

    def release(self, key: Hashable) -> None:
        """Release a slot taken with ``acquire_blocking``; a job queued behind it starts on a turn thread."""
        job = self._hand_on(key)
        if job is not None:
            self._executor.submit(self._run_chain, key, job)

    async def run(self, key: Hashable, context: contextvars.Context, work: Callable[[Callable[[Any], None]], Any],
                  on_gone: Callable[[Callable[[], None]], None] | None = None,
                  gone_running: Callable[[], None] | None = None) -> Any:
        """``work`` run in ``context`` holding ``key``'s slot, on a turn thread; awaited without holding a thread.

        What ``work`` returns is the answer, unless it answered earlier through the callable it is
        given (a stream answers when it starts and runs on). ``on_gone`` registers a callback for a
        client that hangs up: while queued the request leaves the queue (``ClientGone``); once it
        runs, ``gone_running`` is told (a plain turn is finished and stored, as it always was).
        """
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()

        def run() -> None:
            try:
                answer = context.run(work, lambda early: _settle(loop, done, early))
            except BaseException as e:  # handed to the awaiting coroutine, which maps and logs it
                _settle(loop, done, e)
            else:
                _settle(loop, done, answer)

        job = Job(run)
        self.submit(key, job)

        def client_gone() -> None:
            if self.withdraw(key, job):
                _settle(loop, done, ClientGone("the client hung up while waiting for its session"))
            elif gone_running is not None:
                gone_running()

        if on_gone is not None:
            on_gone(client_gone)
        try:
            return await done
        except asyncio.CancelledError:
            if not self.withdraw(key, job) and gone_running is not None:
                gone_running()
            raise

    def waiting(self, key: Hashable) -> int:
        """Requests queued behind the running turn of ``key`` (for tests and logs)."""
        with self._guard:
            slot = self._slots.get(key)
            return len(slot.waiters) if slot is not None else 0
