//! Automatic recovery of Dead replicas by a `stream_records` transfer.
//!
//! Every clustered peer looks at the cluster state once a second. For each shard with a
//! Dead replica whose recovery source it is (the shard's lowest-id Active replica, see
//! `ReplicaSet::recovery_source`, so one peer in the whole cluster acts) it runs the steps
//! below, one replica at a time. A Partial replica seen between two transfers is one whose
//! transfer was cut short (its source crashed, or lost its place as source): it is
//! recovered the same way.
//!
//! 1. checks that the replica's peer answers at all (a peer that is still down is left
//!    alone until the next round);
//! 2. marks a cut-short Partial replica Dead again, so writes stop reaching it;
//! 3. empties the replica (a delete of every point), so points deleted while it was down
//!    do not come back (no peer writes to a Dead replica);
//! 4. marks it Partial through consensus: from then on every write to the shard goes to it
//!    too, while reads still ignore it;
//! 5. scrolls its own replica in batches (payloads and vectors) and upserts each batch
//!    into the target;
//! 6. marks it Active through consensus. A failure on the way marks it Dead again, and the
//!    next round starts over.
//!
//! Known limit: a write to a point that races with the batch carrying the same point may
//! be overwritten on the target by the older copy the batch read (shards have no
//! conditional, version-checked upsert yet). Qdrant closes this gap with a forwarding
//! proxy on the source and point versions.

use std::sync::Arc;
use std::time::Duration;

use super::{blocking, Node};
use crate::collection::point::{PointRecord, Record, WithPayload, WithVector};
use crate::consensus::op::ClusterOp;
use crate::consensus::state::ReplicaState;
use crate::error::{Error, Result};
use crate::replication::remote::encode_op;
use crate::replication::replica_set::ReplicaSet;
use crate::replication::wire::ShardRead;
use crate::shard::filter::Filter;
use crate::shard::ops::{PointSelector, ShardOp};
use crate::types::{PeerId, ShardId};

/// How often a peer looks for replicas to recover.
const RECOVERY_PERIOD: Duration = Duration::from_secs(1);
/// Points per upsert sent to the target.
const BATCH: usize = 256;
/// Time for every peer to apply a replica state change: "Partial" before the copy starts,
/// so that writes sent by peers that still saw the replica Dead are on the source before
/// it is read; "Dead" before a cut-short Partial replica is emptied.
const PARTIAL_SETTLE: Duration = Duration::from_millis(500);

/// The recovery loop; ends when consensus stops.
pub(crate) async fn run(node: Arc<Node>) {
    loop {
        tokio::time::sleep(RECOVERY_PERIOD).await;
        if !node.consensus.raft_info().running {
            return;
        }
        for (collection, shard, target) in node.recoveries_due() {
            if let Err(err) = node.recover(&collection, shard, target).await {
                tracing::warn!(collection, shard, target, %err, "recovering a dead replica failed; will retry");
            }
        }
    }
}

impl Node {
    /// `(collection, shard, dead peer)` for every Dead replica this peer should recover.
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
                if set.recovery_source() == Some(me) {
                    due.extend(
                        set.awaiting_recovery()
                            .into_iter()
                            .map(|peer| (name.clone(), *shard, peer)),
                    );
                }
            }
        }
        due
    }

    /// Copies this peer's replica of a shard into the Dead replica on `target` (see the
    /// module doc).
    async fn recover(&self, collection: &str, shard: ShardId, target: PeerId) -> Result<()> {
        let set = self.replica_set(collection, shard)?;
        let replica = self.remote_replica(&set, target)?;
        let index = self.consensus.raft_info().applied;
        if self
            .shard_clients
            .read(&replica, &ShardRead::Count { filter: None }, index)
            .await
            .is_err()
        {
            return Ok(()); // Still down: next round.
        }
        let source = self
            .collections
            .get(collection)
            .and_then(|c| c.local_shards().get(&shard).cloned())
            .ok_or_else(|| Error::service(format!("{} is not open here", set.describe())))?;
        if set.replicas.get(&target) == Some(&ReplicaState::Partial) {
            // A cut-short transfer: stop the writes to it before it is emptied.
            self.set_replica_state(collection, shard, target, ReplicaState::Dead)
                .await?;
            tokio::time::sleep(PARTIAL_SETTLE).await;
        }
        tracing::info!(
            collection,
            shard,
            target,
            "recovering a dead replica (stream_records)"
        );
        let clear = ShardOp::Delete(PointSelector::Filter(Filter::default()));
        self.shard_clients
            .apply(&replica, &encode_op(&clear)?, true, index)
            .await?;
        self.set_replica_state(collection, shard, target, ReplicaState::Partial)
            .await?;
        tokio::time::sleep(PARTIAL_SETTLE).await;
        let copied = self.stream_records(&set, target, source).await;
        let outcome = match copied {
            Ok(points) => self
                .set_replica_state(collection, shard, target, ReplicaState::Active)
                .await
                .map(|()| points),
            Err(err) => Err(err),
        };
        match outcome {
            Ok(points) => {
                tracing::info!(collection, shard, target, points, "dead replica recovered");
                Ok(())
            }
            Err(err) => {
                let _ = self
                    .set_replica_state(collection, shard, target, ReplicaState::Dead)
                    .await;
                Err(err)
            }
        }
    }

    /// Upserts every point of `source` into the target, batch by batch, while the target
    /// stays Partial. Returns how many points were sent.
    async fn stream_records(
        &self,
        set: &ReplicaSet,
        target: PeerId,
        source: Arc<crate::shard::LocalShard>,
    ) -> Result<usize> {
        let replica = self.remote_replica(set, target)?;
        let mut offset = None;
        let mut sent = 0;
        loop {
            let state = self.consensus.state();
            let current = state
                .replicas(&set.collection, set.shard)
                .and_then(|r| r.get(&target).copied());
            if current != Some(ReplicaState::Partial) {
                return Err(Error::Conflict(format!(
                    "the replica on peer {target} of {} left Partial during its recovery",
                    set.describe()
                )));
            }
            let shard = source.clone();
            let (records, next) = blocking(move || {
                Ok(shard.scroll(
                    None,
                    offset,
                    BATCH,
                    &WithPayload::Enable(true),
                    &WithVector::Enable(true),
                ))
            })
            .await?;
            if !records.is_empty() {
                sent += records.len();
                let op = ShardOp::Upsert(records.into_iter().map(point_of).collect());
                let index = self.consensus.raft_info().applied;
                self.shard_clients
                    .apply(&replica, &encode_op(&op)?, true, index)
                    .await?;
            }
            match next {
                Some(id) => offset = Some(id),
                None => return Ok(sent),
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

/// A scrolled record as a point to upsert (it was read with payload and vectors).
fn point_of(record: Record) -> PointRecord {
    PointRecord {
        id: record.id,
        vectors: record.vector.map(|v| v.into_named()).unwrap_or_default(),
        payload: record.payload.unwrap_or_default(),
    }
}
