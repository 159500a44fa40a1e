//! The Raft driver: one OS thread that owns the `RawNode<LogStore>`.
//!
//! Nothing else touches the node. Callers reach it through a channel of [`Input`]s
//! (proposals with a one-shot reply, membership changes, peer messages, transport reports,
//! shutdown). The thread blocks on that channel for at most the time left until the next tick,
//! so Raft's clock advances by elapsed time whether or not input arrives. The thread makes
//! blocking redb commits (fsync), which is why it is a thread and not a tokio task.
//!
//! # One turn
//!
//! 1. Take the inputs that are waiting (up to [`MAX_INPUTS_PER_TURN`]; a membership change ends
//!    the batch, since Raft accepts one pending change at a time).
//! 2. Tick once if a tick period has passed. At most one tick per turn: a turn that stalled on
//!    the disk must not make Raft believe several election timeouts went by at once.
//! 3. Handle the `Ready`, in raft-rs's documented order, with the stricter persistence of
//!    `dependencies.md` §7 (hard state durable *before* anything is applied):
//!    1. send `messages()` (a leader's appends and heartbeats may leave before its own write);
//!    2. decode a received snapshot, if any, and check it can be read;
//!    3. append `entries()` and 4. store `hs()`, together with the snapshot, in ONE durable
//!       redb transaction ([`LogStore::persist_ready`]); then replace the state with the
//!       snapshot's and announce it;
//!    5. send `persisted_messages()` (votes, append responses) only now that the write is
//!       durable;
//!    6. apply `committed_entries()`: decode each operation, `apply` it to the state, then store
//!       the new state and the applied index in one transaction, publish the state, and only
//!       then emit [`AppliedOf`] and answer the local proposers;
//!    7. `advance()`, and handle the `LightReady` the same way: send its messages, apply its
//!       committed entries storing its commit index in the same transaction as the applied
//!       index, then `advance_apply()`;
//!    8. compact the log when enough applied entries have piled up.
//! 4. Publish [`RaftInfo`] for readers.
//!
//! # Errors
//!
//! A user error from `apply` (see [`Error::is_user_error`]) is the operation's result: the
//! entry counts as applied and the loop goes on. Any other error (storage, a corrupt entry, a
//! non-user error from `apply`) ends the loop: the thread logs it, marks itself stopped, and
//! the node must be restarted, which replays from what is durable.
//!
//! # Matching replies
//!
//! Each proposal's entry context is this peer's id and a proposal number (16 bytes, little
//! endian); the number starts at a random value each start so that entries of an earlier run
//! never match a new waiter. Proposals whose entry is lost (leader change) are never answered
//! here; the caller's timeout covers them, and waiters whose caller gave up are dropped on the
//! next tick.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use prost_for_raft::Message as _;
use raft::eraftpb::{
    ConfChange, ConfChangeSingle, ConfChangeType, ConfChangeV2, Entry, EntryType, Message, Snapshot,
};
use raft::{Config, RawNode, SnapshotStatus, StateRole};
use tokio::sync::{mpsc, oneshot};

use super::log_store::{ApplyBatch, LogStore, SnapshotInstall, SnapshotPayload};
use super::transport::RaftTransport;
use super::{
    AppliedKind, AppliedOf, ConsensusConfig, MembershipChange, Published, RaftInfo, Role,
    StateMachine,
};
use crate::error::{Error, Result};
use crate::types::PeerId;

/// Inputs taken per turn before the `Ready` is handled; bounds the latency of one turn.
const MAX_INPUTS_PER_TURN: usize = 256;
/// Raft's election timeout and heartbeat, in ticks.
const ELECTION_TICKS: usize = 20;
const HEARTBEAT_TICKS: usize = 2;
/// Largest append message, in bytes.
const MAX_MSG_SIZE: u64 = 1 << 20;

