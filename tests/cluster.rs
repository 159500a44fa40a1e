//! Real clusters of shoal processes on 127.0.0.1: peers join over the peer port, share the
//! metadata through Raft, survive losing the leader, and rejoin after a restart.
//!
//! These tests look at metadata; `cluster_replication.rs` covers point data. Every wait
//! is bounded.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::cluster::{
    cluster, clustered, eventually, first_peer, joining_peer, peer_id, peer_uri,
    wait_for_agreement, wait_visible,
};
use support::{assert_error, free_port, TestNode};

fn create(node: &TestNode, name: &str) {
    node.create_collection(name, json!({"vectors": {"size": 4, "distance": "Cosine"}}));
}

#[test]
fn three_peers_share_metadata_and_survive_losing_the_leader() {
    let p1 = first_peer();
    let p2 = joining_peer(&p1);
    // The third peer joins through a follower: the join is forwarded to the leader.
    let p3 = joining_peer(&p2);
    let mut peers = [p1, p2, p3];
    let (leader, term) = wait_for_agreement(&peers.iter().collect::<Vec<_>>(), 3);

    let view = cluster(&peers[0]);
    for node in &peers {
        let id = peer_id(node).to_string();
        assert_eq!(view["peers"][&id]["uri"], peer_uri(node), "{view}");
    }
    assert_eq!(view["message_send_failures"], json!({}), "{view}");

    // Metadata created on the third peer reaches the other two.
    create(&peers[2], "from_p3");
    for node in &peers[..2] {
        wait_visible(node, "from_p3");
        let info = node.ok(node.get("/collections/from_p3"));
        assert_eq!(info["config"]["params"]["vectors"]["size"], 4);
    }
    let actions = json!({"actions": [{"create_alias": {"collection_name": "from_p3", "alias_name": "p3_alias"}}]});
    assert_eq!(
        peers[1].ok(peers[1].post("/collections/aliases", &actions)),
        true
    );
    eventually("the alias reaches the first peer", || {
        let aliases = peers[0].ok(peers[0].get("/aliases"));
        (aliases["aliases"] == json!([{"alias_name": "p3_alias", "collection_name": "from_p3"}]))
            .then_some(())
    });

    // Kill the leader: the other two elect a new one and metadata still changes.
    let killed = peers
        .iter()
        .position(|n| peer_id(n) == leader)
        .expect("the leader is one of the peers");
    peers[killed].kill9();
    let alive: Vec<usize> = (0..3).filter(|i| *i != killed).collect();
    let (new_leader, new_term) =
        wait_for_agreement(&alive.iter().map(|i| &peers[*i]).collect::<Vec<_>>(), 3);
    assert_ne!(new_leader, leader);
    assert!(new_term > term, "{new_term} > {term}");
    let killed_uri = peer_uri(&peers[killed]);
    let leader_now = *alive
        .iter()
        .find(|i| peer_id(&peers[**i]) == new_leader)
        .expect("the new leader is alive");
    eventually(
        "the dead peer shows up in the leader's message_send_failures",
        || {
            let view = cluster(&peers[leader_now]);
            view["message_send_failures"]
                .get(&killed_uri)
                .map(|f| assert!(f["count"].as_u64().unwrap() >= 1, "{view}"))
        },
    );

    // A follower creates, the other survivor sees it; then delete one through the leader.
    let follower = *alive
        .iter()
        .find(|i| peer_id(&peers[**i]) != new_leader)
        .expect("a follower survives");
    create(&peers[follower], "while_down");
    create(&peers[follower], "short_lived");
    for i in &alive {
        wait_visible(&peers[*i], "while_down");
    }
    let on_leader = *alive.iter().find(|i| **i != follower).unwrap();
    assert_eq!(
        peers[on_leader].ok(peers[on_leader].delete("/collections/short_lived")),
        true
    );

    // The killed peer comes back (its --bootstrap is ignored now) and catches up.
    peers[killed].restart_after_kill9();
    wait_for_agreement(&peers.iter().collect::<Vec<_>>(), 3);
    wait_visible(&peers[killed], "while_down");
    let listed = peers[killed].ok(peers[killed].get("/collections"));
    let names: Vec<&str> = listed["collections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["from_p3", "while_down"], "{listed}");
    if killed != 0 {
        // Only the joiners were started with --bootstrap.
        assert!(peers[killed].log().contains("--bootstrap ignored"));
    }

    // Only one peer left: it cannot change metadata, and says why.
    for i in alive {
        peers[i].kill9();
    }
    let (status, body) = peers[killed].put(
        "/collections/no_quorum",
        &json!({"vectors": {"size": 4, "distance": "Cosine"}}),
    );
    assert!(status == 503 || status == 408, "{status} {body}");
    let message = body["status"]["error"].as_str().unwrap_or_default();
    assert!(
        message.contains("majority"),
        "the error should say a majority is missing: {body}"
    );
    assert_eq!(
        peers[killed].get("/collections/no_quorum").0,
        404,
        "nothing was created"
    );
}

#[test]
fn peers_with_shards_are_kept_and_a_taken_uri_is_refused() {
    let p1 = first_peer();
    let mut p2 = joining_peer(&p1);
    wait_for_agreement(&[&p1, &p2], 2);
    let id2 = peer_id(&p2);

    // A joiner that restarts keeps its id and ignores --bootstrap.
    p2.restart_after_kill9();
    wait_for_agreement(&[&p1, &p2], 2);
    assert_eq!(peer_id(&p2), id2);
    assert!(p2.log().contains("--bootstrap ignored"), "{}", p2.log());

    // The collection's shard lives on p2, the peer that created it.
    create(&p2, "on_p2");
    wait_visible(&p1, "on_p2");
    assert_error(
        p1.delete(&format!("/cluster/peer/{id2}")),
        400,
        &format!("Cannot remove peer {id2} as there are shards on it"),
    );
    assert_error(
        p1.delete("/cluster/peer/12345"),
        404,
        "Peer 12345 is not a member of the cluster",
    );

    // A new peer that claims p2's address is refused before it becomes anything.
    let mut impostor = clustered();
    let args = vec![
        "--uri".to_string(),
        peer_uri(&p2),
        "--bootstrap".to_string(),
        peer_uri(&p1),
    ];
    let (ok, log) = impostor.run_to_exit(&args, Duration::from_secs(60));
    assert!(!ok, "the impostor should exit with an error\n{log}");
    assert!(
        log.contains(&format!("is already the address of peer {id2}")),
        "{log}"
    );
    assert_eq!(cluster(&p1)["peers"].as_object().unwrap().len(), 2);

    // With force the peer goes; the survivor runs on its own.
    assert_eq!(
        p1.ok(p1.delete(&format!("/cluster/peer/{id2}?force=true"))),
        true
    );
    let view = eventually("p2 is gone from the membership", || {
        let view = cluster(&p1);
        (view["peers"].as_object().unwrap().len() == 1).then_some(view)
    });
    assert_eq!(view["raft_info"]["role"], "Leader", "{view}");
    create(&p1, "after_removal");
}

#[test]
fn a_peer_joining_after_compaction_catches_up_from_a_snapshot() {
    let compact = [
        ("QDRANT__CLUSTER__ENABLED", "true"),
        ("QDRANT__CLUSTER__CONSENSUS__COMPACT_WAL_ENTRIES", "3"),
    ];
    let mut p1 = TestNode::prepare(&compact);
    p1.launch(&["--uri".to_string(), peer_uri(&p1)]);
    for i in 0..8 {
        create(&p1, &format!("c{i}"));
    }
    assert_eq!(
        p1.ok(p1.delete("/collections/c0")),
        true,
        "a delete replays as well"
    );
    let p2 = joining_peer(&p1);
    wait_for_agreement(&[&p1, &p2], 2);
    eventually("the snapshot's collections are open on the joiner", || {
        let listed = p2.ok(p2.get("/collections"));
        (listed["collections"].as_array().unwrap().len() == 7).then_some(())
    });
    for i in 1..8 {
        wait_visible(&p2, &format!("c{i}"));
    }
    assert_eq!(p2.get("/collections/c0").0, 404);
    assert!(
        p2.log().contains("installed a raft snapshot"),
        "{}",
        p2.log()
    );
    // The new voter takes part: metadata it proposes is applied on both.
    create(&p2, "after_snapshot");
    wait_visible(&p1, "after_snapshot");
}

#[test]
fn bootstrap_to_an_unreachable_peer_exits_with_a_clear_error() {
    let mut node = TestNode::prepare(&[
        ("QDRANT__CLUSTER__ENABLED", "true"),
        ("QDRANT__CLUSTER__CONSENSUS__BOOTSTRAP_TIMEOUT_SEC", "3"),
    ]);
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let args = vec![
        "--uri".to_string(),
        peer_uri(&node),
        "--bootstrap".to_string(),
        nowhere.clone(),
    ];
    let started = Instant::now();
    let (ok, log) = node.run_to_exit(&args, Duration::from_secs(60));
    assert!(!ok, "{log}");
    assert!(
        log.contains(&format!("cannot join the cluster through {nowhere}")),
        "{log}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn flags_and_cluster_routes_without_clustering() {
    // A single node without cluster.enabled is unchanged, and says so.
    let node = TestNode::start();
    assert_eq!(node.ok(node.get("/cluster")), json!({"status": "disabled"}));
    assert_error(
        node.delete("/cluster/peer/1"),
        400,
        "Distributed mode disabled.",
    );
    create(&node, "single");

    // --uri needs clustering; a new cluster's first peer needs --uri.
    let mut plain = TestNode::prepare(&[]);
    let (ok, log) = plain.run_to_exit(
        &["--uri".to_string(), "http://127.0.0.1:1".to_string()],
        Duration::from_secs(60),
    );
    assert!(!ok && log.contains("need cluster.enabled=true"), "{log}");
    let mut no_uri = clustered();
    let (ok, log) = no_uri.run_to_exit(&[], Duration::from_secs(60));
    assert!(!ok && log.contains("--uri is required"), "{log}");
}

/// Whether `name` exists as `node` sees it.
fn exists(node: &TestNode, name: &str) -> bool {
    node.get(&format!("/collections/{name}")).0 == 200
}

#[test]
fn a_partitioned_minority_cannot_change_metadata_and_catches_up_after_heal() {
    let p1 = first_peer();
    let p2 = joining_peer(&p1);
    let p3 = joining_peer(&p1);
    let peers = [p1, p2, p3];
    let (leader, _) = wait_for_agreement(&peers.iter().collect::<Vec<_>>(), 3);
    create(&peers[0], "before");
    for node in &peers {
        wait_visible(node, "before");
    }

    // Cut a follower off: from its side, pausing the two others is a partition.
    let lone = peers
        .iter()
        .position(|n| peer_id(n) != leader)
        .expect("a follower");
    let others: Vec<usize> = (0..3).filter(|i| *i != lone).collect();
    for i in &others {
        peers[*i].pause();
    }
    // Its metadata ops fail (the HTTP client gives up after 60 s, so a hang fails too),
    // in Qdrant's error shape, saying that a majority is missing; reads still work.
    let (status, body) = peers[lone].put(
        "/collections/during_partition",
        &json!({"vectors": {"size": 4, "distance": "Cosine"}}),
    );
    assert!(status == 503 || status == 408, "{status} {body}");
    let message = body["status"]["error"].as_str().unwrap_or_default();
    assert!(message.contains("majority"), "{body}");
    assert!(body["time"].is_number(), "{body}");
    assert!(!exists(&peers[lone], "during_partition"));
    assert!(exists(&peers[lone], "before"));

    // Heal: the peers agree again and metadata changes through the formerly cut-off peer.
    for i in &others {
        peers[*i].resume();
    }
    wait_for_agreement(&peers.iter().collect::<Vec<_>>(), 3);
    create(&peers[lone], "after_heal");
    for node in &peers {
        wait_visible(node, "after_heal");
    }
    // The refused op said it may still be applied: if it was, it is everywhere.
    let seen: Vec<bool> = peers
        .iter()
        .map(|n| exists(n, "during_partition"))
        .collect();
    assert!(seen.iter().all(|s| *s == seen[0]), "{seen:?}");

    // The other way round: the majority changes metadata while the peer is cut off, and
    // the peer catches up once it is back.
    peers[lone].pause();
    create(&peers[others[0]], "while_apart");
    assert_eq!(
        peers[others[1]].ok(peers[others[1]].delete("/collections/before")),
        true
    );
    peers[lone].resume();
    wait_visible(&peers[lone], "while_apart");
    eventually("the deletion reaches the healed peer", || {
        (!exists(&peers[lone], "before")).then_some(())
    });
}
