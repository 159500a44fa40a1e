//! Consensus: the cluster metadata as a Raft-replicated state machine.
//!
//! Collections, aliases, shard placement and peers change only through operations that are
//! proposed to a Raft group and applied, in log order, by every peer. A single node is a group
//! with one voter, so there is one code path for one peer or five.
//!
//! # Parts
//!
//! - [`state`], [`op`], [`effect`], [`transfer`]: the pure state machine (`ClusterState::apply(op) ->
//!   effects`). It touches no disk and no network.
//! - [`log_store`]: the Raft log, hard state, membership, address book and applied state in
//!   one redb file; implements `raft::Storage`.
//! - `driver`: the one OS thread that owns raft-rs's `RawNode`, ticks it, feeds it proposals
//!   and peer messages, and handles each `Ready` in the documented order (see its module doc).
//! - [`transport`]: the trait outbound Raft messages go through.
//! - [`ConsensusOf`] (here): the cheap, cloneable handle everyone else uses. It talks to the
//!   driver over a channel only; nothing outside the driver thread touches the `RawNode`.
//!
//! # What callers see
//!
//! - [`ConsensusOf::propose`] resolves once the operation is applied locally *and* the
//!   receiver of the [`AppliedOf`] stream has acknowledged it (its `done`), with the operation's
//!   own deterministic result.
//! - The [`AppliedOf`] stream (the `applied_tx` given to `start`) carries every applied entry in
//!   log order, after the driver made it durable: operations with their effects and result,
//!   the new leader's empty entries, membership changes, and installed snapshots. The state
//!   returned by `start` is the state *before* the first item of that stream.
//!
//! # Generic over the state machine
//!
//! The driver depends only on [`StateMachine`], which `ClusterState` implements; [`Consensus`]
//! and [`Applied`] are the aliases the node uses. The tests run the driver with their own
//! tiny state machine so that they do not depend on the real metadata model.

pub mod effect;
pub mod log_store;
pub mod op;
pub mod recovery;
pub mod state;
pub mod transfer;
pub mod transport;

mod driver;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use prost_for_raft::Message as _;
use raft::eraftpb::{ConfChangeSingle, ConfChangeType, ConfChangeV2, Message};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};

use crate::error::{Error, Result};
use crate::types::PeerId;
use driver::{Driver, Input, ProposalOutcome};
use transport::{NoPeers, RaftTransport};

/// The handle the node uses.
pub type Consensus = ConsensusOf<state::ClusterState>;
/// One applied entry of the node's state machine.
pub type Applied = AppliedOf<state::ClusterState>;

/// What the driver needs from the replicated state machine.
///
/// `apply` must be deterministic and pure: the same operations in the same order give the same
/// state and effects on every peer. An `Err` that [`Error::is_user_error`] is the operation's
/// result (recorded as applied, returned to the proposer); any other `Err` means the peer cannot
/// go on safely and stops the driver. On `Err`, `apply` must leave the state unchanged.
pub trait StateMachine:
    Serialize + DeserializeOwned + Default + Clone + Send + Sync + 'static
{
    /// The operations proposed to Raft (stored in the log as JSON).
    type Op: Serialize + DeserializeOwned + Send + 'static;
    /// What applying an operation asks the node to do.
    type Effect: Send + 'static;

    /// Applies one committed operation.
    fn apply(&mut self, op: &Self::Op) -> Result<Vec<Self::Effect>>;
}

/// The node's state machine: the pure cluster state of [`state`].
impl StateMachine for state::ClusterState {
    type Op = op::ClusterOp;
    type Effect = effect::Effect;

    fn apply(&mut self, op: &op::ClusterOp) -> Result<Vec<effect::Effect>> {
        state::ClusterState::apply(self, op)
    }
}

/// Settings of the consensus layer.
#[derive(Debug, Clone)]
pub struct ConsensusConfig {
    /// Directory of `raft.redb`.
    pub storage_path: PathBuf,
    /// Raft's clock: one tick per period (the election timeout is 20 ticks, the heartbeat 2).
    pub tick_period_ms: u64,
    /// This peer's address for other peers; recorded in the log when a new group starts.
    pub this_uri: Option<String>,
    /// Compact the log once more than this many applied entries are stored.
    pub compact_threshold: u64,
    /// How long `propose` and `change_membership` wait; also bounds the leader wait in `start`.
    pub propose_timeout_ms: u64,
}

