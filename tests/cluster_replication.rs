//! Point data in a real three-peer cluster on 127.0.0.1: shards placed over the peers with
//! two replicas each, writes through one peer read back through the others, a killed peer's
//! replicas marked Dead while writes go on, and a shard whose only Active replica is gone
//! answering 503. Every wait is bounded.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::cluster::{
    eventually, first_peer, joining_peer, peer_id, three_peers_with, wait_for_agreement,
};
use support::{vectors, TestNode};

const NAME: &str = "replicated";
const DIM: usize = 8;

/// `(shard, peer) → state` from `GET /collections/{NAME}/cluster` on `node`.
fn replicas(node: &TestNode) -> BTreeMap<(u64, u64), String> {
    support::cluster::replica_states(node, NAME)
}

fn point(id: u64, vector: &[f32]) -> Value {
    json!({"id": id, "vector": vector, "payload": {"n": id, "tag": format!("p{id}")}})
}

fn upsert(node: &TestNode, ids: std::ops::Range<u64>, all: &[Vec<f32>]) -> (u16, Value) {
    let points: Vec<Value> = ids.map(|id| point(id, &all[id as usize])).collect();
    node.put(
        &format!("/collections/{NAME}/points?wait=true"),
        &json!({ "points": points }),
    )
}

fn exact_search(node: &TestNode, query: &[f32]) -> Value {
    let body =
        json!({"vector": query, "limit": 20, "params": {"exact": true}, "with_payload": true});
    let hits = node.ok(node.post(&format!("/collections/{NAME}/points/search"), &body));
    assert_eq!(hits.as_array().unwrap().len(), 20, "{hits}");
    hits
}

/// Every point of `ids` read back through `node` (retrieve), with its payload and vector.
fn check_retrieve(node: &TestNode, count: u64, all: &[Vec<f32>]) {
    let ids: Vec<u64> = (0..count).collect();
    let body = json!({"ids": ids, "with_payload": true, "with_vector": true});
    let records = node.ok(node.post(&format!("/collections/{NAME}/points"), &body));
    let records = records.as_array().expect("records");
    assert_eq!(records.len() as u64, count);
    for (record, id) in records.iter().zip(0..) {
        assert_eq!(record["id"], id);
        assert_eq!(record["payload"]["n"], id);
        let vector: Vec<f32> = serde_json::from_value(record["vector"].clone()).unwrap();
        assert_eq!(vector.len(), DIM);
        // Dot keeps vectors as given.
        assert_eq!(vector, all[id as usize], "point {id}");
    }
}

