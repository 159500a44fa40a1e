//! Running shard transfers, and the automatic recovery of Dead replicas by a transfer.
//!
//! Pending transfers live in the cluster state (`consensus::transfer`). Every clustered
//! peer looks at that state for transfers to run whenever it has applied a committed entry
//! (and every 200 ms), and once a second (or at once when kicked, e.g. by a snapshot
//! recovery that marked replicas Dead) for replicas to recover, and
//!
//! 1. starts a recovery for each shard with a Dead replica and no transfer into it, if it
//!    is the shard's recovery source (its lowest-id Active replica, see
//!    `ReplicaSet::recovery_source`, so one peer in the whole cluster acts) and the Dead
//!    replica's peer answers: a `sync` transfer from itself with the configured method
//!    (`storage.shard_transfer_method`, `snapshot` unless set). For `stream_records` the
//!    transfer empties the target first, once `StartTransfer` has committed, so points
//!    deleted while it was down do not come back (no peer writes to a Dead replica). A Partial replica without a transfer (its
//!    transfer was cut short before transfers were recorded) is marked Dead first;
//! 2. runs every pending transfer whose source it is and which it does not run yet:
//!    those it just started, those a user asked for, and those it was running when it
//!    stopped (the state says what is left to do). A run first asks every peer to confirm
//!    that the writes it routed while it still saw the target Dead have ended
//!    (`Shards.Drain`), so they are on the source before it is read; then it copies the data
//!    by the transfer's method (`stream_records.rs`, `snapshot_transfer.rs`) and commits
//!    `FinishTransfer`, which makes the target Active (and, for a move, drops the source
//!    replica in the same step). A failed run aborts the transfer: a move's target is
//!    removed, a sync target is left Dead for the next round to retry.
//!
//! 3. starts a replicating transfer for each shard with fewer replicas than its
//!    collection's replication factor, when it is the shard's recovery source and a member
//!    of the cluster holds no replica of it (`placement::repair_target`): a collection
//!    created while fewer peers existed, or one that lost a replica with its peer, gets
//!    back to its factor once peers can take the replicas. A replica dropped on purpose
//!    below the factor comes back too: lower `replication_factor` (PATCH) instead.
//!
//! A transfer whose source stops being Active is aborted by consensus itself (see
//! `consensus::transfer`), so no transfer waits for a source that will not come back.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::Node;
use crate::consensus::op::ClusterOp;
use crate::consensus::state::ReplicaState;
use crate::consensus::transfer::{ShardTransfer, TransferMethod};
use crate::error::Result;
use crate::replication::placement;
use crate::replication::replica_set::ReplicaSet;
use crate::replication::wire::ShardRead;
use crate::types::{PeerId, ShardId};

/// How often a peer looks for transfers to run.
const TRANSFER_PERIOD: Duration = Duration::from_millis(200);
/// Every how many of those it looks for replicas to recover (once a second).
const RECOVERY_EVERY: u32 = 5;
/// Time for every peer to apply a replica state change, when a peer cannot confirm it
/// (see `Node::settle_writes`): "Partial" before the copy starts, so that writes sent by
/// peers that still saw the replica Dead are on the source before it is read; "Dead"
/// before a cut-short Partial replica is emptied. Applying a committed entry takes a few
/// milliseconds on a healthy peer; this leaves a wide margin.
const PARTIAL_SETTLE: Duration = Duration::from_millis(200);

/// The transfers this peer is running: `(collection, shard, target)`.
#[derive(Default)]
pub(crate) struct RunningTransfers {
    running: Mutex<HashSet<(String, ShardId, PeerId)>>,
}

/// Marks one transfer as running until dropped.
struct Running<'a> {
    set: &'a RunningTransfers,
    key: (String, ShardId, PeerId),
}

impl RunningTransfers {
    fn claim(&self, collection: &str, shard: ShardId, to: PeerId) -> Option<Running<'_>> {
        let key = (collection.to_string(), shard, to);
        // `then`, not `then_some`: a `Running` made for a claim that failed would be
        // dropped here, unmarking the transfer that does run (and locking `running`
        // while this statement still holds it).
        let claimed = self.running.lock().insert(key.clone());
        claimed.then(|| Running { set: self, key })
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.set.running.lock().remove(&self.key);
    }
}

/// The loop; ends when consensus stops.
pub(crate) async fn run(node: Arc<Node>) {
    let mut round: u32 = 0;
    let mut executed = node.effects_executed.clone();
    loop {
        round = round.wrapping_add(1);
        let kicked = tokio::select! {
            _ = tokio::time::sleep(TRANSFER_PERIOD) => false,
            _ = node.recovery_kick.notified() => true,
            // A committed entry (a `StartTransfer` among them) was applied here: a
            // transfer this peer is the source of starts now, not at the next round.
            changed = executed.changed() => {
                if changed.is_err() {
                    return;
                }
                false
            }
        };
        if !node.consensus.raft_info().running {
            return;
        }
        node.forget_finished_recordings();
        let due = if kicked || round.is_multiple_of(RECOVERY_EVERY) {
            node.recoveries_due()
        } else {
            Vec::new()
        };
        for (collection, shard, target) in due {
            if let Err(err) = node.start_recovery(&collection, shard, target).await {
                tracing::warn!(collection, shard, target, %err, "starting the recovery of a dead replica failed; will retry");
            }
        }
        let repairs = if kicked || round.is_multiple_of(RECOVERY_EVERY) {
            node.repairs_due()
        } else {
            Vec::new()
        };
        for (collection, shard, target) in repairs {
            if let Err(err) = node.start_repair(&collection, shard, target).await {
                tracing::warn!(collection, shard, target, %err, "replicating an under-replicated shard failed; will retry");
            }
        }
        for (collection, transfer) in node.transfers_to_run() {
            let node = node.clone();
            tokio::spawn(async move { node.run_transfer(&collection, transfer).await });
        }
    }
}

