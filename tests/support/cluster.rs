//! Clusters of shoal processes on loopback: starting the first and joining peers, and
//! bounded waits for the peers to agree.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::TestNode;

/// Elections take a few seconds with the default 100 ms tick; allow plenty.
pub const CLUSTER_WAIT: Duration = Duration::from_secs(45);

pub fn clustered() -> TestNode {
    TestNode::prepare(&[("QDRANT__CLUSTER__ENABLED", "true")])
}

pub fn peer_uri(node: &TestNode) -> String {
    format!("http://127.0.0.1:{}", node.p2p_port)
}

/// Starts the first peer of a new cluster.
pub fn first_peer() -> TestNode {
    let mut node = clustered();
    let args = vec!["--uri".to_string(), peer_uri(&node)];
    node.launch(&args);
    node
}

/// Starts a peer that joins through `bootstrap`.
pub fn joining_peer(bootstrap: &TestNode) -> TestNode {
    let mut node = clustered();
    let args = vec![
        "--uri".to_string(),
        peer_uri(&node),
        "--bootstrap".to_string(),
        peer_uri(bootstrap),
    ];
    node.launch(&args);
    node
}

pub fn cluster(node: &TestNode) -> Value {
    node.ok(node.get("/cluster"))
}

pub fn peer_id(node: &TestNode) -> u64 {
    cluster(node)["peer_id"].as_u64().expect("peer_id")
}

/// Polls `check` until it returns `Some`, for at most `CLUSTER_WAIT`.
pub fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + CLUSTER_WAIT;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {CLUSTER_WAIT:?} waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until every node in `nodes` sees the same `size`-peer membership, the same term and
/// the same leader, every one of them a voter; returns (leader id, term).
pub fn wait_for_agreement(nodes: &[&TestNode], size: usize) -> (u64, u64) {
    eventually(
        &format!("{} peers agree on a {size}-peer cluster", nodes.len()),
        || {
            let views: Vec<Value> = nodes.iter().map(|n| cluster(n)).collect();
            let first = &views[0]["raft_info"];
            let leader = first["leader"].as_u64()?;
            let term = first["term"].as_u64()?;
            let agreed = views.iter().all(|v| {
                v["status"] == "enabled"
                    && v["peers"].as_object().map(|p| p.len()) == Some(size)
                    && v["raft_info"]["leader"].as_u64() == Some(leader)
                    && v["raft_info"]["term"].as_u64() == Some(term)
                    && v["raft_info"]["is_voter"] == true
                    && v["consensus_thread_status"]["consensus_thread_status"] == "working"
            });
            let leaders = views
                .iter()
                .filter(|v| v["raft_info"]["role"] == "Leader")
                .count();
            (agreed && leaders == 1).then_some((leader, term))
        },
    )
}

/// Waits until `name` answers `GET /collections/{name}` on `node`.
pub fn wait_visible(node: &TestNode, name: &str) {
    eventually(&format!("collection {name} is visible on a peer"), || {
        (node.get(&format!("/collections/{name}")).0 == 200).then_some(())
    });
}

/// `(shard, peer) → state` of every replica of `collection`, as `node` sees them.
pub fn replica_states(node: &TestNode, collection: &str) -> BTreeMap<(u64, u64), String> {
    let info = node.ok(node.get(&format!("/collections/{collection}/cluster")));
    let me = info["peer_id"].as_u64().expect("peer_id");
    let mut out = BTreeMap::new();
    for local in info["local_shards"].as_array().expect("local_shards") {
        let state = local["state"].as_str().expect("state").to_string();
        out.insert((local["shard_id"].as_u64().expect("shard_id"), me), state);
    }
    for remote in info["remote_shards"].as_array().expect("remote_shards") {
        let key = (
            remote["shard_id"].as_u64().expect("shard_id"),
            remote["peer_id"].as_u64().expect("peer_id"),
        );
        out.insert(key, remote["state"].as_str().expect("state").to_string());
    }
    out
}

/// `(shard, peer) → points stored` for every local replica of `collection` on `nodes`.
pub fn stored_counts(nodes: &[&TestNode], collection: &str) -> BTreeMap<(u64, u64), u64> {
    let mut out = BTreeMap::new();
    for node in nodes {
        let info = node.ok(node.get(&format!("/collections/{collection}/cluster")));
        let me = info["peer_id"].as_u64().expect("peer_id");
        for local in info["local_shards"].as_array().expect("local_shards") {
            let key = (local["shard_id"].as_u64().expect("shard_id"), me);
            out.insert(key, local["points_count"].as_u64().expect("points_count"));
        }
    }
    out
}

/// Waits until every replica of `collection` is Active in every node's view and all
/// replicas of a shard store the same number of points; returns the per-replica counts.
pub fn wait_converged(nodes: &[&TestNode], collection: &str) -> BTreeMap<(u64, u64), u64> {
    eventually(
        &format!("every replica of {collection} is Active and alike"),
        || {
            for node in nodes {
                if !replica_states(node, collection)
                    .values()
                    .all(|s| s == "Active")
                {
                    return None;
                }
            }
            let counts = stored_counts(nodes, collection);
            let alike = counts.iter().all(|((shard, _), count)| {
                counts
                    .iter()
                    .filter(|((s, _), _)| s == shard)
                    .all(|(_, c)| c == count)
            });
            alike.then_some(counts)
        },
    )
}
