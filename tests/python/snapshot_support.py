"""Shared pieces of the snapshot suites (test_snapshots*.py): data that exercises every
payload shape, snapshot file locations, raw recover/upload calls, the task registry of
`wait=false` jobs, and hand-made archives (hostile or Qdrant-shaped)."""

import hashlib
import io
import re
import tarfile
import time
import uuid
from pathlib import Path

import requests
from qdrant_client import models

from helpers import HTTP_TIMEOUT_S, all_points, error_message, ok_result, poll

NAMESPACE = uuid.UUID("6ba7b811-9dad-11d1-80b4-00c04fd430c8")
TS = r"(\d{4})-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)"
CREATION_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$")
HEX64 = re.compile(r"^[0-9a-f]{64}$")
TASK_TIMEOUT_S = 60.0


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def point_id(i: int):
    """Every tenth id is a UUID, the rest are integers."""
    return str(uuid.uuid5(NAMESPACE, str(i))) if i % 10 == 0 else i


def payload(i: int, generation: int = 1) -> dict:
    return {
        "i": i,
        "gen": generation,
        "s": f"name-{i}",
        "f": i / 7,
        "tags": [f"t{i % 3}", f"t{i % 5}"],
        "nested": {"k": i % 4, "deep": {"even": i % 2 == 0}},
    }


def vector(i: int, dim: int, generation: int = 1) -> list[float]:
    # Deterministic and exactly representable in f32 (multiples of 1/64).
    return [((i * 31 + j * 17 + generation * 7) % 128 - 64) / 64.0 for j in range(dim)]


def fill(client, name: str, count: int, dim: int, generation: int = 1, names: tuple | None = None,
         first: int = 1, batch: int = 500) -> None:
    """Upserts points first..first+count-1 (wait=true); `names` makes named vectors."""
    for start in range(first, first + count, batch):
        ids = range(start, min(start + batch, first + count))
        if names:
            vectors = [{n: vector(i + k, dim, generation) for k, n in enumerate(names)} for i in ids]
        else:
            vectors = [vector(i, dim, generation) for i in ids]
        client.upsert(name, wait=True, points=models.Batch(
            ids=[point_id(i) for i in ids], vectors=vectors,
            payloads=[payload(i, generation) for i in ids],
        ))


def create(client, name: str, dim: int = 8, count: int = 0, distance=models.Distance.DOT, **kwargs) -> None:
    client.create_collection(name, vectors_config=models.VectorParams(size=dim, distance=distance), **kwargs)
    if count:
        fill(client, name, count, dim)


def mutate(client, name: str, dim: int, count: int) -> None:
    """Changes a collection in every way a recovery has to undo: new vectors and payloads,
    deleted points, payload edits, points that did not exist."""
    client.upsert(name, wait=True, points=[
        models.PointStruct(id=point_id(i), vector=vector(i, dim, 2), payload=payload(i, 2)) for i in range(1, 6)
    ])
    client.delete(name, points_selector=models.PointIdsList(points=[point_id(i) for i in range(6, 12)]), wait=True)
    client.set_payload(name, payload={"changed": True}, points=[point_id(12), point_id(13)], wait=True)
    client.clear_payload(name, points_selector=[point_id(14)], wait=True)
    client.upsert(name, wait=True, points=[
        models.PointStruct(id=count + k, vector=vector(count + k, dim, 3), payload={"new": k}) for k in range(1, 4)
    ])


def snapshot_file(node, collection: str, name: str) -> Path:
    return node.snapshots / collection / name


def file_url(path: Path) -> str:
    return "file://" + str(Path(path).resolve())


def snapshot_http_url(base_url: str, collection: str, name: str) -> str:
    return f"{base_url}/collections/{collection}/snapshots/{name}"


def download(base_url: str, path: str, **kwargs) -> requests.Response:
    return requests.get(base_url + path, timeout=HTTP_TIMEOUT_S, **kwargs)


def recover(base_url: str, collection: str, location: str, wait: bool = True, timeout: float = 60, **body):
    """Raw `PUT /collections/{c}/snapshots/recover`; returns the response."""
    body = {"location": location, **body}
    return requests.put(f"{base_url}/collections/{collection}/snapshots/recover",
                        params={"wait": str(wait).lower()}, json=body, timeout=timeout)


def upload(base_url: str, collection: str, data: bytes, filename: str = "uploaded.snapshot",
           field: str = "snapshot", timeout: float = 60, **params):
    """Raw multipart `POST /collections/{c}/snapshots/upload`."""
    params = {k: (str(v).lower() if isinstance(v, bool) else v) for k, v in params.items()}
    return requests.post(f"{base_url}/collections/{collection}/snapshots/upload", params=params,
                         files={field: (filename, data, "application/octet-stream")}, timeout=timeout)


def assert_recovered(resp, collection: str, created: bool, priority: str = "replica", shards: int = 1,
                     points: int | None = None) -> dict:
    """shoal's recover answer: result true plus a `recovery` report; returns the report."""
    assert ok_result(resp) is True
    report = resp.json().get("recovery")
    assert isinstance(report, dict), f"no recovery report: {resp.text[:500]}"
    assert report["collection"] == collection, report
    assert report["created"] is created, report
    assert report["priority"] == priority, report
    assert sorted(s["shard_id"] for s in report["shards"]) == list(range(shards)), report
    for s in report["shards"]:
        assert s["winner"] == "snapshot", report
        assert isinstance(s["points_on_this_peer"], int) and s["points_on_this_peer"] >= 0, report
    if points is not None:
        assert sum(s["points_on_this_peer"] for s in report["shards"]) == points, report
    return report


