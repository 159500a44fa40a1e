//! Tests of the consensus handle and driver with real redb files in temp dirs.
//!
//! They run the driver with a tiny state machine of their own ([`Kv`]), so they keep working
//! whatever the real `ClusterState` becomes. Every wait is bounded; nothing asserts on timing.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use prost_for_raft::Message as _;
use raft::eraftpb::{Message, MessageType};
use raft::{GetEntriesContext, Storage, StorageError};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::log_store::{LogStore, SnapshotPayload};
use super::transport::RaftTransport;
use super::*;

/// A toy replicated map.
#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq, Eq)]
struct Kv {
    values: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
enum KvOp {
    Put(String, String),
    /// A user error: recorded as applied, returned to the proposer.
    Reject(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Changed(String);

impl StateMachine for Kv {
    type Op = KvOp;
    type Effect = Changed;

    fn apply(&mut self, op: &KvOp) -> Result<Vec<Changed>> {
        match op {
            KvOp::Put(key, value) => {
                self.values.insert(key.clone(), value.clone());
                Ok(vec![Changed(key.clone())])
            }
            KvOp::Reject(msg) => Err(Error::AlreadyExists(msg.clone())),
        }
    }
}

/// What the test applier saw of one [`AppliedOf`].
#[derive(Debug, Clone)]
struct Seen {
    index: u64,
    kind: &'static str,
    effects: Vec<Changed>,
    result: std::result::Result<(), String>,
}

struct Node {
    consensus: ConsensusOf<Kv>,
    initial: Kv,
    seen: Arc<Mutex<Vec<Seen>>>,
}

fn config(dir: &Path) -> ConsensusConfig {
    ConsensusConfig {
        tick_period_ms: 10,
        propose_timeout_ms: 5_000,
        ..ConsensusConfig::new(dir)
    }
}

/// Starts a peer and an applier task that records every item and acknowledges it.
fn start(config: ConsensusConfig, transport: Option<Arc<dyn RaftTransport>>) -> Node {
    let (applied_tx, mut applied_rx) = mpsc::unbounded_channel::<AppliedOf<Kv>>();
    let (consensus, initial) = match transport {
        Some(transport) => ConsensusOf::start_with_transport(config, transport, applied_tx),
        None => ConsensusOf::start(config, applied_tx),
    }
    .expect("consensus starts");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Some(applied) = applied_rx.recv().await {
            let kind = match &applied.kind {
                AppliedKind::Op => "op",
                AppliedKind::Empty => "empty",
                AppliedKind::Membership(_) => "membership",
                AppliedKind::Snapshot(_) => "snapshot",
            };
            sink.lock().push(Seen {
                index: applied.index,
                kind,
                effects: applied.effects,
                result: applied.result,
            });
            if let Some(done) = applied.done {
                let _ = done.send(());
            }
        }
    });
    Node {
        consensus,
        initial,
        seen,
    }
}

fn put(key: &str, value: &str) -> KvOp {
    KvOp::Put(key.into(), value.into())
}

/// Polls `condition` every few milliseconds for at most five seconds.
async fn eventually(what: &str, condition: impl Fn() -> bool) {
    for _ in 0..1000 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("timed out waiting until {what}");
}

/// Waits until the applier has seen every entry up to the applied index.
async fn settle(node: &Node) {
    eventually("the applier caught up", || {
        let applied = node.consensus.raft_info().applied;
        node.seen.lock().last().is_some_and(|s| s.index >= applied)
    })
    .await;
}

#[tokio::test]
async fn a_single_node_leads_at_once_and_applies_proposals_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(config(dir.path()), None);
    let info = node.consensus.raft_info();
    assert_eq!(info.role, Role::Leader);
    assert_eq!(info.leader, Some(node.consensus.peer_id()));
    assert_eq!(info.voters, vec![node.consensus.peer_id()]);
    assert!(info.running);
    assert_eq!(node.initial, Kv::default());

    for (k, v) in [("a", "1"), ("b", "2"), ("a", "3")] {
        node.consensus.propose(put(k, v)).await.unwrap();
    }
    let state = node.consensus.state();
    assert_eq!(state.values.get("a").map(String::as_str), Some("3"));
    assert_eq!(state.values.get("b").map(String::as_str), Some("2"));

