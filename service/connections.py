"""Connections: where to listen, how many to keep, and how long a silent or slow one may stay.

uvicorn closes a kept-alive connection after ``timeout_keep_alive``, but a connection
that never sends a byte, or sends its request head one byte every half second, stays
open forever; a thousand of them use up the process's file descriptors, after which
``accept()`` fails in a loop (and logs a traceback each time) and nothing is served.
``GuardedH11Protocol`` (uvicorn's h11 protocol, passed as ``http=``) adds what it lacks:

- a fresh connection gets ``HTTP_IDLE_TIMEOUT_S`` to start its request, like a kept-alive one;
- a request's head and body must arrive within ``HTTP_READ_TIMEOUT_S`` of its first byte,
  else the client gets a 408 JSON and the connection is closed;
- beyond ``MAX_CONNECTIONS`` open connections a new one gets a 503 JSON and is closed at
  once, so descriptors never run out (``MAX_CONNECTIONS`` is checked against ``ulimit -n``).
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import resource
import socket
from dataclasses import dataclass
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from core.errors import ConfigError
from core.settings import Settings

logger = logging.getLogger(__name__)

#: descriptors kept for everything but client connections: stdio, the listening socket, the event
#: loops, log files, the local model's server and its sockets
RESERVED_DESCRIPTORS = 64
#: descriptors a running turn may hold: a store connection (SQLite: database, WAL, shared memory) or a model's
DESCRIPTORS_PER_TURN_WORKER = 4
#: ``MAX_CONNECTIONS`` unset: as many as the descriptors allow, up to this
DEFAULT_MAX_CONNECTIONS = 4096
#: ``scope["state"]`` flag set when a request was cut off by ``HTTP_READ_TIMEOUT_S`` (see ``service.guard``)
READ_TIMED_OUT = "read_timed_out"


def _raw_json_response(status: int, reason: str, error: str) -> bytes:
    body = json.dumps({"error": error}).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\nconnection: close\r\n"
            f"content-length: {len(body)}\r\n\r\n")
    return head.encode("latin-1") + body


@dataclass(frozen=True)
class ConnectionLimits:
    read_timeout: float
    idle_timeout: float
    max_connections: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectionLimits:
        return cls(settings.http_read_timeout_s, settings.http_idle_timeout_s, connection_budget(settings))


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with an idle timer from the first moment, a request read deadline, a connection cap.

    ``limits`` is set by ``guarded_protocol``; ``uvicorn agent:app --http
    service.connections:GuardedH11Protocol`` reads them from the environment instead.
    """

    limits: ClassVar[ConnectionLimits | None] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if type(self).limits is None:
            type(self).limits = ConnectionLimits.from_settings(Settings.from_env())
        assert type(self).limits is not None
        self._limits: ConnectionLimits = type(self).limits
        self._read_deadline: asyncio.TimerHandle | None = None
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self._limits.max_connections:
            self._refused = True
            self.transport = transport
            logger.warning("refused a connection: %d are open (MAX_CONNECTIONS=%d)", len(self.connections),
                           self._limits.max_connections)
            error = f"too many open connections (MAX_CONNECTIONS={self._limits.max_connections})"
            transport.write(_raw_json_response(503, "Service Unavailable", error))
            transport.close()
            return
        super().connection_made(transport)
        # uvicorn arms its keep-alive timer only after a response: a connection that never speaks would stay
        self.timeout_keep_alive_task = self.loop.call_later(self._limits.idle_timeout, self.timeout_keep_alive_handler)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_read_deadline()
        if not self._refused:
            super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._read_deadline is None and self.conn.their_state is h11.IDLE:  # the first byte of a request
            self._read_deadline = self.loop.call_later(self._limits.read_timeout, self._read_timed_out)
        super().data_received(data)
        if self.conn.their_state not in (h11.IDLE, h11.SEND_BODY):  # the request is in, or the connection is done
            self._cancel_read_deadline()

    def _cancel_read_deadline(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    def _read_timed_out(self) -> None:
        self._read_deadline = None
        if self.transport.is_closing():
            return
        client = "%s:%d" % self.client if self.client else "?"
        logger.warning("closed the connection of %s: its request did not arrive within HTTP_READ_TIMEOUT_S=%g s",
                       client, self._limits.read_timeout)
        if self.cycle is not None:
            self.cycle.scope.setdefault("state", {})[READ_TIMED_OUT] = True  # type: ignore[typeddict-unknown-key]
        if self.cycle is None or not self.cycle.response_started:
            self.transport.write(_raw_json_response(
                408, "Request Timeout",
                f"the request did not arrive within {self._limits.read_timeout:g} s (HTTP_READ_TIMEOUT_S)"))
        self.transport.close()


def guarded_protocol(limits: ConnectionLimits) -> type[GuardedH11Protocol]:
    """A ``GuardedH11Protocol`` class bound to ``limits``, for uvicorn's ``http=``."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"limits": limits})


def connection_budget(settings: Settings) -> int:
    """``MAX_CONNECTIONS``, checked against the file descriptor limit; unset: what that limit allows (<= 4096).

    The soft limit is raised toward the hard one when that makes room (as Go's runtime
    and many servers do). Too few descriptors for the connections asked for is a
    ``ConfigError`` at start-up, not ``Too many open files`` under load.
    """
    reserve = RESERVED_DESCRIPTORS + DESCRIPTORS_PER_TURN_WORKER * settings.turn_workers
    wanted = (settings.max_connections or DEFAULT_MAX_CONNECTIONS) + reserve
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        raised = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
        except (ValueError, OSError):
            pass
    available = DEFAULT_MAX_CONNECTIONS if soft == resource.RLIM_INFINITY else soft - reserve
    if settings.max_connections is None:
        if available < 8:
            raise ConfigError(f"the file descriptor limit (ulimit -n) is {soft}: too low to serve with "
                              f"TURN_WORKERS={settings.turn_workers} (at least {reserve + 8} needed)")
        return min(DEFAULT_MAX_CONNECTIONS, available)
    if settings.max_connections > available:
        raise ConfigError(f"MAX_CONNECTIONS={settings.max_connections} needs {settings.max_connections + reserve} "
                          f"file descriptors with TURN_WORKERS={settings.turn_workers}; the limit (ulimit -n) is "
                          f"{soft}: lower MAX_CONNECTIONS or raise the limit")
    return settings.max_connections


def bind_host(settings: Settings) -> str:
    """``HOST``; else 127.0.0.1 with the chat page on; else the runtime's: 0.0.0.0 in a container, else 127.0.0.1.

    The page (``DEV_UI=on``, ``make run``) is for the browser of whoever started the server, so it stays on
    loopback even where the host looks like a container (``/.dockerenv``); the runtime's container, with the
    page off, keeps 0.0.0.0, where AgentCore must reach it.
    """
    if settings.host:
        return settings.host
    if settings.dev_ui:
        return "127.0.0.1"
    in_container = os.path.exists("/.dockerenv") or bool(os.environ.get("DOCKER_CONTAINER"))
    return "0.0.0.0" if in_container else "127.0.0.1"  # nosec B104 - as BedrockAgentCoreApp.run does


def check_bindable(host: str, port: int) -> None:
    """Bind (and close) a socket on ``host:port`` now, before loading a model, so a taken or bad port is one line."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as e:
        raise ConfigError(f"HOST={host!r} does not resolve to an address: {e.strerror}") from e
    try:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds it
            probe.bind(address)
    except OSError as e:
        variable = "HOST" if e.errno == errno.EADDRNOTAVAIL else "PORT"  # not an address of this machine
        raise ConfigError(f"{variable}={host if variable == 'HOST' else port} cannot be served: binding "
                          f"{host}:{port} failed: {e.strerror}") from e


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """What ``app.run`` passes to ``uvicorn.run``: the address, the guarded protocol, the idle timeout."""
    return {
        "host": bind_host(settings),
        "port": settings.port,
        "http": guarded_protocol(ConnectionLimits.from_settings(settings)),
        "timeout_keep_alive": settings.http_idle_timeout_s,
        "log_config": None,  # uvicorn's lines in our format too
    }
