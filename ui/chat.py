"""The terminal chat: ``python -m ui.chat [--url http://127.0.0.1:8080] [--actor NAME] [--session ID]`` (``make chat``).

An interactive loop against a running server: the reply streams as the model writes it, a dim line
after it says what memory put in front of the model, and slash commands reach the session actions.
Ctrl-D or Ctrl-C at the prompt leaves; Ctrl-C during a reply stops it (the server then stores none of
that turn). Lines typed are kept in a readline history file between runs.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from ui.client import ID_PATTERN, AssistantClient, ServerError, new_session_id

HELP = """\
commands:
  /new              start a new session
  /sessions         list this actor's sessions (newest first)
  /open N|ID        continue session N of the last /sessions list, or the session ID
  /history          show this session's stored turns
  /summary          summarise this session
  /clear            delete this session's messages
  /actor NAME       switch to actor NAME (and a new session)
  /explain on|off   show or hide what memory did for each reply
  /search QUERY     search this actor's long-term memory (servers that have it)
  /forget           forget this actor's long-term memory (servers that have it)
  /help             this list
  /quit             leave (so do Ctrl-D and Ctrl-C)"""
DEFAULT_HISTORY_FILE = "~/.session_assistant_history"


def plural(n: int, word: str, words: str | None = None) -> str:
    return f"{n} {word if n == 1 else (words or word + 's')}"


def local_time(iso: str) -> str:
    """``2026-11-28T22:51:03Z`` as this machine's local time, to the minute."""
    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M")
    except (TypeError, ValueError):
        return str(iso)


def turn_range(turns: list[int]) -> str:
    if len(turns) > 2 and turns == list(range(turns[0], turns[-1] + 1)):
        return f"{turns[0]}-{turns[-1]}"
    return ", ".join(map(str, turns))


def memory_line(final: dict[str, Any]) -> str:
    """What memory put in front of the model for one turn, from its final event (``memory`` with explain)."""
    memory = final.get("memory")
    if not isinstance(memory, dict):
        return f"memory: {plural(final.get('history_length', 0), 'earlier turn')} loaded"
    window = memory.get("window", {}).get("turns", [])
    parts = [f"window: {'turn' if len(window) == 1 else 'turns'} {turn_range(window)}" if window
             else "window: no earlier turn"]
    summary = memory.get("summary")
    parts.append(f"summary: turns 1-{summary['through_turn']}" if summary else "summary: none")
    recalled = memory.get("long_term") or []
    if recalled:
        records = ", ".join(f"{r.get('session_id')}#{r.get('turn')} ({r.get('score', 0):.2f})" for r in recalled)
        parts.append(f"long-term: {records}")
    else:
        parts.append("long-term: none")
    return "memory: " + " · ".join(parts)