    // The applier saw every entry once, in log order, with the operations' effects.
    settle(&node).await;
    let seen = node.seen.lock().clone();
    let indexes: Vec<u64> = seen.iter().map(|s| s.index).collect();
    assert_eq!(indexes, (1..=indexes.len() as u64).collect::<Vec<_>>());
    assert_eq!(seen[0].kind, "empty", "a new leader's first entry");
    let effects: Vec<Changed> = seen.iter().flat_map(|s| s.effects.clone()).collect();
    assert_eq!(
        effects,
        vec![
            Changed("a".into()),
            Changed("b".into()),
            Changed("a".into())
        ]
    );
    node.consensus.shutdown().await;
    assert!(!node.consensus.raft_info().running);
}

#[tokio::test]
async fn a_user_error_is_returned_and_recorded_and_later_ops_still_apply() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(config(dir.path()), None);
    node.consensus.propose(put("a", "1")).await.unwrap();
    let err = node
        .consensus
        .propose(KvOp::Reject("collection `a` exists".into()))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AlreadyExists(_)), "{err:?}");
    assert_eq!(err.to_string(), "Wrong input: collection `a` exists");
    node.consensus.propose(put("b", "2")).await.unwrap();
    assert_eq!(node.consensus.state().values.len(), 2);

    settle(&node).await;
    let seen = node.seen.lock().clone();
    let failed: Vec<&Seen> = seen.iter().filter(|s| s.result.is_err()).collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(
        failed[0].result,
        Err("Wrong input: collection `a` exists".to_string())
    );
    assert!(failed[0].effects.is_empty());
    let info = node.consensus.raft_info();
    assert_eq!(
        info.applied, info.commit,
        "the failed entry counts as applied"
    );
    node.consensus.shutdown().await;
}

#[tokio::test]
async fn a_restart_keeps_state_and_peer_id_and_does_not_replay() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(config(dir.path()), None);
    let peer_id = node.consensus.peer_id();
    for i in 0..5 {
        node.consensus
            .propose(put(&format!("k{i}"), "v"))
            .await
            .unwrap();
    }
    let state = node.consensus.state();
    settle(&node).await;
    let last_before = node.seen.lock().last().unwrap().index;
    node.consensus.shutdown().await;

    let node = start(config(dir.path()), None);
    assert_eq!(node.consensus.peer_id(), peer_id);
    assert_eq!(
        node.initial, state,
        "start returns the state loaded from disk"
    );
    assert_eq!(node.consensus.state(), state);
    assert_eq!(node.consensus.raft_info().role, Role::Leader);
    node.consensus
        .propose(put("after", "restart"))
        .await
        .unwrap();
    settle(&node).await;
    let seen = node.seen.lock().clone();
    assert!(!seen.is_empty());
    assert!(
        seen.iter().all(|s| s.index > last_before),
        "entries applied before the restart were announced again: {seen:?}"
    );
    assert_eq!(node.consensus.state().values.len(), 6);
    node.consensus.shutdown().await;
}

#[tokio::test]
async fn the_log_is_compacted_and_a_restart_after_compaction_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let config = ConsensusConfig {
        compact_threshold: 5,
        ..config(dir.path())
    };
    let node = start(config.clone(), None);
    for i in 0..30 {
        node.consensus
            .propose(put(&format!("k{i:02}"), &i.to_string()))
            .await
            .unwrap();
    }
    let state = node.consensus.state();
    let applied = node.consensus.raft_info().applied;
    node.consensus.shutdown().await;

    {
        let store = LogStore::open(dir.path()).unwrap();
        let first = store.first_index().unwrap();
        assert!(first > 10, "log was not compacted: first index {first}");
        assert!(first <= applied + 1);
        assert!(matches!(
            store.entries(1, first, None, GetEntriesContext::empty(false)),
            Err(raft::Error::Store(StorageError::Compacted))
        ));
        // A follower that lags gets the applied state.
        let snapshot = store.snapshot(0, 0).unwrap();
        assert_eq!(snapshot.metadata.as_ref().unwrap().index, applied);
        let payload: SnapshotPayload = serde_json::from_slice(&snapshot.data).unwrap();
        assert_eq!(serde_json::from_value::<Kv>(payload.state).unwrap(), state);
    }

    let node = start(config, None);
    assert_eq!(node.consensus.state(), state);
    node.consensus.propose(put("k30", "30")).await.unwrap();
    assert_eq!(node.consensus.state().values.len(), 31);
    node.consensus.shutdown().await;
}

