"""Collection and full-storage snapshots on one node, through the official qdrant-client
and raw HTTP: descriptions, listing, download, delete, and recovery round trips that
compare every point (id, vector, payload) with the snapshot moment.

The snapshot suite is test_snapshots*.py (plus snapshot_support.py); run it with
    SHOAL_BIN=$CARGO_TARGET_DIR/debug/shoal tests/python/run.sh tests/python/test_snapshots*.py
and the crash and start-up-flag tests with `cargo test --test snapshots --test snapshot_crash`."""

import io
import json
import re
import tarfile
from datetime import datetime, timedelta

import pytest
import requests
from qdrant_client import models
from qdrant_client.http.exceptions import UnexpectedResponse

from helpers import HTTP_TIMEOUT_S, SnapshotHttpServer, all_points, assert_same_points, ok_result, poll
from snapshot_support import (
    point_id, vector,
    CREATION_TIME, HEX64, TS, accepted_task, assert_recovered, create, download, expect_error,
    fill, file_url, get_task, leftovers, mutate, recover, sha256_hex, snapshot_file,
    snapshot_http_url, snapshot_of, tar_members, upload, wait_next_second, wait_task,
)

DIM = 8
COUNT = 120


@pytest.fixture
def coll(client, collection_name):
    """A one-shard collection with COUNT points of every payload shape."""
    create(client, collection_name, dim=DIM, count=COUNT)
    return collection_name


def check_description(desc, node, collection: str, base_url: str) -> None:
    """Name pattern, size, creation_time and checksum, each against the real file."""
    m = re.fullmatch(re.escape(collection) + r"-(\d+)-" + TS + r"\.snapshot", desc.name)
    assert m, f"name {desc.name!r} is not <collection>-<peer_id>-YYYY-MM-DD-HH-MM-SS.snapshot"
    path = snapshot_file(node, collection, desc.name)
    assert path.is_file(), f"{path} missing"
    assert desc.size == path.stat().st_size > 0
    assert desc.creation_time is not None and CREATION_TIME.match(desc.creation_time), desc.creation_time
    named = datetime(*map(int, m.groups()[1:]))
    created = datetime.strptime(desc.creation_time, "%Y-%m-%dT%H:%M:%S")
    assert abs(created - named) <= timedelta(minutes=2), (desc.name, desc.creation_time)
    assert desc.checksum is not None and HEX64.match(desc.checksum), desc.checksum
    body = download(base_url, f"/collections/{collection}/snapshots/{desc.name}")
    assert body.status_code == 200
    assert desc.checksum == sha256_hex(body.content) == sha256_hex(path.read_bytes())
    sidecar = path.with_name(desc.name + ".checksum")
    assert sidecar.read_text() == desc.checksum, "the .checksum sidecar holds exactly the 64 hex digits"


# ---------------------------------------------------------------- create / list / delete

def test_create_snapshot_wait_true_describes_the_file(client, node, base_url, coll):
    desc = client.create_snapshot(coll, wait=True)
    check_description(desc, node, coll, base_url)
    listed = client.list_snapshots(coll)
    assert listed == [desc]
    # The archive is Qdrant's outer layout with shoal's manifest as its last entry.
    names = [m.name for m, _ in tar_members(snapshot_file(node, coll, desc.name).read_bytes())]
    for required in ("0/replica_state.json", "0/shard_config.json", "version.info", "config.json",
                     "shard_key_mapping.json", "payload_index.json"):
        assert required in names, names
    assert names[-1] == "shoal-manifest.json", names


def test_create_snapshot_wait_false_is_a_task(client, node, base_url, coll):
    assert client.create_snapshot(coll, wait=False) is None  # 202 has no result
    tasks = ok_result(requests.get(f"{base_url}/snapshot-tasks", timeout=HTTP_TIMEOUT_S))
    first = [t for t in tasks if t["kind"] == "create_snapshot" and t["target"] == coll]
    assert len(first) == 1, tasks
    assert wait_task(base_url, first[0]["id"])["state"] == "succeeded"
    wait_next_second()  # names have one-second resolution
    resp = requests.post(f"{base_url}/collections/{coll}/snapshots", params={"wait": "false"}, timeout=HTTP_TIMEOUT_S)
    task_id = accepted_task(resp)
    task = wait_task(base_url, task_id)
    assert task["state"] == "succeeded", task
    assert task["kind"] == "create_snapshot" and task["target"] == coll, task
    assert task["error"] is None and task["finished_at"], task
    listed = {d.name: d for d in client.list_snapshots(coll)}
    assert len(listed) == 2, listed
    made = listed[task["result"]["name"]]
    assert task["result"] == made.model_dump(exclude_none=True)
    assert task["bytes_done"] == made.size
    check_description(made, node, coll, base_url)
    # and the task shows up in the list of recent jobs
    tasks = ok_result(requests.get(f"{base_url}/snapshot-tasks", timeout=HTTP_TIMEOUT_S))
    assert task_id in [t["id"] for t in tasks]