#[test]
fn three_peers_replicate_points_and_survive_losing_replicas() {
    let p1 = first_peer();
    let p2 = joining_peer(&p1);
    let p3 = joining_peer(&p2);
    let mut peers = [p1, p2, p3];
    wait_for_agreement(&peers.iter().collect::<Vec<_>>(), 3);
    let ids: Vec<u64> = peers.iter().map(peer_id).collect();

    peers[0].create_collection(
        NAME,
        json!({
            "vectors": {"size": DIM, "distance": "Dot"},
            "shard_number": 3,
            "replication_factor": 2,
            "write_consistency_factor": 1
        }),
    );

    // Placement: 6 replicas, two per peer, two distinct peers per shard, the same view
    // everywhere (once each peer has applied the creation).
    let placement = eventually("every peer shows the same placement", || {
        let views: Vec<_> = peers
            .iter()
            .map(|n| (n.get(&format!("/collections/{NAME}/cluster")).0 == 200).then(|| replicas(n)))
            .collect::<Option<Vec<_>>>()?;
        views
            .iter()
            .all(|v| *v == views[0])
            .then(|| views[0].clone())
    });
    assert_eq!(placement.len(), 6, "{placement:?}");
    let info = peers[1].ok(peers[1].get(&format!("/collections/{NAME}/cluster")));
    assert_eq!(info["shard_count"], 3, "{info}");
    assert_eq!(info["shard_transfers"], json!([]), "{info}");
    assert_eq!(info["local_shards"].as_array().unwrap().len(), 2, "{info}");
    assert_eq!(info["remote_shards"].as_array().unwrap().len(), 4, "{info}");
    assert!(placement.values().all(|s| s == "Active"), "{placement:?}");
    for peer in &ids {
        assert_eq!(
            placement.keys().filter(|(_, p)| p == peer).count(),
            2,
            "{placement:?}"
        );
    }
    for shard in 0..3 {
        assert_eq!(
            placement.keys().filter(|(s, _)| *s == shard).count(),
            2,
            "{placement:?}"
        );
    }

    // 1000 points through the first peer, read back through the other two.
    let all = vectors(1400, DIM, 11);
    for start in (0..1000).step_by(100) {
        peers[0].ok(upsert(&peers[0], start..start + 100, &all));
    }
    let query = vectors(1, DIM, 99).remove(0);
    let reference = exact_search(&peers[0], &query);
    for node in &peers[1..] {
        check_retrieve(node, 1000, &all);
        let scrolled = node.points(NAME);
        let expected: BTreeSet<String> = (0..1000).map(|i| i.to_string()).collect();
        assert_eq!(scrolled.keys().cloned().collect::<BTreeSet<_>>(), expected);
        assert_eq!(node.count(NAME), 1000);
        assert_eq!(exact_search(node, &query), reference);
    }
    // Each point is stored twice: once on each replica of its shard.
    let stored: u64 = peers
        .iter()
        .map(|n| {
            let info = n.ok(n.get(&format!("/collections/{NAME}/cluster")));
            info["local_shards"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["points_count"].as_u64().unwrap())
                .sum::<u64>()
        })
        .sum();
    assert_eq!(stored, 2000);

    // Kill the third peer: writes with write_consistency_factor=1 go on, and its replicas
    // become Dead in the cluster state.
    let killed = ids[2];
    peers[2].kill9();
    let started = Instant::now();
    for start in (1000..1200).step_by(50) {
        let entry = &peers[(start as usize / 50) % 2];
        let answer = upsert(entry, start..start + 50, &all);
        assert_eq!(answer.0, 200, "write with a peer down: {}", answer.1);
    }
    assert!(started.elapsed() < Duration::from_secs(120));
    let states = eventually("the killed peer's replicas are Dead", || {
        let states = replicas(&peers[0]);
        let dead = states
            .iter()
            .filter(|((_, p), s)| *p == killed && *s == "Dead")
            .count();
        (dead == 2).then_some(states)
    });
    assert!(
        states
            .iter()
            .filter(|((_, p), _)| *p != killed)
            .all(|(_, s)| s == "Active"),
        "{states:?}"
    );
    assert_eq!(replicas(&peers[1]), states, "both survivors agree");
    for node in &peers[..2] {
        assert_eq!(node.count(NAME), 1200);
        check_retrieve(node, 1200, &all);
    }

    // Kill the second peer too: the shard it shared with the (Dead) third peer has no
    // Active replica left anywhere reachable. Writes and reads of it answer 503 naming it.
    let orphan = states
        .keys()
        .map(|(s, _)| *s)
        .find(|s| states.contains_key(&(*s, ids[1])) && states.contains_key(&(*s, killed)))
        .expect("a shard lives on the second and third peers");
    peers[1].kill9();
    let needle = format!("shard {orphan} of collection {NAME}");
    let (status, body) = upsert(&peers[0], 1200..1400, &all);
    assert_eq!(status, 503, "{body}");
    let message = body["status"]["error"].as_str().unwrap_or_default();
    assert!(
        message.contains(&needle),
        "`{message}` should name {needle}"
    );
    let (status, body) = peers[0].post(
        &format!("/collections/{NAME}/points/count"),
        &json!({"exact": true}),
    );
    assert_eq!(status, 503, "{body}");
    let message = body["status"]["error"].as_str().unwrap_or_default();
    assert!(
        message.contains(&needle),
        "`{message}` should name {needle}"
    );
}

