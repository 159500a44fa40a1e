//! Point writes and reads through the shards' replica sets, and the peer service's side of
//! the same: applying an op to, or reading from, a replica held here on behalf of another
//! peer.
//!
//! A write is split by shard; each part goes, concurrently, to every replica of its shard
//! that is not Dead: this peer's through its local shard, the others through the peer
//! service (`replication::remote`). A part succeeds once `write_consistency_factor` replicas
//! took it. Every replica that failed (not for a reason the request itself caused) is then
//! marked Dead through consensus, so no peer reads it again; consensus refuses that for a
//! shard's last Active replica, which stays as it is. A write whose failed replica could
//! not be marked Dead fails too: its replicas may differ and nobody would know.
//!
//! A read asks one Active replica per shard (this peer's first, then the others as
//! fallbacks) and the caller merges the answers.
//!
//! Concurrent writes to the same point may reach two replicas in different orders (as
//! with Qdrant's default `weak` write ordering).

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;

use super::{blocking, Node};
use crate::collection::Collection;
use crate::consensus::op::ClusterOp;
use crate::consensus::state::ReplicaState;
use crate::error::{Error, Result};
use crate::replication::remote::{decode_op, encode_op, RemoteReplica};
use crate::replication::replica_set::ReplicaSet;
use crate::replication::wire::{self, decode, ShardRead, ShardReadResult};
use crate::shard::ops::ShardOp;
use crate::shard::LocalShard;
use crate::types::{PeerId, ShardId};

/// What one shard's part of a write achieved.
struct ShardWrite {
    set: ReplicaSet,
    required: usize,
    acks: usize,
    operation_id: u64,
    /// An error the request itself caused (the same on every replica).
    user_error: Option<Error>,
    /// Replicas that failed for any other reason.
    failed: Vec<(PeerId, Error)>,
}

impl Node {
    /// The replicas of one shard as the applied cluster state has them.
    pub(crate) fn replica_set(&self, collection: &str, shard: ShardId) -> Result<ReplicaSet> {
        let state = self.consensus.state();
        let replicas = state.replicas(collection, shard).cloned().ok_or_else(|| {
            Error::NotFound(format!(
                "shard {shard} of collection {collection} does not exist"
            ))
        })?;
        Ok(ReplicaSet {
            collection: collection.to_string(),
            shard,
            this_peer: self.consensus.peer_id(),
            replicas,
        })
    }

    /// Applies per-shard ops to the shards' replica sets (see the module doc); returns the
    /// highest operation id any replica gave.
    pub(crate) async fn write_shards(
        &self,
        collection: &Collection,
        ops: Vec<(ShardId, ShardOp)>,
        wait: bool,
    ) -> Result<u64> {
        let index = self.consensus.raft_info().applied;
        let wcf = collection.config().params.write_consistency_factor;
        let mut parts = Vec::with_capacity(ops.len());
        // Check every shard before writing anything: a shard without an Active replica
        // refuses the whole write.
        for (shard, op) in ops {
            let set = self.replica_set(collection.name(), shard)?;
            let targets = set.write_targets()?;
            parts.push((set, targets, op));
        }
        let writes = parts
            .into_iter()
            .map(|(set, targets, op)| self.write_shard(set, targets, op, wait, wcf, index));
        let outcomes = join_all(writes).await;
        let marked = self.mark_dead(&outcomes).await;
        let mut operation_id = 0;
        for outcome in outcomes {
            operation_id = operation_id.max(write_result(outcome)?);
        }
        marked?;
        Ok(operation_id)
    }

    async fn write_shard(
        &self,
        set: ReplicaSet,
        targets: Vec<PeerId>,
        op: ShardOp,
        wait: bool,
        wcf: u32,
        index: u64,
    ) -> ShardWrite {
        let required = ReplicaSet::required_acks(wcf, targets.len());
        let me = self.consensus.peer_id();
        // Counted until every replica answered: a transfer started meanwhile waits for it
        // if its route skipped the transfer's target (see `inflight.rs`).
        let _inflight = self.inflight.begin(&set.collection, set.shard, index);
        let encoded = targets
            .iter()
            .any(|peer| *peer != me)
            .then(|| encode_op(&op));
        let set_ref = &set;
        let calls = targets.iter().map(|peer| {
            let (op, encoded) = (op.clone(), encoded.as_ref());
            async move {
                let result = if *peer == me {
                    self.apply_here(&set_ref.collection, set_ref.shard, op, wait)
                        .await
                } else {
                    match encoded {
                        Some(bytes) => self.apply_remote(set_ref, *peer, bytes, wait, index).await,
                        None => Err(Error::service("operation not encoded")),
                    }
                };
                (*peer, result)
            }
        });
        let results = join_all(calls).await;
        let mut write = ShardWrite {
            set: set.clone(),
            required,
            acks: 0,
            operation_id: 0,
            user_error: None,
            failed: Vec::new(),
        };
        for (peer, result) in results {
            match result {
                Ok(id) => {
                    write.acks += 1;
                    write.operation_id = write.operation_id.max(id);
                }
                Err(err) if caused_by_request(&err) => write.user_error = Some(err),
                Err(err) => {
                    tracing::warn!(collection = %set.collection, shard = set.shard, peer, %err, "a replica failed a write");
                    write.failed.push((peer, err));
                }
            }
        }
        write
    }