def test_list_is_oldest_first_and_stable(client, coll):
    made = []
    for _ in range(3):
        made.append(client.create_snapshot(coll).name)
        wait_next_second()
    first = [d.name for d in client.list_snapshots(coll)]
    assert first == made, "listing is sorted by creation time, oldest first"
    for _ in range(5):
        assert [d.name for d in client.list_snapshots(coll)] == first


def test_delete_snapshot(client, node, base_url, coll):
    keep = client.create_snapshot(coll).name
    wait_next_second()
    gone = client.create_snapshot(coll).name
    assert client.delete_snapshot(coll, gone, wait=True) is True
    assert [d.name for d in client.list_snapshots(coll)] == [keep]
    path = snapshot_file(node, coll, gone)
    assert not path.exists() and not path.with_name(gone + ".checksum").exists()
    assert snapshot_file(node, coll, keep).exists()
    with pytest.raises(UnexpectedResponse) as e:
        client.delete_snapshot(coll, gone)
    assert e.value.status_code == 404
    # wait=false delete: 202, then the task records success
    task = wait_task(base_url, accepted_task(requests.delete(
        f"{base_url}/collections/{coll}/snapshots/{keep}", params={"wait": "false"}, timeout=HTTP_TIMEOUT_S)))
    assert task["state"] == "succeeded" and task["result"] is True, task
    assert client.list_snapshots(coll) == []


def test_snapshots_of_other_collections_are_separate(client, collection_name):
    a, b = collection_name + "_a", collection_name + "_b"
    create(client, a, count=3)
    create(client, b, count=3)
    sa = client.create_snapshot(a).name
    assert [d.name for d in client.list_snapshots(b)] == []
    with pytest.raises(UnexpectedResponse) as e:
        client.delete_snapshot(b, sa)
    assert e.value.status_code == 404
    assert [d.name for d in client.list_snapshots(a)] == [sa]


# ---------------------------------------------------------------- round trips

def test_recover_from_file_restores_the_snapshot_moment(client, node, base_url, coll):
    before = all_points(client, coll)
    name = client.create_snapshot(coll).name
    mutate(client, coll, DIM, COUNT)
    assert all_points(client, coll) != before
    resp = recover(base_url, coll, file_url(snapshot_file(node, coll, name)))
    assert_recovered(resp, coll, created=False, points=COUNT)
    assert_same_points(all_points(client, coll), before, "after recovery")
    assert client.count(coll, exact=True).count == COUNT
    # the recovered collection takes writes and searches as usual
    client.upsert(coll, wait=True, points=[models.PointStruct(id=10**6, vector=[1.0] * DIM, payload={"after": 1})])
    hits = client.query_points(coll, query=[1.0] * DIM, limit=3, with_payload=True).points
    assert len(hits) == 3
    assert client.count(coll, exact=True).count == COUNT + 1
    # the snapshot stays where it was; nothing is left behind
    assert [d.name for d in client.list_snapshots(coll)] == [name]
    assert leftovers(node) == []


def test_recover_with_the_client_returns_true(client, node, coll):
    before = all_points(client, coll)
    name = client.create_snapshot(coll).name
    client.delete(coll, points_selector=models.FilterSelector(filter=models.Filter()), wait=True)
    assert client.count(coll, exact=True).count == 0
    assert client.recover_snapshot(coll, file_url(snapshot_file(node, coll, name)), wait=True) is True
    assert_same_points(all_points(client, coll), before)