/// Points per shard replica of {NAME} on every node: `(shard, peer) → points_count`.
fn stored_counts(nodes: &[&TestNode]) -> BTreeMap<(u64, u64), u64> {
    support::cluster::stored_counts(nodes, NAME)
}

#[test]
fn a_restarted_peer_gets_its_dead_replicas_back() {
    restarted_peer_refilled_by(&[]);
}

#[test]
fn a_restarted_peer_gets_its_dead_replicas_back_by_stream_records() {
    restarted_peer_refilled_by(&[("QDRANT__STORAGE__SHARD_TRANSFER_METHOD", "stream_records")]);
}

/// A peer killed while points are added and deleted gets its Dead replicas back by the
/// automatic recovery (with the transfer method `env` configures), deletions included.
fn restarted_peer_refilled_by(env: &[(&str, &str)]) {
    let mut peers = three_peers_with(env);
    let killed = peer_id(&peers[2]);
    peers[0].create_collection(
        NAME,
        json!({"vectors": {"size": DIM, "distance": "Dot"}, "shard_number": 3, "replication_factor": 2}),
    );
    eventually("the third peer has the collection", || {
        (peers[2].get(&format!("/collections/{NAME}/cluster")).0 == 200).then_some(())
    });
    let all = vectors(600, DIM, 5);
    peers[0].ok(upsert(&peers[0], 0..300, &all));

    // While the third peer is down: more points, and some deleted (they must not come
    // back from its stale copy).
    peers[2].kill9();
    peers[0].ok(upsert(&peers[0], 300..600, &all));
    let deleted: Vec<u64> = (0..100).collect();
    peers[1].ok(peers[1].post(
        &format!("/collections/{NAME}/points/delete?wait=true"),
        &json!({ "points": deleted }),
    ));
    let mut seen = BTreeMap::new();
    eventually("the third peer's replicas are Dead", || {
        let states = replicas(&peers[0]);
        if states != seen {
            // Shown when the wait times out.
            eprintln!(
                "replica states: {states:?}, transfers: {}",
                transfers(&peers[0])
            );
            seen = states.clone();
        }
        let dead = states
            .iter()
            .filter(|((_, p), s)| *p == killed && *s == "Dead")
            .count();
        (dead == 2).then_some(())
    });

    // Back up: the sources ship their replicas to it and it turns Active again.
    peers[2].restart_after_kill9();
    eventually("every replica is Active again", || {
        replicas(&peers[0])
            .values()
            .all(|s| s == "Active")
            .then_some(())
    });
    // By the default method a shard snapshot per Dead replica; by `stream_records` none.
    let by_snapshot = peers[2]
        .log()
        .contains("installed a transferred shard snapshot");
    assert_eq!(by_snapshot, env.is_empty(), "{}", peers[2].log());
    let counts = stored_counts(&peers.iter().collect::<Vec<_>>());
    assert_eq!(counts.len(), 6, "{counts:?}");
    for shard in 0..3 {
        let copies: BTreeSet<u64> = counts
            .iter()
            .filter(|((s, _), _)| *s == shard)
            .map(|(_, c)| *c)
            .collect();
        assert_eq!(
            copies.len(),
            1,
            "replicas of shard {shard} differ: {counts:?}"
        );
    }
    assert_eq!(counts.values().sum::<u64>(), 1000, "{counts:?}");

    // Reads through the recovered peer (its own replicas first) see everything.
    assert_eq!(peers[2].count(NAME), 500);
    let scrolled = peers[2].points(NAME);
    let expected: BTreeSet<String> = (100..600).map(|i| i.to_string()).collect();
    assert_eq!(scrolled.keys().cloned().collect::<BTreeSet<_>>(), expected);
    // Same hits and scores; `version` (a replica's own operation number) may differ on a
    // replica that was refilled by a transfer.
    let query = vectors(1, DIM, 3).remove(0);
    let without_versions = |hits: Value| -> Vec<Value> {
        hits.as_array()
            .unwrap()
            .iter()
            .map(|h| json!([h["id"], h["score"], h["payload"]]))
            .collect()
    };
    assert_eq!(
        without_versions(exact_search(&peers[2], &query)),
        without_versions(exact_search(&peers[0], &query))
    );
}