impl Default for ConsensusConfig {
    /// Every default; `storage_path` is empty (the current directory) until set.
    fn default() -> Self {
        ConsensusConfig {
            storage_path: PathBuf::new(),
            tick_period_ms: 100,
            this_uri: None,
            compact_threshold: 1000,
            propose_timeout_ms: 10_000,
        }
    }
}

impl ConsensusConfig {
    /// Defaults for everything but the storage directory.
    pub fn new(storage_path: impl Into<PathBuf>) -> Self {
        ConsensusConfig {
            storage_path: storage_path.into(),
            ..Default::default()
        }
    }

    fn tick_period(&self) -> Duration {
        Duration::from_millis(self.tick_period_ms.max(1))
    }

    fn propose_timeout(&self) -> Duration {
        Duration::from_millis(self.propose_timeout_ms.max(1))
    }
}

/// One applied entry, sent on the `applied_tx` stream in log order after it is durable.
pub struct AppliedOf<S: StateMachine> {
    /// The entry's log index (for a snapshot: the snapshot's index).
    pub index: u64,
    /// What kind of entry this was.
    pub kind: AppliedKind<S>,
    /// Effects of an operation; empty for every other kind and for a failed operation.
    pub effects: Vec<S::Effect>,
    /// The operation's result: `Err(message)` for a user error. `Ok` for every other kind.
    pub result: Result<(), String>,
    /// Present when a local proposer waits for this entry: complete it once the effects have
    /// been executed (dropping it counts as completion too).
    pub done: Option<oneshot::Sender<()>>,
}

/// The kind of an [`AppliedOf`] item.
pub enum AppliedKind<S> {
    /// A state-machine operation; `effects` and `result` are its outcome.
    Op,
    /// An entry with no operation (a new leader's first entry).
    Empty,
    /// A membership change (its single changes, usually one), already reflected in
    /// [`ConsensusOf::raft_info`] and [`ConsensusOf::peers`]. `result` is `Err` when Raft refused
    /// it (for example removing a peer that is not a member); then nothing changed.
    Membership(Vec<MembershipChange>),
    /// A snapshot from the leader replaced the whole state (this peer was too far behind).
    /// Reconcile local resources against `state`; entries after `index` follow as usual.
    Snapshot(Box<S>),
}

/// One change of the group's membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipChange {
    /// Make `peer` a voter (a learner is promoted; a new peer joins as a voter).
    AddVoter { peer: PeerId, uri: Option<String> },
    /// Add `peer` as a learner: it receives the log but does not vote.
    AddLearner { peer: PeerId, uri: Option<String> },
    /// Remove `peer` from the group.
    Remove { peer: PeerId },
}

impl MembershipChange {
    fn into_conf_change(self) -> ConfChangeV2 {
        let (change_type, node_id, uri) = match self {
            MembershipChange::AddVoter { peer, uri } => (ConfChangeType::AddNode, peer, uri),
            MembershipChange::AddLearner { peer, uri } => {
                (ConfChangeType::AddLearnerNode, peer, uri)
            }
            MembershipChange::Remove { peer } => (ConfChangeType::RemoveNode, peer, None),
        };
        ConfChangeV2 {
            changes: vec![ConfChangeSingle {
                change_type: change_type as i32,
                node_id,
            }],
            context: uri.unwrap_or_default().into_bytes(),
            ..Default::default()
        }
    }
}

/// The role of this peer in the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    #[default]
    Follower,
    PreCandidate,
    Candidate,
    Leader,
}

