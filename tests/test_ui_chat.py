"""The terminal chat (``python -m ui.chat``), driven through a pseudo-terminal against the real server.

The server runs the echo model (``You said '<message>'``, streamed a word per delta), so what the
terminal prints can be asserted exactly.
"""

from __future__ import annotations

import os
import re
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from tests.helpers.busy_session import busy_capable_server, busy_session
from tests.helpers.longterm_server import eventually
from tests.helpers.server import ROOT, Server, free_port

WAIT_S = 30  # the longest one step may take on a busy machine; no assertion is about time
SESSION = re.compile(r"session ([A-Za-z0-9][A-Za-z0-9_-]*)")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server({"SESSION_DB": str(tmp_path_factory.mktemp("chat") / "sessions.db")}).start()
    yield server
    server.stop()


class Terminal:
    """``python -m ui.chat`` in a pseudo-terminal."""

    def __init__(self, url: str, actor: str, history_file: Path, *args: str) -> None:
        env = {**os.environ, "NO_COLOR": "1", "TERM": "xterm", "PYTHONUNBUFFERED": "1"}
        self.actor = actor
        self.child = pexpect.spawn(
            sys.executable, ["-m", "ui.chat", "--url", url, "--actor", actor, "--history-file", str(history_file),
                             *args],
            cwd=str(ROOT), env=env, encoding="utf-8", timeout=WAIT_S, dimensions=(40, 200),
        )

    def started(self) -> str:
        """Wait for the first prompt; the session the chat opened."""
        self.child.expect(SESSION)
        session = self.child.match.group(1)
        self.prompt()
        return session

    def prompt(self) -> None:
        self.child.expect_exact(f"{self.actor}> ")

    def say(self, line: str) -> str:
        """Type ``line`` and Enter; everything printed up to the next prompt."""
        self.child.sendline(line)
        self.prompt()
        return self.child.before

    def close(self) -> None:
        if self.child.isalive():
            self.child.terminate(force=True)


@pytest.fixture
def terminal(server: Server, tmp_path: Path) -> Iterator[Terminal]:
    term = Terminal(server.url, f"t-{uuid.uuid4().hex[:10]}", tmp_path / "history")
    yield term
    term.close()


def test_replies_stream_into_one_session_with_what_memory_did(terminal: Terminal, server: Server) -> None:
    session = terminal.started()
    first = terminal.say("hello terminal")
    assert "You said 'hello terminal'" in first
    assert "[turn 1 · memory: window: no earlier turn · summary: none · long-term: none]" in first
    second = terminal.say("and again")
    assert "You said 'and again'" in second
    assert "[turn 2 · memory: window: turn 1 · summary: none · long-term: none]" in second
    status, body = server.invoke({"message": "third", "actor_id": terminal.actor, "session_id": session})
    assert (body["message_count"], body["history_length"]) == (3, 2)


def test_the_commands_start_summarise_clear_and_switch(terminal: Terminal, server: Server) -> None:
    first = terminal.started()
    terminal.say("my door is blue")
    assert "my door is blue" in terminal.say("/summary")  # the echo model repeats what it summarises
    assert f"cleared session {first}: 1 message deleted" in terminal.say("/clear")
    new = SESSION.search(terminal.say("/new"))
    assert new and new.group(1) != first
    assert "[turn 1 · memory:" in terminal.say("fresh start")
    assert "explain off" in terminal.say("/explain off")
    reply = terminal.say("quietly")
    assert "[turn 2]" in reply and "memory:" not in reply
    assert "usage: /explain on|off (now off)" in terminal.say("/explain maybe")
    assert "unknown command /nope; /help lists them" in terminal.say("/nope")
    assert "/sessions" in terminal.say("/help")
    terminal.child.sendline("/actor bob-" + terminal.actor)
    terminal.actor = "bob-" + terminal.actor
    terminal.prompt()
    assert "[turn 1]" in terminal.say("who is this")
    assert "usage: /actor NAME" in terminal.say("/actor not a name")


