"""Bad input to the snapshot endpoints: the status, a clear message in the JSON error
envelope, and that nothing stored changed (every point compared before and after, no
file touched outside the snapshot directories, no recovery debris left behind)."""

import contextlib
import http.client
import os
import tarfile
import uuid

import pytest
import requests
from qdrant_client import models
from qdrant_client.http.exceptions import UnexpectedResponse

from helpers import HTTP_TIMEOUT_S, SnapshotHttpServer, all_points, assert_same_points, error_message
from snapshot_support import (
    accepted_task, assert_recovered, build_tar, create, download, expect_error, file_entry, file_url,
    leftovers, mutate, qdrant_made_snapshot, recover, sha256_hex, snapshot_file, snapshot_of,
    special_entry, tar_members, upload, wait_task,
)

DIM = 8
COUNT = 60


@pytest.fixture
def coll(client, collection_name):
    create(client, collection_name, dim=DIM, count=COUNT)
    return collection_name


@contextlib.contextmanager
def unchanged(client, node, collection: str):
    """Asserts that the block changes no point of `collection`, its snapshot list, and
    leaves no recovery or upload debris."""
    points = all_points(client, collection)
    listed = client.list_snapshots(collection)
    yield
    assert_same_points(all_points(client, collection), points, "after a rejected request")
    assert client.list_snapshots(collection) == listed
    assert leftovers(node) == []


