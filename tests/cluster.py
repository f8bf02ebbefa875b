"""A real Ray cluster on loopback for fault tests: `ray start --head`, nodes added and killed at will, all stopped.

    with LocalCluster(head_cpus=2) as cluster:
        node = cluster.add_node(cpus=1, gpus=1)     # a `ray start` node declaring one logical GPU
        env = cluster.client_env()                  # RAY_ADDRESS etc. for a driver run as a subprocess
        cluster.wait_for_actor(node)                # until some actor runs there
        cluster.kill_node(node)                     # SIGKILL its raylet, workers and agents: a lost spot node

Each node is a `ray start --block` process in its own session; killing a node kills that process tree by pid
(never by name), as a machine that vanishes would. The GCS is told to notice a dead node within a few
seconds (not Ray's default ~30 s), so fault tests stay short.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass

import psutil
from helpers import free_port

RAY = os.path.join(os.path.dirname(sys.executable), "ray")


def wait_for(check, what: str, timeout_s: float = 120.0, every_s: float = 0.5):
    """Poll `check()` until it returns something true; that value, or TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except OSError:
            pass
        time.sleep(every_s)
    raise TimeoutError(f"cluster: {what} not ready after {timeout_s:.0f} s")


@dataclass
class Node:
    """One `ray start` process and the Ray node it became."""

    process: subprocess.Popen
    node_id: str = ""
    cpus: float = 0
    gpus: float = 0


class LocalCluster:
    """A head node (no GPU unless asked) plus nodes added with their own CPUs/GPUs; `stop()` ends them all."""

    def __init__(self, head_cpus: float = 2, head_gpus: float = 0, env: dict | None = None):
        self.temp_dir = f"/tmp/i2a-ray-{os.getpid()}-{free_port()}"  # short: Ray's unix sockets live under it
        self.port, self.dashboard_port = free_port(), free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.dashboard = f"http://127.0.0.1:{self.dashboard_port}"
        # Token auth would need the token on every node and client; a loopback test cluster does without.
        self.env = {**(env if env is not None else os.environ), "RAY_AUTH_MODE": "disabled",
                    "RAY_USAGE_STATS_ENABLED": "0",
                    # A killed node (its port refuses at once) is declared dead after ~5 s, not Ray's ~30 s; a
                    # live one slowed by a busy machine still has 5 checks of 5 s each to answer.
                    "RAY_health_check_initial_delay_ms": "1000", "RAY_health_check_period_ms": "1000",
                    "RAY_health_check_timeout_ms": "5000", "RAY_health_check_failure_threshold": "5"}
        self.env.pop("RAY_ADDRESS", None)
        self.head_cpus, self.head_gpus = head_cpus, head_gpus
        self.nodes: list[Node] = []

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def client_env(self, base: dict | None = None) -> dict:
        """Environment for a driver (a subprocess) that joins this cluster."""
        env = {**(base if base is not None else self.env), "RAY_ADDRESS": self.address,
               "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
        return env

    def _ray_start(self, *args: str) -> subprocess.Popen:
        # The nodes share this host with other Rays: the agent's fixed default ports would collide.
        own_ports = [f"--dashboard-agent-listen-port={free_port()}", f"--metrics-export-port={free_port()}"]
        return subprocess.Popen([RAY, "start", *args, *own_ports, "--block", "--disable-usage-stats"],
                                env=self.env, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def start(self) -> LocalCluster:
        head = self._ray_start("--head", f"--port={self.port}", f"--dashboard-port={self.dashboard_port}",
                               "--dashboard-host=127.0.0.1", f"--num-cpus={self.head_cpus:g}",
                               f"--num-gpus={self.head_gpus:g}", f"--temp-dir={self.temp_dir}")
        self.nodes.append(Node(head, cpus=self.head_cpus, gpus=self.head_gpus))
        try:
            nodes = wait_for(self.alive_nodes, "head node")
            self.nodes[0].node_id = nodes[0]["node_id"]
        except BaseException:
            self.stop()
            raise
        return self

    def add_node(self, cpus: float = 1, gpus: float = 0, timeout_s: float = 120.0) -> Node:
        """Start one more `ray start` node with these logical CPUs/GPUs; returns once the GCS lists it alive."""
        known = {node["node_id"] for node in self.alive_nodes()}
        process = self._ray_start(f"--address={self.address}", f"--num-cpus={cpus:g}", f"--num-gpus={gpus:g}")
        node = Node(process, cpus=cpus, gpus=gpus)
        self.nodes.append(node)
        added = wait_for(lambda: [n for n in self.alive_nodes() if n["node_id"] not in known],
                         f"node with {cpus:g} CPUs and {gpus:g} GPUs", timeout_s)
        node.node_id = added[0]["node_id"]
        return node

    def kill_node(self, node: Node, timeout_s: float = 60.0) -> None:
        """SIGKILL the node's whole process tree (raylet, workers, agents), then wait until the GCS sees it dead."""
        _kill_tree(node.process.pid)
        node.process.wait(timeout=10)
        wait_for(lambda: node.node_id not in {n["node_id"] for n in self.alive_nodes()},
                 f"death of node {node.node_id[:8]}", timeout_s)

    def alive_nodes(self) -> list[dict]:
        return [n for n in self._state("nodes") if n["state"] == "ALIVE"]

    def alive_actors(self, node: Node | None = None) -> list[dict]:
        """Actors alive now (on `node` only, when given), as the dashboard's state API lists them."""
        return [a for a in self._state("actors") if a["state"] == "ALIVE"
                and (node is None or a.get("node_id") == node.node_id)]

    def wait_for_actor(self, node: Node, timeout_s: float = 120.0) -> dict:
        return wait_for(lambda: self.alive_actors(node), f"an actor on node {node.node_id[:8]}", timeout_s)[0]

    def _state(self, kind: str) -> list[dict]:
        with urllib.request.urlopen(f"{self.dashboard}/api/v0/{kind}?limit=1000", timeout=10) as response:
            return json.load(response)["data"]["result"]["result"]

    def stop(self) -> None:
        """Stop every node (the head last), then remove the temp dir. Processes left behind are killed by pid."""
        for node in reversed(self.nodes):  # `ray start --block` stops its node's processes on SIGTERM
            if node.process.poll() is None:
                leftovers = _tree(node.process.pid)
                try:
                    os.killpg(node.process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
                try:
                    node.process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
                # Workers outlive their raylet for a moment; what this node started is still ours to end.
                for process in leftovers:
                    _kill(process)
        self.nodes = []
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _kill(process: psutil.Process) -> None:
    try:
        process.kill()
    except psutil.NoSuchProcess:
        pass


def _kill_tree(pid: int) -> None:
    # Children first, and the listing taken before any dies, so that no orphan is re-parented away unseen.
    processes = _tree(pid)
    for process in reversed(processes):
        _kill(process)
