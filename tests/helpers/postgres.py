"""A real PostgreSQL 16 with pgvector for the tests: the ``pgserver`` wheel, in a temporary directory.

One server serves the whole run (it starts in under a second); every test gets a schema of its own,
named in the URL (``options=-csearch_path=...``), so tests never see each other's rows and a test's
schema is dropped afterwards. Tests that stop the engine (outages) start a private server.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
import warnings
from pathlib import Path
from urllib.parse import quote, unquote

from bedrock_agentcore.memory.constants import ConversationalMessage, MessageRole

from tests.helpers.dynamodb_local import MissingTool


def exchange(n: int) -> list[ConversationalMessage]:
    """Turn ``n`` of a test conversation: "question n" and "answer n"."""
    return [ConversationalMessage(f"question {n}", MessageRole.USER),
            ConversationalMessage(f"answer {n}", MessageRole.ASSISTANT)]


def schema_url(base_url: str, schema: str) -> str:
    """``base_url`` with ``schema`` first on the search path (libpq's ``options``), where the store creates its
    tables; ``public`` after it, where the run's ``vector`` extension lives."""
    separator = "&" if "?" in base_url else "?"
    return f"{base_url}{separator}options={quote(f'-csearch_path={schema},public')}"


def schema_of(url: str) -> str:
    """The schema ``schema_url`` put first on the search path."""
    return unquote(url.rsplit("options=", 1)[-1]).split("search_path=", 1)[1].split(",")[0]


class PostgresEngine:
    """A pgserver PostgreSQL in its own data directory, listening on a Unix socket in that directory."""

    def __init__(self, data_dir: Path | None = None) -> None:
        # a short path: the socket (data_dir/.s.PGSQL.5432) must fit in sun_path (107 bytes)
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="pg-"))
        self._server = None

    def start(self) -> PostgresEngine:
        """Start it; ``MissingTool`` when the ``pgserver`` wheel is not installed."""
        try:
            with warnings.catch_warnings():  # platformdirs: XDG_RUNTIME_DIR unset (root in CI) is expected
                warnings.simplefilter("ignore")
                import pgserver
        except ImportError as e:
            raise MissingTool("the pgserver wheel is not installed (pip install -r requirements.txt)") from e
        self._server = pgserver.get_server(self.data_dir / "data", cleanup_mode="stop")
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:  # once per database: schemas share it
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector SCHEMA public")
        return self

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        return self._server.get_uri()

    def new_schema(self) -> str:
        """A fresh, empty schema; returns the URL that puts it first on the search path."""
        import psycopg

        schema = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        return schema_url(self.url, schema)

    def drop_schema(self, url: str) -> None:
        """Remove what a test left behind (the schema named in ``url``)."""
        import psycopg

        schema = schema_of(url)
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

    def pause(self) -> None:
        """Stop the server (a fast shutdown: every client connection is cut), keeping its data for ``resume``."""
        from pgserver._commands import pg_ctl

        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self._server.pgdata, user=self._server.system_user)

    def resume(self) -> None:
        """Start the server again on the same data (and the same socket, so clients' URLs still work)."""
        with self._server._lock:
            self._server.ensure_postgres_running()

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)


class RoundTrips:
    """Counts round trips to the server, on the wire: libpq's protocol trace of every connection a pool
    opens (``configure=RoundTrips().trace``); one exchange ends with one ReadyForQuery from the server."""

    def __init__(self) -> None:
        self._traced: list = []  # (connection, file)

    def trace(self, conn) -> None:  # psycopg.Connection
        trace_file = tempfile.TemporaryFile()
        self._traced.append((conn, trace_file))
        self._start(conn, trace_file)

    @staticmethod
    def _start(conn, trace_file) -> None:
        import psycopg

        conn.pgconn.trace(trace_file.fileno())
        conn.pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS | psycopg.pq.Trace.REGRESS_MODE)

    def count(self) -> int:
        """Round trips so far, on every traced connection (call it while none is in use)."""
        total = 0
        for conn, trace_file in self._traced:
            if not conn.closed:  # libpq buffers the trace: stopping it flushes, then it starts again
                conn.pgconn.untrace()
                self._start(conn, trace_file)
            trace_file.seek(0)
            total += sum(1 for line in trace_file.read().decode(errors="replace").splitlines()
                         if line.startswith("B\t") and "\tReadyForQuery" in line)
        return total
