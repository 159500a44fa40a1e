//! Every peer `GET /cluster` lists gets its share of replicas, and no shard stays below its
//! collection's replication factor while enough peers exist: collections created while the
//! cluster had one peer, and collections created in a tight loop while peers join, all
//! end with `replication_factor` Active replicas per shard holding the same points. Every
//! wait is bounded.

mod support;

use std::collections::BTreeSet;
use std::thread;

use serde_json::json;
use support::cluster::{
    eventually, first_peer, joining_peer, peer_id, replica_states, wait_converged,
};
use support::TestNode;

const DIM: usize = 4;

fn create(node: &TestNode, name: &str) {
    node.create_collection(
        name,
        json!({"vectors": {"size": DIM, "distance": "Dot"}, "shard_number": 2, "replication_factor": 3}),
    );
}

fn fill(node: &TestNode, name: &str, count: u64) {
    let points: Vec<_> = (0..count)
        .map(|id| json!({"id": id, "vector": [id as f32, 1.0, 0.0, 0.5]}))
        .collect();
    node.ok(node.put(
        &format!("/collections/{name}/points?wait=true"),
        &json!({ "points": points }),
    ));
}

/// Waits until every shard of `name` has a replica on each of `peers` (3), all Active and
/// holding `count` points in all.
fn assert_fully_replicated(nodes: &[&TestNode], name: &str, count: u64) {
    let ids: BTreeSet<u64> = nodes.iter().map(|n| peer_id(n)).collect();
    eventually(
        &format!("{name} has a replica of each shard on every peer"),
        || {
            let states = replica_states(nodes[0], name);
            let complete = (0..2u64).all(|shard| {
                ids.iter()
                    .all(|peer| states.get(&(shard, *peer)).map(String::as_str) == Some("Active"))
            });
            complete.then_some(())
        },
    );
    let counts = wait_converged(nodes, name);
    assert_eq!(counts.len(), 6, "{counts:?}");
    for shard in 0..2u64 {
        let per_shard: BTreeSet<u64> = counts
            .iter()
            .filter(|((s, _), _)| *s == shard)
            .map(|(_, c)| *c)
            .collect();
        assert_eq!(
            per_shard.len(),
            1,
            "replicas of shard {shard} agree: {counts:?}"
        );
    }
    let total: u64 = (0..2u64)
        .map(|shard| counts.iter().find(|((s, _), _)| *s == shard).unwrap().1)
        .sum();
    assert_eq!(total, count);
}

#[test]
fn a_collection_created_before_peers_joined_reaches_its_replication_factor() {
    let p1 = first_peer();
    create(&p1, "early");
    fill(&p1, "early", 120);
    let p2 = joining_peer(&p1);
    let p3 = joining_peer(&p1);
    let nodes = [&p1, &p2, &p3];
    assert_fully_replicated(&nodes, "early", 120);
    for node in nodes {
        assert_eq!(node.count("early"), 120);
    }
}

#[test]
fn collections_created_while_peers_join_all_get_every_replica() {
    let p1 = first_peer();
    let (p2, p3, names) = thread::scope(|scope| {
        let joins = scope.spawn(|| {
            let p2 = joining_peer(&p1);
            let p3 = joining_peer(&p1);
            (p2, p3)
        });
        let mut names = Vec::new();
        for i in 0..40 {
            let name = format!("loop{i}");
            create(&p1, &name);
            names.push(name);
            if joins.is_finished() && i >= 8 {
                break;
            }
        }
        let (p2, p3) = joins.join().expect("peers joined");
        (p2, p3, names)
    });
    // One more right after the last join is listed.
    create(&p1, "after");
    let nodes = [&p1, &p2, &p3];
    for name in names.iter().map(String::as_str).chain(["after"]) {
        fill(&p1, name, 10);
        assert_fully_replicated(&nodes, name, 10);
    }
}