def test_recover_from_http_url_into_a_new_collection(client, node, base_url, coll, collection_name):
    before = all_points(client, coll)
    desc = client.create_snapshot(coll)
    target = collection_name + "_copy"
    resp = recover(base_url, target, snapshot_http_url(base_url, coll, desc.name), checksum=desc.checksum)
    assert_recovered(resp, target, created=True, points=COUNT)
    assert_same_points(all_points(client, target), before)
    src_cfg, dst_cfg = client.get_collection(coll).config, client.get_collection(target).config
    assert dst_cfg.params.vectors == src_cfg.params.vectors
    assert dst_cfg.params.shard_number == src_cfg.params.shard_number
    # the source is untouched, and the two are independent afterwards
    client.delete(target, points_selector=models.PointIdsList(points=[1, 2, 3]), wait=True)
    assert_same_points(all_points(client, coll), before)


@pytest.mark.parametrize("priority", ["replica", "snapshot", "no_sync"])
def test_every_priority_restores_on_one_node(client, node, base_url, coll, priority):
    before = all_points(client, coll)
    name = client.create_snapshot(coll).name
    mutate(client, coll, DIM, COUNT)
    resp = recover(base_url, coll, file_url(snapshot_file(node, coll, name)), priority=priority)
    assert_recovered(resp, coll, created=False, priority=priority, points=COUNT)
    assert_same_points(all_points(client, coll), before)


def test_round_trip_named_vectors(client, node, base_url, collection_name):
    client.create_collection(collection_name, vectors_config={
        "img": models.VectorParams(size=6, distance=models.Distance.COSINE),
        "txt": models.VectorParams(size=3, distance=models.Distance.EUCLID),
    })
    points = [models.PointStruct(id=i, vector={"img": [float(i), 1, 2, 3, 4, 5], "txt": [0.5, float(i), -1]},
                                 payload={"i": i}) for i in range(1, 41)]
    points.append(models.PointStruct(id=99, vector={"txt": [1, 2, 3]}, payload={"only": "txt"}))
    client.upsert(collection_name, points=points, wait=True)
    before = all_points(client, collection_name)
    assert set(before[99][1]) == {"txt"}
    name = client.create_snapshot(collection_name).name
    client.upsert(collection_name, wait=True, points=[
        models.PointStruct(id=1, vector={"img": [9, 9, 9, 9, 9, 9], "txt": [9, 9, 9]})])
    client.delete(collection_name, points_selector=models.PointIdsList(points=[2, 99]), wait=True)
    assert_recovered(recover(base_url, collection_name, file_url(snapshot_file(node, collection_name, name))),
                     collection_name, created=False, points=41)
    assert_same_points(all_points(client, collection_name), before)
    # and into a fresh name, which gets the named-vector config
    copy = collection_name + "_copy"
    assert_recovered(recover(base_url, copy, file_url(snapshot_file(node, collection_name, name))), copy,
                     created=True, points=41)
    assert_same_points(all_points(client, copy), before)
    assert set(client.get_collection(copy).config.params.vectors) == {"img", "txt"}
    hits = client.query_points(copy, query=[0.5, 3.0, -1], using="txt", limit=1).points
    assert hits[0].id == 3


def test_round_trip_three_shards(client, node, base_url, collection_name):
    create(client, collection_name, dim=DIM, count=600, shard_number=3)
    before = all_points(client, collection_name)
    name = client.create_snapshot(collection_name).name
    members = [m.name for m, _ in tar_members(snapshot_file(node, collection_name, name).read_bytes())]
    for shard in range(3):
        assert f"{shard}/replica_state.json" in members, members
    client.delete(collection_name, points_selector=models.FilterSelector(
        filter=models.Filter(must=[models.FieldCondition(key="nested.k", match=models.MatchValue(value=1))])), wait=True)
    fill(client, collection_name, 50, DIM, generation=5, first=1)
    report = assert_recovered(recover(base_url, collection_name, file_url(snapshot_file(node, collection_name, name))),
                              collection_name, created=False, shards=3, points=600)
    assert all(s["points_on_this_peer"] > 0 for s in report["shards"]), report
    assert_same_points(all_points(client, collection_name), before)
    copy = collection_name + "_copy"
    assert_recovered(recover(base_url, copy, snapshot_http_url(base_url, collection_name, name)), copy,
                     created=True, shards=3, points=600)
    assert client.get_collection(copy).config.params.shard_number == 3
    assert_same_points(all_points(client, copy), before)