class Chat:
    """The loop: reads lines, sends messages, runs commands; everything it prints goes to ``out``."""

    def __init__(self, client: AssistantClient, out: TextIO, explain: bool = True, color: bool = False) -> None:
        self.client = client
        self.out = out
        self.explain = explain
        self.explain_supported = True
        self.color = color
        self.listed: list[str] = []  # session ids of the last /sessions, for /open N
        self.commands: dict[str, Callable[[str], None]] = {
            "new": self.new, "sessions": self.sessions, "open": self.open, "history": self.history,
            "summary": self.summary, "clear": self.clear, "actor": self.actor, "explain": self.set_explain,
            "search": self.search, "forget": self.forget, "help": self.help,
        }

    # -- output --

    def say(self, text: str = "", end: str = "\n") -> None:
        self.out.write(text + end)
        self.out.flush()

    def dim(self, text: str) -> None:
        self.say(f"\033[2m{text}\033[0m" if self.color else text)

    def fail(self, error: ServerError) -> None:
        self.say(f"! {error.describe()}")

    @property
    def prompt(self) -> str:
        return f"{self.client.actor_id}> "

    # -- the loop --

    def run(self, read: Callable[[str], str] = input) -> int:
        self.say(f"actor {self.client.actor_id}, session {self.client.session_id} on {self.client.url}")
        self.say("type a message, or /help; Ctrl-D leaves")
        while True:
            try:
                line = read(self.prompt)
            except (EOFError, KeyboardInterrupt):
                self.say()
                return 0
            line = line.strip()
            if not line:
                continue
            if line in ("/quit", "/exit"):
                return 0
            if line.startswith("/"):
                self.command(line)
            else:
                self.send(line)

    def command(self, line: str) -> None:
        name, _, argument = line[1:].partition(" ")
        handler = self.commands.get(name)
        if handler is None:
            self.say(f"unknown command /{name}; /help lists them")
            return
        try:
            handler(argument.strip())
        except ServerError as e:
            self.fail(e)

    def send(self, message: str) -> None:
        explain = self.explain and self.explain_supported
        try:
            try:
                events = self.client.stream(message, explain=explain)
                final = self.show_reply(events)
            except ServerError as e:
                if not (explain and e.is_unknown("explain")):
                    raise
                self.explain_supported = False  # an older server: ask again without it
                final = self.show_reply(self.client.stream(message))
        except ServerError as e:
            self.fail(e)
            return
        except KeyboardInterrupt:
            self.say()
            self.say("! stopped: nothing of this turn was stored")
            return
        if final is None:
            self.say("! the reply stopped before it was complete; nothing of this turn was stored")
        elif "error" in final:
            self.fail(ServerError(int(final.get("status", 500)), str(final["error"])))
        else:
            line = f"turn {final.get('message_count')}" + (" · cut at MAX_TOKENS" if final.get("truncated") else "")
            self.dim(f"  [{line} · {memory_line(final)}]" if self.explain else f"  [{line}]")

    def show_reply(self, events: Any) -> dict[str, Any] | None:
        """Print the deltas as they come; return the final object (``None`` if the stream broke off)."""
        final = None
        try:
            for event in events:
                if isinstance(event, str):
                    self.say(event, end="")
                elif isinstance(event, dict):
                    final = event
        finally:
            events.close()  # hangs up at once on Ctrl-C, so the server cancels the turn
        self.say()
        return final

    # -- commands --

    def new(self, _: str) -> None:
        self.client.session_id = new_session_id()
        self.say(f"new session {self.client.session_id}")

    def sessions(self, _: str) -> None:
        try:
            data = self.client.action("list_sessions", limit=20)
        except ServerError as e:
            if e.is_unknown("list_sessions"):
                self.say("this server cannot list sessions (no list_sessions action)")
                return
            raise
        listed = data.get("sessions") or []
        self.listed = [s["session_id"] for s in listed]
        if not listed:
            self.say(f"no stored sessions for {self.client.actor_id}")
        for n, s in enumerate(listed, 1):
            mark = "*" if s["session_id"] == self.client.session_id else " "
            first = (s.get("first_message") or "").replace("\n", " ")
            self.say(f"{mark}{n:>3}  {s['session_id']}  {plural(s.get('message_count', 0), 'message')}"
                     f"  {local_time(s.get('last_activity', ''))}  {first[:60]}")
        if data.get("next_cursor"):
            self.say("  (more sessions exist; the 20 newest are shown)")
        if listed:
            self.say("/open N continues one")

    def open(self, argument: str) -> None:
        if argument.isdigit() and 1 <= int(argument) <= len(self.listed):
            session = self.listed[int(argument) - 1]
        elif ID_PATTERN.fullmatch(argument):
            session = argument
        else:
            self.say("usage: /open N (from /sessions) or /open SESSION_ID")
            return
        self.client.session_id = session
        self.say(f"session {session}")
        self.history("")

    def history(self, _: str) -> None:
        try:
            data = self.client.action("get_history", limit=20)
        except ServerError as e:
            if e.is_unknown("get_history"):
                self.say("this server cannot read a session back (no get_history action)")
                return
            raise
        summary = data.get("summary")
        if data.get("next_before") is not None:
            self.dim(f"  ({plural(data.get('message_count', 0), 'turn')} stored; the last 20 are shown)")
        if summary:
            self.dim(f"  summary of turns 1-{summary.get('through_turn')}: {summary.get('text')}")
        turns = data.get("turns") or []
        if not turns:
            self.say("no stored turns in this session")
        for turn in turns:
            self.say(f"[{turn['turn']}] you: {turn['user']}")
            self.say(f"[{turn['turn']}] assistant: {turn['assistant']}")

    def summary(self, _: str) -> None:
        self.say(self.client.action("summarize_session").get("summary", ""))

    def clear(self, _: str) -> None:
        deleted = self.client.action("clear_session").get("deleted", 0)
        self.say(f"cleared session {self.client.session_id}: {plural(deleted, 'message')} deleted")

    def actor(self, argument: str) -> None:
        if not ID_PATTERN.fullmatch(argument) or len(argument) > 255:
            self.say("usage: /actor NAME (letters, digits, - and _)")
            return
        self.client.actor_id = argument
        self.client.session_id = new_session_id()
        self.listed = []
        self.say(f"actor {argument}, new session {self.client.session_id}")

    def set_explain(self, argument: str) -> None:
        if argument not in ("on", "off"):
            self.say(f"usage: /explain on|off (now {'on' if self.explain else 'off'})")
            return
        self.explain = argument == "on"
        self.say(f"explain {argument}")

    def search(self, query: str) -> None:
        if not query:
            self.say("usage: /search QUERY")
            return
        try:
            memories = self.client.action("search_memory", query=query, top_k=5).get("memories") or []
        except ServerError as e:
            if e.is_unknown("search_memory"):
                self.say("this server has no long-term memory (no search_memory action)")
                return
            raise
        if not memories:
            self.say("nothing found")
        for m in memories:
            self.say(f"- {m.get('text')}")
            self.dim(f"  session {m.get('session_id')} · {m.get('created_at')} · score {m.get('score')}")

    def forget(self, _: str) -> None:
        try:
            deleted = self.client.action("forget").get("deleted", 0)
        except ServerError as e:
            if e.is_unknown("forget"):
                self.say("this server has no long-term memory (no forget action)")
                return
            raise
        self.say(f"forgot {plural(deleted, 'memory', 'memories')}")

    def help(self, _: str) -> None:
        self.say(HELP)