#[test]
fn replicas_are_added_moved_and_dropped_on_request() {
    let p1 = first_peer();
    let p2 = joining_peer(&p1);
    let p3 = joining_peer(&p1);
    let peers = [p1, p2, p3];
    wait_for_agreement(&peers.iter().collect::<Vec<_>>(), 3);
    let ids: Vec<u64> = peers.iter().map(peer_id).collect();
    // One shard, one replica: it lives on the peer that created the collection.
    peers[0].create_collection(NAME, json!({"vectors": {"size": DIM, "distance": "Dot"}}));
    let all = vectors(200, DIM, 8);
    peers[0].ok(upsert(&peers[0], 0..200, &all));
    let path = format!("/collections/{NAME}/cluster");
    let wait_for = |what: &str, expected: BTreeMap<(u64, u64), String>| {
        eventually(what, || (replicas(&peers[0]) == expected).then_some(()));
    };
    let active = |peers: &[u64]| -> BTreeMap<(u64, u64), String> {
        peers
            .iter()
            .map(|p| ((0, *p), "Active".to_string()))
            .collect()
    };

    let replicate =
        json!({"replicate_shard": {"shard_id": 0, "from_peer_id": ids[0], "to_peer_id": ids[1]}});
    assert_eq!(peers[0].ok(peers[0].post(&path, &replicate)), true);
    wait_for("the new replica on p2 is Active", active(&ids[..2]));
    assert_eq!(stored_counts(&[&peers[1]])[&(0, ids[1])], 200);

    let drop = json!({"drop_replica": {"shard_id": 0, "peer_id": ids[0]}});
    assert_eq!(peers[1].ok(peers[1].post(&path, &drop)), true);
    wait_for("only p2 holds the shard", active(&ids[1..2]));
    // p1 holds nothing now and still answers, from p2's replica.
    assert_eq!(peers[0].count(NAME), 200);
    let last = json!({"drop_replica": {"shard_id": 0, "peer_id": ids[1]}});
    support::assert_error(peers[0].post(&path, &last), 400, "last active replica");

    let mv = json!({"move_shard": {"shard_id": 0, "from_peer_id": ids[1], "to_peer_id": ids[2]}});
    assert_eq!(peers[0].ok(peers[0].post(&path, &mv)), true);
    wait_for("the shard moved to p3", active(&ids[2..3]));
    assert_eq!(stored_counts(&[&peers[2]])[&(0, ids[2])], 200);
    for node in &peers {
        assert_eq!(node.count(NAME), 200);
        check_retrieve(node, 200, &all);
    }

    let abort =
        json!({"abort_transfer": {"shard_id": 0, "from_peer_id": ids[2], "to_peer_id": ids[0]}});
    support::assert_error(peers[0].post(&path, &abort), 404, "no transfer");
    let bad =
        json!({"replicate_shard": {"shard_id": 0, "from_peer_id": ids[0], "to_peer_id": ids[1]}});
    support::assert_error(peers[0].post(&path, &bad), 400, "holds no active replica");
}

/// The shard transfers `GET /collections/{NAME}/cluster` lists on `node`.
fn transfers(node: &TestNode) -> Value {
    node.ok(node.get(&format!("/collections/{NAME}/cluster")))["shard_transfers"].clone()
}

