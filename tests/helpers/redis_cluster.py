"""A real Redis Cluster for tests: three masters on free loopback ports, no replicas, stopped by pid.

``redis-server --cluster-enabled yes`` x 3, then ``redis-cli --cluster create ... --cluster-yes``,
then wait for ``cluster_state:ok`` on every node. ``cluster-require-full-coverage no``: with a
master down, the slots of the other masters keep serving (what the node-down test checks).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import redis
import redis.cluster

from tests.helpers.redis_server import RedisServer
from tests.helpers.server import free_port
from tests.helpers.dynamodb_local import MissingTool


class ClusterNode(RedisServer):
    """One master: its nodes-<port>.conf and append-only file in its own directory, so it can restart."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        super().__init__(directory, port, appendonly=True)
        self.bus_port = free_port()  # (the default, port + 10000, may be past 65535 or taken)
        self.options = ["--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{self.port}.conf",
                        "--cluster-port", str(self.bus_port),
                        "--cluster-node-timeout", "2000", "--cluster-require-full-coverage", "no"]

    def restart(self) -> ClusterNode:
        """A new process on the same port and directory: it rejoins with its id, slots and data."""
        self.start()
        return self


class RedisCluster:
    def __init__(self, directory: Path, masters: int = 3) -> None:
        self.directory = directory
        self.nodes = [ClusterNode(directory / f"node{i}") for i in range(masters)]

    @property
    def url(self) -> str:
        """Any node's URL: redis-py's ``RedisCluster`` discovers the others from it."""
        return f"redis://127.0.0.1:{self.nodes[0].port}"

    def start(self, timeout: float = 30.0) -> RedisCluster:
        cli = shutil.which("redis-cli")
        if shutil.which("redis-server") is None or cli is None:
            raise MissingTool("redis-server / redis-cli are not installed (apt-get install -y redis-server; "
                              ".ci/run does this)")
        try:
            for node in self.nodes:
                node.start()
            subprocess.run([cli, "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self.nodes),
                            "--cluster-replicas", "0", "--cluster-yes"],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout)
            self.wait_ok(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ok(self, timeout: float = 30.0, nodes: list[ClusterNode] | None = None) -> None:
        """Until every node (of ``nodes``) reports ``cluster_state:ok`` and agrees on the slot map."""
        deadline = time.monotonic() + timeout
        while True:
            if all(self._ok(node) for node in (nodes or self.nodes)):
                return
            if time.monotonic() > deadline:
                raise RuntimeError("the Redis Cluster did not reach cluster_state:ok")
            time.sleep(0.1)

    @staticmethod
    def _ok(node: ClusterNode) -> bool:
        try:
            client = redis.Redis(port=node.port, socket_timeout=1)
            try:
                info = client.cluster("info")
                slots = client.cluster("slots")
            finally:
                client.close()
        except redis.RedisError:
            return False
        covered = sum(int(s[1]) - int(s[0]) + 1 for s in slots) if isinstance(slots, list) else 16384
        return info.get("cluster_state") == "ok" and covered == 16384

    def node_of(self, key: str) -> ClusterNode:
        """The master that owns ``key``'s slot."""
        client = redis.Redis(port=self.nodes[0].port)
        try:
            slot = client.cluster("keyslot", key)
            for start, end, master, *_ in client.cluster("slots"):
                if int(start) <= slot <= int(end):
                    port = int(master[1])
                    return next(n for n in self.nodes if n.port == port)
        finally:
            client.close()
        raise LookupError(f"no node owns the slot of {key!r}")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def delete_cluster_prefix(url: str, prefix: str) -> None:
    """Delete every key under ``prefix`` on every master (one ``DEL`` per key: keys live in many slots)."""
    client = redis.cluster.RedisCluster.from_url(url)
    try:
        for key in list(client.scan_iter(match=f"{prefix}*", count=1000)):
            client.delete(key)
    finally:
        client.close()