/// What the rest of the process can ask of the driver.
pub(crate) enum Input {
    Propose {
        data: Vec<u8>,
        reply: oneshot::Sender<ProposalOutcome>,
    },
    ChangeMembership {
        change: ConfChangeV2,
        reply: oneshot::Sender<ProposalOutcome>,
    },
    /// Boxed: a raft message is far larger than the other inputs.
    Step(Box<Message>),
    ReportUnreachable(PeerId),
    ReportSnapshot {
        peer: PeerId,
        delivered: bool,
    },
    Shutdown,
}

/// The answer to a local proposer, sent once its entry is applied and durable.
pub(crate) struct ProposalOutcome {
    /// The operation's own result.
    pub result: Result<()>,
    /// Completes when the applier has executed the entry's effects.
    pub done: Option<oneshot::Receiver<()>>,
}

impl ProposalOutcome {
    fn failed(err: Error) -> Self {
        ProposalOutcome {
            result: Err(err),
            done: None,
        }
    }
}

#[derive(PartialEq, Eq)]
enum Flow {
    Continue,
    EndBatch,
    Stop,
}

/// What applying one entry produced: its kind, effects and result.
type EntryOutcome<S> = (AppliedKind<S>, Vec<<S as StateMachine>::Effect>, Result<()>);

/// One applied entry waiting to be announced after its batch is durable.
struct Outgoing<S: StateMachine> {
    index: u64,
    kind: AppliedKind<S>,
    effects: Vec<S::Effect>,
    result: Result<()>,
    waiter: Option<oneshot::Sender<ProposalOutcome>>,
}

pub(crate) struct Driver<S: StateMachine> {
    raw: RawNode<LogStore>,
    peer_id: PeerId,
    /// The applied state; the published copy is refreshed after each durable batch.
    state: S,
    peers: BTreeMap<PeerId, String>,
    published: Arc<Published<S>>,
    transport: Arc<dyn RaftTransport>,
    applied_tx: mpsc::UnboundedSender<AppliedOf<S>>,
    /// Local proposers by proposal number.
    waiting: HashMap<u64, oneshot::Sender<ProposalOutcome>>,
    next_proposal: u64,
    tick_period: Duration,
    last_tick: Instant,
    compact_threshold: u64,
    /// Set when a membership change removed this peer: the loop ends.
    removed: bool,
}