def test_round_trip_sealed_segments_and_hnsw(client, node, base_url, collection_name):
    dim, count = 16, 3000
    # max_segment_size and indexing_threshold are KB of vectors: 8 KB = 128 16-d points.
    create(client, collection_name, dim=dim, distance=models.Distance.COSINE,
           optimizers_config=models.OptimizersConfigDiff(max_segment_size=8, indexing_threshold=4),
           hnsw_config=models.HnswConfigDiff(m=8, ef_construct=32))
    fill(client, collection_name, count, dim)
    info = poll(lambda: (i := client.get_collection(collection_name)).indexed_vectors_count and i, timeout=60)
    assert info, "no HNSW index was built within 60 s"
    assert info.segments_count > 2, f"expected several sealed segments, got {info.segments_count}"
    before = all_points(client, collection_name)
    queries = [[((q * 13 + j * 5) % 17 - 8) / 8.0 for j in range(dim)] for q in range(5)]

    def answers(name, exact):
        return [[(p.id, round(p.score, 5)) for p in client.query_points(
            name, query=q, limit=10, search_params=models.SearchParams(exact=exact)).points] for q in queries]

    exact_before = answers(collection_name, True)
    name = client.create_snapshot(collection_name).name
    client.delete(collection_name, points_selector=models.PointIdsList(points=list(range(1, 1500))), wait=True)
    fill(client, collection_name, 300, dim, generation=9, first=2000)
    assert_recovered(recover(base_url, collection_name, file_url(snapshot_file(node, collection_name, name))),
                     collection_name, created=False, points=count)
    assert_same_points(all_points(client, collection_name), before)
    assert answers(collection_name, True) == exact_before
    approx = answers(collection_name, False)
    assert all(len(a) == 10 for a in approx)
    after = poll(lambda: (i := client.get_collection(collection_name)).indexed_vectors_count and i, timeout=60)
    assert after and after.points_count == count


# ---------------------------------------------------------------- full snapshots

def test_full_snapshot_create_list_download_delete(client, node, base_url, collection_name):
    a, b = collection_name + "_a", collection_name + "_b"
    create(client, a, count=30)
    create(client, b, count=7, dim=3)
    alias = collection_name + "_alias"
    client.update_collection_aliases(change_aliases_operations=[
        models.CreateAliasOperation(create_alias=models.CreateAlias(collection_name=a, alias_name=alias))])
    own_before = {c: client.list_snapshots(c) for c in (a, b)}
    desc = client.create_full_snapshot(wait=True)
    assert re.fullmatch(r"full-snapshot-" + TS + r"\.snapshot", desc.name), desc.name
    assert HEX64.match(desc.checksum) and CREATION_TIME.match(desc.creation_time)
    assert desc in client.list_full_snapshots()
    path = node.snapshots / desc.name
    assert path.is_file() and path.stat().st_size == desc.size
    body = download(base_url, f"/snapshots/{desc.name}")
    assert body.status_code == 200 and sha256_hex(body.content) == desc.checksum
    assert body.headers["Content-Disposition"] == f'attachment; filename="{desc.name}"'
    members = dict((m.name, data) for m, data in tar_members(body.content))
    config = json.loads(members["config.json"])
    assert set(config) >= {"collections_mapping", "collections_aliases"}, config
    assert config["collections_aliases"].get(alias) == a, config
    for c, count in ((a, 30), (b, 7)):
        entry = config["collections_mapping"][c]
        assert re.fullmatch(re.escape(c) + r"-\d+-" + TS + r"\.snapshot", entry), entry
        inner = [m.name for m, _ in tar_members(members[entry])]
        assert "config.json" in inner and inner[-1] == "shoal-manifest.json", inner
    assert list(members)[-1] == "shoal-manifest.json"
    # building it leaves no collection snapshots behind
    assert {c: client.list_snapshots(c) for c in (a, b)} == own_before
    # wait=false creates another one as a task
    wait_next_second()
    task = wait_task(base_url, accepted_task(requests.post(f"{base_url}/snapshots", params={"wait": "false"},
                                                           timeout=HTTP_TIMEOUT_S)))
    assert task["state"] == "succeeded" and task["kind"] == "create_full_snapshot", task
    second = task["result"]["name"]
    names = [d.name for d in client.list_full_snapshots()]
    assert names.index(desc.name) < names.index(second), "oldest first"
    assert client.delete_full_snapshot(desc.name, wait=True) is True
    assert client.delete_full_snapshot(second, wait=True) is True
    assert desc.name not in [d.name for d in client.list_full_snapshots()]
    assert not path.exists() and not path.with_name(desc.name + ".checksum").exists()
    with pytest.raises(UnexpectedResponse) as e:
        client.delete_full_snapshot(desc.name)
    assert e.value.status_code == 404


