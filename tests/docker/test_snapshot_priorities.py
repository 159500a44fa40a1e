"""Issue 5, item 6 (a, b): a sharded, replicated collection on the compose cluster is
snapshotted on node1, downloaded and checked, then recovered onto node2 from node1's URL
with each priority; every node must show the documented outcome.

Each priority gets its own collection: N points (generation 1), a snapshot on node1, then
changes (ADDED new points, DELETED removed, REGEN payloads rewritten to generation 2),
then the recovery. node1's snapshot holds node1's local shards only (2 of the 3), so the
outcome is checked per shard: shards in the snapshot follow the priority, the others keep
the changed data."""

import io
import tarfile

import pytest
import requests

from cluster_data import (
    RECOVER_TIMEOUT_S,
    by_shard,
    call,
    check_routing,
    create_collection,
    delete,
    local_shards,
    payload,
    replicas,
    result,
    scroll_all,
    set_gen,
    sha256,
    shard_counts,
    upsert,
    wait_converged,
    wait_for,
)

SHARDS = 3
RF = 2
N = 1500
ADDED = range(N, N + 200)
DELETED = range(0, 100)
REGEN = range(100, 200)


def original() -> dict:
    return {i: payload(i) for i in range(N)}


def changed() -> dict:
    data = original()
    for i in DELETED:
        del data[i]
    for i in list(REGEN) + list(ADDED):
        data[i] = payload(i, 2)
    return data


def snapshot_on(cluster, node: str, name: str) -> dict:
    return result("POST", f"{cluster.url(node)}/collections/{name}/snapshots", timeout=120)


def prepare(cluster, name: str, change: bool = True) -> dict:
    """Creates and fills `name` through node1, snapshots it on node1 and (if `change`)
    changes the data afterwards. Returns what the checks need."""
    node1 = cluster.url("node1")
    create_collection(node1, name, SHARDS, RF)
    upsert(node1, name, range(N))
    wait_converged(cluster, name, original(), SHARDS)
    snapshot = snapshot_on(cluster, "node1", name)
    snapshot_shards = local_shards(cluster, "node1", name)
    assert len(snapshot_shards) == 2, snapshot_shards
    if change:
        upsert(node1, name, ADDED, gen=2)
        delete(node1, name, DELETED)
        set_gen(node1, name, REGEN, gen=2)
        wait_converged(cluster, name, changed(), SHARDS)
    return {"snapshot": snapshot, "shards": snapshot_shards}


def recover_from_node1(cluster, target: str, name: str, source: str, snapshot: str, priority):
    """PUT .../snapshots/recover on `target` with node1's download URL (as the peers
    resolve it inside the compose network). Returns the whole response body."""
    body = {"location": f"http://node1:6333/collections/{source}/snapshots/{snapshot}"}
    if priority is not None:
        body["priority"] = priority
    data = call(
        "PUT",
        f"{cluster.url(target)}/collections/{name}/snapshots/recover",
        body,
        timeout=RECOVER_TIMEOUT_S,
    )
    assert data["result"] is True, data
    return data


def check_recovery_summary(data: dict, name: str, priority: str, created: bool, shards: set) -> dict:
    summary = data.get("recovery")
    assert isinstance(summary, dict), f"no `recovery` object in {data}"
    assert summary["collection"] == name, summary
    assert summary["created"] is created, summary
    assert summary["priority"] == priority, summary
    per_shard = {s["shard_id"]: s for s in summary["shards"]}
    assert set(per_shard) == shards, summary
    for s in per_shard.values():
        assert s["winner"] in ("snapshot", "replica"), s
        assert isinstance(s["points_on_this_peer"], int), s
        assert s["state"] in ("Active", "Dead", "Partial", "Initializing", "Listener", "ManualRecovery"), s
    return per_shard


@pytest.fixture(scope="module")
def library(cluster):
    """An unchanged collection and its node1 snapshot (download and new-collection tests)."""
    prepared = prepare(cluster, "library", change=False)
    return prepared


