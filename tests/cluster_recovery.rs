//! Snapshot recovery on a real three-peer cluster on 127.0.0.1: the priority matrix
//! (`snapshot`, `replica`, `no_sync`) on an existing collection and on a new one, shard
//! recovery, the start-up flags on a cluster peer, and the faults (a snapshot that does not
//! fit, a recovery on a peer cut off from the majority, a source that dies mid-download).
//! Every wait is bounded.
//!
//! The collections have 2 shards × 2 replicas on 3 peers, created through the first peer,
//! so that peer holds a replica of both shards and its collection snapshot covers the
//! whole collection; the second peer, where the snapshots are recovered, may hold one of
//! them or none (peer ids are random).

mod support;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};
use support::cluster::{
    clustered, eventually, joining_peer, peer_id, peer_uri, replica_states, stored_counts,
    three_peers_with, wait_converged, wait_for_agreement,
};
use support::{assert_error, vectors, TestNode};

const DIM: usize = 8;
const FILLED: u64 = 300;

fn start_cluster() -> [TestNode; 3] {
    three_peers_with(&[])
}

fn all(peers: &[TestNode; 3]) -> Vec<&TestNode> {
    peers.iter().collect()
}

fn upsert(node: &TestNode, name: &str, ids: std::ops::Range<u64>) {
    let vectors = vectors(ids.end as usize, DIM, 11);
    let points: Vec<Value> = ids
        .map(|id| json!({"id": id, "vector": vectors[id as usize], "payload": {"n": id}}))
        .collect();
    node.ok(node.put(
        &format!("/collections/{name}/points?wait=true"),
        &json!({ "points": points }),
    ));
}

fn delete(node: &TestNode, name: &str, ids: std::ops::Range<u64>) {
    let ids: Vec<u64> = ids.collect();
    node.ok(node.post(
        &format!("/collections/{name}/points/delete?wait=true"),
        &json!({ "points": ids }),
    ));
}

/// Creates `name` (2 shards × 2 replicas) through `peers[0]`, fills it with points
/// 0..FILLED and waits until every peer has it.
fn filled_collection(peers: &[TestNode; 3], name: &str) {
    peers[0].create_collection(
        name,
        json!({"vectors": {"size": DIM, "distance": "Dot"}, "shard_number": 2, "replication_factor": 2}),
    );
    for peer in peers {
        eventually(&format!("{name} is open on every peer"), || {
            (peer.get(&format!("/collections/{name}/cluster")).0 == 200).then_some(())
        });
    }
    upsert(&peers[0], name, 0..FILLED);
}

/// Takes a collection snapshot on `node`; returns its download URL.
fn snapshot_url(node: &TestNode, name: &str) -> String {
    let description = node.ok(node.post(&format!("/collections/{name}/snapshots"), &json!({})));
    let file = description["name"].as_str().expect("snapshot name");
    node.url(&format!("/collections/{name}/snapshots/{file}"))
}

/// Takes a collection snapshot on `node` and downloads it.
fn snapshot_archive(node: &TestNode, name: &str) -> Vec<u8> {
    let url = snapshot_url(node, name);
    let path = url.split_once("127.0.0.1").unwrap().1;
    node.download(&path[path.find('/').unwrap()..])
}

/// After the snapshot: points FILLED..FILLED+100 added and 0..50 deleted.
fn change_after_snapshot(node: &TestNode, name: &str) {
    upsert(node, name, FILLED..FILLED + 100);
    delete(node, name, 0..50);
}

fn recover(node: &TestNode, name: &str, url: &str, priority: &str) -> Value {
    let (status, body) = node.put(
        &format!("/collections/{name}/snapshots/recover?wait=true"),
        &json!({"location": url, "priority": priority}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], true, "{body}");
    body["recovery"].clone()
}

fn ids(node: &TestNode, name: &str) -> BTreeSet<u64> {
    node.points(name)
        .keys()
        .map(|id| id.parse().expect("numeric id"))
        .collect()
}

fn shards_of(counts: &BTreeMap<(u64, u64), u64>, peer: u64) -> BTreeMap<u64, u64> {
    counts
        .iter()
        .filter(|((_, p), _)| *p == peer)
        .map(|((s, _), c)| (*s, *c))
        .collect()
}