/// A summary of this peer's Raft state, refreshed after every driver turn.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RaftInfo {
    pub term: u64,
    pub commit: u64,
    pub applied: u64,
    /// The leader this peer knows of, if any.
    pub leader: Option<PeerId>,
    pub role: Role,
    pub voters: Vec<PeerId>,
    pub learners: Vec<PeerId>,
    /// Index of the last entry in this peer's log.
    pub last_index: u64,
    /// On the leader: the highest log index known to be replicated on each member (itself
    /// included). Empty on every other peer.
    pub matched: BTreeMap<PeerId, u64>,
    /// A membership change is proposed or committed but not yet applied here.
    pub pending_membership_change: bool,
    /// Local proposals waiting to be applied.
    pub pending_proposals: usize,
    /// False once the driver thread has stopped (shutdown, removal, or a storage error).
    pub running: bool,
    /// When the driver last published this summary (it does so after every turn, at
    /// least once per tick).
    pub updated_at: Option<std::time::SystemTime>,
}

/// What the driver publishes for readers; written only by the driver thread.
pub(crate) struct Published<S> {
    pub state: RwLock<S>,
    pub info: RwLock<RaftInfo>,
    pub peers: RwLock<BTreeMap<PeerId, String>>,
}

/// A cheap, cloneable handle to this peer's consensus. See the module doc.
pub struct ConsensusOf<S: StateMachine> {
    inner: Arc<Inner<S>>,
}

impl<S: StateMachine> Clone for ConsensusOf<S> {
    fn clone(&self) -> Self {
        ConsensusOf {
            inner: Arc::clone(&self.inner),
        }
    }
}

struct Inner<S> {
    peer_id: PeerId,
    /// The applied index of the state `start` returned.
    loaded_index: u64,
    inbox: std_mpsc::Sender<Input>,
    published: Arc<Published<S>>,
    propose_timeout: Duration,
    /// Becomes true when the driver thread has finished (and closed the storage).
    stopped: watch::Receiver<bool>,
}

impl<S: StateMachine> ConsensusOf<S> {
    /// Opens (or creates) `<storage_path>/raft.redb` and starts the driver thread, with no
    /// transport to other peers.
    ///
    /// A new storage gets a random peer id and becomes a one-voter group (membership persisted
    /// before the `RawNode` exists). When this peer is the only voter, `start` campaigns and
    /// returns once it leads (bounded by `propose_timeout_ms`), so the first proposal never
    /// races an election; a new group also records `this_uri` in the log. The returned state is
    /// the one loaded from disk: every [`AppliedOf`] on `applied_tx` comes after it.
    ///
    /// Blocks the calling thread for a few disk writes; call it from `spawn_blocking` if that
    /// matters.
    pub fn start(
        config: ConsensusConfig,
        applied_tx: mpsc::UnboundedSender<AppliedOf<S>>,
    ) -> Result<(Self, S)> {
        Self::start_with_transport(config, Arc::new(NoPeers), applied_tx)
    }

    /// [`start`](Self::start) with a transport to other peers.
    pub fn start_with_transport(
        config: ConsensusConfig,
        transport: Arc<dyn RaftTransport>,
        applied_tx: mpsc::UnboundedSender<AppliedOf<S>>,
    ) -> Result<(Self, S)> {
        let (mut driver, initial_state) = Driver::open(&config, transport, applied_tx)?;
        let peer_id = driver.peer_id();
        let published = driver.published();
        // Read before the group starts: every later entry reaches `applied_tx`.
        let loaded_index = published.info.read().applied;
        driver.start_group(&config)?;

        let (inbox_tx, inbox_rx) = std_mpsc::channel();
        let (stopped_tx, stopped_rx) = watch::channel(false);
        std::thread::Builder::new()
            .name("shoal-consensus".into())
            .spawn(move || {
                if let Err(err) = driver.run(inbox_rx) {
                    tracing::error!(error = %err, "consensus driver stopped on an error; restart the node");
                }
                // `run` consumed the driver: the RawNode and the redb file are closed now.
                stopped_tx.send_replace(true);
            })
            .map_err(|e| Error::io("starting the consensus thread", e))?;

        let inner = Inner {
            peer_id,
            loaded_index,
            inbox: inbox_tx,
            published,
            propose_timeout: config.propose_timeout(),
            stopped: stopped_rx,
        };
        Ok((
            ConsensusOf {
                inner: Arc::new(inner),
            },
            initial_state,
        ))
    }

