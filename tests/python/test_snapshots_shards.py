"""Shard snapshots on one node: `/collections/{c}/shards/{id}/snapshots` (create, list,
download, delete, recover, upload) and the streamed `/collections/{c}/shards/{id}/snapshot`,
through the official client and raw HTTP. Which points live in a shard is found by
recovering the shard's snapshot into an empty twin collection."""

import re

import pytest
import requests
from qdrant_client import models
from qdrant_client.http.exceptions import UnexpectedResponse

from helpers import HTTP_TIMEOUT_S, all_points, assert_same_points, ok_result
from snapshot_support import (
    CREATION_TIME, HEX64, TS, accepted_task, create, download, expect_error, file_url, leftovers,
    recover, sha256_hex, tar_members, wait_next_second, wait_task,
)

DIM = 8
COUNT = 200


@pytest.fixture
def coll(client, collection_name):
    create(client, collection_name, dim=DIM, count=COUNT, shard_number=2)
    return collection_name


def shard_dir(node, collection: str, shard: int):
    return node.snapshots / collection / "shards" / str(shard)


def shard_url(base_url: str, collection: str, shard: int, suffix: str = "") -> str:
    return f"{base_url}/collections/{collection}/shards/{shard}/snapshots{suffix}"


def shard_recover(base_url, collection, shard, location, wait=True, **body):
    return requests.put(shard_url(base_url, collection, shard, "/recover"), params={"wait": str(wait).lower()},
                        json={"location": location, **body}, timeout=60)


def shard_upload(base_url, collection, shard, data, filename="shard.snapshot", **params):
    return requests.post(shard_url(base_url, collection, shard, "/upload"), params=params,
                         files={"snapshot": (filename, data, "application/octet-stream")}, timeout=60)


def twin(client, collection: str, suffix: str) -> str:
    """An empty collection with the same vectors and shard count."""
    name = collection + suffix
    create(client, name, dim=DIM, shard_number=2)
    return name


def test_create_list_download_delete(client, node, base_url, coll):
    desc = client.create_shard_snapshot(coll, 1, wait=True)
    assert re.fullmatch(re.escape(coll) + r"-shard-1-" + TS + r"\.snapshot", desc.name), desc.name
    path = shard_dir(node, coll, 1) / desc.name
    assert path.is_file() and path.stat().st_size == desc.size
    assert HEX64.match(desc.checksum) and CREATION_TIME.match(desc.creation_time), desc
    assert (shard_dir(node, coll, 1) / (desc.name + ".checksum")).read_text() == desc.checksum
    assert client.list_shard_snapshots(coll, 1) == [desc]
    assert client.list_shard_snapshots(coll, 0) == []
    assert client.list_snapshots(coll) == [], "shard snapshots are not collection snapshots"
    body = download(base_url, f"/collections/{coll}/shards/1/snapshots/{desc.name}")
    assert body.status_code == 200 and sha256_hex(body.content) == desc.checksum
    assert body.headers["Content-Disposition"] == f'attachment; filename="{desc.name}"'
    part = download(base_url, f"/collections/{coll}/shards/1/snapshots/{desc.name}", headers={"Range": "bytes=0-99"})
    assert part.status_code == 206 and part.content == body.content[:100]
    names = [m.name for m, _ in tar_members(body.content)]
    assert "replica_state.json" in names and "shard_config.json" in names, names
    assert "config.json" not in names, "a shard snapshot has no collection config"
    assert names[-1] == "shoal-manifest.json", names
    # wait=false create is a task; listing is oldest first
    wait_next_second()
    task = wait_task(base_url, accepted_task(requests.post(shard_url(base_url, coll, 1), params={"wait": "false"},
                                                           timeout=HTTP_TIMEOUT_S)))
    assert task["state"] == "succeeded" and task["kind"] == "create_shard_snapshot", task
    assert [d.name for d in client.list_shard_snapshots(coll, 1)] == [desc.name, task["result"]["name"]]
    assert client.delete_shard_snapshot(coll, 1, desc.name, wait=True) is True
    assert not path.exists() and not path.with_name(desc.name + ".checksum").exists()
    with pytest.raises(UnexpectedResponse) as e:
        client.delete_shard_snapshot(coll, 1, desc.name)
    assert e.value.status_code == 404
    expect_error(download(base_url, f"/collections/{coll}/shards/1/snapshots/{desc.name}"), 404, desc.name)