#[test]
fn recovery_priorities_on_an_existing_collection() {
    let peers = start_cluster();
    let (p1, p2) = (peer_id(&peers[0]), peer_id(&peers[1]));
    let snapshot_ids: BTreeSet<u64> = (0..FILLED).collect();
    let changed_ids: BTreeSet<u64> = (50..FILLED + 100).collect();

    // `snapshot`: the snapshot wins on every replica; the replication factor is kept.
    filled_collection(&peers, "wins");
    let url = snapshot_url(&peers[0], "wins");
    change_after_snapshot(&peers[0], "wins");
    let report = recover(&peers[1], "wins", &url, "snapshot");
    assert_eq!(report["created"], false, "{report}");
    let shards = report["shards"].as_array().expect("shards");
    assert_eq!(shards.len(), 2, "{report}");
    for shard in shards {
        assert_eq!(shard["winner"], "snapshot", "{report}");
        assert_eq!(shard["state"], "Active", "{report}");
    }
    let counts = wait_converged(&all(&peers), "wins");
    assert_eq!(counts.len(), 4, "two replicas per shard: {counts:?}");
    assert_eq!(counts.values().sum::<u64>(), 2 * FILLED, "{counts:?}");
    for peer in &peers {
        assert_eq!(ids(peer, "wins"), snapshot_ids);
    }

    // `replica`: the existing replicas win; the recovered copy is re-synced from them.
    filled_collection(&peers, "kept");
    let url = snapshot_url(&peers[0], "kept");
    change_after_snapshot(&peers[0], "kept");
    let report = recover(&peers[1], "kept", &url, "replica");
    for shard in report["shards"].as_array().expect("shards") {
        assert_eq!(shard["winner"], "replica", "{report}");
        assert_eq!(shard["state"], "Dead", "{report}");
    }
    let counts = wait_converged(&all(&peers), "kept");
    for peer in &peers {
        assert_eq!(ids(peer, "kept"), changed_ids);
    }
    // The second peer became a replica of the shard it did not hold, re-synced too.
    assert_eq!(shards_of(&counts, p2).len(), 2, "{counts:?}");

    // `no_sync`: the recovered copy serves as it is; the others are left alone.
    filled_collection(&peers, "diverged");
    let at_snapshot = shards_of(&stored_counts(&all(&peers), "diverged"), p1);
    let url = snapshot_url(&peers[0], "diverged");
    change_after_snapshot(&peers[0], "diverged");
    let after_change = shards_of(&stored_counts(&all(&peers), "diverged"), p1);
    let report = recover(&peers[1], "diverged", &url, "no_sync");
    for shard in report["shards"].as_array().expect("shards") {
        assert_eq!(shard["winner"], "snapshot", "{report}");
    }
    eventually("every replica of diverged is Active", || {
        replica_states(&peers[0], "diverged")
            .values()
            .all(|s| s == "Active")
            .then_some(())
    });
    let counts = stored_counts(&all(&peers), "diverged");
    assert_eq!(shards_of(&counts, p2), at_snapshot, "{counts:?}");
    assert_eq!(shards_of(&counts, p1), after_change, "{counts:?}");
    // Reads through the second peer use its own (recovered) replicas first.
    assert_eq!(ids(&peers[1], "diverged"), snapshot_ids);

    // Two recoveries of one collection at once on two peers: serialised or refused with
    // 409, never interleaved; the collection ends up whole either way.
    let url = snapshot_url(&peers[0], "wins");
    let answers: Vec<(u16, Value)> = std::thread::scope(|scope| {
        let calls: Vec<_> = [&peers[1], &peers[2]]
            .into_iter()
            .map(|peer| {
                let url = url.clone();
                scope.spawn(move || {
                    peer.put(
                        "/collections/wins/snapshots/recover?wait=true",
                        &json!({"location": url, "priority": "snapshot"}),
                    )
                })
            })
            .collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    });
    for (status, body) in &answers {
        assert!(
            *status == 200 || *status == 409,
            "{status} {body}\n{}\n{}",
            peers[1].log(),
            peers[2].log()
        );
    }
    assert!(answers.iter().any(|(s, _)| *s == 200), "{answers:?}");
    wait_converged(&all(&peers), "wins");
    for peer in &peers {
        assert_eq!(ids(peer, "wins"), snapshot_ids);
    }
}

