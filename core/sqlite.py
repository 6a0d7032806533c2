"""One SQLite database, as both local stores use it: pooled connections, transactions, migrations.

``memory.sqlite`` (the sessions) and ``longterm.sqlite_store`` (the long-term records) each hold one
``SQLiteDatabase``; this module is the only place that opens, pools, migrates or checks their files.

- A file opens in WAL mode (readers never wait for the writer) with ``synchronous`` and a busy timeout
  (how long a write waits for another connection's write lock before ``database is locked``).
- ``path=None`` is a private in-process database: a shared-cache memory URI that lives as long as one
  connection to it is open, so that one connection serves every thread, one operation at a time.
- ``write()`` is one ``BEGIN IMMEDIATE`` transaction that first checks, with one ``stat``, that the file on
  disk is still the one opened (``st_dev``/``st_ino``): open connections keep writing into a deleted file's
  unlinked inode, new ones into whatever file replaced it, and a restart would lose all of it.
  ``DatabaseFileChanged`` refuses the write instead; the caller maps it to its own 503.
- Migrations are numbered functions recorded in ``PRAGMA user_version``, so an older file still opens.

Errors are the driver's (``sqlite3.Error``), ``DatabaseFileChanged``, and ``OSError`` from the constructor
when the file's directory cannot be created: each store turns them into its own error and message.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from core.errors import DatabaseFileChanged

logger = logging.getLogger(__name__)

#: how long a write waits for another connection's write lock (SQLITE_BUSY_TIMEOUT_MS)
DEFAULT_BUSY_TIMEOUT_MS = 10_000
#: idle connections kept open for reuse; more may be open at once under load, and are closed when done
MAX_IDLE_CONNECTIONS = 8
SYNCHRONOUS_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")

#: one schema step: runs inside the migration's ``BEGIN IMMEDIATE`` transaction
Migration = Callable[[sqlite3.Connection], None]


class SQLiteDatabase:
    """A SQLite file (or, with ``path=None``, a private in-process database) and its idle connections.

    ``pragmas`` are set on every new connection (``{"foreign_keys": "ON"}``); on a file, after
    ``journal_mode=WAL`` and ``synchronous``. ``migrations`` are applied at once (``migrate``). Raises
    ``OSError`` if the directory cannot be created, ``sqlite3.Error`` if the database cannot be opened or
    migrated (nothing is left open then).
    """

    def __init__(self, path: str | Path | None, *, migrations: Sequence[Migration] = (), synchronous: str = "NORMAL",
                 busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS, pragmas: Mapping[str, str] | None = None) -> None:
        if synchronous.upper() not in SYNCHRONOUS_MODES:
            raise ValueError(f"synchronous must be one of {', '.join(SYNCHRONOUS_MODES)}, not {synchronous!r}")
        self.path = Path(path) if path is not None else None
        self._file = str(self.path) if self.path is not None else ""  # os.stat on a str: no fspath per write
        self._synchronous = synchronous
        self._busy_timeout = busy_timeout_ms / 1000
        #: this process's writers, one at a time (see ``write``)
        self._write_lock = threading.Lock()
        self._pragmas = dict(pragmas or {})
        self._idle: list[sqlite3.Connection] = []
        self._idle_lock = threading.Lock()
        self._identity: tuple[int, int] | None = None
        # the in-process database: its one connection (it keeps the database alive), one user at a time
        self._uri = f"file:db-{uuid.uuid4().hex}?mode=memory&cache=shared"
        self._only: sqlite3.Connection | None = None
        self._only_lock = threading.RLock()  # reentrant: a read may nest another on the same thread
        if self.path is None:
            self._only = self._connect()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._idle.append(self._connect())  # creates the file: from now on, the one writes must go to
        try:
            if self.path is not None:
                self._identity = self._file_identity()
            self.migrate(migrations)
        except BaseException:
            self.close()
            raise

    @property
    def durable(self) -> bool:
        return self.path is not None

    @property
    def where(self) -> str:
        """For messages and logs: the file, or "in process memory"."""
        return self._file if self.path is not None else "in process memory"

    # -- connections -------------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        """A new connection in autocommit mode (transactions are begun explicitly), usable from any thread."""
        pragmas = dict(self._pragmas)
        if self.path is None:
            db = sqlite3.connect(self._uri, uri=True, timeout=self._busy_timeout, isolation_level=None,
                                 check_same_thread=False)
        else:
            db = sqlite3.connect(self._file, timeout=self._busy_timeout, isolation_level=None,
                                 check_same_thread=False)
            pragmas = {"journal_mode": "WAL", "synchronous": self._synchronous, **pragmas}
        try:
            for name, value in pragmas.items():
                db.execute(f"PRAGMA {name}={value}")
        except BaseException:
            db.close()
            raise
        return db

    @contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        """A connection for one operation, from the idle pool (or newly opened), given back after it.

        Pooled, not per thread: Strands runs each Agent invocation, and so the memory hooks, on a
        thread of its own, so per-thread connections were opened on every request and never closed.
        Under WAL, readers on different connections never wait for each other. A connection given back
        inside a transaction (a failed ``COMMIT`` or ``ROLLBACK``) is closed, never handed out again.
        """
        if self.path is None:
            with self._only_lock:
                if self._only is None:
                    raise sqlite3.ProgrammingError(f"the database {self.where} was closed")
                yield self._only
            return
        with self._idle_lock:
            db = self._idle.pop() if self._idle else None
        if db is None:
            db = self._connect()
        try:
            yield db
        finally:
            keep = not db.in_transaction
            if keep:
                with self._idle_lock:
                    keep = len(self._idle) < MAX_IDLE_CONNECTIONS
                    if keep:
                        self._idle.append(db)
            if not keep:
                db.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction; whatever fails (even ``COMMIT``), it is rolled back.

        This process's writers take turns on a lock of their own first: waiting for SQLite's write lock
        means its busy handler, which sleeps in steps of up to 100 ms, so two of our own writes that meet
        (a turn and a summary fold) cost the second one 10-35 ms; the lock hands over at once. Writers
        of other processes still meet at SQLite's lock, bounded by the busy timeout, as the lock is here.

        So a failed write (locked, disk full, I/O error, the file replaced) never leaves a pooled
        connection inside an open transaction, and the next request works as soon as the cause is
        gone. A failing ``ROLLBACK`` never hides the error that caused it.
        """
        if not self._write_lock.acquire(timeout=self._busy_timeout):
            raise sqlite3.OperationalError(f"database is locked: another write of this process held it for "
                                           f"{self._busy_timeout:g} s")
        try:
            with self.connection() as db:
                db.execute("BEGIN IMMEDIATE")
                try:
                    self._check_file()
                    yield db
                    db.execute("COMMIT")
                except BaseException:
                    _roll_back(db)
                    raise
        finally:
            self._write_lock.release()

    @contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: several queries that see one state of the database."""
        with self.connection() as db:
            db.execute("BEGIN")
            try:
                yield db
            finally:
                _roll_back(db)

    # -- the file under a running server ------------------------------------------------------------

    def _file_identity(self) -> tuple[int, int]:
        """(st_dev, st_ino) of the database file: what was opened, and what writes must still go to."""
        try:
            st = os.stat(self._file)
        except FileNotFoundError as e:
            raise DatabaseFileChanged(self._changed()) from e
        except OSError as e:
            raise DatabaseFileChanged(f"cannot stat {self._file}: {e}") from e
        return st.st_dev, st.st_ino

    def _check_file(self) -> None:
        """One ``stat`` per write transaction (none for the in-process database)."""
        if self._identity is not None and self._file_identity() != self._identity:
            raise DatabaseFileChanged(self._changed())

    def _changed(self) -> str:
        return (f"the database file {self._file} was deleted or replaced while the server was running; "
                "restart the server")

    # -- schema and lifetime ------------------------------------------------------------------------

    def migrate(self, migrations: Sequence[Migration]) -> list[int]:
        """Apply the migrations past ``PRAGMA user_version``, in order, in one transaction; their numbers.

        Migration *n* is ``migrations[n - 1]``: append, never edit or reorder, so a database written
        by an older release still opens. All or nothing: a failing step leaves the database as it was.
        """
        applied = []
        with self.write() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            for number, migration in enumerate(migrations[version:], start=version + 1):
                migration(db)
                db.execute(f"PRAGMA user_version={number}")
                applied.append(number)
        for number in applied:  # a new in-process database is always migrated from 0: nothing to tell
            logger.log(logging.INFO if self.durable else logging.DEBUG,
                       "db=<%s> | applied schema migration %d", self.where, number)
        return applied

    def close(self) -> None:
        """Close the idle connections (a file reopens on next use); the in-process database is gone."""
        with self._idle_lock:
            idle, self._idle = self._idle, []
        for db in idle:
            db.close()
        with self._only_lock:
            if self._only is not None:
                self._only.close()
                self._only = None


def _roll_back(db: sqlite3.Connection) -> None:
    """End the open transaction, if any; a ROLLBACK that fails leaves ``in_transaction`` set, so the pool
    closes that connection instead of handing it out again, and the caller's own error is the one raised."""
    if db.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")