    async fn apply_remote(
        &self,
        set: &ReplicaSet,
        peer: PeerId,
        op: &[u8],
        wait: bool,
        index: u64,
    ) -> Result<u64> {
        let replica = self.remote_replica(set, peer)?;
        self.shard_clients.apply(&replica, op, wait, index).await
    }

    pub(crate) fn remote_replica(&self, set: &ReplicaSet, peer: PeerId) -> Result<RemoteReplica> {
        let uri = self
            .consensus
            .peers()
            .get(&peer)
            .cloned()
            .ok_or_else(|| Error::Unavailable(format!("peer {peer} has no known address")))?;
        Ok(RemoteReplica {
            peer,
            uri,
            collection: set.collection.clone(),
            shard: set.shard,
        })
    }

    /// Marks every replica that failed a write Dead through consensus. A refusal (the
    /// shard's last Active replica) leaves it as it is; any other failure to record the
    /// change is returned, after trying the others.
    async fn mark_dead(&self, outcomes: &[ShardWrite]) -> Result<()> {
        let mut unrecorded = Vec::new();
        for outcome in outcomes {
            for (peer, cause) in &outcome.failed {
                let set = &outcome.set;
                let current = self
                    .consensus
                    .state()
                    .replicas(&set.collection, set.shard)
                    .and_then(|r| r.get(peer).copied());
                if current == Some(ReplicaState::Dead) || current.is_none() {
                    continue;
                }
                let op = ClusterOp::SetReplicaState {
                    collection: set.collection.clone(),
                    shard: set.shard,
                    peer: *peer,
                    state: ReplicaState::Dead,
                };
                match self.propose(op).await {
                    Ok(()) => {
                        tracing::warn!(collection = %set.collection, shard = set.shard, peer, %cause, "marked a replica dead after a failed write")
                    }
                    Err(err) if err.is_user_error() => {
                        tracing::warn!(collection = %set.collection, shard = set.shard, peer, %err, "a replica failed a write but stays")
                    }
                    Err(err) => unrecorded.push(format!(
                        "the replica on peer {peer} failed ({cause}) and could not be marked dead: {err}"
                    )),
                }
            }
        }
        if unrecorded.is_empty() {
            Ok(())
        } else {
            Err(Error::Unavailable(unrecorded.join("; ")))
        }
    }

    /// Runs `read` on one Active replica of a shard: this peer's if it has one, otherwise
    /// (or when that fails) the others in turn.
    pub(crate) async fn read_shard(
        &self,
        collection: &Collection,
        shard: ShardId,
        read: ShardRead,
    ) -> Result<ShardReadResult> {
        let set = self.replica_set(collection.name(), shard)?;
        let me = self.consensus.peer_id();
        let index = self.consensus.raft_info().applied;
        let mut failures = Vec::new();
        for peer in set.read_order()? {
            let result = if peer == me {
                let local = collection.local_shards().get(&shard).cloned();
                read_local(local, read.clone(), &set).await
            } else {
                match self.remote_replica(&set, peer) {
                    Ok(replica) => self.shard_clients.read(&replica, &read, index).await,
                    Err(err) => Err(err),
                }
            };
            match result {
                Ok(answer) => return Ok(answer),
                Err(err) if caused_by_request(&err) => return Err(err),
                Err(err) => failures.push(format!("peer {peer}: {err}")),
            }
        }
        Err(Error::Unavailable(format!(
            "{}: no active replica answered ({})",
            set.describe(),
            failures.join("; ")
        )))
    }

    /// Runs one read per shard concurrently; the answers come back in the order given.
    pub(crate) async fn read_shards(
        &self,
        collection: &Collection,
        reads: Vec<(ShardId, ShardRead)>,
    ) -> Result<Vec<ShardReadResult>> {
        let reads = reads
            .into_iter()
            .map(|(shard, read)| self.read_shard(collection, shard, read));
        join_all(reads).await.into_iter().collect()
    }