def accepted_task(resp) -> str:
    """A 202 for wait=false: body and Location header name the task; returns its id."""
    assert resp.status_code == 202, f"{resp.status_code}: {resp.text[:500]}"
    body = resp.json()
    assert body.get("status") == "accepted", body
    assert "result" not in body, body
    assert isinstance(body.get("time"), (int, float)), body
    task_id = body.get("task_id")
    assert isinstance(task_id, str) and task_id, body
    assert resp.headers.get("Location") == f"/snapshot-tasks/{task_id}", resp.headers
    return task_id


def get_task(base_url: str, task_id: str) -> dict:
    task = ok_result(requests.get(f"{base_url}/snapshot-tasks/{task_id}", timeout=HTTP_TIMEOUT_S))
    for key in ("id", "kind", "target", "state", "started_at", "finished_at", "bytes_done", "error", "result"):
        assert key in task, f"task without `{key}`: {task}"
    assert task["id"] == task_id
    assert task["state"] in ("running", "succeeded", "failed"), task
    return task


def wait_task(base_url: str, task_id: str, timeout: float = TASK_TIMEOUT_S) -> dict:
    """Polls (bounded) until the task is no longer running; returns it."""
    task = poll(lambda: (t := get_task(base_url, task_id))["state"] != "running" and t, timeout=timeout, interval=0.05)
    assert task, f"task {task_id} still running after {timeout}s: {get_task(base_url, task_id)}"
    return task


def wait_next_second() -> None:
    """Snapshot names have one-second resolution: make the next one get a new name."""
    start = int(time.time())
    while int(time.time()) == start:
        time.sleep(0.02)


def leftovers(node) -> list[str]:
    """Recovery and upload debris that must never outlive a request."""
    found = []
    collections = node.storage / "collections"
    if collections.exists():
        found += [p.name for p in collections.iterdir() if p.name.startswith(".recovery-")]
    if node.snapshots.exists():
        found += [str(p.relative_to(node.snapshots)) for p in node.snapshots.rglob("*")
                  if p.name.endswith((".upload", ".tmp"))]
    return found


def expect_error(resp, codes, *needles) -> str:
    """An error envelope with one of `codes` whose message mentions every needle (case-insensitive)."""
    msg = error_message(resp, codes)
    for needle in needles:
        assert needle.lower() in msg.lower(), f"`{msg}` does not mention `{needle}`"
    return msg


# ---------------------------------------------------------------- hand-made archives

def tar_members(data: bytes) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        return [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()]


def build_tar(entries: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:", format=tarfile.GNU_FORMAT) as tar:
        for info, content in entries:
            if content is not None:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
            else:
                tar.addfile(info)
    return out.getvalue()


def file_entry(name: str, content: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.mode = 0o644
    info.mtime = int(time.time())
    return info, content


def special_entry(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.mode = 0o644
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = 1, 3  # /dev/null's numbers
    return info, None


def qdrant_made_snapshot(dim: int = 8) -> bytes:
    """An archive in Qdrant 1.19's own layout (segment tar, WAL, metadata; no shoal files)."""
    segment = build_tar([
        file_entry("snapshot/files/segment.json", b'{"version":1,"config":{}}'),
        file_entry("snapshot/files/version.info", b"1.19.0"),
        file_entry("snapshot/files/vector_storage/vectors/chunk_0.mmap", bytes(4096)),
    ])
    config = (
        '{"params":{"vectors":{"size":%d,"distance":"Dot"},"shard_number":1,"replication_factor":1,'
        '"write_consistency_factor":1,"on_disk_payload":true},"hnsw_config":{"m":16,"ef_construct":100,'
        '"full_scan_threshold":10000},"optimizer_config":{"deleted_threshold":0.2,"vacuum_min_vector_number":1000,'
        '"default_segment_number":0,"flush_interval_sec":5},"wal_config":{"wal_capacity_mb":32,'
        '"wal_segments_ahead":0},"quantization_config":null,"uuid":"%s"}' % (dim, uuid.uuid4())
    ).encode()
    return build_tar([
        file_entry(f"0/segments/{uuid.uuid4()}.tar", segment),
        file_entry("0/wal/open-1", bytes(1024)),
        file_entry("0/replica_state.json", b'{"is_local":true,"this_peer_id":42,"peers":{"42":"Active"}}'),
        file_entry("0/shard_config.json", b'{"type":"ReplicaSet"}'),
        file_entry("version.info", b"1.19.0"),
        file_entry("config.json", config),
        file_entry("shard_key_mapping.json", b"[]"),
        file_entry("payload_index.json", b'{"schema":{}}'),
    ])


def snapshot_of(client, node, collection: str) -> tuple[str, bytes]:
    """Creates a snapshot (wait=true) and returns its name and bytes from disk."""
    desc = client.create_snapshot(collection, wait=True)
    assert desc is not None
    return desc.name, snapshot_file(node, collection, desc.name).read_bytes()


def state(client, collection: str) -> dict:
    return all_points(client, collection)