def test_unknown_shard_and_collection(client, base_url, coll):
    for call in (lambda: client.create_shard_snapshot(coll, 7), lambda: client.list_shard_snapshots(coll, 7)):
        with pytest.raises(UnexpectedResponse) as e:
            call()
        assert e.value.status_code == 404
    expect_error(requests.get(shard_url(base_url, coll, 7), timeout=HTTP_TIMEOUT_S), 404, "shard 7 not found")
    expect_error(requests.get(f"{base_url}/collections/{coll}/shards/7/snapshot", timeout=HTTP_TIMEOUT_S), 404)
    expect_error(requests.get(shard_url(base_url, coll + "_nope", 0), timeout=HTTP_TIMEOUT_S), 404, "doesn't exist")
    expect_error(requests.get(f"{base_url}/collections/{coll}/shards/abc/snapshots", timeout=HTTP_TIMEOUT_S), 400)
    expect_error(shard_recover(base_url, coll, 7, "x.snapshot"), 404)


def test_shard_recovery_restores_only_that_shard(client, node, base_url, coll):
    before = all_points(client, coll)
    desc = client.create_shard_snapshot(coll, 1)
    # Which points are in shard 1: recover its snapshot into an empty twin.
    probe = twin(client, coll, "_probe")
    snapshot_url = shard_url(base_url, coll, 1, f"/{desc.name}")
    assert client.recover_shard_snapshot(probe, 1, snapshot_url, checksum=desc.checksum) is True
    in_shard1 = all_points(client, probe)
    assert 0 < len(in_shard1) < COUNT, f"shard 1 holds {len(in_shard1)} of {COUNT} points"
    assert_same_points(in_shard1, {pid: before[pid] for pid in in_shard1}, "shard 1 of the probe")
    # Change every point, then recover shard 1 by its file name.
    client.set_payload(coll, payload={"changed": True}, points=models.Filter(), wait=True)
    resp = shard_recover(base_url, coll, 1, desc.name)
    assert ok_result(resp) is True
    after = all_points(client, coll)
    assert set(after) == set(before)
    for pid, (payload, vec) in before.items():
        if pid in in_shard1:
            assert after[pid] == (payload, vec), f"{pid} (shard 1) not restored"
        else:
            assert after[pid] == ({**payload, "changed": True}, vec), f"{pid} (shard 0) was touched"
    # the recovered shard takes writes and the file stays listed
    client.upsert(coll, wait=True, points=[models.PointStruct(id=10**6, vector=[1.0] * DIM)])
    assert client.count(coll, exact=True).count == COUNT + 1
    assert [d.name for d in client.list_shard_snapshots(coll, 1)] == [desc.name]
    assert leftovers(node) == []


