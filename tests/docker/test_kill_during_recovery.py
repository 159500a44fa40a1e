"""Issue 5, item 6 (c): `docker kill` the node that is recovering a collection snapshot
(big enough that the recovery takes seconds), start it again, and check that the cluster
is healthy (every node: same leader, all peers, voters) and the data survived: the
snapshot holds the same points as the collection, so whether the recovery was cut short
or not, every replica must end up Active with exactly the points written before."""

import requests

from cluster_data import (
    BATCH,
    RECOVER_TIMEOUT_S,
    create_collection,
    payload,
    result,
    scroll_all,
    vector,
    wait_converged,
    wait_for,
)
from test_snapshot_priorities import snapshot_on

NAME = "big"
SHARDS = 3
RF = 2
N = 40_000
BLOB = "x" * 400  # node1's snapshot is ~14 MB: the recovery takes seconds


def big_payload(i: int) -> dict:
    return dict(payload(i), blob=BLOB)


def fill(url: str) -> None:
    for start in range(0, N, 2 * BATCH):
        points = [
            {"id": i, "vector": vector(i), "payload": big_payload(i)}
            for i in range(start, min(N, start + 2 * BATCH))
        ]
        result("PUT", f"{url}/collections/{NAME}/points?wait=true", {"points": points}, timeout=120)


def test_kill_the_recovering_node(cluster):
    node1, node2 = cluster.url("node1"), cluster.url("node2")
    create_collection(node1, NAME, SHARDS, RF)
    fill(node1)
    before = scroll_all(node1, NAME)
    assert before == {i: big_payload(i) for i in range(N)}
    wait_converged(cluster, NAME, before, SHARDS, timeout=180)
    snapshot = snapshot_on(cluster, "node1", NAME)

    r = requests.put(
        f"{node2}/collections/{NAME}/snapshots/recover?wait=false",
        json={
            "location": f"http://node1:6333/collections/{NAME}/snapshots/{snapshot['name']}",
            "priority": "snapshot",
        },
        timeout=RECOVER_TIMEOUT_S,
    )
    assert r.status_code == 202, r.text
    task_id = r.json()["task_id"]

    def running():
        task = result("GET", f"{node2}/snapshot-tasks/{task_id}")
        assert task["state"] != "failed", task
        return task["state"] != "running" or task.get("bytes_done", 0) > 0, task

    task = wait_for(running, 60, "the recovery on node2 under way", interval=0.05)
    cluster.kill("node2")
    print(f"node2 killed while its recovery task was {task['state']} ({task.get('bytes_done')} bytes done)")

    cluster.start("node2")
    leader = cluster.wait_formed()
    assert leader in cluster.peer_ids.values()
    # Every replica Active again, each with its shard's points, and every node reads
    # exactly the points written before.
    wait_converged(cluster, NAME, before, SHARDS, timeout=240)