impl<S: StateMachine> Driver<S> {
    /// Opens the storage (bootstrapping a one-voter group when it is new), loads the applied
    /// state and creates the `RawNode`. Returns the driver and the loaded state.
    pub fn open(
        config: &ConsensusConfig,
        transport: Arc<dyn RaftTransport>,
        applied_tx: mpsc::UnboundedSender<AppliedOf<S>>,
    ) -> Result<(Self, S)> {
        let mut store = LogStore::open(&config.storage_path)?;
        let peer_id = store.peer_id();
        let fresh = !store.is_initialized();
        if fresh {
            // The membership must be durable before the RawNode reads it.
            store.bootstrap(vec![peer_id])?;
            tracing::info!(
                peer_id,
                "started a new consensus group with this peer as its only voter"
            );
        }
        let state: S = match store.cluster_state_json()? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| Error::service(format!("stored cluster state cannot be read: {e}")))?,
            None => S::default(),
        };
        let peers = store.peers()?;

        let raft_config = Config {
            id: peer_id,
            // Entries up to here are in `state` already; raft must not hand them out again.
            applied: store.applied(),
            election_tick: ELECTION_TICKS,
            heartbeat_tick: HEARTBEAT_TICKS,
            pre_vote: true,
            check_quorum: true,
            max_size_per_msg: MAX_MSG_SIZE,
            max_inflight_msgs: 256,
            ..Default::default()
        };
        raft_config
            .validate()
            .map_err(|e| raft_error("invalid raft config", e))?;
        let raw = RawNode::new(&raft_config, store, &raft_logger())
            .map_err(|e| raft_error("creating the raft node", e))?;

        let published = Arc::new(Published {
            state: RwLock::new(state.clone()),
            info: RwLock::new(RaftInfo::default()),
            peers: RwLock::new(peers.clone()),
        });
        let driver = Driver {
            raw,
            peer_id,
            state: state.clone(),
            peers,
            published,
            transport,
            applied_tx,
            waiting: HashMap::new(),
            next_proposal: rand::random(),
            tick_period: config.tick_period(),
            last_tick: Instant::now(),
            compact_threshold: config.compact_threshold.max(1),
            removed: false,
        };
        driver.publish_info(true);
        Ok((driver, state))
    }

    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    pub fn published(&self) -> Arc<Published<S>> {
        Arc::clone(&self.published)
    }

    /// When this peer is the group's only voter: campaign, and return once it leads (bounded
    /// by the proposal timeout). Then, if `this_uri` is not what the log recorded for this peer
    /// (a new group, a crash before it was recorded, or a changed URI), record it with an
    /// idempotent AddNode(self) whose context is the URI, and wait until it is applied.
    /// Runs on the caller's thread, before the driver thread exists.
    pub fn start_group(&mut self, config: &ConsensusConfig) -> Result<()> {
        let voters = &self.raw.store().conf_state().voters;
        if voters.as_slice() != [self.peer_id] {
            return Ok(());
        }
        let deadline = Instant::now() + config.propose_timeout();
        self.raw
            .campaign()
            .map_err(|e| raft_error("campaigning", e))?;
        self.turn_until(deadline, |d| {
            d.raw.raft.state == StateRole::Leader && !d.raw.has_ready()
        })?;

        let recorded = self.peers.get(&self.peer_id);
        if let Some(uri) = config
            .this_uri
            .as_ref()
            .filter(|uri| recorded != Some(*uri))
        {
            let change = MembershipChange::AddVoter {
                peer: self.peer_id,
                uri: Some(uri.clone()),
            };
            self.raw
                .propose_conf_change(Vec::new(), change.into_conf_change())
                .map_err(|e| raft_error("recording this peer's address", e))?;
            let index = self.raw.raft.raft_log.last_index();
            self.turn_until(deadline, |d| d.raw.raft.raft_log.applied >= index)?;
        }
        Ok(())
    }

    /// Runs turns without input until `done` holds or `deadline` passes.
    fn turn_until(&mut self, deadline: Instant, done: impl Fn(&Self) -> bool) -> Result<()> {
        loop {
            self.maybe_tick();
            self.on_ready()?;
            self.publish_info(true);
            if done(self) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout(
                    "this peer did not become the leader of its one-voter group in time".into(),
                ));
            }
            std::thread::sleep(self.until_next_tick().max(Duration::from_millis(1)));
        }
    }

    /// The thread's body: turns until shutdown, removal, all handles dropped, or an error.
    pub fn run(mut self, inbox: Receiver<Input>) -> Result<()> {
        let result = self.run_turns(&inbox);
        self.publish_info(false);
        result
    }

    fn run_turns(&mut self, inbox: &Receiver<Input>) -> Result<()> {
        loop {
            // 1. Inputs: wait at most until the next tick is due.
            match inbox.recv_timeout(self.until_next_tick()) {
                Ok(input) => {
                    let mut flow = self.handle(input);
                    let mut taken = 1;
                    while flow == Flow::Continue && taken < MAX_INPUTS_PER_TURN {
                        let Ok(input) = inbox.try_recv() else { break };
                        flow = self.handle(input);
                        taken += 1;
                    }
                    if flow == Flow::Stop {
                        tracing::info!("consensus driver shutting down");
                        return Ok(());
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    tracing::info!("every consensus handle is gone; driver stopping");
                    return Ok(());
                }
            }
            // 2. Time.
            self.maybe_tick();
            // 3. Ready.
            self.on_ready()?;
            // 4. Readers.
            self.publish_info(true);
            if self.removed {
                tracing::warn!(
                    peer_id = self.peer_id,
                    "this peer was removed from the consensus group; driver stopping"
                );
                return Ok(());
            }
        }
    }

    fn handle(&mut self, input: Input) -> Flow {
        match input {
            Input::Propose { data, reply } => {
                let (id, context) = self.new_proposal_context();
                match self.raw.propose(context, data) {
                    Ok(()) => {
                        self.waiting.insert(id, reply);
                    }
                    Err(err) => {
                        let _ = reply.send(ProposalOutcome::failed(proposal_error(err)));
                    }
                }
                Flow::Continue
            }
            Input::ChangeMembership { change, reply } => {
                if self.raw.raft.has_pending_conf() {
                    let err = Error::Conflict(
                        "another membership change is in progress; retry when it is applied".into(),
                    );
                    let _ = reply.send(ProposalOutcome::failed(err));
                    return Flow::EndBatch;
                }
                let (id, context) = self.new_proposal_context();
                match self.raw.propose_conf_change(context, change) {
                    Ok(()) => {
                        self.waiting.insert(id, reply);
                    }
                    Err(err) => {
                        let _ = reply.send(ProposalOutcome::failed(proposal_error(err)));
                    }
                }
                Flow::EndBatch
            }
            Input::Step(msg) => {
                let (from, msg_type) = (msg.from, msg.msg_type);
                if let Err(err) = self.raw.step(*msg) {
                    // Unknown or removed peers, stale local messages: not fatal.
                    tracing::debug!(from, msg_type, error = %err, "raft message ignored");
                }
                Flow::Continue
            }
            Input::ReportUnreachable(peer) => {
                self.raw.report_unreachable(peer);
                Flow::Continue
            }
            Input::ReportSnapshot { peer, delivered } => {
                let status = if delivered {
                    SnapshotStatus::Finish
                } else {
                    SnapshotStatus::Failure
                };
                self.raw.report_snapshot(peer, status);
                Flow::Continue
            }
            Input::Shutdown => Flow::Stop,
        }
    }

    fn new_proposal_context(&mut self) -> (u64, Vec<u8>) {
        let id = self.next_proposal;
        self.next_proposal = self.next_proposal.wrapping_add(1);
        let mut context = Vec::with_capacity(16);
        context.extend_from_slice(&self.peer_id.to_le_bytes());
        context.extend_from_slice(&id.to_le_bytes());
        (id, context)
    }

    /// The local proposer waiting for an entry with this context, if any.
    fn take_waiter(&mut self, context: &[u8]) -> Option<oneshot::Sender<ProposalOutcome>> {
        let (peer, id) = context.split_at_checked(8)?;
        let peer = u64::from_le_bytes(peer.try_into().ok()?);
        let id = u64::from_le_bytes(id.try_into().ok()?);
        if peer != self.peer_id {
            return None;
        }
        self.waiting.remove(&id)
    }

    fn until_next_tick(&self) -> Duration {
        self.tick_period.saturating_sub(self.last_tick.elapsed())
    }

    /// One tick when a period has passed (never a burst; see the module doc).
    fn maybe_tick(&mut self) {
        if self.last_tick.elapsed() < self.tick_period {
            return;
        }
        self.raw.tick();
        self.last_tick = Instant::now();
        // Proposers that gave up (timeout, cancelled request) no longer need an answer.
        self.waiting.retain(|_, reply| !reply.is_closed());
    }

    /// Handles one `Ready` and its `LightReady`; the steps are numbered as in the module doc.
    fn on_ready(&mut self) -> Result<()> {
        if !self.raw.has_ready() {
            return Ok(());
        }
        let mut ready = self.raw.ready();

        // 3.1 Messages that need no local persistence go out at once.
        self.send(ready.take_messages());

        // 3.2 A snapshot from the leader: decode it before anything is written.
        let snapshot = if ready.snapshot().is_empty() {
            None
        } else {
            Some(decode_snapshot::<S>(ready.snapshot())?)
        };

        // 3.3 + 3.4 Snapshot, new entries and hard state: one durable transaction.
        self.raw.mut_store().persist_ready(
            snapshot.as_ref().map(|(install, _)| install),
            ready.entries(),
            ready.hs(),
        )?;
        if let Some((install, state)) = snapshot {
            self.install_snapshot(install, state);
        }

        // 3.5 Votes and append responses: only now that the write is durable.
        self.send(ready.take_persisted_messages());

        // 3.6 Apply what is committed (its commit index is in the hard state just stored).
        self.apply_committed(ready.take_committed_entries(), None)?;

        // 3.7 Advance; the LightReady carries what became possible after the write.
        let mut light = self.raw.advance(ready);
        self.send(light.take_messages());
        let commit = light.commit_index();
        self.apply_committed(light.take_committed_entries(), commit)?;
        self.raw.advance_apply();

        // 3.8 Compaction.
        self.maybe_compact()
    }

    fn send(&self, messages: Vec<Message>) {
        for msg in messages {
            self.transport.send(msg);
        }
    }

    /// Replaces the state with an installed (already durable) snapshot and announces it.
    fn install_snapshot(&mut self, install: SnapshotInstall, state: S) {
        let index = install.metadata.index;
        tracing::info!(
            index,
            term = install.metadata.term,
            "installed a raft snapshot from the leader"
        );
        self.state = state;
        self.peers = install.peers;
        *self.published.state.write() = self.state.clone();
        *self.published.peers.write() = self.peers.clone();
        let applied = AppliedOf {
            index,
            kind: AppliedKind::Snapshot(Box::new(self.state.clone())),
            effects: Vec::new(),
            result: Ok(()),
            done: None,
        };
        let _ = self.applied_tx.send(applied);
    }

    /// Applies committed entries in order, makes the outcome durable in one transaction
    /// (together with `commit`, when a LightReady brought one), publishes the state, then
    /// emits one [`AppliedOf`] per entry and answers local proposers.
    fn apply_committed(&mut self, entries: Vec<Entry>, commit: Option<u64>) -> Result<()> {
        if entries.is_empty() && commit.is_none() {
            return Ok(());
        }
        let mut batch = ApplyBatch {
            commit,
            ..Default::default()
        };
        let mut outgoing = Vec::with_capacity(entries.len());
        let mut state_changed = false;
        for entry in entries {
            let (kind, effects, result) = match entry.get_entry_type() {
                EntryType::EntryNormal if entry.data.is_empty() => {
                    (AppliedKind::Empty, Vec::new(), Ok(()))
                }
                EntryType::EntryNormal => {
                    state_changed = true;
                    self.apply_op(&entry)?
                }
                EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                    self.apply_conf_change(&entry, &mut batch)?
                }
            };
            batch.applied = Some(entry.index);
            let waiter = self.take_waiter(&entry.context);
            outgoing.push(Outgoing {
                index: entry.index,
                kind,
                effects,
                result,
                waiter,
            });
        }
        if state_changed {
            let json = serde_json::to_vec(&self.state)
                .map_err(|e| Error::service(format!("encoding the cluster state: {e}")))?;
            batch.state_json = Some(json);
        }
        let peers_changed = !batch.peer_changes.is_empty();
        self.raw.mut_store().persist_applied(batch)?;

        // Durable: readers may see it, then the applier and the proposers hear of it.
        self.publish_info(true);
        if state_changed {
            *self.published.state.write() = self.state.clone();
        }
        if peers_changed {
            *self.published.peers.write() = self.peers.clone();
        }
        for out in outgoing {
            self.announce(out);
        }
        Ok(())
    }

    fn apply_op(&mut self, entry: &Entry) -> Result<EntryOutcome<S>> {
        let op: S::Op = match serde_json::from_slice(&entry.data) {
            Ok(op) => op,
            Err(err) => {
                // Deterministic: every peer fails the same bytes the same way.
                tracing::warn!(index = entry.index, error = %err, "committed entry is not a cluster operation");
                let err = Error::BadInput(format!(
                    "entry {} is not a cluster operation: {err}",
                    entry.index
                ));
                return Ok((AppliedKind::Op, Vec::new(), Err(err)));
            }
        };
        match self.state.apply(&op) {
            Ok(effects) => Ok((AppliedKind::Op, effects, Ok(()))),
            Err(err) if err.is_user_error() => {
                tracing::debug!(index = entry.index, error = %err, "cluster operation failed; recorded as applied");
                Ok((AppliedKind::Op, Vec::new(), Err(err)))
            }
            Err(err) => Err(Error::service(format!(
                "applying entry {}: {err}",
                entry.index
            ))),
        }
    }

    fn apply_conf_change(
        &mut self,
        entry: &Entry,
        batch: &mut ApplyBatch,
    ) -> Result<EntryOutcome<S>> {
        let change = decode_conf_change(entry)?;
        let changes = describe_changes(&change);
        let outcome = match self.raw.apply_conf_change(&change) {
            Ok(conf_state) => {
                batch.conf_state = Some(conf_state);
                for single in &changes {
                    let (peer, uri) = match single {
                        MembershipChange::AddVoter { peer, uri }
                        | MembershipChange::AddLearner { peer, uri } => (*peer, uri.clone()),
                        MembershipChange::Remove { peer } => {
                            self.removed |= *peer == self.peer_id;
                            self.peers.remove(peer);
                            batch.peer_changes.push((*peer, None));
                            continue;
                        }
                    };
                    if let Some(uri) = uri {
                        self.peers.insert(peer, uri.clone());
                        batch.peer_changes.push((peer, Some(uri)));
                    }
                }
                tracing::info!(index = entry.index, ?changes, "membership changed");
                Ok(())
            }
            // Raft refused it before changing anything; every peer refuses it the same way.
            Err(err) => {
                tracing::warn!(index = entry.index, ?changes, error = %err, "membership change refused");
                Err(Error::BadInput(format!("membership change refused: {err}")))
            }
        };
        Ok((AppliedKind::Membership(changes), Vec::new(), outcome))
    }

    fn announce(&self, out: Outgoing<S>) {
        let (done_tx, done_rx) = match out.waiter {
            Some(_) => {
                let (tx, rx) = oneshot::channel();
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        let applied = AppliedOf {
            index: out.index,
            kind: out.kind,
            effects: out.effects,
            result: out.result.as_ref().map(|_| ()).map_err(|e| e.to_string()),
            done: done_tx,
        };
        // No receiver: nobody executes effects; the proposer's `done` resolves as dropped.
        let _ = self.applied_tx.send(applied);
        if let Some(waiter) = out.waiter {
            let _ = waiter.send(ProposalOutcome {
                result: out.result,
                done: done_rx,
            });
        }
    }

    fn maybe_compact(&mut self) -> Result<()> {
        let store = self.raw.store();
        let first = store.snapshot_metadata().index + 1;
        if store.applied().saturating_sub(first) <= self.compact_threshold {
            return Ok(());
        }
        let first = self.raw.mut_store().compact()?;
        tracing::debug!(first_index = first, "compacted the raft log");
        Ok(())
    }

    fn publish_info(&self, running: bool) {
        let raft = &self.raw.raft;
        let conf_state = self.raw.store().conf_state();
        let role = match raft.state {
            StateRole::Follower => Role::Follower,
            StateRole::PreCandidate => Role::PreCandidate,
            StateRole::Candidate => Role::Candidate,
            StateRole::Leader => Role::Leader,
        };
        let info = RaftInfo {
            term: raft.term,
            commit: raft.raft_log.committed,
            // The durable applied index: raft's own moves only at `advance_apply`.
            applied: self.raw.store().applied(),
            leader: (raft.leader_id != raft::INVALID_ID).then_some(raft.leader_id),
            role,
            voters: conf_state.voters.clone(),
            learners: conf_state.learners.clone(),
            last_index: raft.raft_log.last_index(),
            matched: if raft.state == StateRole::Leader {
                raft.prs()
                    .iter()
                    .map(|(id, pr)| (*id, pr.matched))
                    .collect()
            } else {
                BTreeMap::new()
            },
            pending_membership_change: raft.has_pending_conf(),
            pending_proposals: self.waiting.len(),
            running,
            updated_at: Some(std::time::SystemTime::now()),
        };
        *self.published.info.write() = info;
    }
}

/// Reads a snapshot's data into a durable install record and the state it carries.
fn decode_snapshot<S: StateMachine>(snapshot: &Snapshot) -> Result<(SnapshotInstall, S)> {
    let metadata = snapshot.metadata.clone().unwrap_or_default();
    let payload: SnapshotPayload = serde_json::from_slice(&snapshot.data).map_err(|e| {
        Error::service(format!(
            "raft snapshot at {} cannot be read: {e}",
            metadata.index
        ))
    })?;
    let state: S = serde_json::from_value(payload.state.clone()).map_err(|e| {
        Error::service(format!(
            "raft snapshot at {} has no valid state: {e}",
            metadata.index
        ))
    })?;
    let state_json = serde_json::to_vec(&payload.state)
        .map_err(|e| Error::service(format!("re-encoding snapshot state: {e}")))?;
    Ok((
        SnapshotInstall {
            metadata,
            state_json,
            peers: payload.peers,
        },
        state,
    ))
}

/// Decodes a committed conf change; the legacy v1 form is read as the equivalent v2.
fn decode_conf_change(entry: &Entry) -> Result<ConfChangeV2> {
    let corrupt = |e: prost_for_raft::DecodeError| {
        Error::service(format!("corrupt conf change at {}: {e}", entry.index))
    };
    if entry.get_entry_type() == EntryType::EntryConfChangeV2 {
        return ConfChangeV2::decode(entry.data.as_slice()).map_err(corrupt);
    }
    let v1 = ConfChange::decode(entry.data.as_slice()).map_err(corrupt)?;
    Ok(ConfChangeV2 {
        changes: vec![ConfChangeSingle {
            change_type: v1.change_type,
            node_id: v1.node_id,
        }],
        context: v1.context,
        ..Default::default()
    })
}

/// The changes of a conf change in our terms; the URI travels in the change's context.
fn describe_changes(change: &ConfChangeV2) -> Vec<MembershipChange> {
    let uri = String::from_utf8(change.context.clone())
        .ok()
        .filter(|uri| !uri.is_empty());
    change
        .changes
        .iter()
        .map(|single| {
            let peer = single.node_id;
            match single.get_change_type() {
                ConfChangeType::AddNode => MembershipChange::AddVoter {
                    peer,
                    uri: uri.clone(),
                },
                ConfChangeType::AddLearnerNode => MembershipChange::AddLearner {
                    peer,
                    uri: uri.clone(),
                },
                ConfChangeType::RemoveNode => MembershipChange::Remove { peer },
            }
        })
        .collect()
}

fn proposal_error(err: raft::Error) -> Error {
    match err {
        raft::Error::ProposalDropped => Error::Unavailable(
            "no consensus leader is known to accept the proposal; retry shortly".into(),
        ),
        other => raft_error("proposing", other),
    }
}

fn raft_error(context: &str, err: raft::Error) -> Error {
    Error::Service(format!("raft: {context}: {err}"))
}

/// raft-rs logs through slog; this forwards its records to `tracing` (target `raft`).
fn raft_logger() -> slog::Logger {
    slog::Logger::root(TracingDrain, slog::o!())
}

struct TracingDrain;

impl slog::Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(
        &self,
        record: &slog::Record<'_>,
        values: &slog::OwnedKVList,
    ) -> Result<(), slog::Never> {
        let mut fields = KeyValues(String::new());
        let _ = slog::KV::serialize(&record.kv(), record, &mut fields);
        let _ = slog::KV::serialize(values, record, &mut fields);
        let message = record.msg();
        let fields = fields.0;
        match record.level() {
            slog::Level::Critical | slog::Level::Error => {
                tracing::error!(target: "raft", "{message}{fields}")
            }
            slog::Level::Warning => tracing::warn!(target: "raft", "{message}{fields}"),
            slog::Level::Info => tracing::info!(target: "raft", "{message}{fields}"),
            slog::Level::Debug => tracing::debug!(target: "raft", "{message}{fields}"),
            slog::Level::Trace => tracing::trace!(target: "raft", "{message}{fields}"),
        }
        Ok(())
    }
}

/// Collects slog key-values as ` key=value` pairs.
struct KeyValues(String);

impl slog::Serializer for KeyValues {
    fn emit_arguments(&mut self, key: slog::Key, value: &fmt::Arguments<'_>) -> slog::Result {
        use fmt::Write as _;
        let _ = write!(self.0, " {key}={value}");
        Ok(())
    }
}