def test_streamed_shard_snapshot_is_not_stored_and_uploads(client, node, base_url, coll):
    resp = requests.get(f"{base_url}/collections/{coll}/shards/0/snapshot", timeout=60)
    assert resp.status_code == 200, resp.text[:300]
    assert resp.headers["Content-Type"] == "application/octet-stream"
    m = re.fullmatch(r'attachment; filename="' + re.escape(coll) + r"-shard-0-" + TS + r'\.snapshot"',
                     resp.headers["Content-Disposition"])
    assert m, resp.headers["Content-Disposition"]
    names = [mem.name for mem, _ in tar_members(resp.content)]
    assert names[-1] == "shoal-manifest.json", names
    assert client.list_shard_snapshots(coll, 0) == []
    assert not shard_dir(node, coll, 0).exists() or not any(shard_dir(node, coll, 0).iterdir())
    # upload the streamed bytes into shard 0 of an empty twin: exactly shard 0's points
    before = all_points(client, coll)
    target = twin(client, coll, "_stream")
    up = shard_upload(base_url, target, 0, resp.content, checksum=sha256_hex(resp.content))
    assert up.status_code == 200, up.text[:500]
    body = up.json()
    assert body["status"] == "ok" and "result" in body and body["result"] is None, body
    got = all_points(client, target)
    assert 0 < len(got) < COUNT
    assert_same_points(got, {pid: before[pid] for pid in got})
    # uploaded shard snapshots are not kept
    assert client.list_shard_snapshots(target, 0) == []
    assert leftovers(node) == []
    # shard 1 of the twin plus shard 0 give back the whole collection
    s1 = client.create_shard_snapshot(coll, 1)
    assert client.recover_shard_snapshot(target, 1, shard_url(base_url, coll, 1, f"/{s1.name}")) is True
    assert_same_points(all_points(client, target), before)


def test_shard_recover_bad_input(client, node, base_url, coll):
    desc = client.create_shard_snapshot(coll, 1)
    data = (shard_dir(node, coll, 1) / desc.name).read_bytes()
    col_snap = client.create_snapshot(coll)
    client.set_payload(coll, payload={"changed": True}, points=models.Filter(), wait=True)
    current = all_points(client, coll)
    expect_error(shard_recover(base_url, coll, 1, file_url(shard_dir(node, coll, 1) / desc.name)), 400,
                 "file scheme")
    expect_error(shard_recover(base_url, coll, 1, "missing.snapshot"), 404, "missing.snapshot")
    expect_error(shard_recover(base_url, coll, 1, "../../" + desc.name), 404)
    expect_error(shard_recover(base_url, coll, 1, desc.name, checksum="cd" * 32), 400, "checksum mismatch")
    expect_error(shard_upload(base_url, coll, 1, data, checksum="cd" * 32), 400, "checksum")
    expect_error(shard_upload(base_url, coll, 1, data[: len(data) // 2]), 400, "snapshot")
    expect_error(shard_recover(base_url, coll, 1, "ftp://127.0.0.1/x"), 400, "not supported")
    expect_error(shard_recover(base_url, coll, 1, "http://127.0.0.1:1/x.snapshot"), 400, "127.0.0.1:1")
    # a collection snapshot is not a shard snapshot, and the other way round
    col_url = f"{base_url}/collections/{coll}/snapshots/{col_snap.name}"
    expect_error(shard_recover(base_url, coll, 1, col_url), 400, "snapshot")
    expect_error(recover(base_url, coll, file_url(shard_dir(node, coll, 1) / desc.name)), 400, "snapshot")
    # wait=false failures are recorded
    task = wait_task(base_url, accepted_task(shard_recover(base_url, coll, 1, "missing.snapshot", wait=False)))
    assert task["state"] == "failed" and "missing.snapshot" in task["error"], task
    assert_same_points(all_points(client, coll), current)
    assert leftovers(node) == []


def test_shard_url_recovery_can_be_disabled(node_factory, collection_name):
    node = node_factory(extra_env={"QDRANT__SERVICE__ENABLE_SNAPSHOT_URL_RECOVERY": "false"})
    client = node.client()
    create(client, collection_name, dim=DIM, count=50, shard_number=2)
    desc = client.create_shard_snapshot(collection_name, 0)
    url = shard_url(node.base_url, collection_name, 0, f"/{desc.name}")
    expect_error(shard_recover(node.base_url, collection_name, 0, url), 403, "disabled")
    # a file name in the shard's directory is not a URL recovery
    assert ok_result(shard_recover(node.base_url, collection_name, 0, desc.name)) is True
    assert client.count(collection_name, exact=True).count == 50