impl Node {
    /// `(collection, shard, peer)` for every Dead (or transfer-less Partial) replica this
    /// peer should recover.
    fn recoveries_due(&self) -> Vec<(String, ShardId, PeerId)> {
        let me = self.consensus.peer_id();
        let state = self.consensus.state();
        let mut due = Vec::new();
        for (name, collection) in &state.collections {
            for (shard, replicas) in &collection.shards {
                let set = ReplicaSet {
                    collection: name.clone(),
                    shard: *shard,
                    this_peer: me,
                    replicas: replicas.clone(),
                };
                if set.recovery_source() != Some(me) {
                    continue;
                }
                due.extend(
                    set.awaiting_recovery()
                        .into_iter()
                        .filter(|peer| state.transfer_to(name, *shard, *peer).is_none())
                        .map(|peer| (name.clone(), *shard, peer)),
                );
            }
        }
        due
    }

    /// `(collection, shard, target)` for every shard with fewer replicas than its
    /// replication factor whose recovery source is this peer, no transfer under way and
    /// no snapshot recovery of its collection running: one more replica on the member
    /// `placement::repair_target` picks.
    fn repairs_due(&self) -> Vec<(String, ShardId, PeerId)> {
        let me = self.consensus.peer_id();
        let state = self.consensus.state();
        let members: Vec<PeerId> = self.consensus.peers().into_keys().collect();
        let mut load: BTreeMap<PeerId, usize> = BTreeMap::new();
        for peer in state
            .collections
            .values()
            .flat_map(|c| c.shards.values())
            .flat_map(|replicas| replicas.keys())
        {
            *load.entry(*peer).or_default() += 1;
        }
        let mut due = Vec::new();
        for (name, collection) in &state.collections {
            if collection.recovering.is_some() {
                continue;
            }
            let factor = collection.config.params.replication_factor;
            for (shard, replicas) in &collection.shards {
                let set = ReplicaSet {
                    collection: name.clone(),
                    shard: *shard,
                    this_peer: me,
                    replicas: replicas.clone(),
                };
                if set.recovery_source() != Some(me)
                    || collection.transfers.iter().any(|t| t.shard == *shard)
                {
                    continue;
                }
                let holders: Vec<PeerId> = replicas.keys().copied().collect();
                if let Some(target) = placement::repair_target(factor, &holders, &members, &load) {
                    *load.entry(target).or_default() += 1;
                    due.push((name.clone(), *shard, target));
                }
            }
        }
        due
    }

    /// Starts a replicating transfer from this peer to `target` for an under-replicated
    /// shard (see [`Self::repairs_due`]); it shows in `GET /collections/{c}/cluster` as a
    /// pending transfer until the new replica is Active.
    async fn start_repair(&self, collection: &str, shard: ShardId, target: PeerId) -> Result<()> {
        let method = self.settings.storage.shard_transfer_method;
        tracing::info!(
            collection,
            shard,
            target,
            method = method.name(),
            "adding a replica to an under-replicated shard"
        );
        self.propose(ClusterOp::StartTransfer {
            collection: collection.to_string(),
            transfer: ShardTransfer {
                shard,
                from: self.consensus.peer_id(),
                to: target,
                method,
                sync: true,
            },
        })
        .await
    }

    /// Pending transfers whose source is this peer and that no task here runs yet.
    fn transfers_to_run(&self) -> Vec<(String, ShardTransfer)> {
        let me = self.consensus.peer_id();
        let state = self.consensus.state();
        let running = self.running_transfers.running.lock();
        state
            .collections
            .iter()
            .flat_map(|(name, c)| c.transfers.iter().map(move |t| (name.clone(), *t)))
            .filter(|(name, t)| t.from == me && !running.contains(&(name.clone(), t.shard, t.to)))
            .collect()
    }

    /// Drops the write recordings of shards this peer no longer receives a snapshot of.
    fn forget_finished_recordings(&self) {
        let state = self.consensus.state();
        let me = self.consensus.peer_id();
        self.write_recorders.retain(|collection, shard| {
            state
                .transfer_to(collection, shard, me)
                .is_some_and(|t| t.method == TransferMethod::Snapshot)
        });
    }

