"""Drives one compose project of docker-compose.yml (the repository's 3-node cluster):
up on free loopback host ports, the containers behind its services, kill/start,
network disconnect/reconnect, logs, and `down -v`. Works with the Compose v2 plugin
(`docker compose`) and the python Compose v1 (`docker-compose`)."""

import functools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import requests

# The port picker is shared with the python suite (tests/python/ports.py).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
from ports import free_ports  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
NODES = ("node1", "node2", "node3")
PEER_PORT = 6335
COMMAND_TIMEOUT_S = 180
FORM_TIMEOUT_S = 90


@functools.cache
def compose_command() -> list[str]:
    """`docker compose` when the plugin answers, else `docker-compose`."""
    for cmd in (["docker", "compose"], ["docker-compose"]):
        try:
            done = subprocess.run([*cmd, "version"], capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0:
            return cmd
    raise RuntimeError("neither `docker compose` nor `docker-compose` works")




def run(args: list[str], timeout: float = COMMAND_TIMEOUT_S, check: bool = True, env=None) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} -> {done.returncode}\n{done.stdout}\n{done.stderr}")
    return done.stdout


class ComposeCluster:
    """One project of docker-compose.yml: its own containers, network and volumes."""

    def __init__(self, project: str):
        self.project = project
        ports = free_ports(2 * len(NODES))
        self.http_ports = dict(zip(NODES, ports[: len(NODES)]))
        self.grpc_ports = dict(zip(NODES, ports[len(NODES) :]))
        self.peer_ids: dict[str, int] = {}
        self.started = False

    # ------------------------------------------------------------ compose

    def env(self) -> dict:
        env = dict(os.environ)
        env["SHOAL_PUBLISH_HOST"] = "127.0.0.1"
        env.setdefault("SHOAL_IMAGE", "shoal:local")
        for node in NODES:
            env[f"SHOAL_{node.upper()}_HTTP_PORT"] = str(self.http_ports[node])
            env[f"SHOAL_{node.upper()}_GRPC_PORT"] = str(self.grpc_ports[node])
        return env

    def compose(self, *args: str, timeout: float = COMMAND_TIMEOUT_S, check: bool = True) -> str:
        cmd = [*compose_command(), "-f", str(COMPOSE_FILE), "-p", self.project, *args]
        return run(cmd, timeout=timeout, check=check, env=self.env())

    def up(self) -> None:
        """Starts the three nodes (node2 and node3 once node1 is healthy) and waits until
        every node sees all three peers as voters under one leader."""
        self.started = True
        self.compose("up", "-d")
        self.wait_formed()

    def down(self) -> None:
        """Removes containers, network and volumes (bounded; never raises)."""
        if self.started:
            self.compose("down", "-v", "--remove-orphans", "-t", "5", check=False)
            self.started = False

    def logs(self, tail: int = 80) -> str:
        try:
            return self.compose("logs", "--no-color", "--tail", str(tail), timeout=60, check=False)
        except subprocess.TimeoutExpired:
            return "(compose logs timed out)"

    # ------------------------------------------------------------ containers

    def container(self, node: str) -> str:
        """The container of service `node`, running or not (found by compose's labels,
        the same with Compose v1 and v2)."""
        out = run([
            "docker", "ps", "-a", "-q",
            "--filter", f"label=com.docker.compose.project={self.project}",
            "--filter", f"label=com.docker.compose.service={node}",
        ])
        ids = out.split()
        assert len(ids) == 1, f"{self.project}: containers of {node}: {ids}"
        return ids[0]

    def network(self) -> str:
        """The project's network (the one docker-compose.yml calls `shoal`)."""
        info = json.loads(run(["docker", "inspect", self.container("node1")]))[0]
        names = [n for n in info["NetworkSettings"]["Networks"] if n.endswith("shoal")]
        assert len(names) == 1, f"networks of node1: {list(info['NetworkSettings']['Networks'])}"
        return names[0]

    def kill(self, node: str) -> None:
        run(["docker", "kill", self.container(node)])

    def start(self, node: str) -> None:
        """Starts a stopped node again and waits for its health check."""
        run(["docker", "start", self.container(node)])
        self.wait_healthy(node)

    def disconnect(self, node: str) -> None:
        run(["docker", "network", "disconnect", self.network(), self.container(node)])

    def reconnect(self, node: str) -> None:
        # The service name is a network alias that a disconnect drops: give it back, or
        # the other peers could not resolve `nodeN` any more.
        run(["docker", "network", "connect", "--alias", node, self.network(), self.container(node)])

    def health(self, node: str) -> str:
        out = run(["docker", "inspect", "-f", "{{.State.Status}} {{.State.Health.Status}}", self.container(node)])
        return out.strip()

    def wait_healthy(self, node: str, timeout: float = FORM_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = self.health(node)
            if state == "running healthy":
                return
            time.sleep(0.5)
        raise AssertionError(f"{node} not healthy within {timeout:.0f}s: {state}\n{self.logs()}")

    # ------------------------------------------------------------ REST

    def url(self, node: str) -> str:
        return f"http://127.0.0.1:{self.http_ports[node]}"

    def cluster_status(self, node: str) -> dict:
        r = requests.get(self.url(node) + "/cluster", timeout=5)
        r.raise_for_status()
        return r.json()["result"]

    def formed(self) -> tuple[bool, object]:
        """(True, leader) when every node answers /cluster with the same three peers, all
        voters, and the same known leader; else (False, what was seen)."""
        seen = {}
        try:
            for node in NODES:
                seen[node] = self.cluster_status(node)
        except (requests.RequestException, ValueError, KeyError) as e:
            return False, f"{e!r}; so far {seen}"
        peer_sets = {frozenset(s["peers"]) for s in seen.values()}
        leaders = {s["raft_info"]["leader"] for s in seen.values()}
        ok = (
            len(peer_sets) == 1
            and len(next(iter(peer_sets))) == len(NODES)
            and len(leaders) == 1
            and None not in leaders
            and all(s["raft_info"]["is_voter"] for s in seen.values())
            and all(s["status"] == "enabled" for s in seen.values())
        )
        if ok:
            self.peer_ids = {node: s["peer_id"] for node, s in seen.items()}
            return True, leaders.pop()
        return False, seen

    def wait_formed(self, timeout: float = FORM_TIMEOUT_S):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            ok, last = self.formed()
            if ok:
                return last
            time.sleep(0.5)
        raise AssertionError(
            f"{self.project}: cluster not formed within {timeout:.0f}s: {last}\n{self.logs()}"
        )

    def node_of_peer(self, peer_id: int) -> str:
        for node, pid in self.peer_ids.items():
            if pid == peer_id:
                return node
        raise KeyError(peer_id)
