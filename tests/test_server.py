"""The real process: ``python agent.py`` serving HTTP, memory kept across restarts (SQLite default)."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.server import Server


def test_memory_survives_a_restart_and_a_kill(tmp_path: Path) -> None:
    env = {"SESSION_DB": str(tmp_path / "sessions.db")}  # MEMORY_BACKEND unset: the sqlite default
    server = Server(env).start()
    try:
        assert server.invoke({"message": "Hello"}, "conv1") == (200, {
            "response": "You said 'Hello'", "session_id": "conv1", "actor_id": "default_user",
            "message_count": 1, "history_length": 0, "memories_used": 0,  # long-term memory: on by default
        })
        server.stop()
        server = Server(env).start()
        status, body = server.invoke({"message": "Again"}, "conv1")
        assert (status, body["message_count"], body["history_length"]) == (200, 2, 1)
        server.kill()
        server = Server(env).start()
        status, body = server.invoke({"message": "Once more"}, "conv1")
        assert (status, body["message_count"], body["history_length"]) == (200, 3, 2)
        status, body = server.invoke({"message": "Hello"}, "conv2")
        assert (status, body["message_count"]) == (200, 1)
    finally:
        server.stop()


def test_bad_input_over_the_wire_is_a_json_400(tmp_path: Path) -> None:
    server = Server({"SESSION_DB": str(tmp_path / "s.db")}).start()
    try:
        assert server.invoke(b"{not json", "conv1")[0] == 400
        status, body = server.invoke({"message": "hi"}, "bad:id")
        assert status == 400 and "session id" in body["error"]
    finally:
        server.stop()


def test_host_setting_binds_the_server_to_that_address(tmp_path: Path) -> None:
    server = Server({"SESSION_DB": str(tmp_path / "s.db"), "HOST": "127.0.0.1"}).start()
    try:
        listening = Path("/proc/net/tcp").read_text().splitlines()[1:]
        port_hex = f"{server.port:04X}"
        local = [line.split()[1] for line in listening if line.split()[1].endswith(f":{port_hex}")
                 and line.split()[3] == "0A"]  # 0A: LISTEN
        assert local == ["0100007F:" + port_hex]  # 127.0.0.1 only, not 0.0.0.0
    finally:
        server.stop()