    /// Starts a sync transfer from this peer into the replica on `target` (see the module
    /// doc), once the target's peer answers.
    async fn start_recovery(&self, collection: &str, shard: ShardId, target: PeerId) -> Result<()> {
        let set = self.replica_set(collection, shard)?;
        let replica = self.remote_replica(&set, target)?;
        let index = self.consensus.raft_info().applied;
        let count = ShardRead::Count { filter: None };
        if self
            .shard_clients
            .read(&replica, &count, index)
            .await
            .is_err()
        {
            return Ok(()); // Still down: next round.
        }
        if set.replicas.get(&target) == Some(&ReplicaState::Partial) {
            // A cut-short transfer: stop the writes to it before it is refilled.
            self.set_replica_state(collection, shard, target, ReplicaState::Dead)
                .await?;
            self.settle_writes(collection, shard).await;
        }
        let method = self.settings.storage.shard_transfer_method;
        tracing::info!(
            collection,
            shard,
            target,
            method = method.name(),
            "recovering a dead replica"
        );
        self.propose(ClusterOp::StartTransfer {
            collection: collection.to_string(),
            transfer: ShardTransfer {
                shard,
                from: self.consensus.peer_id(),
                to: target,
                method,
                sync: true,
            },
        })
        .await
    }

    /// Waits until every peer routes writes to the shard by the cluster state this peer
    /// has applied now, and the writes routed by an older state have ended
    /// (`Shards.Drain`, see `replication/inflight.rs`). A peer that does not answer
    /// cannot be asked; then the wait is a fixed [`PARTIAL_SETTLE`] instead.
    async fn settle_writes(&self, collection: &str, shard: ShardId) {
        let index = self.consensus.raft_info().applied;
        let me = self.consensus.peer_id();
        let drains = self.consensus.peers().into_iter().map(|(peer, uri)| {
            let replica = crate::replication::remote::RemoteReplica {
                peer,
                uri,
                collection: collection.to_string(),
                shard,
            };
            async move {
                if peer == me {
                    self.serve_drain(collection, shard, index).await
                } else {
                    self.shard_clients.drain(&replica, index).await
                }
            }
        });
        let failed: Vec<String> = futures::future::join_all(drains)
            .await
            .into_iter()
            .filter_map(|outcome| outcome.err().map(|err| err.to_string()))
            .collect();
        if !failed.is_empty() {
            tracing::info!(
                collection,
                shard,
                ?failed,
                "not every peer confirmed that older writes ended; waiting a fixed time instead"
            );
            tokio::time::sleep(PARTIAL_SETTLE).await;
        }
    }

    /// Runs one transfer whose source is this peer, unless it runs already (see the
    /// module doc).
    async fn run_transfer(&self, collection: &str, transfer: ShardTransfer) {
        let Some(_running) = self
            .running_transfers
            .claim(collection, transfer.shard, transfer.to)
        else {
            return;
        };
        let ShardTransfer {
            shard, from, to, ..
        } = transfer;
        let method = transfer.method.name();
        tracing::info!(
            collection,
            shard,
            from,
            to,
            method,
            sync = transfer.sync,
            "shard transfer started"
        );
        let started = std::time::Instant::now();
        let counters = &self.metrics.operations.shard_transfer;
        counters.started();
        self.settle_writes(collection, shard).await;
        let copied = match transfer.method {
            TransferMethod::StreamRecords => self.stream_records(collection, &transfer).await,
            TransferMethod::Snapshot => self.send_snapshot(collection, &transfer).await,
        };
        let outcome = match copied {
            Ok(points) => self
                .propose(ClusterOp::FinishTransfer {
                    collection: collection.to_string(),
                    shard,
                    to,
                })
                .await
                .map(|()| points),
            Err(err) => Err(err),
        };
        // Bytes were counted as they were sent.
        counters.ended(outcome.is_ok(), 0, started.elapsed());
        match outcome {
            Ok(points) => {
                let seconds = started.elapsed().as_secs_f64();
                tracing::info!(
                    collection,
                    shard,
                    from,
                    to,
                    method,
                    points,
                    seconds,
                    "shard transfer finished"
                )
            }
            Err(err) => {
                tracing::warn!(collection, shard, from, to, method, %err, "shard transfer failed; aborting it");
                let abort = ClusterOp::AbortTransfer {
                    collection: collection.to_string(),
                    shard,
                    to,
                    drop_target: !transfer.sync,
                };
                if let Err(err) = self.propose(abort).await {
                    tracing::warn!(collection, shard, to, %err, "aborting a failed transfer failed");
                }
            }
        }
    }

    async fn set_replica_state(
        &self,
        collection: &str,
        shard: ShardId,
        peer: PeerId,
        state: ReplicaState,
    ) -> Result<()> {
        self.propose(ClusterOp::SetReplicaState {
            collection: collection.to_string(),
            shard,
            peer,
            state,
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_claim_fails_and_leaves_the_first_in_place() {
        let running = RunningTransfers::default();
        let first = running.claim("c", 0, 7).expect("first claim");
        assert!(running.claim("c", 0, 7).is_none());
        assert!(running.running.lock().contains(&("c".to_string(), 0, 7)));
        drop(first);
        assert!(running.claim("c", 0, 7).is_some());
    }
}
