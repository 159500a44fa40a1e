"""Issue 5, item 6 (e): the whole cluster recovered from snapshots into a fresh compose
project (new project name, new volumes). A collection snapshot holds its node's local
shards, so one is taken on every node of a source cluster and downloaded to the host; the
source is removed; a fresh cluster gets each one uploaded to the node of the same name
with priority `snapshot`; every point, payload and vector must be back on every node.

Two ways to upload: one right after the other (each upload answers once its own shards are
registered; the re-syncs it started may still run when the next one comes), and waiting
for every replica to be Active between uploads."""

import math

import pytest
import requests

from cluster_data import (
    RECOVER_TIMEOUT_S,
    all_active,
    create_collection,
    replicas,
    result,
    scroll_all,
    sha256,
    upsert,
    wait_converged,
    wait_for,
)
from compose import NODES
from conftest import new_cluster, remove
from test_snapshot_priorities import snapshot_on

NAME = "archive"
SHARDS = 3
RF = 2
N = 2000


def same_vectors(a: list, b: list) -> bool:
    return len(a) == len(b) and all(math.isclose(x, y, rel_tol=1e-5, abs_tol=1e-6) for x, y in zip(a, b))


@pytest.fixture(scope="module")
def source_snapshots(tmp_path_factory):
    """{node: (file, checksum)} of a filled source cluster, and its points with vectors;
    the source cluster is gone when this returns."""
    folder = tmp_path_factory.mktemp("cluster-snapshots")
    source = new_cluster()
    try:
        source.up()
        create_collection(source.url("node1"), NAME, SHARDS, RF)
        upsert(source.url("node1"), NAME, range(N))
        original = scroll_all(source.url("node1"), NAME, with_vector=True)
        assert len(original) == N
        wait_converged(source, NAME, {i: p for i, (p, _) in original.items()}, SHARDS)
        print(f"source replicas: {replicas(source, NAME)}")
        files = {}
        for node in NODES:
            snapshot = snapshot_on(source, node, NAME)
            r = requests.get(f"{source.url(node)}/collections/{NAME}/snapshots/{snapshot['name']}", timeout=120)
            assert r.status_code == 200
            assert sha256(r.content) == snapshot["checksum"]
            path = folder / snapshot["name"]
            path.write_bytes(r.content)
            files[node] = (path, snapshot["checksum"])
    finally:
        remove(source)
    return files, original


@pytest.mark.parametrize("settle_between", [False, True], ids=["back_to_back", "settled"])
def test_restore_every_node_into_a_fresh_cluster(make_cluster, source_snapshots, settle_between):
    files, original = source_snapshots
    payloads = {i: p for i, (p, _) in original.items()}
    fresh = make_cluster()
    fresh.up()
    for i, node in enumerate(NODES):
        path, checksum = files[node]
        with open(path, "rb") as f:
            r = requests.post(
                f"{fresh.url(node)}/collections/{NAME}/snapshots/upload",
                params={"priority": "snapshot", "checksum": checksum},
                files={"snapshot": (path.name, f)},
                timeout=RECOVER_TIMEOUT_S,
            )
        assert r.status_code == 200, f"upload to {node}: {r.status_code} {r.text[:800]}"
        body = r.json()
        assert body["result"] is True, body
        assert body["recovery"]["created"] is (i == 0), body["recovery"]
        print(f"uploaded {path.name} to {node}: {body['recovery']}")
        print(f"  replicas then: {replicas(fresh, NAME)}")
        if settle_between:
            def settled():
                table = replicas(fresh, NAME)
                return all_active(table), table

            wait_for(settled, 120, f"every replica Active after the upload to {node}")

    wait_converged(fresh, NAME, payloads, SHARDS, timeout=180)
    for node in NODES:
        restored = scroll_all(fresh.url(node), NAME, with_vector=True)
        assert set(restored) == set(original)
        bad = [i for i in original if not same_vectors(restored[i][1], original[i][1])]
        assert not bad, f"{node}: vectors differ for ids {bad[:10]}"
    info = result("GET", f"{fresh.url('node1')}/collections/{NAME}")
    assert info["config"]["params"]["shard_number"] == SHARDS
    assert info["config"]["params"]["replication_factor"] == RF