#[test]
fn recovery_into_a_new_collection_and_of_one_shard() {
    let peers = start_cluster();

    // A snapshot recovered as a collection the cluster does not have yet.
    filled_collection(&peers, "source");
    let url = snapshot_url(&peers[0], "source");

    // `snapshot`: created through consensus, every replica ends up with the points.
    let report = recover(&peers[1], "copy", &url, "snapshot");
    assert_eq!(report["created"], true, "{report}");
    assert!(report.get("note").is_none(), "{report}");
    let counts = wait_converged(&all(&peers), "copy");
    assert_eq!(counts.values().sum::<u64>(), 2 * FILLED, "{counts:?}");
    for peer in &peers {
        assert_eq!(peer.count("copy"), FILLED);
    }

    // `replica` (the default): the new collection's empty replicas win, as documented,
    // and the answer says so.
    let (status, body) = peers[1].put(
        "/collections/empty/snapshots/recover?wait=true",
        &json!({ "location": url }),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["recovery"]["priority"], "replica", "{body}");
    assert!(
        body["recovery"]["note"]
            .as_str()
            .is_some_and(|n| n.contains("empty")),
        "{body}"
    );
    wait_converged(&all(&peers), "empty");
    for peer in &peers {
        assert_eq!(peer.count("empty"), 0);
    }

    // A shard snapshot of shard 0 taken on the first peer, uploaded to the second with
    // `snapshot` priority after the shard changed: every replica of shard 0 gets it back.
    let archive = peers[0].download("/collections/source/shards/0/snapshot");
    let before = stored_counts(&all(&peers), "source");
    change_after_snapshot(&peers[0], "source");
    let (status, body) = peers[1].upload(
        "/collections/source/shards/0/snapshots/upload?priority=snapshot&wait=true",
        archive,
    );
    assert_eq!(status, 200, "{body}\n{}", peers[1].log());
    assert_eq!(
        body["recovery"]["shards"][0]["winner"], "snapshot",
        "{body}"
    );
    let after = wait_converged(&all(&peers), "source");
    let shard0 = |counts: &BTreeMap<(u64, u64), u64>| -> BTreeSet<u64> {
        counts
            .iter()
            .filter(|((s, _), _)| *s == 0)
            .map(|(_, c)| *c)
            .collect()
    };
    assert_eq!(shard0(&after), shard0(&before), "{before:?} / {after:?}");

    // A snapshot whose shard count differs: 400 and nothing changes.
    peers[0].create_collection(
        "three",
        json!({"vectors": {"size": DIM, "distance": "Dot"}, "shard_number": 3, "replication_factor": 2}),
    );
    eventually("three is open on the second peer", || {
        (peers[1].get("/collections/three/cluster").0 == 200).then_some(())
    });
    let states = replica_states(&peers[1], "three");
    assert_error(
        peers[1].put(
            "/collections/three/snapshots/recover?wait=true",
            &json!({"location": url, "priority": "snapshot"}),
        ),
        400,
        "not compatible",
    );
    assert_eq!(replica_states(&peers[1], "three"), states);
}

