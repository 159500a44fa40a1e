//! Writes on their way to a shard's replicas, with the consensus index at which their
//! route (the replicas to write to) was read, so that a transfer source can wait until no
//! write routed by an older cluster state is still travelling (`Shards.Drain`).
//!
//! Why: a snapshot transfer makes its target Partial (a committed `StartTransfer` at
//! index X) and then copies the source's replica. A write routed before a peer applied
//! X skips the target; the copy must not be taken before such a write has landed on the
//! source. Each peer counts the writes it routes (as coordinator) and the writes it
//! receives from other peers (by the sender's index), from the moment the route is read
//! until every replica answered or the write was applied here; [`InflightWrites::drained`]
//! waits until none older than X is left. Every write ends (replica calls have a timeout),
//! so the wait is bounded; callers bound it again.

use std::collections::{BTreeMap, HashMap};

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::types::ShardId;

type Key = (String, ShardId);

/// The writes of this peer in flight, per shard, counted by routing index.
#[derive(Default)]
pub struct InflightWrites {
    writes: Mutex<HashMap<Key, BTreeMap<u64, usize>>>,
    ended: Notify,
}

/// One write in flight; it ends when this is dropped.
pub struct InflightWrite<'a> {
    writes: &'a InflightWrites,
    key: Key,
    index: u64,
}

impl InflightWrites {
    /// Counts a write to the shard whose route was read at consensus index `index`.
    pub fn begin(&self, collection: &str, shard: ShardId, index: u64) -> InflightWrite<'_> {
        let key = (collection.to_string(), shard);
        *self
            .writes
            .lock()
            .entry(key.clone())
            .or_default()
            .entry(index)
            .or_default() += 1;
        InflightWrite {
            writes: self,
            key,
            index,
        }
    }

    /// Whether a write to the shard routed before `index` is still in flight.
    fn any_before(&self, collection: &str, shard: ShardId, index: u64) -> bool {
        self.writes
            .lock()
            .get(&(collection.to_string(), shard))
            .and_then(|by_index| by_index.keys().next())
            .is_some_and(|oldest| *oldest < index)
    }

    /// Returns once no write to the shard routed before `index` is in flight here.
    pub async fn drained(&self, collection: &str, shard: ShardId, index: u64) {
        loop {
            // Registered before the check, so an end between the two is not missed.
            let ended = self.ended.notified();
            if !self.any_before(collection, shard, index) {
                return;
            }
            ended.await;
        }
    }
}

impl Drop for InflightWrite<'_> {
    fn drop(&mut self) {
        {
            let mut writes = self.writes.writes.lock();
            if let Some(by_index) = writes.get_mut(&self.key) {
                if let Some(count) = by_index.get_mut(&self.index) {
                    *count -= 1;
                    if *count == 0 {
                        by_index.remove(&self.index);
                    }
                }
                if by_index.is_empty() {
                    writes.remove(&self.key);
                }
            }
        }
        self.writes.ended.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn drained_waits_only_for_older_writes_of_the_same_shard() {
        let writes = InflightWrites::default();
        let old = writes.begin("c", 0, 5);
        let _newer = writes.begin("c", 0, 9);
        let _other_shard = writes.begin("c", 1, 1);
        let quick = Duration::from_millis(50);
        // Writes routed at 9 or on shard 1 do not hold a drain before 9 of shard 0.
        assert!(tokio::time::timeout(quick, writes.drained("c", 0, 5))
            .await
            .is_ok());
        assert!(tokio::time::timeout(quick, writes.drained("c", 0, 9))
            .await
            .is_err());
        let drain = writes.drained("c", 0, 9);
        tokio::pin!(drain);
        assert!(tokio::time::timeout(quick, &mut drain).await.is_err());
        drop(old);
        assert!(tokio::time::timeout(quick, &mut drain).await.is_ok());
        assert!(writes.any_before("c", 0, 10));
        assert!(!writes.any_before("c", 0, 9));
    }
}
