"""Run the real server (``python agent.py``) in a subprocess on a free loopback port, for end-to-end tests."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SESSION_HEADER = "X-Amzn-Bedrock-AgentCore-Runtime-Session-Id"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spare_port() -> dict[str, str]:
    """``PORT``/``HOST`` for a start-up test: a free loopback port, so a server the user runs on 8080 is no matter."""
    return {"PORT": str(free_port()), "HOST": "127.0.0.1"}


class Server:
    def __init__(self, env: dict[str, str], port: int | None = None, log_path: Path | None = None,
                 max_open_files: int | None = None) -> None:
        """``log_path``: keep the server's stderr (its log) in that file, for ``log()``;
        ``max_open_files``: the process's descriptor limit (``ulimit -n``), set in the child."""
        self.port = port or free_port()
        self.max_open_files = max_open_files
        # on loopback unless the test says otherwise: where the host looks like a container the default is 0.0.0.0
        self.env = {**os.environ, "PORT": str(self.port), "HOST": "127.0.0.1", "MODEL_PROVIDER": "echo", **env}
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def log(self) -> str:
        """What the server has logged so far (needs ``log_path``)."""
        assert self.log_path is not None, "Server(..., log_path=...) keeps the log"
        return self.log_path.read_text(errors="replace")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _limit_files(self) -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_NOFILE, (self.max_open_files, self.max_open_files))

    def start(self, timeout: float = 30.0) -> Server:
        stderr = self.log_path.open("ab") if self.log_path else subprocess.PIPE
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "agent.py")], env=self.env, cwd=ROOT,
            stdout=subprocess.DEVNULL, stderr=stderr, preexec_fn=self._limit_files if self.max_open_files else None,
        )
        if self.log_path:
            stderr.close()  # the child has its own copy
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                output = self.log() if self.log_path else self.process.stderr.read().decode()
                raise RuntimeError(f"server exited: {output[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/ping", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("server did not become healthy")

    def invoke(self, body: Any, session: str | None = None, headers: dict[str, str] | None = None,
               timeout: float = 30.0) -> tuple[int, Any]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}/invocations", data=data, method="POST",
                                         headers={"Content-Type": "application/json", **(headers or {})})
        if session is not None:
            request.add_header(SESSION_HEADER, session)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no flushing."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.process and self.process.stderr:
            self.process.stderr.close()


class InProcessServer:
    """``agent.app`` served by uvicorn in this process, as ``main()`` configures it (guarded connections),
    with the assistant a test built (so it can script the model); a context manager."""

    def __init__(self, assistant: Any) -> None:
        import agent
        from service.connections import uvicorn_options

        self.agent = agent
        self.assistant = assistant
        self.port = free_port()
        options = uvicorn_options(replace(assistant.settings, host="127.0.0.1", port=self.port))
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(agent.app, log_level="warning", **options))
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> InProcessServer:
        self.agent.set_assistant(self.assistant)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self.server.started, "uvicorn did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        assert self.thread is not None
        self.thread.join(30)
        self.agent.set_assistant(None)