def test_snapshot_download(cluster, library):
    node1 = cluster.url("node1")
    name = library["snapshot"]["name"]
    listing = result("GET", f"{node1}/collections/library/snapshots")
    entry = next(s for s in listing if s["name"] == name)
    assert entry["size"] == library["snapshot"]["size"] > 0
    r = requests.get(f"{node1}/collections/library/snapshots/{name}", timeout=60)
    assert r.status_code == 200
    body = r.content
    assert len(body) == entry["size"]
    assert sha256(body) == entry["checksum"]
    part = requests.get(f"{node1}/collections/library/snapshots/{name}", headers={"Range": "bytes=100-1099"}, timeout=60)
    assert part.status_code == 206
    assert part.content == body[100:1100]
    # A collection snapshot holds the local shards of the peer that made it.
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        names = tar.getnames()
    shard_dirs = {int(n.split("/")[0]) for n in names if n.split("/")[0].isdigit()}
    assert shard_dirs == library["shards"], names
    for shard in library["shards"]:
        assert f"{shard}/replica_state.json" in names
    assert "shoal-manifest.json" in names
    # The snapshot is not on the other nodes.
    for node in ("node2", "node3"):
        listed = result("GET", f"{cluster.url(node)}/collections/library/snapshots")
        assert name not in {s["name"] for s in listed}


@pytest.mark.parametrize("priority", ["snapshot", "replica", "no_sync"])
def test_recover_onto_node2_from_node1_url(cluster, priority):
    name = f"books_{priority}"
    prepared = prepare(cluster, name)
    snap_shards = prepared["shards"]
    before = replicas(cluster, name)
    snapshot_split = by_shard(original(), SHARDS)
    changed_split = by_shard(changed(), SHARDS)

    data = recover_from_node1(cluster, "node2", name, name, prepared["snapshot"]["name"], priority)
    per_shard = check_recovery_summary(data, name, priority, created=False, shards=snap_shards)

    if priority == "snapshot":
        # The snapshot wins everywhere: every replica of its shards ends up with exactly
        # the snapshot's points, at replication_factor replicas; the other shard keeps the
        # changed data.
        for shard, s in per_shard.items():
            assert s["winner"] == "snapshot", s
            assert s["state"] == "Active", s
            assert s["points_on_this_peer"] == len(snapshot_split[shard]), s
        expected = {}
        for shard in range(SHARDS):
            expected.update(snapshot_split[shard] if shard in snap_shards else changed_split[shard])
        table = wait_converged(cluster, name, expected, SHARDS)
        for shard in snap_shards:
            assert "node2" in table[shard], table
            assert len(table[shard]) == RF, f"shard {shard}: {table[shard]}"
    elif priority == "replica":
        # Existing replicas win: node2's copy is re-synced from them and the cluster's data
        # is what it was before the recovery.
        for s in per_shard.values():
            assert s["winner"] == "replica", s
        table = wait_converged(cluster, name, changed(), SHARDS)
        for shard in snap_shards:
            assert "node2" in table[shard], table
    else:
        # no_sync: node2's copies hold the snapshot's points and are Active; every other
        # replica is left as it was (the changed data).
        for shard, s in per_shard.items():
            assert s["winner"] == "snapshot", s
            assert s["state"] == "Active", s
            assert s["points_on_this_peer"] == len(snapshot_split[shard]), s

        def settled():
            table = replicas(cluster, name)
            states = {(sh, n): r["state"] for sh, reps in table.items() if sh != "transfers" for n, r in reps.items()}
            return all(v == "Active" for v in states.values()) and not table["transfers"], table

        table = wait_for(settled, 60, f"{name}: every replica Active after no_sync")
        want_snapshot = shard_counts(original(), SHARDS)
        want_changed = shard_counts(changed(), SHARDS)
        for shard, reps in table.items():
            if shard == "transfers":
                continue
            for node, r in reps.items():
                want = want_snapshot[shard] if (node == "node2" and shard in snap_shards) else want_changed[shard]
                assert r["points_count"] == want, f"shard {shard} on {node}: {r}; before: {before}"
        # node1 reads its own replicas (it holds every shard of the snapshot): the changed
        # data; node2 reads its own: the snapshot's points for those shards.
        assert scroll_all(cluster.url("node1"), name) == changed()
        on_node2 = {}
        for shard in range(SHARDS):
            on_node2.update(snapshot_split[shard] if shard in snap_shards else changed_split[shard])
        assert scroll_all(cluster.url("node2"), name) == on_node2


def test_replica_priority_into_a_new_collection_is_empty(cluster, library):
    """A brand-new collection's other replicas are empty and Active, so with `replica` they
    win: the documented outcome is an empty collection, and the response says so."""
    data = recover_from_node1(cluster, "node2", "library_copy", "library", library["snapshot"]["name"], None)
    per_shard = check_recovery_summary(data, "library_copy", "replica", created=True, shards=library["shards"])
    for s in per_shard.values():
        assert s["winner"] == "replica", s
    wait_converged(cluster, "library_copy", {}, SHARDS)
    check_routing(replicas(cluster, "library_copy"), {}, SHARDS)
