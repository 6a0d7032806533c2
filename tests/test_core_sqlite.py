"""``core.sqlite.SQLiteDatabase`` on its own: the pool, write transactions and their failures, snapshots,
migrations, the file deleted or replaced under a running database, and the private in-process database.

Both local stores (sessions, long-term records) are built on it; their own tests prove the same through
their methods and the request path."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from core.errors import DatabaseFileChanged
from core.sqlite import MAX_IDLE_CONNECTIONS, Migration, SQLiteDatabase
from tests.test_sqlite_store import remove_database


def notes_table(db: sqlite3.Connection) -> None:
    db.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL)")


def add_note(database: SQLiteDatabase, text: str) -> None:
    with database.write() as db:
        db.execute("INSERT INTO notes (text) VALUES (?)", (text,))


def notes(database: SQLiteDatabase) -> list[str]:
    with database.connection() as db:
        return [row[0] for row in db.execute("SELECT text FROM notes ORDER BY id")]


def is_closed(db: sqlite3.Connection) -> bool:
    try:
        db.execute("SELECT 1")
    except sqlite3.ProgrammingError:
        return True
    return False


@pytest.fixture
def database(tmp_path: Path) -> Iterator[SQLiteDatabase]:
    opened = SQLiteDatabase(tmp_path / "dir" / "notes.db", migrations=[notes_table])
    yield opened
    opened.close()


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every new connection opened from now on (the database argument of each ``sqlite3.connect``)."""
    opened: list[str] = []
    connect = sqlite3.connect

    def counting(database: Any, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        opened.append(str(database))
        return connect(database, *args, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", counting)
    return opened


# -- the pool ----------------------------------------------------------------------------------------

def test_a_file_opens_in_wal_mode_with_its_directory_created_and_its_pragmas(tmp_path: Path) -> None:
    database = SQLiteDatabase(tmp_path / "new" / "dir" / "x.db", synchronous="FULL", pragmas={"foreign_keys": "ON"})
    with database.connection() as db:
        settings = [db.execute(f"PRAGMA {name}").fetchone()[0]
                    for name in ("journal_mode", "synchronous", "foreign_keys")]
    assert settings == ["wal", 2, 1]
    database.close()


def test_a_directory_that_cannot_be_created_or_a_bad_synchronous_mode_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    with pytest.raises(OSError):
        SQLiteDatabase(tmp_path / "a-file" / "x.db")
    with pytest.raises(ValueError, match="synchronous must be one of OFF, NORMAL, FULL, EXTRA, not 'SOMETIMES'"):
        SQLiteDatabase(tmp_path / "x.db", synchronous="SOMETIMES")


def test_short_lived_threads_reuse_one_pooled_connection(database: SQLiteDatabase, connects: list[str]) -> None:
    # Strands runs each invocation on a thread of its own: per-thread connections were opened on every request.
    for n in range(50):
        worker = threading.Thread(target=add_note, args=(database, f"note {n}"))
        worker.start()
        worker.join()
    assert len(notes(database)) == 50
    assert connects == []  # the connection the database opened with served every thread


def test_after_a_burst_at_most_max_idle_connections_stay_open(database: SQLiteDatabase) -> None:
    with ExitStack() as stack:
        held = [stack.enter_context(database.connection()) for _ in range(MAX_IDLE_CONNECTIONS + 3)]
    assert len({id(db) for db in held}) == MAX_IDLE_CONNECTIONS + 3
    assert sum(is_closed(db) for db in held) == 3
    with database.connection() as again:
        assert any(again is db for db in held) and not is_closed(again)


def test_a_connection_given_back_inside_a_transaction_is_closed_not_pooled(tmp_path: Path) -> None:
    database = SQLiteDatabase(tmp_path / "notes.db", migrations=[notes_table], busy_timeout_ms=0)
    with database.connection() as db:
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO notes (text) VALUES ('never committed')")
        left = db
    assert is_closed(left)
    add_note(database, "next")  # neither "within a transaction" nor "database is locked"
    assert notes(database) == ["next"]
    database.close()


# -- write transactions ------------------------------------------------------------------------------

def test_a_failed_write_is_rolled_back_and_its_connection_serves_the_next(database: SQLiteDatabase) -> None:
    with pytest.raises(ValueError, match="the caller's own error"):
        with database.write() as db:
            db.execute("INSERT INTO notes (text) VALUES ('half a change')")
            used = db
            raise ValueError("the caller's own error")
    assert notes(database) == []
    with database.write() as db:
        assert db is used
        db.execute("INSERT INTO notes (text) VALUES ('whole')")
    assert notes(database) == ["whole"]


def test_a_failing_commit_is_rolled_back(tmp_path: Path) -> None:
    """A deferred foreign key fails at ``COMMIT`` and leaves the transaction open: it must not stay open."""
    def parent_child(db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        db.execute("CREATE TABLE child (parent_id INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)")

    database = SQLiteDatabase(tmp_path / "fk.db", migrations=[parent_child], pragmas={"foreign_keys": "ON"})
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
        with database.write() as db:
            db.execute("INSERT INTO child VALUES (1)")
    with database.write() as db:
        db.execute("INSERT INTO parent VALUES (1)")
        db.execute("INSERT INTO child VALUES (1)")
    with database.connection() as db:
        assert db.execute("SELECT count(*) FROM child").fetchone()[0] == 1
    database.close()


class RollbackFails(sqlite3.Connection):
    """A connection whose ROLLBACK fails (as an I/O error would make it)."""

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:  # type: ignore[override]
        if sql == "ROLLBACK":
            raise sqlite3.OperationalError("disk I/O error")
        return super().execute(sql, *args)


def test_a_failing_rollback_never_hides_the_error_and_that_connection_is_closed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    connect = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect", lambda *a, **k: connect(*a, **k, factory=RollbackFails))
    database = SQLiteDatabase(tmp_path / "notes.db", migrations=[notes_table], busy_timeout_ms=0)
    with pytest.raises(ValueError, match="the caller's own error"):
        with database.write() as db:
            db.execute("INSERT INTO notes (text) VALUES ('half a change')")
            stuck = db
            raise ValueError("the caller's own error")
    assert is_closed(stuck)  # closing it ended its transaction: the write lock is free
    monkeypatch.setattr(sqlite3, "connect", connect)
    add_note(database, "next")
    assert notes(database) == ["next"]
    database.close()


def test_a_write_held_up_by_another_connection_fails_then_works_once_the_lock_is_gone(tmp_path: Path) -> None:
    database = SQLiteDatabase(tmp_path / "notes.db", migrations=[notes_table], busy_timeout_ms=0)
    holder = sqlite3.connect(tmp_path / "notes.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
        add_note(database, "while locked")
    holder.execute("ROLLBACK")
    holder.close()
    add_note(database, "after")
    assert notes(database) == ["after"]
    database.close()


def test_a_snapshot_sees_one_state_while_a_write_commits(database: SQLiteDatabase) -> None:
    add_note(database, "first")
    with database.snapshot() as db:
        before = db.execute("SELECT count(*) FROM notes").fetchone()[0]
        add_note(database, "second")  # another pooled connection: WAL lets it commit beside the reader
        assert db.execute("SELECT count(*) FROM notes").fetchone()[0] == before == 1
    assert notes(database) == ["first", "second"]


# -- migrations --------------------------------------------------------------------------------------

def recording(applied: list[int], number: int) -> Migration:
    def migration(db: sqlite3.Connection) -> None:
        applied.append(number)
        db.execute(f"CREATE TABLE step_{number} (x)")

    return migration


def user_version(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return db.execute("PRAGMA user_version").fetchone()[0]
    finally:
        db.close()


def test_migrations_run_once_each_in_order(tmp_path: Path) -> None:
    path, applied = tmp_path / "m.db", []
    steps = [recording(applied, n) for n in (1, 2, 3)]
    SQLiteDatabase(path, migrations=steps[:2]).close()
    assert (applied, user_version(path)) == ([1, 2], 2)
    SQLiteDatabase(path, migrations=steps[:2]).close()
    assert applied == [1, 2]
    database = SQLiteDatabase(path, migrations=steps)  # a release that appended one
    assert (applied, user_version(path)) == ([1, 2, 3], 3)
    assert database.migrate(steps) == []
    database.close()


def test_a_database_written_by_an_older_release_opens_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = sqlite3.connect(path, isolation_level=None)
    notes_table(old)
    old.execute("PRAGMA user_version=1")
    old.execute("INSERT INTO notes (text) VALUES ('written by release 1')")
    old.close()

    def pinned(db: sqlite3.Connection) -> None:
        db.execute("ALTER TABLE notes ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0")

    database = SQLiteDatabase(path, migrations=[notes_table, pinned])
    with database.connection() as db:
        assert db.execute("SELECT text, pinned FROM notes").fetchall() == [("written by release 1", 0)]
    assert user_version(path) == 2
    database.close()


def test_a_failing_migration_leaves_the_database_as_it_was(tmp_path: Path) -> None:
    path, applied = tmp_path / "m.db", []
    SQLiteDatabase(path, migrations=[recording(applied, 1)]).close()

    def broken(db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE half_done (x)")
        raise sqlite3.OperationalError("a step that fails")

    with pytest.raises(sqlite3.OperationalError, match="a step that fails"):
        SQLiteDatabase(path, migrations=[recording(applied, 1), recording(applied, 2), broken])
    assert user_version(path) == 1
    database = SQLiteDatabase(path, migrations=[recording(applied, 1)])  # not locked: nothing left open
    with database.connection() as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"step_1"}
    database.close()


# -- the file under a running database ----------------------------------------------------------------

def changed(path: Path) -> str:
    return f"the database file {path} was deleted or replaced while the server was running; restart the server"


def test_a_deleted_file_refuses_every_write_before_it_writes(database: SQLiteDatabase) -> None:
    assert database.path is not None
    add_note(database, "kept")
    remove_database(database.path)
    ran: list[int] = []
    for attempt in range(3):  # every write, not just the first
        with pytest.raises(DatabaseFileChanged) as info:
            with database.write() as db:
                ran.append(attempt)
                db.execute("INSERT INTO notes (text) VALUES ('into the void')")
        assert str(info.value) == changed(database.path)
    assert ran == []
    database.close()
    restarted = SQLiteDatabase(database.path, migrations=[notes_table])
    assert notes(restarted) == []
    restarted.close()


def test_a_replaced_file_refuses_every_write(tmp_path: Path) -> None:
    path, other = tmp_path / "notes.db", tmp_path / "other.db"
    database = SQLiteDatabase(path, migrations=[notes_table])
    add_note(database, "before")
    elsewhere = SQLiteDatabase(other, migrations=[notes_table])
    add_note(elsewhere, "the replacement's own")
    elsewhere.close()
    remove_database(path)
    os.replace(other, path)
    with pytest.raises(DatabaseFileChanged, match="deleted or replaced"):
        add_note(database, "after")
    database.close()  # the pool is empty: a new connection would open the replacement, and be refused too
    restarted = SQLiteDatabase(path, migrations=[notes_table])
    assert notes(restarted) == ["the replacement's own"]
    restarted.close()


def test_a_file_reopens_on_the_next_use_after_close(database: SQLiteDatabase) -> None:
    add_note(database, "one")
    database.close()
    add_note(database, "two")
    assert notes(database) == ["one", "two"]


# -- the in-process database -------------------------------------------------------------------------

def test_an_in_process_database_is_one_database_for_every_thread(connects: list[str]) -> None:
    database = SQLiteDatabase(None, migrations=[notes_table])
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(25):
                add_note(database, f"{n}-{i}")
        except BaseException as e:  # asserted below: a thread cannot fail the test itself
            errors.append(e)

    workers = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert errors == []
    seen: list[list[str]] = []
    reader = threading.Thread(target=lambda: seen.append(notes(database)))
    reader.start()
    reader.join()
    assert len(seen[0]) == 200
    assert len(connects) == 1 and connects[0].startswith("file:") and "mode=memory" in connects[0]
    assert (database.durable, database.where) == (False, "in process memory")
    database.close()


def test_an_in_process_database_is_private_and_gone_after_close() -> None:
    first = SQLiteDatabase(None, migrations=[notes_table])
    add_note(first, "private")
    second = SQLiteDatabase(None, migrations=[notes_table])
    assert notes(second) == []
    first.close()
    with pytest.raises(sqlite3.ProgrammingError, match="in process memory was closed"):
        notes(first)
    second.close()
