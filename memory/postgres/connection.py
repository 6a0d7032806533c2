"""The database connection: ``DATABASE_URL`` checked and described without its password, the pool, the errors.

Every store on Postgres (sessions, long-term records) shares this: one ``psycopg_pool.ConnectionPool`` per
store object, autocommit connections (each statement is its own transaction, so a turn's write is one
round trip: a function call), and one mapping of driver failures to the 503 that names the store.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

from core.errors import ConfigError, StoreUnavailable

logger = logging.getLogger(__name__)

R = TypeVar("R")

#: failures that mean "the database cannot serve this now" (down, restarting, connection cut, pool exhausted,
#: a read-only replica after a failover), as opposed to a bug in a statement
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout, psycopg.errors.ReadOnlySqlTransaction,
)


#: libpq's sslmode values (a wrong one would fail every connection, so start-up refuses it)
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def parse_database_url(url: str | None, needed_by: str = "MEMORY_BACKEND=postgres") -> dict[str, str]:
    """The URL's libpq parameters; ``ConfigError`` naming ``DATABASE_URL`` (never its password) when unusable."""
    if not url:
        raise ConfigError(f"{needed_by} needs DATABASE_URL (a libpq URL, e.g. "
                          "postgresql://user@host:5432/dbname; the password from the URL or PGPASSWORD)")
    shown = without_password(url)
    if not url.startswith(("postgresql://", "postgres://")) and "=" not in url:
        raise ConfigError(f"DATABASE_URL={shown!r} must start with postgresql:// (or be libpq key=value pairs)")
    try:
        params = {k: str(v) for k, v in conninfo_to_dict(url).items()}
    except psycopg.ProgrammingError as e:  # libpq's words may quote the URL: the password is taken out
        raise ConfigError(f"DATABASE_URL={shown!r} is not a libpq URL: "
                          f"{without_password(_first_line(e))}") from None
    ports = params.get("port", "")
    if ports and not all(p.strip().isdigit() and 0 < int(p) < 65536 for p in ports.split(",")):
        raise ConfigError(f"DATABASE_URL={shown!r}: port {ports!r} is not a port number")
    if params.get("sslmode", "prefer") not in SSL_MODES:
        raise ConfigError(f"DATABASE_URL={shown!r}: sslmode={params['sslmode']!r} is not one of {', '.join(SSL_MODES)}")
    return params


_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")
_KEY_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def without_password(text: str) -> str:
    """``text`` (a URL, a conninfo string or a message quoting one) with any password replaced by ***."""
    return _KEY_PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"\1***@", text))


def redact(url: str) -> str:
    """A form of the URL safe to log: host, port, database and user, never a password."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return without_password(url)
    return describe_params({k: str(v) for k, v in params.items()})


def describe_params(params: dict[str, str]) -> str:
    """``user@host:port/dbname`` from libpq parameters (the password left out; defaults shown as libpq's)."""
    user = params.get("user", "")
    host = params.get("host", "") or "localhost"
    port = params.get("port", "")
    where = f"{host}:{port}" if port else host
    schema = _search_path(params.get("options", ""))
    return f"{user + '@' if user else ''}{where}/{params.get('dbname', '')}" + (f" schema {schema}" if schema else "")


def _search_path(options: str) -> str:
    for part in options.replace("-c ", "-c").split():
        if part.startswith("-csearch_path="):
            return part.split("=", 1)[1]
    return ""


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def describe_error(error: Exception) -> str:
    """A 503's detail: the driver's first line (libpq's messages hold no password)."""
    if isinstance(error, PoolTimeout):
        return f"no database connection free within the pool timeout ({_first_line(error)})"
    if isinstance(error, psycopg.errors.QueryCanceled):
        return f"the database did not answer within the statement timeout ({_first_line(error)})"
    return f"{type(error).__name__}: {_first_line(error)}"


def statement_options(url: str, statement_timeout: float) -> dict[str, str]:
    """libpq ``options`` that add ``statement_timeout`` to what the URL's own ``options`` say (0: add nothing)."""
    if not statement_timeout:
        return {}
    own = str(conninfo_to_dict(url).get("options", "") or "")
    return {"options": f"{own} -c statement_timeout={max(1, round(statement_timeout * 1000))}".strip()}


def make_pool(url: str, *, size: int, timeout: float, name: str, statement_timeout: float = 0,
              configure: Callable[[psycopg.Connection], None] | None = None) -> ConnectionPool:
    """A pool of autocommit connections; opened without waiting, so a database that is down at start-up
    costs a 503 per request until it answers, not a server that will not start.

    ``statement_timeout`` (seconds, sent as a connection option): the server cancels a statement that runs or
    waits (on a lock another transaction holds) longer, so a request never hangs on the database.
    """
    return ConnectionPool(
        url, min_size=1, max_size=size, timeout=timeout, name=name, open=True, configure=configure,
        # connect_timeout: a database host that does not answer fails the attempt instead of hanging it.
        # prepare_threshold=None: no named server-side statements. A call is parsed each time (the work is in
        # the functions, whose plans PL/pgSQL caches anyway), never an extra round trip to prepare one, and
        # poolers that multiplex connections (PgBouncer in transaction mode, RDS Proxy) need no pinning.
        kwargs={"autocommit": True, "connect_timeout": max(1, round(timeout)), "prepare_threshold": None,
                **statement_options(url, statement_timeout)},
        # the pool's own reconnection backs off exponentially without a ceiling; past this it gives up and the
        # next request that waits starts a fresh attempt, so the service is back one request after the database
        reconnect_timeout=max(2 * timeout, 5.0),
    )


def run(pool: ConnectionPool, store: str, work: Callable[[psycopg.Connection], R], *, retry: bool) -> R:
    """``work`` on a pooled connection; a database failure becomes ``StoreUnavailable(store)`` (a 503).

    ``retry``: ``work`` may run twice (reads): after a server restart the pool's idle connections are dead,
    and the first use of one must not cost the request. Writes never retry: whether a cut statement
    committed is unknown, and the client's idempotency key makes its own retry safe.
    """
    try:
        return _once(pool, work)
    except (psycopg.OperationalError, psycopg.InterfaceError) as e:
        if isinstance(e, (PoolTimeout, psycopg.errors.QueryCanceled)):  # the connection is fine: no second wait
            raise StoreUnavailable(store, describe_error(e)) from e
        pool.check()  # drop the other dead idle connections now, not one failed request at a time
        if not retry:
            raise StoreUnavailable(store, describe_error(e)) from e
        logger.info("store=<%s> | a pooled connection failed (%s): retrying the read once", store, describe_error(e))
    try:
        return _once(pool, work)
    except UNAVAILABLE_ERRORS as e:
        raise StoreUnavailable(store, describe_error(e)) from e


def _once(pool: ConnectionPool, work: Callable[[psycopg.Connection], R]) -> R:
    try:
        with pool.connection() as conn:
            return work(conn)
    except psycopg.errors.ReadOnlySqlTransaction as e:  # a failover left us on a reader: as if it were down
        raise psycopg.OperationalError(str(e)) from e
