//! Replica divergence in a real three-peer cluster on 127.0.0.1: a raw `Shards/Apply` on
//! the peer port deletes points from one replica only (as an attacker on the unauthenticated
//! peer port can), and the periodic consistency check (every second here) finds it, marks
//! that replica Dead, the recovery re-syncs it, and all replicas agree again. Every wait is
//! bounded.

mod support;

use std::collections::BTreeMap;

use serde_json::{json, Value};
use shoal::replication::remote::encode_op;
use shoal::shard::ops::{PointSelector, ShardOp};
use shoal::transport::proto::shards_client::ShardsClient;
use shoal::transport::proto::ShardOpRequest;
use shoal::types::PointId;
use support::cluster::{
    eventually, peer_id, peer_uri, stored_counts, three_peers_with, wait_converged,
};
use support::TestNode;

const NAME: &str = "checked";
const POINTS: u64 = 200;
const DELETED: u64 = 50;

fn upsert_all(node: &TestNode) {
    let points: Vec<Value> = (0..POINTS)
        .map(|id| {
            let x = id as f32;
            json!({
                "id": id,
                "vector": [x + 0.1, 1.0 / (x + 1.0), (x * 0.37).sin(), 3.3],
                "payload": {"n": id, "tag": format!("p{id}")}
            })
        })
        .collect();
    node.ok(node.put(
        &format!("/collections/{NAME}/points?wait=true"),
        &json!({ "points": points }),
    ));
}

/// Deletes points straight on one peer's replica through the peer port, bypassing the
/// replica set: only that replica loses them.
fn delete_on_one_replica(victim: &TestNode) {
    let ids: Vec<PointId> = (0..DELETED).map(PointId::Num).collect();
    let op = encode_op(&ShardOp::Delete(PointSelector::Ids(ids)));
    let uri = peer_uri(victim);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let mut client = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            ShardsClient::connect(uri),
        )
        .await
        .expect("connecting in time")
        .expect("connecting to the peer port");
        let request = ShardOpRequest {
            collection: NAME.to_string(),
            shard_id: 0,
            op,
            wait: true,
            min_applied_index: 0,
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), client.apply(request))
            .await
            .expect("an answer in time")
            .expect("the raw delete is applied");
    });
}

/// `GET /collections/{NAME}/cluster` on `node`: its local shard 0.
fn local_shard(node: &TestNode) -> Value {
    let info = node.ok(node.get(&format!("/collections/{NAME}/cluster")));
    info["local_shards"][0].clone()
}

#[test]
fn a_replica_that_lost_points_behind_the_cluster_is_found_and_resynced() {
    let peers = three_peers_with(&[("QDRANT__CLUSTER__CONSISTENCY_CHECK_INTERVAL_SEC", "1")]);
    let all: Vec<&TestNode> = peers.iter().collect();
    peers[0].create_collection(
        NAME,
        json!({
            "vectors": {"size": 4, "distance": "Cosine"},
            "shard_number": 1,
            "replication_factor": 3,
            "write_consistency_factor": 3
        }),
    );
    for peer in &peers {
        support::cluster::wait_visible(peer, NAME);
    }
    upsert_all(&peers[0]);
    let counts = wait_converged(&all, NAME);
    assert!(counts.values().all(|c| *c == POINTS), "{counts:?}");

    // The reference replica (lowest peer id) checks; the victim is the highest.
    let mut by_id: Vec<(u64, &TestNode)> = peers.iter().map(|p| (peer_id(p), p)).collect();
    by_id.sort_by_key(|(id, _)| *id);
    let (reference_id, reference) = by_id[0];
    let (victim_id, victim) = by_id[2];
    eventually("the reference reports a consistent check", || {
        (local_shard(reference)["consistency_check"]["status"] == "consistent").then_some(())
    });

    delete_on_one_replica(victim);
    let counts = stored_counts(&all, NAME);
    assert_eq!(counts[&(0, victim_id)], POINTS - DELETED, "{counts:?}");
    assert_eq!(counts[&(0, reference_id)], POINTS, "{counts:?}");

    // Found, marked Dead, re-synced from the reference: every replica Active and full.
    eventually("the check marked the diverged replica dead", || {
        let check = local_shard(reference)["consistency_check"].clone();
        (check["replicas_marked_dead"].as_u64() == Some(1)).then_some(())
    });
    let counts = wait_converged(&all, NAME);
    assert!(counts.values().all(|c| *c == POINTS), "{counts:?}");
    let check = eventually("a later check finds the replicas consistent", || {
        let check = local_shard(reference)["consistency_check"].clone();
        (check["status"] == "consistent").then_some(check)
    });
    assert_eq!(check["replicas_marked_dead"], 1, "{check}");
    assert!(check["last_checked"].is_string(), "{check}");
    assert!(
        reference
            .log()
            .contains("diverged from the others; marked it dead"),
        "the divergence is logged"
    );

    // Each peer reads its own replica first: every one holds the same points, payloads and
    // vectors (bit for bit, as JSON).
    let views: Vec<BTreeMap<String, Value>> = peers.iter().map(|p| p.points(NAME)).collect();
    assert_eq!(views[0].len() as u64, POINTS);
    for view in &views[1..] {
        assert_eq!(view, &views[0]);
    }
}