#[test]
fn transfers_live_in_the_cluster_state_and_outlive_their_coordinator() {
    let p1 = first_peer();
    let p2 = joining_peer(&p1);
    let p3 = joining_peer(&p1);
    let mut peers = [p1, p2, p3];
    let (leader, _) = wait_for_agreement(&peers.iter().collect::<Vec<_>>(), 3);
    let ids: Vec<u64> = peers.iter().map(peer_id).collect();
    // The leader holds the shard; the target is paused later, so it must not lead.
    let source = ids.iter().position(|id| *id == leader).unwrap();
    let target = (source + 1) % 3;
    let coordinator = (source + 2) % 3;
    peers[source].create_collection(NAME, json!({"vectors": {"size": DIM, "distance": "Dot"}}));
    let all = vectors(300, DIM, 21);
    peers[source].ok(upsert(&peers[source], 0..300, &all));
    let path = format!("/collections/{NAME}/cluster");
    let request = |kind: &str, from: usize, to: usize, method: &str| json!({kind: {"shard_id": 0, "from_peer_id": ids[from], "to_peer_id": ids[to], "method": method}});

    support::assert_error(
        peers[coordinator].post(
            &path,
            &request("replicate_shard", source, target, "wal_delta"),
        ),
        400,
        "unknown shard transfer method `wal_delta`",
    );
    support::assert_error(
        peers[coordinator].post(
            &path,
            &request("replicate_shard", target, coordinator, "snapshot"),
        ),
        400,
        "holds no active replica",
    );

    // While the target is paused the transfer cannot end: every peer lists it, from the
    // peer the user named, with its method; the target is Partial.
    peers[target].pause();
    let replicate = request("replicate_shard", source, target, "snapshot");
    assert_eq!(
        peers[coordinator].ok(peers[coordinator].post(&path, &replicate)),
        true
    );
    let pending = json!([{"shard_id": 0, "from": ids[source], "to": ids[target], "sync": true, "method": "snapshot"}]);
    for node in [&peers[source], &peers[coordinator]] {
        eventually("the pending transfer is listed", || {
            (transfers(node) == pending).then_some(())
        });
    }
    assert_eq!(replicas(&peers[coordinator])[&(0, ids[target])], "Partial");
    support::assert_error(peers[coordinator].post(&path, &replicate), 400, "already");
    peers[target].resume();
    eventually("the snapshot transfer ends with the target Active", || {
        let states = replicas(&peers[source]);
        (states.get(&(0, ids[target])).map(String::as_str) == Some("Active")
            && transfers(&peers[source]) == json!([]))
        .then_some(())
    });
    assert_eq!(stored_counts(&[&peers[target]])[&(0, ids[target])], 300);
    assert!(
        peers[target]
            .log()
            .contains("installed a transferred shard snapshot"),
        "{}",
        peers[target].log()
    );

    // A move by stream_records, asked through a peer that dies right away: the source
    // runs it from the cluster state and drops its own replica at the end.
    let mv = request("move_shard", source, coordinator, "stream_records");
    assert_eq!(peers[target].ok(peers[target].post(&path, &mv)), true);
    peers[target].kill9();
    eventually("the shard moved off the source", || {
        let states = replicas(&peers[coordinator]);
        (states.get(&(0, ids[coordinator])).map(String::as_str) == Some("Active")
            && !states.contains_key(&(0, ids[source])))
        .then_some(())
    });
    assert_eq!(
        stored_counts(&[&peers[coordinator]])[&(0, ids[coordinator])],
        300
    );
    for node in [&peers[source], &peers[coordinator]] {
        check_retrieve(node, 300, &all);
    }
}