#[test]
fn a_recovery_cut_off_from_the_majority_fails_and_changes_nothing() {
    let mut peers = start_cluster();
    filled_collection(&peers, "cut");
    let archive = snapshot_archive(&peers[0], "cut");
    let states = replica_states(&peers[1], "cut");

    // From the second peer's side, the two others vanish.
    let stopped: Vec<u32> = [0, 2].iter().map(|i| peers[*i].pid().unwrap()).collect();
    for pid in &stopped {
        unsafe { libc::kill(*pid as i32, libc::SIGSTOP) };
    }
    let (status, body) = peers[1].upload(
        "/collections/cut/snapshots/upload?priority=snapshot&wait=true",
        archive,
    );
    for pid in &stopped {
        unsafe { libc::kill(*pid as i32, libc::SIGCONT) };
    }
    // A consensus timeout (408) or no leader at all (503).
    assert!(status == 408 || status >= 500, "{status} {body}");
    let message = body["status"]["error"].as_str().unwrap_or_default();
    assert!(
        message.contains("majority") || message.contains("leader"),
        "{body}"
    );

    // The timed-out proposal may still be committed once the others are back. A metadata
    // op through the same peer, committed after it in log order, makes sure its fate is
    // decided before we look.
    eventually("a metadata op through the healed peer commits", || {
        let (status, _) = peers[1].put(
            "/collections/after_heal",
            &json!({"vectors": {"size": DIM, "distance": "Dot"}}),
        );
        (status == 200).then_some(())
    });
    // The cluster serves the data it had, and the failed attempt leaves no replica behind
    // (one it added is removed, one it took out of service is re-synced).
    eventually("the replicas of cut are as before the attempt", || {
        let now = replica_states(&peers[1], "cut");
        (now.keys().eq(states.keys()) && now.values().all(|s| s == "Active")).then_some(())
    });
    let counts = wait_converged(&all(&peers), "cut");
    assert_eq!(counts.values().sum::<u64>(), 2 * FILLED, "{counts:?}");
    for peer in &mut peers {
        assert_eq!(peer.count("cut"), FILLED);
    }
}

#[test]
fn startup_flags_register_the_restored_collections_and_aliases_through_consensus() {
    // Snapshots made on a single node: a collection snapshot and a full one with an alias.
    let single = TestNode::start();
    single.create_collection(
        "flagged",
        json!({"vectors": {"size": DIM, "distance": "Dot"}, "shard_number": 2}),
    );
    upsert(&single, "flagged", 0..FILLED);
    single.create_collection(
        "whole",
        json!({"vectors": {"size": DIM, "distance": "Dot"}}),
    );
    upsert(&single, "whole", 0..50);
    single.ok(single.post(
        "/collections/aliases",
        &json!({"actions": [{"create_alias": {"collection_name": "whole", "alias_name": "everything"}}]}),
    ));
    let snapshot = single.ok(single.post("/collections/flagged/snapshots", &json!({})));
    let collection_file = single.dir().join("flagged.snapshot");
    let bytes = single.download(&format!(
        "/collections/flagged/snapshots/{}",
        snapshot["name"].as_str().unwrap()
    ));
    std::fs::write(&collection_file, bytes).unwrap();
    single.ok(single.delete("/collections/flagged"));
    let full = single.ok(single.post("/snapshots", &json!({})));
    let full_file = single.dir().join("full.snapshot");
    std::fs::write(
        &full_file,
        single.download(&format!("/snapshots/{}", full["name"].as_str().unwrap())),
    )
    .unwrap();

    // The founding peer restores the collection snapshot at start, a joining peer the
    // full one: both end up in the cluster state every peer sees.
    let mut p1 = clustered();
    p1.launch(&[
        "--uri".to_string(),
        peer_uri(&p1),
        "--snapshot".to_string(),
        format!("{}:flagged", collection_file.display()),
    ]);
    let mut p2 = clustered();
    p2.launch(&[
        "--uri".to_string(),
        peer_uri(&p2),
        "--bootstrap".to_string(),
        peer_uri(&p1),
        "--storage-snapshot".to_string(),
        full_file.display().to_string(),
    ]);
    let p3 = joining_peer(&p1);
    let peers = [p1, p2, p3];
    wait_for_agreement(&all(&peers), 3);
    for peer in &peers {
        eventually("the restored collections are visible on every peer", || {
            (peer.get("/collections/flagged").0 == 200
                && peer.get("/collections/everything").0 == 200)
                .then_some(())
        });
        assert_eq!(peer.count("flagged"), FILLED);
        assert_eq!(peer.count("everything"), 50);
        let aliases = peer.ok(peer.get("/aliases"));
        assert_eq!(
            aliases["aliases"],
            json!([{"alias_name": "everything", "collection_name": "whole"}])
        );
    }
    // The restored shards are registered on the peer that restored them, Active.
    let states = replica_states(&peers[2], "flagged");
    let p1_id = peer_id(&peers[0]);
    assert_eq!(states.len(), 2, "{states:?}");
    assert!(
        states
            .iter()
            .all(|((_, p), s)| *p == p1_id && s == "Active"),
        "{states:?}"
    );
}

