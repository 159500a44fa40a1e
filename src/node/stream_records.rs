//! The `stream_records` transfer method: the source scrolls its replica in batches
//! (payloads and vectors) and upserts each batch into the target, which is Partial and
//! so takes every concurrent write as well.
//!
//! Known limit: a write to a point that races with the batch carrying the same point may
//! be overwritten on the target by the older copy the batch read (shards have no
//! conditional, version-checked upsert yet). The `snapshot` method has no such gap.

use super::{blocking, Node};
use crate::collection::point::{PointRecord, Record, WithPayload, WithVector};
use crate::consensus::transfer::ShardTransfer;
use crate::error::{Error, Result};
use crate::replication::remote::encode_op;
use crate::replication::replica_set::ReplicaSet;
use crate::shard::filter::Filter;
use crate::shard::ops::{PointSelector, ShardOp};

/// Points per upsert sent to the target (each one fsynced there before the next is sent).
const BATCH: usize = 1024;

impl Node {
    /// Upserts every point of this peer's replica into the transfer's target, batch by
    /// batch, while the transfer is pending. Returns how many points were sent.
    pub(super) async fn stream_records(
        &self,
        collection: &str,
        transfer: &ShardTransfer,
    ) -> Result<u64> {
        let set = self.replica_set(collection, transfer.shard)?;
        let target = self.remote_replica(&set, transfer.to)?;
        let source = self
            .collections
            .get(collection)
            .and_then(|c| c.local_shards().get(&transfer.shard).cloned())
            .ok_or_else(|| Error::service(format!("{} is not open here", set.describe())))?;
        if transfer.sync {
            // A replica being re-synced may hold points deleted since it went stale: empty
            // it first. This runs only once `StartTransfer` committed, so the target is
            // Partial under this transfer and nothing else can have made it Active with
            // other data meanwhile (a clear sent on an earlier state could wipe a replica
            // that a snapshot recovery had just activated).
            self.check_still_pending(collection, transfer, &set)?;
            let clear = ShardOp::Delete(PointSelector::Filter(Filter::default()));
            let index = self.consensus.raft_info().applied;
            self.shard_clients
                .apply(&target, &encode_op(&clear), true, index)
                .await?;
        }
        let mut offset = None;
        let mut sent = 0;
        loop {
            self.check_still_pending(collection, transfer, &set)?;
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
                sent += records.len() as u64;
                let op = encode_op(&ShardOp::Upsert(
                    records.into_iter().map(point_of).collect(),
                ));
                let index = self.consensus.raft_info().applied;
                self.shard_clients.apply(&target, &op, true, index).await?;
                self.metrics
                    .operations
                    .shard_transfer
                    .add_bytes(op.len() as u64);
            }
            match next {
                Some(id) => offset = Some(id),
                None => return Ok(sent),
            }
        }
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

impl Node {
    /// Fails once `transfer` is no longer pending in the cluster state (aborted, or ended
    /// by a recovery of the shard).
    fn check_still_pending(
        &self,
        collection: &str,
        transfer: &ShardTransfer,
        set: &ReplicaSet,
    ) -> Result<()> {
        let state = self.consensus.state();
        if state.transfer_to(collection, transfer.shard, transfer.to) != Some(transfer) {
            return Err(Error::Conflict(format!(
                "the transfer of {} to peer {} was aborted",
                set.describe(),
                transfer.to
            )));
        }
        Ok(())
    }
}