def test_sessions_and_history_bring_a_conversation_back(server: Server, tmp_path: Path) -> None:
    actor, history = f"b-{uuid.uuid4().hex[:10]}", tmp_path / "history"
    first = Terminal(server.url, actor, history)
    try:
        session = first.started()
        first.say("my flight is on Friday")
        first.say("and it leaves at nine")
        first.child.sendline("/quit")
        first.child.expect(pexpect.EOF)
    finally:
        first.close()
    again = Terminal(server.url, actor, history)  # a new run: a new, empty session
    try:
        assert again.started() != session
        listed = again.say("/sessions")
        assert re.search(rf"1  {session}  2 messages  \d{{4}}-\d\d-\d\d \d\d:\d\d  my flight is on Friday", listed)
        opened = again.say("/open 1")
        assert f"session {session}" in opened
        assert "[1] you: my flight is on Friday" in opened and "[2] assistant: You said 'and it leaves at nine'" in opened
        assert "[turn 3 · memory: window: turns 1, 2 ·" in again.say("when do I leave?")
        assert "[3] you: when do I leave?" in again.say("/history")
    finally:
        again.close()


def test_ctrl_d_leaves_cleanly(terminal: Terminal) -> None:
    terminal.started()
    terminal.child.sendeof()
    terminal.child.expect(pexpect.EOF)
    terminal.child.close()
    assert terminal.child.exitstatus == 0
    assert "Traceback" not in terminal.child.before


def test_ctrl_c_at_the_prompt_leaves_cleanly(terminal: Terminal) -> None:
    terminal.started()
    terminal.child.sendintr()
    terminal.child.expect(pexpect.EOF)
    terminal.child.close()
    assert terminal.child.exitstatus == 0
    assert "Traceback" not in terminal.child.before


def test_typed_lines_are_kept_for_the_next_run(server: Server, tmp_path: Path) -> None:
    actor, history = f"h-{uuid.uuid4().hex[:10]}", tmp_path / "history"
    first = Terminal(server.url, actor, history)
    try:
        first.started()
        first.say("a line worth repeating")
        first.child.sendeof()
        first.child.expect(pexpect.EOF)
    finally:
        first.close()
    again = Terminal(server.url, actor, history)
    try:
        again.started()
        again.child.send("\x1b[A")  # Up: the previous run's line
        again.child.send("\r")
        again.child.expect_exact("You said 'a line worth repeating'")
    finally:
        again.close()


def test_without_a_server_it_says_how_to_start_one(tmp_path: Path) -> None:
    term = Terminal(f"http://127.0.0.1:{free_port()}", "nobody", tmp_path / "history")
    term.child.expect(pexpect.EOF)
    term.child.close()
    assert term.child.exitstatus == 1
    assert "cannot reach the server" in term.child.before and "make run" in term.child.before
    assert "Traceback" not in term.child.before


def test_a_busy_session_says_when_to_retry(tmp_path: Path) -> None:
    with busy_capable_server(tmp_path) as (server, redis):
        term = Terminal(server.url, "busy", tmp_path / "history", "--session", "held")
        try:
            term.started()
            with busy_session(server, redis, "busy", "held"):
                output = term.say("are you free")
                assert re.search(r"! this session is busy \(another turn of it is running\); try again in \d+ s",
                                 output)
            assert "You said 'are you free'" in term.say("are you free")
        finally:
            term.close()


def test_ctrl_c_during_a_reply_stops_it_and_stores_nothing(tmp_path: Path) -> None:
    """The reply is held up by a frozen store; Ctrl-C hangs up, and the server then stores none of the turn."""
    with busy_capable_server(tmp_path, {"SESSION_QUEUE_MAX": "8"}) as (server, redis):
        term = Terminal(server.url, "stopper", tmp_path / "history", "--session", "s1")
        try:
            term.started()
            redis.freeze()
            try:
                term.child.sendline("never mind")
                term.child.expect_exact("never mind")  # the echo of the typed line: the request is on its way
                time.sleep(1)  # for it to reach the server (were it late, the turn would not be stored either)
                term.child.sendintr()
                term.child.expect_exact("! stopped: nothing of this turn was stored")
                term.prompt()
                # the server cancels the turn when it sees the hang-up; the store thawed before that (a loaded
                # machine delays the server's event loop) would let the turn finish first, a race of the test's
                assert eventually(lambda: "client disconnected mid-stream" in server.log(), 30), server.log()
            finally:
                redis.thaw()
            output = term.say("the real first message")
            assert "[turn 1 · memory:" in output, (output, server.log()[-6000:])  # the server's side of the race
        finally:
            term.close()