    /// Proposes `op` and waits until it is applied here and acknowledged by the applier.
    /// Returns the operation's own result (a user error comes back as that error).
    /// `Unavailable` when there is no leader (retry later), `Timeout` when it took longer than
    /// `propose_timeout_ms` (the operation may still be applied later).
    pub async fn propose(&self, op: S::Op) -> Result<()> {
        let data = serde_json::to_vec(&op)
            .map_err(|e| Error::service(format!("encoding a cluster operation: {e}")))?;
        self.submit(|reply| Input::Propose { data, reply }).await
    }

    /// Proposes one membership change and waits until it is applied here. Raft allows one
    /// pending change at a time: a second one meanwhile is refused with `Conflict`.
    pub async fn change_membership(&self, change: MembershipChange) -> Result<()> {
        let change = change.into_conf_change();
        self.submit(|reply| Input::ChangeMembership { change, reply })
            .await
    }

    async fn submit(
        &self,
        input: impl FnOnce(oneshot::Sender<ProposalOutcome>) -> Input,
    ) -> Result<()> {
        let (reply_tx, reply_rx) = oneshot::channel();
        self.send(input(reply_tx))?;
        let wait = async {
            let outcome = reply_rx.await.map_err(|_| stopped_error())?;
            if let Some(done) = outcome.done {
                // A dropped `done` also means the applier is finished with this entry.
                let _ = done.await;
            }
            outcome.result
        };
        match tokio::time::timeout(self.inner.propose_timeout, wait).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout(format!(
                "consensus did not apply the operation within {} ms (is a majority of the peers reachable?); it may still be applied",
                self.inner.propose_timeout.as_millis()
            ))),
        }
    }

    /// Hands a Raft message received from a peer (prost-0.11 bytes) to the driver.
    pub fn step(&self, msg_bytes: Vec<u8>) -> Result<()> {
        let msg = Message::decode(msg_bytes.as_slice())
            .map_err(|e| Error::BadInput(format!("not a raft message: {e}")))?;
        self.send(Input::Step(Box::new(msg)))
    }

    /// Tells Raft that `peer` could not be reached (the transport failed to deliver).
    pub fn report_unreachable(&self, peer: PeerId) {
        let _ = self.send(Input::ReportUnreachable(peer));
    }

    /// Tells Raft whether a snapshot sent to `peer` arrived.
    pub fn report_snapshot(&self, peer: PeerId, delivered: bool) {
        let _ = self.send(Input::ReportSnapshot { peer, delivered });
    }

    /// This peer's id.
    pub fn peer_id(&self) -> PeerId {
        self.inner.peer_id
    }

    /// The log index of the state [`start`](Self::start) loaded from disk: every entry after
    /// it is announced on `applied_tx`.
    pub fn loaded_index(&self) -> u64 {
        self.inner.loaded_index
    }

    /// A copy of the current applied state.
    pub fn state(&self) -> S {
        self.inner.published.state.read().clone()
    }

    /// Term, commit and applied index, leader, role and membership.
    pub fn raft_info(&self) -> RaftInfo {
        self.inner.published.info.read().clone()
    }

    /// The address book: peer id → URI, as recorded by membership changes.
    pub fn peers(&self) -> BTreeMap<PeerId, String> {
        self.inner.published.peers.read().clone()
    }

    /// Stops the driver thread and waits (bounded) until it has closed the storage.
    pub async fn shutdown(&self) {
        let _ = self.inner.inbox.send(Input::Shutdown);
        let mut stopped = self.inner.stopped.clone();
        // An error means the thread is gone without saying so (it panicked): stopped as well.
        let wait = stopped.wait_for(|stopped| *stopped);
        if tokio::time::timeout(Duration::from_secs(30), wait)
            .await
            .is_err()
        {
            tracing::error!("consensus driver did not stop within 30 s");
        }
    }

    fn send(&self, input: Input) -> Result<()> {
        self.inner.inbox.send(input).map_err(|_| stopped_error())
    }
}

fn stopped_error() -> Error {
    Error::Unavailable("consensus is not running".into())
}