# ---------------------------------------------------------------- raw HTTP: download and upload

def test_download_headers_and_range(client, node, base_url, coll):
    desc = client.create_snapshot(coll)
    path = f"/collections/{coll}/snapshots/{desc.name}"
    whole = download(base_url, path)
    assert whole.status_code == 200
    assert whole.headers["Content-Type"] == "application/octet-stream"
    assert whole.headers["Content-Disposition"] == f'attachment; filename="{desc.name}"'
    assert int(whole.headers["Content-Length"]) == desc.size == len(whole.content)
    part = download(base_url, path, headers={"Range": "bytes=0-99"})
    assert part.status_code == 206
    assert len(part.content) == 100 and part.content == whole.content[:100]
    assert part.headers["Content-Range"] == f"bytes 0-99/{desc.size}"
    tail = download(base_url, path, headers={"Range": f"bytes={desc.size - 10}-"})
    assert tail.status_code == 206 and tail.content == whole.content[-10:]
    # a download through an alias finds the collection's snapshot too
    alias = coll + "_al"
    client.update_collection_aliases(change_aliases_operations=[
        models.CreateAliasOperation(create_alias=models.CreateAlias(collection_name=coll, alias_name=alias))])
    via_alias = download(base_url, f"/collections/{alias}/snapshots/{desc.name}")
    assert via_alias.status_code == 200 and via_alias.content == whole.content


def test_upload_recovers_without_keeping_a_copy(client, node, base_url, coll, collection_name):
    # shoal unpacks an upload as it arrives and keeps no copy of it (Qdrant stores the
    # uploaded file in the snapshots directory): see docs/snapshots.md.
    before = all_points(client, coll)
    name, data = snapshot_of(client, node, coll)
    mutate(client, coll, DIM, COUNT)
    resp = upload(base_url, coll, data, filename="from-upload.snapshot", priority="snapshot", checksum=sha256_hex(data))
    assert_recovered(resp, coll, created=False, priority="snapshot", points=COUNT)
    assert_same_points(all_points(client, coll), before)
    assert [d.name for d in client.list_snapshots(coll)] == [name]
    assert not snapshot_file(node, coll, "from-upload.snapshot").exists()
    # an upload into a new name creates the collection; default priority is replica
    target = collection_name + "_up"
    assert_recovered(upload(base_url, target, data), target, created=True, points=COUNT)
    assert_same_points(all_points(client, target), before)
    assert leftovers(node) == []


def test_upload_with_wrong_checksum_changes_nothing(client, node, base_url, coll):
    name, data = snapshot_of(client, node, coll)
    mutate(client, coll, DIM, COUNT)
    current = all_points(client, coll)
    wrong = "0" * 64
    msg = expect_error(upload(base_url, coll, data, filename="bad-sum.snapshot", checksum=wrong), 400)
    assert "checksum" in msg.lower() and sha256_hex(data) in msg and wrong in msg, msg
    assert_same_points(all_points(client, coll), current)
    assert [d.name for d in client.list_snapshots(coll)] == [name]
    assert not snapshot_file(node, coll, "bad-sum.snapshot").exists()
    assert leftovers(node) == []


def test_upload_without_the_snapshot_field_is_400(client, node, base_url, coll):
    name, data = snapshot_of(client, node, coll)
    current = all_points(client, coll)
    expect_error(upload(base_url, coll, data, field="file"), 400, "snapshot")
    assert_same_points(all_points(client, coll), current)
    assert [d.name for d in client.list_snapshots(coll)] == [name]


# ---------------------------------------------------------------- wait=false recoveries and conflicts

def test_wait_false_recover_success_is_recorded(client, node, base_url, coll):
    before = all_points(client, coll)
    name = client.create_snapshot(coll).name
    mutate(client, coll, DIM, COUNT)
    assert client.recover_snapshot(coll, file_url(snapshot_file(node, coll, name)), wait=False) is None
    tasks = ok_result(requests.get(f"{base_url}/snapshot-tasks", timeout=HTTP_TIMEOUT_S))
    mine = [t for t in tasks if t["kind"] == "recover_snapshot" and t["target"] == coll]
    assert mine, tasks
    task = wait_task(base_url, mine[-1]["id"])
    assert task["state"] == "succeeded", task
    assert task["result"]["collection"] == coll and task["result"]["created"] is False, task
    assert task["bytes_done"] == snapshot_file(node, coll, name).stat().st_size, task
    assert_same_points(all_points(client, coll), before)