    /// The peer service's `Shards.Apply`: applies an op to this peer's replica.
    pub async fn serve_shard_apply(
        &self,
        collection: &str,
        shard: ShardId,
        op: &[u8],
        wait: bool,
        min_applied_index: u64,
    ) -> Result<u64> {
        let op = decode_op(op)?;
        let _inflight = self.inflight.begin(collection, shard, min_applied_index);
        self.replica_here(collection, shard, min_applied_index)
            .await?;
        self.apply_here(collection, shard, op, wait).await
    }

    /// The peer service's `Shards.Drain`: answers once this peer has executed the cluster
    /// state up to `index` (so it routes new writes by it) and no write to the shard that
    /// it routed or received by an older state is in flight (see `inflight.rs`).
    pub async fn serve_drain(&self, collection: &str, shard: ShardId, index: u64) -> Result<()> {
        let limit = self.catch_up_limit();
        let started = std::time::Instant::now();
        let late = || {
            Error::Unavailable(format!(
                "writes to shard {shard} of collection {collection} routed before index {index} did not end within {limit:?}"
            ))
        };
        if !self.executed_up_to(index, limit).await {
            return Err(late());
        }
        let rest = limit.saturating_sub(started.elapsed());
        tokio::time::timeout(rest, self.inflight.drained(collection, shard, index))
            .await
            .map_err(|_| late())
    }

    /// How long a peer call waits for this peer to catch up with the caller's state.
    fn catch_up_limit(&self) -> Duration {
        Duration::from_millis(self.settings.cluster.grpc_timeout_ms / 2)
    }

    /// Waits (at most `limit`) until this peer has executed the cluster state up to
    /// `index`; whether it has.
    async fn executed_up_to(&self, index: u64, limit: Duration) -> bool {
        let mut executed = self.effects_executed.clone();
        let caught_up = executed.wait_for(|executed| *executed >= index);
        let outcome = tokio::time::timeout(limit, caught_up).await;
        matches!(outcome, Ok(Ok(_)))
    }

    /// The peer service's `Shards.Read`: runs a read on this peer's replica and answers
    /// the result's serde bytes.
    pub async fn serve_shard_read(
        &self,
        collection: &str,
        shard: ShardId,
        read: &[u8],
        min_applied_index: u64,
    ) -> Result<Vec<u8>> {
        let read: ShardRead = decode(read, "shard read")?;
        let local = self
            .replica_here(collection, shard, min_applied_index)
            .await?;
        let result = blocking(move || wire::execute(&local, read)).await?;
        wire::encode(&result)
    }

    /// This peer's replica of a shard, once this peer has executed the cluster state up to
    /// the caller's index (bounded: a lagging peer answers with what it has).
    pub(super) async fn replica_here(
        &self,
        collection: &str,
        shard: ShardId,
        min_applied_index: u64,
    ) -> Result<Arc<LocalShard>> {
        if !self
            .executed_up_to(min_applied_index, self.catch_up_limit())
            .await
        {
            tracing::debug!(
                collection,
                shard,
                min_applied_index,
                "cluster state still behind the caller's; answering with what is here"
            );
        }
        self.collections
            .get(collection)
            .and_then(|c| c.local_shards().get(&shard).cloned())
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "shard {shard} of collection {collection} has no replica on peer {}",
                    self.consensus.peer_id()
                ))
            })
    }
}

/// Errors the request itself caused: every replica gives the same one, so they say
/// nothing about a replica's health.
fn caused_by_request(err: &Error) -> bool {
    matches!(
        err,
        Error::BadInput(_) | Error::BadRequest(_) | Error::ChecksumMismatch { .. }
    )
}

async fn read_local(
    local: Option<Arc<LocalShard>>,
    read: ShardRead,
    set: &ReplicaSet,
) -> Result<ShardReadResult> {
    let local = local.ok_or_else(|| not_open_here(set))?;
    blocking(move || wire::execute(&local, read)).await
}

fn not_open_here(set: &ReplicaSet) -> Error {
    Error::Service(format!("{} is not open on this peer", set.describe()))
}

/// The outcome of one shard's part: its operation id, or why it failed.
fn write_result(write: ShardWrite) -> Result<u64> {
    if write.acks >= write.required {
        return Ok(write.operation_id);
    }
    if let Some(err) = write.user_error {
        return Err(err);
    }
    let failures: Vec<String> = write
        .failed
        .iter()
        .map(|(peer, err)| format!("peer {peer}: {err}"))
        .collect();
    Err(Error::Unavailable(format!(
        "{}: {} of the {} required replicas took the write ({})",
        write.set.describe(),
        write.acks,
        write.required,
        failures.join("; ")
    )))
}