#[test]
fn writes_during_a_snapshot_transfer_reach_the_new_replica() {
    let p1 = first_peer();
    let p2 = joining_peer(&p1);
    let p3 = joining_peer(&p1);
    let peers = [p1, p2, p3];
    wait_for_agreement(&peers.iter().collect::<Vec<_>>(), 3);
    let ids: Vec<u64> = peers.iter().map(peer_id).collect();
    peers[0].create_collection(NAME, json!({"vectors": {"size": DIM, "distance": "Dot"}}));
    const BASE: u64 = 20_000;
    let all = vectors(BASE as usize + 20_000, DIM, 33);
    for start in (0..BASE).step_by(1000) {
        peers[0].ok(upsert(&peers[0], start..start + 1000, &all));
    }

    let stop = std::sync::atomic::AtomicBool::new(false);
    let (written, deleted) = std::thread::scope(|scope| {
        // Through the third peer: new points and deletes of old ones, until told to stop.
        let writer = scope.spawn(|| {
            let (mut next, mut deleted) = (BASE, 0u64);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && next + 20 <= all.len() as u64
            {
                peers[2].ok(upsert(&peers[2], next..next + 20, &all));
                next += 20;
                let gone: Vec<u64> = (deleted..deleted + 5).collect();
                peers[2].ok(peers[2].post(
                    &format!("/collections/{NAME}/points/delete?wait=true"),
                    &json!({ "points": gone }),
                ));
                deleted += 5;
            }
            (next - BASE, deleted)
        });
        std::thread::sleep(Duration::from_millis(300));
        let replicate = json!({"replicate_shard": {"shard_id": 0, "from_peer_id": ids[0], "to_peer_id": ids[1]}});
        peers[0].ok(peers[0].post(&format!("/collections/{NAME}/cluster"), &replicate));
        eventually("the new replica is Active", || {
            (replicas(&peers[0]).get(&(0, ids[1])).map(String::as_str) == Some("Active"))
                .then_some(())
        });
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        writer.join().unwrap()
    });
    assert!(written > 0 && deleted > 0);
    let expected = BASE + written - deleted;
    let counts = stored_counts(&[&peers[0], &peers[1]]);
    assert_eq!(counts[&(0, ids[0])], expected, "{counts:?}");
    assert_eq!(counts[&(0, ids[1])], expected, "{counts:?}");
    // The new replica answers reads of its own: every point, and none deleted.
    let scrolled = peers[1].points(NAME);
    let want: BTreeSet<String> = (deleted..BASE + written).map(|i| i.to_string()).collect();
    assert_eq!(scrolled.keys().cloned().collect::<BTreeSet<_>>(), want);
    assert!(peers[1]
        .log()
        .contains("installed a transferred shard snapshot"));
}

#[test]
fn a_move_resumes_when_its_source_restarts() {
    let p1 = first_peer();
    let p2 = joining_peer(&p1);
    let p3 = joining_peer(&p1);
    let mut peers = [p1, p2, p3];
    let (leader, _) = wait_for_agreement(&peers.iter().collect::<Vec<_>>(), 3);
    let ids: Vec<u64> = peers.iter().map(peer_id).collect();
    // The source must not lead (it is killed), nor the target (it is paused).
    let witness = ids.iter().position(|id| *id == leader).unwrap();
    let source = (witness + 1) % 3;
    let target = (witness + 2) % 3;
    peers[source].create_collection(NAME, json!({"vectors": {"size": DIM, "distance": "Dot"}}));
    let all = vectors(300, DIM, 44);
    peers[source].ok(upsert(&peers[source], 0..300, &all));
    eventually("the witness sees the shard on the source", || {
        (replicas(&peers[witness])
            .get(&(0, ids[source]))
            .map(String::as_str)
            == Some("Active"))
        .then_some(())
    });

    // The move cannot end while its target is paused; its source dies meanwhile.
    peers[target].pause();
    let mv = json!({"move_shard": {"shard_id": 0, "from_peer_id": ids[source], "to_peer_id": ids[target], "method": "snapshot"}});
    assert_eq!(
        peers[witness].ok(peers[witness].post(&format!("/collections/{NAME}/cluster"), &mv)),
        true
    );
    eventually("the move is pending", || {
        (transfers(&peers[witness]).as_array().map(Vec::len) == Some(1)).then_some(())
    });
    peers[source].kill9();
    peers[target].resume();
    assert_eq!(transfers(&peers[witness]).as_array().map(Vec::len), Some(1));

    // Back up, the source finds the move in the cluster state and finishes it.
    peers[source].restart_after_kill9();
    eventually("the shard moved to the target", || {
        let states = replicas(&peers[witness]);
        (states.get(&(0, ids[target])).map(String::as_str) == Some("Active")
            && !states.contains_key(&(0, ids[source]))
            && transfers(&peers[witness]) == json!([]))
        .then_some(())
    });
    assert_eq!(stored_counts(&[&peers[target]])[&(0, ids[target])], 300);
    check_retrieve(&peers[witness], 300, &all);
}