def stage(node, collection: str, name: str, data: bytes):
    """Puts an archive into the collection's snapshot dir (where file:// may point)."""
    path = snapshot_file(node, collection, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def raw(method: str, port: int, path: str) -> tuple[int, bytes]:
    """A request whose path goes out byte for byte (no client-side normalisation)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_TIMEOUT_S)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


# ---------------------------------------------------------------- missing things

def test_missing_collection_is_404(client, base_url, collection_name):
    missing = collection_name + "_nope"
    for call in (lambda: client.create_snapshot(missing), lambda: client.list_snapshots(missing),
                 lambda: client.delete_snapshot(missing, "x.snapshot")):
        with pytest.raises(UnexpectedResponse) as e:
            call()
        assert e.value.status_code == 404
    expect_error(requests.post(f"{base_url}/collections/{missing}/snapshots", timeout=HTTP_TIMEOUT_S), 404,
                 f"Collection `{missing}` doesn't exist")
    # wait=false does not hide it either
    expect_error(requests.post(f"{base_url}/collections/{missing}/snapshots", params={"wait": "false"},
                               timeout=HTTP_TIMEOUT_S), 404, missing)
    expect_error(download(base_url, f"/collections/{missing}/snapshots/x.snapshot"), 404, missing)
    assert client.collection_exists(missing) is False


def test_missing_snapshot_is_404_with_a_json_envelope(client, node, base_url, coll):
    with unchanged(client, node, coll):
        resp = download(base_url, f"/collections/{coll}/snapshots/nope.snapshot")
        assert resp.headers["Content-Type"].startswith("application/json"), resp.headers
        expect_error(resp, 404, "Snapshot nope.snapshot not found")
        expect_error(requests.delete(f"{base_url}/collections/{coll}/snapshots/nope.snapshot",
                                     timeout=HTTP_TIMEOUT_S), 404, "nope.snapshot")
        expect_error(download(base_url, "/snapshots/nope.snapshot"), 404, "nope.snapshot")
        expect_error(requests.delete(f"{base_url}/snapshots/nope.snapshot", timeout=HTTP_TIMEOUT_S), 404)
        # a wait=false delete of a missing snapshot fails inside its task
        task = wait_task(base_url, accepted_task(requests.delete(
            f"{base_url}/collections/{coll}/snapshots/nope.snapshot", params={"wait": "false"},
            timeout=HTTP_TIMEOUT_S)))
        assert task["state"] == "failed" and "not found" in task["error"].lower(), task


def test_snapshot_names_cannot_leave_their_directory(client, node, base_url, coll):
    other = coll + "_other"
    create(client, other, count=3)
    victims = {
        "sibling": (node.snapshots / other / "victim.snapshot", "..%2F" + other + "%2Fvictim.snapshot"),
        "root": (node.snapshots / "victim-root.snapshot", "..%2Fvictim-root.snapshot"),
        "outside": (node.root / "victim.snapshot", "..%2F..%2Fvictim.snapshot"),
        "absolute": (node.root / "abs-victim.snapshot", "%2F" + str(node.root / "abs-victim.snapshot")
                     .lstrip("/").replace("/", "%2F")),
    }
    for path, _ in victims.values():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"VICTIM " + path.name.encode())
    name = client.create_snapshot(coll).name
    with unchanged(client, node, coll):
        for label, (path, encoded) in victims.items():
            for method in ("GET", "DELETE"):
                status, body = raw(method, node.http_port, f"/collections/{coll}/snapshots/{encoded}")
                assert status in (400, 404), f"{label} {method}: {status} {body[:200]!r}"
                assert b"VICTIM" not in body, f"{label}: served a file outside the directory"
            assert path.read_bytes() == b"VICTIM " + path.name.encode(), f"{label} was touched"
        # unencoded dot segments and a slash
        for suffix in ("..", "%2E%2E", ".", f"../{other}/victim.snapshot", f"..%2F{name}", f"sub/{name}",
                       f"%2F{name}"):
            for method in ("GET", "DELETE"):
                status, body = raw(method, node.http_port, f"/collections/{coll}/snapshots/{suffix}")
                assert status in (400, 404), f"{suffix} {method}: {status} {body[:200]!r}"
                assert b"VICTIM" not in body
        # the same through the full-snapshot routes
        for encoded in ("..%2Fvictim.snapshot", f"{coll}%2F{name}", ".."):
            for method in ("GET", "DELETE"):
                status, body = raw(method, node.http_port, f"/snapshots/{encoded}")
                assert status in (400, 404), f"/snapshots/{encoded} {method}: {status}"
        for path, _ in victims.values():
            assert path.exists()
        assert snapshot_file(node, coll, name).exists()


# ---------------------------------------------------------------- hostile archives

HOSTILE = ["dotdot", "dotdot_inside", "absolute", "symlink", "symlink_then_write", "hardlink", "chardev",
           "blockdev", "fifo"]


def hostile_archive(kind: str, real: bytes, node) -> tuple[bytes, list]:
    """A real snapshot with one evil entry put first; returns it and the paths that
    must not exist afterwards."""
    u = uuid.uuid4().hex[:8]
    escape = f"escape-{u}"
    sentinel = node.root / "sentinel.txt"
    watch = [node.root / escape, node.storage / escape, node.storage.parent / escape, node.snapshots / escape,
             node.root.parent / escape, f"/tmp/{escape}"]
    evil = {
        "dotdot": [file_entry(f"../../../{escape}", b"pwned")],
        "dotdot_inside": [file_entry(f"0/../../../../{escape}", b"pwned")],
        "absolute": [file_entry(f"/tmp/{escape}", b"pwned")],
        "symlink": [special_entry("0/link", tarfile.SYMTYPE, str(node.root))],
        "symlink_then_write": [special_entry("0/up", tarfile.SYMTYPE, str(node.root)),
                               file_entry(f"0/up/{escape}", b"pwned")],
        "hardlink": [special_entry("0/hl", tarfile.LNKTYPE, str(sentinel))],
        "chardev": [special_entry("0/dev", tarfile.CHRTYPE)],
        "blockdev": [special_entry("0/blk", tarfile.BLKTYPE)],
        "fifo": [special_entry("0/fifo", tarfile.FIFOTYPE)],
    }[kind]
    return build_tar(evil + tar_members(real)), [os.fspath(p) for p in watch]


@pytest.mark.parametrize("via", ["file", "upload"])
@pytest.mark.parametrize("kind", HOSTILE)
def test_hostile_archive_is_400_and_writes_nothing_outside(client, node, base_url, coll, kind, via):
    _, real = snapshot_of(client, node, coll)
    mutate(client, coll, DIM, COUNT)
    sentinel = node.root / "sentinel.txt"
    sentinel.write_bytes(b"original")
    data, watch = hostile_archive(kind, real, node)
    with unchanged(client, node, coll):
        if via == "file":
            path = stage(node, coll + "_hostile", f"{kind}.snapshot", data)
            resp = recover(base_url, coll, file_url(path))
        else:
            resp = upload(base_url, coll, data, filename=f"{kind}.snapshot")
            snapshot_file(node, coll, f"{kind}.snapshot").unlink(missing_ok=True)  # uploads are kept by design
        expect_error(resp, 400, "snapshot")
    for path in watch:
        assert not os.path.lexists(path), f"{kind}: {path} was written"
    assert sentinel.read_bytes() == b"original" and sentinel.stat().st_nlink == 1, f"{kind}: sentinel touched"
    # into a new name: refused too, and no collection appears
    fresh = coll + "_new"
    path = stage(node, coll + "_hostile", f"{kind}-2.snapshot", data)
    expect_error(recover(base_url, fresh, file_url(path)), 400)
    assert client.collection_exists(fresh) is False
    assert leftovers(node) == []


# ---------------------------------------------------------------- damaged archives

def corrupt_variants(real: bytes) -> dict:
    members = tar_members(real)
    data_members = [(m, d) for m, d in members if m.isfile() and m.size > 16
                    and not m.name.endswith(".json") and m.name.startswith("0/")]
    assert data_members, [m.name for m, _ in members]
    victim, _ = data_members[0]
    flipped = bytearray(real)
    at = victim.offset_data + victim.size // 2
    flipped[at] ^= 0x01
    manifest = [m for m, _ in members if m.name == "shoal-manifest.json"][0]
    extra = build_tar(members[:-1] + [file_entry("0/extra.bin", b"not in the manifest")] + members[-1:])
    return {
        "truncated_half": (real[: len(real) // 2], "snapshot"),
        "truncated_before_manifest": (real[: manifest.offset], "manifest"),
        "truncated_mid_block": (real[: victim.offset_data + 7], "snapshot"),
        "flipped_byte_in_data": (bytes(flipped), victim.name),
        "file_not_in_manifest": (extra, "extra.bin"),
        "not_a_tar": (os.urandom(3000), "snapshot"),
        "empty": (b"", "snapshot"),
        "qdrant_made": (qdrant_made_snapshot(DIM), "not a shoal snapshot"),
    }


@pytest.mark.parametrize("variant", ["truncated_half", "truncated_before_manifest", "truncated_mid_block",
                                     "flipped_byte_in_data", "file_not_in_manifest", "not_a_tar", "empty",
                                     "qdrant_made"])
def test_damaged_archive_is_400_and_changes_nothing(client, node, base_url, coll, variant):
    _, real = snapshot_of(client, node, coll)
    mutate(client, coll, DIM, COUNT)
    data, needle = corrupt_variants(real)[variant]
    path = stage(node, coll + "_damaged", f"{variant}.snapshot", data)
    with unchanged(client, node, coll):
        expect_error(recover(base_url, coll, file_url(path)), 400, needle)
        resp = upload(base_url, coll, data, filename=f"{variant}.snapshot")
        snapshot_file(node, coll, f"{variant}.snapshot").unlink(missing_ok=True)
        expect_error(resp, 400, needle)
    fresh = coll + "_new"
    expect_error(recover(base_url, fresh, file_url(path)), 400)
    assert client.collection_exists(fresh) is False


def test_wrong_checksum_on_recover_is_400(client, node, base_url, coll):
    desc = client.create_snapshot(coll)
    mutate(client, coll, DIM, COUNT)
    location = file_url(snapshot_file(node, coll, desc.name))
    wrong = "ab" * 32
    with unchanged(client, node, coll):
        msg = expect_error(recover(base_url, coll, location, checksum=wrong), 400, "checksum mismatch")
        assert wrong in msg and desc.checksum in msg, msg
        with SnapshotHttpServer({"/s.snapshot": snapshot_file(node, coll, desc.name).read_bytes()}) as source:
            expect_error(recover(base_url, coll, source.url("/s.snapshot"), checksum=wrong), 400, "checksum mismatch")
        resp = recover(base_url, coll, location, checksum="not-a-sha256")
        assert resp.status_code in (400, 422), resp.text
        error_message(resp, (400, 422))
    # the right checksum, in upper case, is accepted
    assert_recovered(recover(base_url, coll, location, checksum=desc.checksum.upper()), coll, created=False)


def test_incompatible_snapshot_into_an_existing_collection_is_400(client, node, base_url, coll, collection_name):
    other_dim = collection_name + "_dim4"
    create(client, other_dim, dim=4, count=10)
    other_shards = collection_name + "_shards2"
    create(client, other_shards, dim=DIM, count=10, shard_number=2)
    other_distance = collection_name + "_euclid"
    create(client, other_distance, dim=DIM, count=10, distance=models.Distance.EUCLID)
    mutate(client, coll, DIM, COUNT)
    with unchanged(client, node, coll):
        for source in (other_dim, other_shards, other_distance):
            desc = client.create_snapshot(source)
            expect_error(recover(base_url, coll, file_url(snapshot_file(node, source, desc.name))), 400,
                         "not compatible")
    assert client.get_collection(coll).config.params.vectors.size == DIM


# ---------------------------------------------------------------- locations

def test_file_locations_are_confined_to_the_snapshots_dir(client, node, base_url, coll):
    _, data = snapshot_of(client, node, coll)
    outside = node.root / "outside.snapshot"
    outside.write_bytes(data)
    link = node.snapshots / coll / "link-out.snapshot"
    link.symlink_to(outside)
    sneaky = f"file://{node.snapshots.resolve()}/{coll}/../../outside.snapshot"
    mutate(client, coll, DIM, COUNT)
    with unchanged(client, node, coll):
        for location in (file_url(outside), "file://" + str(link), sneaky):
            expect_error(recover(base_url, coll, location), 403, "inside the snapshots directory")
        expect_error(recover(base_url, coll, file_url(node.snapshots / coll / "missing.snapshot")), 400,
                     "does not exist")
        expect_error(recover(base_url, coll, "file://otherhost" + str(snapshot_file(node, coll, "x.snapshot"))),
                     400, "localhost")
        expect_error(recover(base_url, coll, file_url(node.snapshots / coll)), 400)  # a directory
        expect_error(recover(base_url, coll, "ftp://127.0.0.1/x.snapshot"), 400, "scheme ftp is not supported")
        expect_error(recover(base_url, coll, "s3://bucket/x.snapshot"), 400, "not supported")
        expect_error(recover(base_url, coll, "x.snapshot"), 400)
        expect_error(recover(base_url, coll, ""), 400)
        resp = requests.put(f"{base_url}/collections/{coll}/snapshots/recover", json={}, timeout=HTTP_TIMEOUT_S)
        error_message(resp, (400, 422))
        resp = requests.put(f"{base_url}/collections/{coll}/snapshots/recover",
                            json={"location": file_url(outside), "priority": "sometimes"}, timeout=HTTP_TIMEOUT_S)
        expect_error(resp, (400, 422), "sometimes")
    assert outside.read_bytes() == data
    assert client.collection_exists(coll + "_x") is False


def test_http_sources_that_fail(client, node, base_url, coll):
    with unchanged(client, node, coll):
        with SnapshotHttpServer({"/page": b"<html>not a snapshot</html>"}) as source:
            expect_error(recover(base_url, coll, source.url("/missing.snapshot")), 400, "404")
            expect_error(recover(base_url, coll, source.url("/page")), 400, "snapshot")
        # nothing listens on port 1: a clear error well within the client's timeout
        with pytest.raises(UnexpectedResponse) as e:
            client.recover_snapshot(coll, "http://127.0.0.1:1/x.snapshot")
        assert 400 <= e.value.status_code < 600
        msg = e.value.content.decode()
        assert "127.0.0.1:1" in msg, msg


def test_url_recovery_can_be_disabled(node_factory, collection_name):
    node = node_factory(extra_env={"QDRANT__SERVICE__ENABLE_SNAPSHOT_URL_RECOVERY": "false"})
    client, base_url = node.client(), node.base_url
    create(client, collection_name, dim=DIM, count=COUNT)
    before = all_points(client, collection_name)
    desc = client.create_snapshot(collection_name)
    data = snapshot_file(node, collection_name, desc.name).read_bytes()
    mutate(client, collection_name, DIM, COUNT)
    with unchanged(client, node, collection_name):
        for url in (f"{base_url}/collections/{collection_name}/snapshots/{desc.name}", "https://127.0.0.1:1/x"):
            expect_error(recover(base_url, collection_name, url), 403, "disabled")
        task = wait_task(base_url, accepted_task(recover(
            base_url, collection_name, f"{base_url}/collections/{collection_name}/snapshots/{desc.name}", wait=False)))
        assert task["state"] == "failed" and "disabled" in task["error"], task
    # file:// and uploads are not URL recoveries
    assert_recovered(recover(base_url, collection_name, file_url(snapshot_file(node, collection_name, desc.name))),
                     collection_name, created=False)
    assert_same_points(all_points(client, collection_name), before)
    mutate(client, collection_name, DIM, COUNT)
    assert_recovered(upload(base_url, collection_name, data), collection_name, created=False)
    assert_same_points(all_points(client, collection_name), before)


def test_bad_wait_parameter_is_400(client, node, base_url, coll):
    with unchanged(client, node, coll):
        resp = requests.post(f"{base_url}/collections/{coll}/snapshots", params={"wait": "maybe"},
                             timeout=HTTP_TIMEOUT_S)
        error_message(resp, 400)
    assert client.list_snapshots(coll) == []


@pytest.mark.parametrize("where", ["before_any_byte", "inside_a_header", "inside_a_file", "before_the_manifest"])
def test_http_source_that_drops_the_connection(client, node, base_url, coll, where):
    """The source announces the whole length, sends part of it and hangs up: a
    truncated archive, refused with 400; the collection keeps its data."""
    _, data = snapshot_of(client, node, coll)
    members = tar_members(data)
    biggest = max((m for m, _ in members if m.isfile()), key=lambda m: m.size)
    manifest = [m for m, _ in members if m.name == "shoal-manifest.json"][0]
    cut = {"before_any_byte": 0, "inside_a_header": 100, "inside_a_file": biggest.offset_data + biggest.size // 2,
           "before_the_manifest": manifest.offset}[where]
    mutate(client, coll, DIM, COUNT)
    with unchanged(client, node, coll):
        with SnapshotHttpServer({"/s.snapshot": data}, cut_after=cut) as source:
            expect_error(recover(base_url, coll, source.url("/s.snapshot")), 400)
    fresh = coll + "_new"
    with SnapshotHttpServer({"/s.snapshot": data}, cut_after=cut) as source:
        expect_error(recover(base_url, fresh, source.url("/s.snapshot")), 400)
    assert client.collection_exists(fresh) is False


def test_upload_file_name_is_never_used_as_a_path(client, node, base_url, coll):
    # An upload is unpacked as it arrives; its client-side file name is never a path.
    before = all_points(client, coll)
    name, data = snapshot_of(client, node, coll)
    mutate(client, coll, DIM, COUNT)
    escape = f"escape-{uuid.uuid4().hex[:8]}.snapshot"
    resp = upload(base_url, coll, data, filename=f"../../../{escape}")
    assert_recovered(resp, coll, created=False)
    assert_same_points(all_points(client, coll), before)
    assert not snapshot_file(node, coll, escape).exists()
    for parent in (node.snapshots, node.root, node.root.parent, node.storage):
        assert not (parent / escape).exists(), f"written to {parent}"
    assert {d.name for d in client.list_snapshots(coll)} == {name}
