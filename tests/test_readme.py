"""The README's walk-through, replayed top to bottom against the real server: what it shows is what you get.

Every ``$ curl`` and ``$ .venv/bin/agentcore invoke --dev`` line of the README's console blocks is run in
order, against one fresh server, and its printed answer is compared with the README's: every field but
the model's own words (``response``) and the clock (``time_of_last_update``) must be exactly what the
README shows. The echo model answers, so the test does not depend on what a language model writes.
"""

from __future__ import annotations

import json
import re
import shlex
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.server import Server
from tests.test_agentcore_cli import agentcore_invoke, printed_reply

ROOT = Path(__file__).resolve().parent.parent
UNCHECKED = {"response", "time_of_last_update", "memory"}  # the model's words, the clock, record ids and scores


def console_commands(markdown: str) -> list[tuple[str, str]]:
    """(command, what the README prints after it) for every ``$ `` line of the ```console blocks."""
    commands: list[tuple[str, str]] = []
    for block in re.findall(r"```console\n(.*?)```", markdown, re.DOTALL):
        for chunk in re.split(r"^\$ ", block, flags=re.MULTILINE)[1:]:
            command, _, output = chunk.partition("\n")
            commands.append((command.split("  #")[0].strip(), output.strip()))
    return commands


def shown_fields(output: str) -> dict[str, Any]:
    """The JSON fields the README shows: a whole JSON line, or the ``"key": value`` pairs of an excerpt."""
    for line in output.splitlines():
        if line.startswith("{") and line.endswith("}"):
            try:
                return json.loads(line)
            except ValueError:
                pass
    text = " ".join(output.split())
    return {key: json.loads(value) for key, value in
            re.findall(r'"(\w+)": ("[^"]*"|-?\d+|true|false|null)', text)}


def post(url: str, headers: dict[str, str], data: str | None) -> dict[str, Any]:
    request = urllib.request.Request(url, data=data.encode() if data is not None else None,
                                     headers=headers, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return json.loads(reply.read())
    except urllib.error.HTTPError as e:
        return json.loads(e.read())


def run_curl(command: str, variables: dict[str, str], port: int) -> dict[str, Any]:
    for name, value in variables.items():
        command = command.replace(f'"${name}"', shlex.quote(value))
    words = shlex.split(command)
    assert words[0] == "curl", command
    headers: dict[str, str] = {}
    data = None
    url = ""
    words = words[1:]
    while words:
        word = words.pop(0)
        if word == "-H":
            name, _, value = words.pop(0).partition(":")
            headers[name.strip()] = value.strip()
        elif word == "-d":
            data = words.pop(0)
        elif not word.startswith("-"):
            url = word
    assert url.startswith("localhost:8080/"), f"the README talks to the server of `make run`: {url}"
    return post(f"http://127.0.0.1:{port}/{url.split('/', 1)[1]}", headers, data)


def run_agentcore(command: str, port: int, cwd: Path) -> dict[str, Any]:
    words = shlex.split(command)
    assert words[:3] == [".venv/bin/agentcore", "invoke", "--dev"], command
    session = words[words.index("--session-id") + 1]
    return printed_reply(agentcore_invoke(words[3], session, port, cwd))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = Server({"SESSION_DB": str(tmp_path / "sessions.db")}).start()
    yield s
    s.stop()


def test_the_readme_walk_through_is_what_the_server_answers(server: Server, tmp_path: Path) -> None:
    commands = console_commands((ROOT / "README.md").read_text())
    variables: dict[str, str] = {}
    checked = 0
    for command, output in commands:
        if command.startswith("export "):
            continue
        if re.fullmatch(r"\w+='[^']*'", command):
            name, _, value = command.partition("=")
            variables[name] = value.strip("'")
            continue
        if command.startswith("curl "):
            answer = run_curl(command, variables, server.port)
        elif command.startswith(".venv/bin/agentcore "):
            answer = run_agentcore(command, server.port, tmp_path)
        else:
            pytest.fail(f"the README shows a command this test does not know how to replay: {command}")
        shown = shown_fields(output)
        assert shown, f"the README shows no answer for: {command}"
        for key, value in shown.items():
            assert key in answer, f"{command}: the README shows {key!r}, the server did not answer it: {answer}"
            if key not in UNCHECKED:
                assert answer[key] == value, f"{command}: README says {key}={value!r}, server said {answer[key]!r}"
        checked += 1
    assert checked >= 11  # the walk-through was found and replayed