def test_wait_false_recover_failure_is_recorded(client, node, base_url, coll):
    current = all_points(client, coll)
    outside = node.root / "outside.snapshot"
    outside.write_bytes(b"x" * 100)
    cases = [
        (file_url(outside), "inside the snapshots directory"),
        (file_url(node.snapshots / coll / "missing.snapshot"), "does not exist"),
        ("http://127.0.0.1:1/x.snapshot", "127.0.0.1:1"),
    ]
    for location, needle in cases:
        task_id = accepted_task(recover(base_url, coll, location, wait=False))
        task = wait_task(base_url, task_id)
        assert task["state"] == "failed", task
        assert task["kind"] == "recover_snapshot" and task["target"] == coll, task
        assert task["result"] is None and task["finished_at"], task
        assert needle.lower() in (task["error"] or "").lower(), task
    # a corrupt archive fails inside the job as well
    name, data = snapshot_of(client, node, coll)
    broken = snapshot_file(node, coll, "broken.snapshot")
    broken.write_bytes(data[: len(data) // 2])
    task = wait_task(base_url, accepted_task(recover(base_url, coll, file_url(broken), wait=False)))
    assert task["state"] == "failed" and "snapshot" in task["error"].lower(), task
    assert_same_points(all_points(client, coll), current)
    assert leftovers(node) == []


def test_second_recovery_of_a_collection_is_409_while_one_runs(client, node, base_url, coll):
    """A recovery reading from a source that stalls half way is observably running; a
    second one of the same collection is refused, and the collection stays readable with
    its old data until the first one finishes."""
    snap = client.create_snapshot(coll).name
    data = snapshot_file(node, coll, snap).read_bytes()
    before = all_points(client, coll)
    mutate(client, coll, DIM, COUNT)
    current = all_points(client, coll)
    with SnapshotHttpServer({"/s.snapshot": data}, stall_after=len(data) // 2) as source:
        task_id = accepted_task(recover(base_url, coll, source.url("/s.snapshot"), wait=False))
        assert source.stalled.wait(20), "the node never started downloading"
        running = poll(lambda: (t := get_task(base_url, task_id))["bytes_done"] > 0 and t, timeout=10)
        assert running and running["state"] == "running", running
        expect_error(recover(base_url, coll, file_url(snapshot_file(node, coll, snap))), 409, "recovery")
        expect_error(upload(base_url, coll, data, filename="second.snapshot"), 409, "recovery")
        assert_same_points(all_points(client, coll), current, "while a recovery is running")
        # another collection is not blocked
        other = coll + "_other"
        assert_recovered(recover(base_url, other, file_url(snapshot_file(node, coll, snap))), other, created=True)
        source.release()
        task = wait_task(base_url, task_id)
    assert task["state"] == "succeeded", task
    assert task["bytes_done"] == len(data), task
    assert_same_points(all_points(client, coll), before)
    assert leftovers(node) == []


def test_recover_through_an_alias_lands_in_the_collection(client, node, base_url, coll):
    before = all_points(client, coll)
    name = client.create_snapshot(coll).name
    alias = coll + "_al"
    client.update_collection_aliases(change_aliases_operations=[
        models.CreateAliasOperation(create_alias=models.CreateAlias(collection_name=coll, alias_name=alias))])
    mutate(client, coll, DIM, COUNT)
    assert_recovered(recover(base_url, alias, file_url(snapshot_file(node, coll, name))), coll, created=False)
    assert_same_points(all_points(client, coll), before)
    assert [a.collection_name for a in client.get_aliases().aliases if a.alias_name == alias] == [coll]


# ---------------------------------------------------------------- two nodes

def test_recover_from_a_second_nodes_url(node_factory, collection_name):
    a, b = node_factory(), node_factory()
    ca, cb = a.client(), b.client()
    create(ca, collection_name, dim=DIM, count=700, shard_number=2)
    before = all_points(ca, collection_name)
    desc = ca.create_snapshot(collection_name)
    url = snapshot_http_url(a.base_url, collection_name, desc.name)
    assert_recovered(recover(b.base_url, collection_name, url, checksum=desc.checksum), collection_name,
                     created=True, shards=2, points=700)
    assert_same_points(all_points(cb, collection_name), before)
    # B already has it: recovering again replaces B's changes with A's snapshot
    mutate(cb, collection_name, DIM, 700)
    assert cb.recover_snapshot(collection_name, url) is True
    assert_same_points(all_points(cb, collection_name), before)
    # A was only read from
    assert_same_points(all_points(ca, collection_name), before)
    assert [d.name for d in cb.list_snapshots(collection_name)] == []
    assert leftovers(a) == [] and leftovers(b) == []


# ---------------------------------------------------------------- consistency and lifecycle

def test_snapshot_while_writing_is_a_point_in_time(client, node, base_url, collection_name):
    """Batches of ids are written one after another while snapshots are taken. Each
    snapshot, recovered, holds exactly the batches 1..k for some k: every batch
    acknowledged before the snapshot was asked for, none that started after it answered."""
    import threading

    create(client, collection_name, dim=DIM)
    batch, batches = 40, 150
    acked = [0]  # number of acknowledged batches
    stop = threading.Event()
    errors = []

    def writer():
        try:
            for b in range(batches):
                if stop.is_set():
                    return
                fill(client, collection_name, batch, DIM, first=b * batch + 1, batch=batch)
                acked[0] = b + 1
        except Exception as e:  # reported by the main thread
            errors.append(e)

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    taken = []
    try:
        for _ in range(3):
            poll(lambda: acked[0] >= len(taken) * 30 + 10, timeout=30)
            low = acked[0]
            desc = client.create_snapshot(collection_name)
            high = acked[0] + 1  # at most the batch in flight when it answered
            taken.append((desc.name, low, high))
            wait_next_second()
    finally:
        stop.set()
        t.join(timeout=60)
    assert not errors, errors
    # Compare with what the server stored (which holds every batch by now), so that
    # only the point-in-time property is under test here.
    source = all_points(client, collection_name)
    for i, (name, low, high) in enumerate(taken):
        copy = f"{collection_name}_pit{i}"
        assert_recovered(recover(base_url, copy, file_url(snapshot_file(node, collection_name, name))),
                         copy, created=True)
        points = all_points(client, copy)
        assert len(points) % batch == 0, f"snapshot {i}: a batch was cut: {len(points)} points"
        k = len(points) // batch
        assert low <= k <= high, f"snapshot {i}: {k} batches, expected between {low} and {high}"
        want = {point_id(j): source[point_id(j)] for j in range(1, k * batch + 1)}
        assert_same_points(points, want, f"snapshot {i}")
        assert all(points[point_id(j)][1] == vector(j, DIM) for j in range(1, k * batch + 1, 7))


def test_concurrent_creates_leave_valid_snapshots(client, node, base_url, coll):
    ids = [accepted_task(requests.post(f"{base_url}/collections/{coll}/snapshots", params={"wait": "false"},
                                       timeout=HTTP_TIMEOUT_S)) for _ in range(4)]
    tasks = [wait_task(base_url, i) for i in ids]
    assert all(t["state"] == "succeeded" for t in tasks), tasks
    listed = client.list_snapshots(coll)
    assert 1 <= len(listed) <= 4
    assert {t["result"]["name"] for t in tasks} == {d.name for d in listed}
    before = all_points(client, coll)
    for d in listed:
        data = snapshot_file(node, coll, d.name).read_bytes()
        assert d.size == len(data) and d.checksum == sha256_hex(data), d
        copy = coll + "_" + d.name[-12:-9].replace("-", "")
        assert_recovered(recover(base_url, copy, file_url(snapshot_file(node, coll, d.name))), copy, created=True)
        assert_same_points(all_points(client, copy), before)
        client.delete_collection(copy)
    assert leftovers(node) == []


def test_snapshots_outlive_their_collection(client, node, base_url, coll):
    before = all_points(client, coll)
    name = client.create_snapshot(coll).name
    assert client.delete_collection(coll) is True
    path = snapshot_file(node, coll, name)
    assert path.is_file(), "deleting a collection keeps its snapshots"
    assert_recovered(recover(base_url, coll, file_url(path)), coll, created=True)
    assert_same_points(all_points(client, coll), before)
    assert [d.name for d in client.list_snapshots(coll)] == [name]


def test_new_collection_takes_the_snapshot_config_existing_keeps_its_own(client, node, base_url, collection_name):
    src = collection_name
    create(client, src, dim=DIM, count=20, hnsw_config=models.HnswConfigDiff(m=6, ef_construct=40),
           optimizers_config=models.OptimizersConfigDiff(max_segment_size=64, indexing_threshold=32))
    name = client.create_snapshot(src).name
    location = file_url(snapshot_file(node, src, name))
    new = src + "_new"
    assert_recovered(recover(base_url, new, location), new, created=True)
    cfg = client.get_collection(new).config
    assert (cfg.hnsw_config.m, cfg.hnsw_config.ef_construct) == (6, 40)
    assert (cfg.optimizer_config.max_segment_size, cfg.optimizer_config.indexing_threshold) == (64, 32)
    existing = src + "_existing"
    create(client, existing, dim=DIM, count=5, hnsw_config=models.HnswConfigDiff(m=20, ef_construct=120))
    assert_recovered(recover(base_url, existing, location), existing, created=False)
    cfg = client.get_collection(existing).config
    assert (cfg.hnsw_config.m, cfg.hnsw_config.ef_construct) == (20, 120), "an existing collection keeps its config"
    assert client.count(existing, exact=True).count == 20


def test_empty_collection_round_trip(client, node, base_url, collection_name):
    create(client, collection_name, dim=3)
    name = client.create_snapshot(collection_name).name
    fill(client, collection_name, 10, 3)
    assert_recovered(recover(base_url, collection_name, file_url(snapshot_file(node, collection_name, name))),
                     collection_name, created=False, points=0)
    assert client.count(collection_name, exact=True).count == 0
    copy = collection_name + "_copy"
    assert_recovered(recover(base_url, copy, file_url(snapshot_file(node, collection_name, name))), copy,
                     created=True, points=0)
    assert client.get_collection(copy).config.params.vectors.size == 3


def test_api_key_goes_to_the_source_only_when_given(client, node, base_url, coll):
    name, data = snapshot_of(client, node, coll)
    with SnapshotHttpServer({"/s.snapshot": data}) as source:
        assert_recovered(recover(base_url, coll, source.url("/s.snapshot"), api_key="s3cret"), coll, created=False)
        assert_recovered(recover(base_url, coll, source.url("/s.snapshot")), coll, created=False)
    assert source.requests == ["/s.snapshot", "/s.snapshot"]
    assert source.headers[0].get("api-key") == "s3cret", source.headers[0]
    assert "api-key" not in source.headers[1], source.headers[1]


def test_unknown_task_is_404(base_url):
    expect_error(requests.get(f"{base_url}/snapshot-tasks/no-such-task", timeout=HTTP_TIMEOUT_S), 404, "no-such-task")


def test_snapshots_and_tasks_after_a_restart(node_factory, collection_name):
    n = node_factory()
    c = n.client()
    create(c, collection_name, dim=DIM, count=50)
    desc = c.create_snapshot(collection_name)
    before = all_points(c, collection_name)
    n.restart(hard=True)
    c = n.client()
    assert c.list_snapshots(collection_name) == [desc]
    mutate(c, collection_name, DIM, 50)
    assert c.recover_snapshot(collection_name, file_url(snapshot_file(n, collection_name, desc.name))) is True
    assert_same_points(all_points(c, collection_name), before)


def test_upload_wait_false_is_a_task(client, node, base_url, coll):
    before = all_points(client, coll)
    _, data = snapshot_of(client, node, coll)
    mutate(client, coll, DIM, COUNT)
    task = wait_task(base_url, accepted_task(upload(base_url, coll, data, filename="async.snapshot", wait=False)))
    assert task["state"] == "succeeded" and task["kind"] == "recover_snapshot", task
    assert task["result"]["collection"] == coll, task
    assert_same_points(all_points(client, coll), before)
    mutate(client, coll, DIM, COUNT)
    current = all_points(client, coll)
    task = wait_task(base_url, accepted_task(upload(base_url, coll, data[:-2000], filename="cut.snapshot", wait=False)))
    assert task["state"] == "failed" and "snapshot" in (task["error"] or "").lower(), task
    assert_same_points(all_points(client, coll), current)
    assert leftovers(node) == []