#[tokio::test]
async fn on_disk_applied_never_passes_commit_or_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(config(dir.path()), None);
    // Concurrent proposers, so that turns batch several proposals.
    let mut tasks = Vec::new();
    for t in 0..4 {
        let consensus = node.consensus.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                consensus
                    .propose(put(&format!("t{t}-{i}"), "v"))
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(node.consensus.state().values.len(), 100);
    let info = node.consensus.raft_info();
    assert!(info.applied <= info.commit);
    node.consensus.shutdown().await;

    let store = LogStore::open(dir.path()).unwrap();
    let commit = store.hard_state().commit;
    let last = store.last_index().unwrap();
    assert!(
        store.applied() <= commit && commit <= last,
        "applied {} commit {commit} last {last}",
        store.applied()
    );
    assert_eq!(store.applied(), info.applied);
}

#[tokio::test]
async fn without_a_leader_proposals_are_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    // A storage that belongs to a two-voter group whose other voter never answers.
    let mut store = LogStore::open(dir.path()).unwrap();
    let me = store.peer_id();
    store
        .bootstrap(vec![me, me.wrapping_add(1).max(1)])
        .unwrap();
    drop(store);

    let node = start(config(dir.path()), None);
    assert_eq!(node.consensus.raft_info().leader, None);
    let err = node.consensus.propose(put("a", "1")).await.unwrap_err();
    assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
    node.consensus.shutdown().await;
}

#[tokio::test]
async fn membership_changes_persist_and_the_uri_lands_in_the_address_book() {
    let dir = tempfile::tempdir().unwrap();
    let config = ConsensusConfig {
        this_uri: Some("http://a:6335".into()),
        ..config(dir.path())
    };
    let node = start(config.clone(), None);
    let me = node.consensus.peer_id();
    assert_eq!(
        node.consensus.peers().get(&me).map(String::as_str),
        Some("http://a:6335")
    );

    let learner = me.wrapping_add(7).max(1);
    let add = MembershipChange::AddLearner {
        peer: learner,
        uri: Some("http://b:6335".into()),
    };
    node.consensus.change_membership(add).await.unwrap();
    assert_eq!(node.consensus.raft_info().learners, vec![learner]);
    // Removing the only voter is refused by Raft when applied: deterministic, changes nothing.
    let err = node
        .consensus
        .change_membership(MembershipChange::Remove { peer: me })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::BadInput(_)), "{err:?}");
    assert!(
        err.to_string().contains("membership change refused"),
        "{err}"
    );
    assert_eq!(node.consensus.raft_info().voters, vec![me]);
    node.consensus.propose(put("still", "works")).await.unwrap();
    node.consensus.shutdown().await;

    // Restart with a new address: the single voter records it again.
    let config = ConsensusConfig {
        this_uri: Some("http://a2:6335".into()),
        ..config
    };
    let node = start(config, None);
    assert_eq!(
        node.consensus.peers().get(&me).map(String::as_str),
        Some("http://a2:6335")
    );
    let info = node.consensus.raft_info();
    assert_eq!(
        (info.voters, info.learners.clone()),
        (vec![me], vec![learner])
    );
    let peers = node.consensus.peers();
    assert_eq!(
        peers.get(&learner).map(String::as_str),
        Some("http://b:6335")
    );
    node.consensus
        .change_membership(MembershipChange::Remove { peer: learner })
        .await
        .unwrap();
    assert!(node.consensus.raft_info().learners.is_empty());
    assert!(!node.consensus.peers().contains_key(&learner));
    settle(&node).await;
    assert!(node.seen.lock().iter().any(|s| s.kind == "membership"));
    node.consensus.shutdown().await;
}

