"""Connections on the real server: silent, slow and surplus ones are closed; descriptors never run out.

Each test opens raw loopback sockets against ``python agent.py`` with short timeouts and stops
by itself: every wait is a bounded loop, and what is asserted is what the server did (closed
the connection, answered 408 / 503, kept serving), never how fast.
"""

from __future__ import annotations

import http.client
import json
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.http_load import LogDrain
from tests.helpers.server import SESSION_HEADER, Server

#: no test waits longer than this for the server to do something
PATIENCE = 20.0


def closed_by_server(sock: socket.socket, limit: float = PATIENCE) -> bytes | None:
    """What the server sent before closing ``sock``, or None if it was still open after ``limit`` seconds."""
    received = b""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if select.select([sock], [], [], 0.1)[0]:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                return received
            if not chunk:
                return received
            received += chunk
    return None


def status_and_body(raw: bytes) -> tuple[int, dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def answers(server: Server) -> bool:
    """/ping and a chat turn both answered, on fresh connections."""
    try:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        connection.request("GET", "/ping")
        if connection.getresponse().status != 200:
            return False
        connection.close()
        return server.invoke({"message": "still there?"}, "after", timeout=5)[0] == 200
    except (OSError, http.client.HTTPException, json.JSONDecodeError):
        return False


@pytest.fixture
def server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Server]:
    env = {"SESSION_DB": str(tmp_path / "s.db"), "HTTP_IDLE_TIMEOUT_S": str(IDLE_TIMEOUT_S), "HTTP_READ_TIMEOUT_S": "1",
           **getattr(request, "param", {})}
    server = Server(env).start()
    LogDrain(server)
    yield server
    server.stop()


#: the fixture's HTTP_IDLE_TIMEOUT_S; uvicorn's own keep-alive default is 5 s, so a close well before that is ours
IDLE_TIMEOUT_S = 0.5
UVICORN_DEFAULT_KEEP_ALIVE_S = 5.0


def assert_closed_after_the_idle_timeout(sock: socket.socket, started: float) -> None:
    """Closed by the server no sooner than HTTP_IDLE_TIMEOUT_S, and long before uvicorn's default would."""
    assert closed_by_server(sock, limit=UVICORN_DEFAULT_KEEP_ALIVE_S) == b"", "still open at uvicorn's default"
    took = time.monotonic() - started
    assert IDLE_TIMEOUT_S * 0.9 <= took < UVICORN_DEFAULT_KEEP_ALIVE_S * 0.8, took


def test_a_connection_that_never_sends_a_byte_is_closed_after_the_idle_timeout(server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        assert_closed_after_the_idle_timeout(sock, time.monotonic())


def test_a_kept_alive_connection_is_closed_after_the_idle_timeout(server: Server) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=PATIENCE)
    connection.request("GET", "/ping")
    assert connection.getresponse().read()
    assert_closed_after_the_idle_timeout(connection.sock, time.monotonic())
    connection.close()


def test_a_request_head_sent_a_byte_at_a_time_is_cut_off_with_a_408(server: Server) -> None:
    """Slowloris: a byte every 0.2 s would keep the head coming forever; the read deadline ends it."""
    trickle = b"POST /invocations HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 500
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        answer = None
        for byte in trickle:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
            if select.select([sock], [], [], 0.2)[0]:
                answer = closed_by_server(sock)
                break
        assert answer is not None, "the server kept reading the slow head"
    status, body = status_and_body(answer)
    assert status == 408 and "HTTP_READ_TIMEOUT_S" in body["error"]
    assert answers(server)


def test_a_body_sent_a_byte_at_a_time_is_cut_off_too(server: Server) -> None:
    body = json.dumps({"message": "x" * 300}).encode()
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     + f"{SESSION_HEADER}: slow\r\nContent-Length: {len(body)}\r\n\r\n".encode())
        answer = None
        for byte in body:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
            if select.select([sock], [], [], 0.2)[0]:
                answer = closed_by_server(sock)
                break
        assert answer is not None, "the server kept reading the slow body"
    assert status_and_body(answer)[0] == 408
    assert answers(server)


@pytest.mark.parametrize("server", [{"MAX_CONNECTIONS": "20", "HTTP_IDLE_TIMEOUT_S": "60"}], indirect=True)
def test_connections_beyond_max_connections_are_refused_with_a_503_and_service_resumes(server: Server) -> None:
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(20)]
    try:
        with socket.create_connection(("127.0.0.1", server.port)) as surplus:
            answer = closed_by_server(surplus)
        assert answer is not None
        status, body = status_and_body(answer)
        assert status == 503 and "MAX_CONNECTIONS=20" in body["error"]
    finally:
        for sock in idle:
            sock.close()
    deadline = time.monotonic() + PATIENCE
    while not answers(server):
        assert time.monotonic() < deadline, "the server did not serve again once connections closed"
        time.sleep(0.1)


def test_running_out_of_descriptors_no_longer_stops_service_or_floods_the_log(tmp_path: Path) -> None:
    """Under ``ulimit -n 256``, 600 connections (idle ones and slow heads) are held open by the client:
    the server keeps within its descriptors (the cap, then the timeouts close them), serves again by
    itself while the client still holds every socket, and its log stays small (it used to write
    megabytes of ``Too many open files`` tracebacks a second and serve nothing)."""
    log_path = tmp_path / "server.log"
    server = Server({"SESSION_DB": str(tmp_path / "s.db"), "TURN_WORKERS": "4", "HTTP_IDLE_TIMEOUT_S": "1",
                     "HTTP_READ_TIMEOUT_S": "1"}, log_path=log_path, max_open_files=256).start()
    held: list[socket.socket] = []
    try:
        for n in range(600):
            try:
                sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            except OSError:
                continue
            if n % 2:
                try:
                    sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\n")  # a head that never ends
                except OSError:
                    pass
            held.append(sock)
        deadline = time.monotonic() + PATIENCE
        while not answers(server):
            assert time.monotonic() < deadline, "the server did not serve again while the flood's sockets stay open"
            time.sleep(0.2)
    finally:
        for sock in held:
            sock.close()
        server.stop()
    log = log_path.read_text(errors="replace")
    assert log.count("Too many open files") <= 2
    assert len(log) < 50_000, f"{len(log)} bytes of log"


@pytest.mark.parametrize("header", [b"X-Amzn-Bedrock-AgentCore-Runtime-Session-Id: conv\x00evil",
                                    b"X-Amzn-Bedrock-AgentCore-Runtime-Custom-Actor-Id: al\x00ice"],
                         ids=["session", "actor"])
def test_a_header_with_a_nul_byte_over_a_real_socket_is_a_400_and_stores_nothing(server: Server, header: bytes) -> None:
    body = b'{"message": "hello"}'
    request = (b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" + header +
               b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(request)
        answer = closed_by_server(sock)
    assert answer is not None and answer.startswith(b"HTTP/1.1 400 "), answer
    status, listed = server.invoke({"action": "list_sessions"}, None)
    assert (status, listed["sessions"]) == (200, [])
