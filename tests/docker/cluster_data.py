"""Data helpers for the compose tests: deterministic points, writes and full scrolls
through one node, each node's view of a collection's replicas, shard routing, and
bounded polling."""

import hashlib
import time

import requests

HTTP_TIMEOUT_S = 30
RECOVER_TIMEOUT_S = 300
DIM = 8
BATCH = 500
SCROLL_PAGE = 1000
SCROLL_MAX_PAGES = 200


# ---------------------------------------------------------------- HTTP

def call(method: str, url: str, body=None, timeout: float = HTTP_TIMEOUT_S, **kwargs):
    """One request that must succeed with Qdrant's envelope; returns the whole body."""
    r = requests.request(method, url, json=body, timeout=timeout, **kwargs)
    assert r.status_code == 200, f"{method} {url} -> {r.status_code}: {r.text[:800]}"
    data = r.json()
    assert data.get("status") == "ok", data
    return data


def result(method: str, url: str, body=None, **kwargs):
    return call(method, url, body, **kwargs)["result"]


# ---------------------------------------------------------------- points

def vector(i: int, gen: int = 1) -> list[float]:
    return [((i * 31 + k * 17 + gen * 7) % 101) / 101.0 + 0.01 for k in range(DIM)]


def payload(i: int, gen: int = 1) -> dict:
    return {"n": i, "gen": gen, "text": f"point {i} generation {gen}", "tags": [i % 3, i % 5]}


def point(i: int, gen: int = 1) -> dict:
    return {"id": i, "vector": vector(i, gen), "payload": payload(i, gen)}


def create_collection(url: str, name: str, shards: int = 3, replication: int = 2) -> None:
    body = {
        "vectors": {"size": DIM, "distance": "Cosine"},
        "shard_number": shards,
        "replication_factor": replication,
    }
    assert result("PUT", f"{url}/collections/{name}", body) is True


def upsert(url: str, name: str, ids, gen: int = 1) -> None:
    ids = list(ids)
    for start in range(0, len(ids), BATCH):
        batch = [point(i, gen) for i in ids[start : start + BATCH]]
        result("PUT", f"{url}/collections/{name}/points?wait=true", {"points": batch})


def delete(url: str, name: str, ids) -> None:
    result("POST", f"{url}/collections/{name}/points/delete?wait=true", {"points": list(ids)})


def set_gen(url: str, name: str, ids, gen: int) -> None:
    """Overwrites the payload of `ids` with generation `gen` (vectors unchanged)."""
    for i in ids:
        result(
            "PUT",
            f"{url}/collections/{name}/points/payload?wait=true",
            {"payload": payload(i, gen), "points": [i]},
        )


def scroll_all(url: str, name: str, with_vector: bool = False) -> dict:
    """Every point as this node reads it: id -> payload (or (payload, vector))."""
    points = {}
    offset = None
    for _ in range(SCROLL_MAX_PAGES):
        body = {"limit": SCROLL_PAGE, "with_payload": True, "with_vector": with_vector}
        if offset is not None:
            body["offset"] = offset
        page = result("POST", f"{url}/collections/{name}/points/scroll", body)
        for p in page["points"]:
            points[p["id"]] = (p["payload"], p["vector"]) if with_vector else p["payload"]
        offset = page.get("next_page_offset")
        if offset is None:
            return points
    raise AssertionError(f"scroll of {name} on {url} did not end within {SCROLL_MAX_PAGES} pages")


def count(url: str, name: str) -> int:
    return result("POST", f"{url}/collections/{name}/points/count", {"exact": True})["count"]


# ---------------------------------------------------------------- shards

def shard_of(point_id: int, shard_number: int) -> int:
    """The shard shoal routes an integer id to: FNV-1a 64 over a 0 tag byte and the id's
    8 little-endian bytes, modulo the shard count (src/types.rs, stable by design).
    Tests check it against the per-shard counts the nodes report."""
    h = 0xCBF29CE484222325
    for b in bytes([0]) + point_id.to_bytes(8, "little"):
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h % shard_number


def by_shard(points: dict, shard_number: int) -> dict:
    split = {s: {} for s in range(shard_number)}
    for pid, value in points.items():
        split[shard_of(pid, shard_number)][pid] = value
    return split


def replicas(cluster, name: str) -> dict:
    """{shard_id: {node: {"state", "points_count"}}} from every node's own local shards,
    plus `transfers`: the transfers any node reports."""
    table: dict = {"transfers": []}
    for node in cluster.peer_ids:
        info = result("GET", f"{cluster.url(node)}/collections/{name}/cluster")
        for shard in info["local_shards"]:
            table.setdefault(shard["shard_id"], {})[node] = {
                "state": shard["state"],
                "points_count": shard["points_count"],
            }
        for shard in info["remote_shards"]:
            # A remote replica whose own node is unreachable still shows here.
            owner = cluster.node_of_peer(shard["peer_id"])
            table.setdefault(shard["shard_id"], {}).setdefault(
                owner, {"state": shard["state"], "points_count": None}
            )
        table["transfers"].extend(info.get("shard_transfers", []))
    return table


def all_active(table: dict) -> bool:
    return not table["transfers"] and all(
        r["state"] == "Active" for s, reps in table.items() if s != "transfers" for r in reps.values()
    )


def shard_counts(points: dict, shard_number: int) -> dict:
    return {s: len(p) for s, p in by_shard(points, shard_number).items()}


def check_routing(table: dict, expected: dict, shard_number: int) -> None:
    """Every replica holds exactly as many points as `expected` routes to its shard: proves
    shard_of mirrors the server before a test relies on it."""
    want = shard_counts(expected, shard_number)
    got = {s: {n: r["points_count"] for n, r in reps.items()} for s, reps in table.items() if s != "transfers"}
    for shard, reps in got.items():
        for node, n in reps.items():
            assert n == want[shard], f"shard {shard} on {node}: {n} points, expected {want[shard]}; all: {got}"


def local_shards(cluster, node: str, name: str) -> set:
    info = result("GET", f"{cluster.url(node)}/collections/{name}/cluster")
    return {s["shard_id"] for s in info["local_shards"]}


# ---------------------------------------------------------------- waiting

def wait_for(check, timeout: float, what: str, interval: float = 0.5):
    """Polls `check()` -> (done, seen) until done (bounded); returns the last `seen`."""
    deadline = time.monotonic() + timeout
    seen = None
    while True:
        try:
            done, seen = check()
        except (requests.RequestException, AssertionError) as e:
            done, seen = False, repr(e)
        if done:
            return seen
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout:.0f}s; last seen: {seen}")
        time.sleep(interval)


def wait_converged(cluster, name: str, expected: dict, shard_number: int, timeout: float = 120) -> dict:
    """Until every replica is Active, no transfer runs, every replica's count matches
    `expected` for its shard and every node scrolls exactly `expected`."""
    def check():
        table = replicas(cluster, name)
        if not all_active(table):
            return False, table
        check_routing(table, expected, shard_number)
        for node in cluster.peer_ids:
            seen = scroll_all(cluster.url(node), name)
            if seen != expected:
                missing = sorted(set(expected) - set(seen))[:10]
                extra = sorted(set(seen) - set(expected))[:10]
                differ = [k for k in expected if k in seen and seen[k] != expected[k]][:10]
                return False, f"{node}: missing {missing} extra {extra} different {differ}"
        return True, table

    return wait_for(check, timeout, f"{name} converged on every replica")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