#[tokio::test]
async fn bad_input_and_a_stopped_driver_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(config(dir.path()), None);
    assert!(matches!(
        node.consensus.step(vec![0xff, 0xff, 0xff]),
        Err(Error::BadInput(_))
    ));
    node.consensus.shutdown().await;
    let err = node.consensus.propose(put("a", "1")).await.unwrap_err();
    assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
    // Shutting down twice is harmless.
    node.consensus.shutdown().await;
}

/// Delivers messages between in-process peers through their public `step`.
#[derive(Default)]
struct Loopback {
    peers: RwLock<HashMap<PeerId, ConsensusOf<Kv>>>,
}

impl RaftTransport for Loopback {
    fn send(&self, msg: Message) {
        let peers = self.peers.read();
        let (from, to) = (msg.from, msg.to);
        let is_snapshot = msg.msg_type == MessageType::MsgSnapshot as i32;
        let delivered = peers
            .get(&to)
            .is_some_and(|peer| peer.step(msg.encode_to_vec()).is_ok());
        if let Some(sender) = peers.get(&from) {
            if !delivered {
                sender.report_unreachable(to);
            }
            if is_snapshot {
                sender.report_snapshot(to, delivered);
            }
        }
    }
}

#[tokio::test]
async fn a_lagging_peer_catches_up_from_a_snapshot_and_then_votes() {
    let loopback = Arc::new(Loopback::default());
    let transport = || Some(Arc::clone(&loopback) as Arc<dyn RaftTransport>);

    // Peer A: a one-voter group whose log is compacted well past index 1.
    let dir_a = tempfile::tempdir().unwrap();
    let a = start(
        ConsensusConfig {
            compact_threshold: 3,
            ..config(dir_a.path())
        },
        transport(),
    );
    for i in 0..10 {
        a.consensus
            .propose(put(&format!("k{i}"), "a"))
            .await
            .unwrap();
    }
    let id_a = a.consensus.peer_id();

    // Peer B: joins with an empty log and A as the only voter.
    let dir_b = tempfile::tempdir().unwrap();
    let mut store = LogStore::open(dir_b.path()).unwrap();
    let id_b = store.peer_id();
    store.bootstrap(vec![id_a]).unwrap();
    drop(store);
    let b = start(config(dir_b.path()), transport());
    loopback.peers.write().insert(id_a, a.consensus.clone());
    loopback.peers.write().insert(id_b, b.consensus.clone());

    let learner = MembershipChange::AddLearner {
        peer: id_b,
        uri: Some("http://b:6335".into()),
    };
    a.consensus.change_membership(learner).await.unwrap();
    eventually("B installed A's state", || {
        b.consensus.state() == a.consensus.state()
    })
    .await;
    settle(&b).await;
    assert!(
        b.seen.lock().iter().any(|s| s.kind == "snapshot"),
        "B should catch up by snapshot"
    );
    assert_eq!(
        b.consensus.peers().get(&id_b).map(String::as_str),
        Some("http://b:6335")
    );

    // Promote B; now every commit needs B's vote, and B's own proposals go through A.
    a.consensus
        .change_membership(MembershipChange::AddVoter {
            peer: id_b,
            uri: None,
        })
        .await
        .unwrap();
    a.consensus.propose(put("from", "a")).await.unwrap();
    eventually("B knows A leads", || {
        b.consensus.raft_info().leader == Some(id_a)
    })
    .await;
    b.consensus.propose(put("from", "b")).await.unwrap();
    assert_eq!(
        b.consensus.state().values.get("from").map(String::as_str),
        Some("b")
    );
    eventually("A applied B's proposal", || {
        a.consensus.state() == b.consensus.state()
    })
    .await;
    let info = b.consensus.raft_info();
    assert_eq!(info.voters.len(), 2);
    assert_eq!(info.role, Role::Follower);

    loopback.peers.write().clear();
    a.consensus.shutdown().await;
    b.consensus.shutdown().await;
}
