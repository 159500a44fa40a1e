"""Starts real shoal processes for the qdrant-client compatibility suite.

Each test module gets one node (`node`, `client`, `base_url`); tests that kill
and restart a node ask for their own (`fresh_node`). A node runs on free
127.0.0.1 ports with its own storage, snapshot and temp dirs, and its
stdout/stderr go to a log file that is attached to the report of any failing
test that used it.
"""

import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import requests
from qdrant_client import QdrantClient

from ports import free_ports

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
CLIENT_TIMEOUT_S = 10


def shoal_bin() -> str:
    path = os.environ.get("SHOAL_BIN") or str(REPO_ROOT / "target" / "debug" / "shoal")
    if not os.path.isabs(path):
        path = str(REPO_ROOT / path)
    return path




class ShoalNode:
    """One shoal process with its own dirs; can be killed and restarted on the same dirs and ports."""

    def __init__(self, root: Path, extra_env: dict | None = None, args: list | None = None):
        self.root = Path(root)
        # Extra QDRANT__* settings and command-line arguments for this node (optional).
        self.extra_env = dict(extra_env or {})
        self.args = list(args or [])
        self.storage = self.root / "storage"
        self.snapshots = self.root / "snapshots"
        self.temp = self.root / "temp"
        self.workdir = self.root / "work"
        for d in (self.storage, self.snapshots, self.temp, self.workdir):
            d.mkdir(parents=True, exist_ok=True)
        self.log_path = self.root / "shoal.log"
        self.http_port, self.grpc_port, self.p2p_port = free_ports(3)
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def env(self) -> dict:
        env = dict(os.environ)
        env.update(
            {
                "QDRANT__SERVICE__HOST": "127.0.0.1",
                "QDRANT__SERVICE__HTTP_PORT": str(self.http_port),
                "QDRANT__SERVICE__GRPC_PORT": str(self.grpc_port),
                "QDRANT__CLUSTER__P2P__PORT": str(self.p2p_port),
                "QDRANT__STORAGE__STORAGE_PATH": str(self.storage),
                "QDRANT__STORAGE__SNAPSHOTS_PATH": str(self.snapshots),
                "QDRANT__STORAGE__TEMP_PATH": str(self.temp),
            }
        )
        env.update(self.extra_env)
        return env

    def start(self) -> None:
        binary = shoal_bin()
        if not os.access(binary, os.X_OK):
            raise RuntimeError(f"shoal binary not found or not executable: {binary} (set SHOAL_BIN)")
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start #{self.starts}: {binary} =====\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [binary, *self.args],
                cwd=self.workdir,
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.wait_ready()

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        last_error = None
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                raise RuntimeError(f"shoal exited with code {rc} before it was ready\n{self.log_tail()}")
            try:
                r = requests.get(self.base_url + "/readyz", timeout=1)
                if r.status_code == 200:
                    return
                last_error = f"GET /readyz -> {r.status_code} {r.text[:200]!r}"
            except requests.RequestException as e:
                last_error = repr(e)
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(
            f"shoal not ready within {timeout:.0f}s (last: {last_error})\n{self.log_tail()}"
        )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to our process only, then wait (bounded) for it to exit."""
        if not self.alive():
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT_S)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)

    def restart(self, hard: bool = True) -> None:
        """Kill (SIGKILL if hard, else SIGTERM) and start again on the same dirs and ports."""
        self.kill(signal.SIGKILL if hard else signal.SIGTERM)
        self.start()

    def client(self, check_compatibility: bool = True) -> QdrantClient:
        # check_compatibility=False for clients of a node that is about to be killed: the
        # client's background GET / could otherwise land after the kill and warn.
        return QdrantClient(
            host="127.0.0.1",
            port=self.http_port,
            grpc_port=self.grpc_port,
            prefer_grpc=False,
            https=False,
            timeout=CLIENT_TIMEOUT_S,
            check_compatibility=check_compatibility,
        )

    def log_tail(self, lines: int = 200) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as e:
            return f"(no log: {e})"
        tail = text.splitlines()[-lines:]
        return f"--- last {len(tail)} lines of {self.log_path} ---\n" + "\n".join(tail)


def _make_node(tmp_path_factory, name: str, **kwargs) -> ShoalNode:
    root = Path(tempfile.mkdtemp(prefix=f"shoal-{name}-", dir=tmp_path_factory.getbasetemp()))
    return ShoalNode(root, **kwargs)


@pytest.fixture(scope="module")
def node(request, tmp_path_factory):
    failed_before = request.session.testsfailed
    n = _make_node(tmp_path_factory, request.module.__name__.rsplit(".", 1)[-1])
    n.start()
    yield n
    n.stop()
    if request.session.testsfailed == failed_before:
        shutil.rmtree(n.root, ignore_errors=True)  # keep the dirs and log of a failing module


@pytest.fixture(scope="module")
def client(node):
    c = node.client()
    yield c
    c.close()


@pytest.fixture(scope="module")
def base_url(node) -> str:
    return node.base_url


@pytest.fixture
def fresh_node(request, tmp_path_factory):
    """A node of the test's own, for tests that kill and restart it."""
    n = _make_node(tmp_path_factory, request.node.name[:40])
    n.start()
    yield n
    n.stop()
    if not getattr(request.node, "shoal_failed", False):
        shutil.rmtree(n.root, ignore_errors=True)


@pytest.fixture
def node_factory(request, tmp_path_factory):
    """make(extra_env=None, args=None, start=True) -> a node of the test's own; all are
    stopped when the test ends (and their dirs removed unless the test failed)."""
    made = []
    request.node.shoal_nodes = made  # their log tails go into a failing test's report

    def make(extra_env: dict | None = None, args: list | None = None, start: bool = True) -> ShoalNode:
        n = _make_node(tmp_path_factory, f"{request.node.name[:30]}-{len(made)}", extra_env=extra_env, args=args)
        made.append(n)
        if start:
            n.start()
        return n

    yield make
    for n in made:
        n.stop()
    if not getattr(request.node, "shoal_failed", False):
        for n in made:
            shutil.rmtree(n.root, ignore_errors=True)


@pytest.fixture
def collection_name(request) -> str:
    """A collection name unique to this test (and this run)."""
    base = "".join(ch if ch.isalnum() else "_" for ch in request.node.name)[:40]
    return f"{base}_{uuid.uuid4().hex[:8]}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    item.shoal_failed = True
    for value in getattr(item, "funcargs", {}).values():
        if isinstance(value, ShoalNode):
            report.sections.append((f"shoal log ({value.log_path})", value.log_tail()))
    for made in getattr(item, "shoal_nodes", []):
        report.sections.append((f"shoal log ({made.log_path})", made.log_tail()))
