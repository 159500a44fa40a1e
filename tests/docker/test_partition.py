"""Issue 5, item 6 (d): one node is cut off the compose network (`docker network
disconnect`), the majority keeps taking writes, the node is reconnected, and every
replica must converge: all Active again, the same count per shard on every replica,
identical points on every node."""

from cluster_data import (
    create_collection,
    delete,
    payload,
    result,
    set_gen,
    upsert,
    wait_converged,
    wait_for,
)

NAME = "partitioned"
SHARDS = 3
RF = 2
N = 1200


def test_cut_off_node_converges_after_reconnect(cluster):
    node1 = cluster.url("node1")
    create_collection(node1, NAME, SHARDS, RF)
    upsert(node1, NAME, range(N))
    data = {i: payload(i) for i in range(N)}
    wait_converged(cluster, NAME, data, SHARDS)
    leader_before = cluster.wait_formed()

    # (While node3 is off the network its published ports answer nothing either.)
    cluster.disconnect("node3")
    try:
        # The majority (node1, node2) still has a leader and takes writes; replicas on
        # node3 miss them.
        upsert(node1, NAME, range(N, N + 300), gen=2)
        delete(node1, NAME, range(0, 150))
        set_gen(node1, NAME, range(150, 200), gen=3)
        for i in range(N, N + 300):
            data[i] = payload(i, 2)
        for i in range(0, 150):
            del data[i]
        for i in range(150, 200):
            data[i] = payload(i, 3)
        # The replicas on node3 missed writes: the majority marks them Dead.
        def node3_marked_dead():
            info = result("GET", f"{node1}/collections/{NAME}/cluster")
            on_node3 = [r["state"] for r in info["remote_shards"] if r["peer_id"] == cluster.peer_ids["node3"]]
            return bool(on_node3) and all(s == "Dead" for s in on_node3), info

        wait_for(node3_marked_dead, 60, "node3's replicas marked Dead on node1")
        # Reads through the majority see the writes.
        assert result("POST", f"{cluster.url('node2')}/collections/{NAME}/points/count", {"exact": True})[
            "count"
        ] == len(data)
    finally:
        cluster.reconnect("node3")

    # The cluster heals: one leader, all three peers, as every node sees it.
    leader_after = cluster.wait_formed()
    assert leader_after in cluster.peer_ids.values()
    # node3's stale replicas are refilled: every replica Active with the majority's data.
    table = wait_converged(cluster, NAME, data, SHARDS, timeout=150)
    for shard in range(SHARDS):
        assert len(table[shard]) == RF, table
    print(f"leader before {leader_before}, after {leader_after}; replicas {table}")