#[test]
fn a_peer_killed_during_a_recovery_leaves_the_cluster_data_intact() {
    let mut peers = start_cluster();
    filled_collection(&peers, "killed");
    upsert(&peers[0], "killed", FILLED..3000);
    let url = snapshot_url(&peers[0], "killed");
    change_after_snapshot(&peers[0], "killed");
    let expected = ids(&peers[0], "killed");

    // With `replica` priority the cluster's data wins whenever the recovering peer dies:
    // while unpacking, between `BeginRecovery` and its finish (the restarted peer aborts
    // its own unfinished recovery), or after it. (Measured on a debug build: the first
    // delays land before and inside the recovery, the last after it; the outcome must be
    // the same in every case, whatever the machine's speed.)
    for delay_ms in [100, 200, 300, 450] {
        let url = url.clone();
        let port = peers[1].http_port;
        let call = std::thread::spawn(move || {
            reqwest::blocking::Client::new()
                .put(format!(
                    "http://127.0.0.1:{port}/collections/killed/snapshots/recover?wait=true"
                ))
                .json(&json!({"location": url, "priority": "replica"}))
                .send()
                .map(|r| r.status().as_u16())
        });
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        peers[1].kill9();
        let _ = call.join();
        peers[1].restart_after_kill9();
        eventually("no replica is left in ManualRecovery", || {
            replica_states(&peers[0], "killed")
                .values()
                .all(|s| s == "Active")
                .then_some(())
        });
        wait_converged(&all(&peers), "killed");
        for peer in &peers {
            assert_eq!(
                ids(peer, "killed"),
                expected,
                "after a kill at {delay_ms} ms"
            );
        }
    }
}

/// A snapshot source that dies mid-download: the recovery on a cluster peer fails with a
/// clear error before anything is registered, and the cluster keeps serving its data on
/// the same replicas. The source is a one-shot HTTP server in this test that promises the
/// whole archive and hangs up half-way.
#[test]
fn a_source_that_dies_mid_download_changes_nothing_in_the_cluster() {
    use std::io::{Read, Write};

    let peers = start_cluster();
    filled_collection(&peers, "broken");
    let archive = snapshot_archive(&peers[0], "broken");
    let states = replica_states(&peers[1], "broken");

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let source = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let mut request = Vec::new();
        let mut byte = [0u8; 1];
        while !request.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap_or(0) == 1 {
            request.push(byte[0]);
        }
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
            archive.len()
        );
        let _ = conn.write_all(head.as_bytes());
        let _ = conn.write_all(&archive[..archive.len() / 2]);
        let _ = conn.flush();
        // Dropped here: the connection closes with half of the promised bytes sent.
    });

    let (status, body) = peers[1].put(
        "/collections/broken/snapshots/recover?wait=true",
        &json!({"location": format!("http://127.0.0.1:{port}/broken.snapshot"), "priority": "snapshot"}),
    );
    source.join().unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(
        body["status"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("broke off")),
        "{body}"
    );

    // Nothing was registered: the same replicas, all Active, every point on every replica.
    assert_eq!(replica_states(&peers[1], "broken"), states);
    assert!(states.values().all(|s| s == "Active"), "{states:?}");
    let counts = wait_converged(&all(&peers), "broken");
    assert_eq!(counts.values().sum::<u64>(), 2 * FILLED, "{counts:?}");
    for peer in &peers {
        assert_eq!(peer.count("broken"), FILLED);
    }
    // And the collection can be recovered on that peer right away (no recovery left marked).
    let url = snapshot_url(&peers[0], "broken");
    recover(&peers[1], "broken", &url, "snapshot");
    let counts = wait_converged(&all(&peers), "broken");
    assert_eq!(counts.values().sum::<u64>(), 2 * FILLED, "{counts:?}");
}