def use_readline(history_file: Path) -> None:
    """Line editing and a history kept between runs (where Python has ``readline``)."""
    try:
        import readline
    except ImportError:  # e.g. Windows without pyreadline: input() still works
        return
    import atexit

    readline.set_history_length(1000)
    try:
        readline.read_history_file(history_file)
    except (FileNotFoundError, PermissionError, OSError):
        pass

    def save() -> None:
        try:
            readline.write_history_file(history_file)
        except OSError:
            pass

    atexit.register(save)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ui.chat", description="Chat with a running session assistant.")
    parser.add_argument("--url", default=os.environ.get("ASSISTANT_URL", "http://127.0.0.1:8080"),
                        help="the server (default: $ASSISTANT_URL, else http://127.0.0.1:8080)")
    parser.add_argument("--actor", default="default_user", help="who you are (default: default_user)")
    parser.add_argument("--session", help="continue this session (default: a new one)")
    parser.add_argument("--no-explain", dest="explain", action="store_false",
                        help="do not show what memory did for each reply (/explain on|off switches)")
    parser.add_argument("--history-file", default=DEFAULT_HISTORY_FILE,
                        help=f"readline history of the lines you type (default: {DEFAULT_HISTORY_FILE})")
    args = parser.parse_args(argv)
    for name in ("actor", "session"):
        value = getattr(args, name)
        if value is not None and not ID_PATTERN.fullmatch(value):
            parser.error(f"--{name} {value!r}: use letters, digits, - and _ (starting with a letter or digit)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Ctrl-C stops a reply or leaves, also when started by something that ignores SIGINT (a shell's
    # background job passes that on, and Python then never raises KeyboardInterrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    client = AssistantClient(args.url, args.actor, args.session or new_session_id())
    try:
        client.ping()
    except ServerError as e:
        print(f"{e.describe()}\nIs the server running? `make run` serves it on http://127.0.0.1:8080", file=sys.stderr)
        return 1
    use_readline(Path(args.history_file).expanduser())
    color = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    try:
        return Chat(client, sys.stdout, explain=args.explain, color=color).run()
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())
